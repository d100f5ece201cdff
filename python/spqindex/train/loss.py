"""Cross quantized contrastive (CQC) loss of SPQ."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent(u: torch.Tensor, v: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR) loss for positive pairs (u_i, v_i) with cosine similarity and temperature tau.

    The 2B samples [u; v] form the batch; each one's positive is its pair, the other 2B - 2 are negatives.
    """
    if u.shape != v.shape or u.dim() != 2:
        raise ValueError(f"u and v must both be (B, D), got {tuple(u.shape)} and {tuple(v.shape)}")
    B = u.shape[0]
    h = F.normalize(torch.cat([u, v]).float(), dim=1)
    logits = h @ h.t() / tau
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(u.device)
    return F.cross_entropy(logits, target)


def cqc_loss(xa: torch.Tensor, xb: torch.Tensor, za: torch.Tensor, zb: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Features of view A against soft-quantized view B, and B against A, averaged.

    (The reference code sums the two terms; averaging only halves the gradient scale under Adam.)
    """
    return 0.5 * (nt_xent(xa, zb, tau) + nt_xent(xb, za, tau))


class CQCLoss(nn.Module):
    def __init__(self, tau: float = 0.5):
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        self.tau = float(tau)

    def forward(self, xa, xb, za, zb):
        return cqc_loss(xa, xb, za, zb, self.tau)
