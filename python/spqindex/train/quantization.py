"""Soft product quantization and the quantization head of SPQ."""

from __future__ import annotations

import math

import torch
from torch import nn


def subspace_sq_distances(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance of every sub-vector to every codeword.

    x: (n, M*dsub); codebooks: (M, K, dsub) -> (n, M, K).
    """
    M, K, dsub = codebooks.shape
    xs = x.reshape(x.shape[0], M, 1, dsub)
    diff = xs - codebooks.unsqueeze(0)
    return (diff * diff).sum(-1)


def normalize_subspaces(x: torch.Tensor, M: int) -> torch.Tensor:
    """Each of the M sub-vectors of x (n, M*dsub) scaled to unit L2 norm (zero stays zero)."""
    n = x.shape[0]
    return torch.nn.functional.normalize(x.reshape(n, M, -1), dim=-1).reshape(n, -1)


def soft_quantize(
    x: torch.Tensor, codebooks: torch.Tensor, tau_q: float = 5.0, normalize: bool = False
) -> torch.Tensor:
    """z_m = sum_k softmax_k(-tau_q * ||x_m - c_mk||^2) c_mk, concatenated over m.

    x: (n, M*dsub); codebooks: (M, K, dsub) -> z: (n, M*dsub).
    normalize: use unit-norm sub-vectors x_m and codewords c_mk (not in the paper; then tau_q sets the
    sharpness, since ||x_m - c_mk||^2 = 2 - 2 cos, instead of the scale the network gives its features).
    """
    if x.dim() != 2 or codebooks.dim() != 3:
        raise ValueError(
            f"x must be (n, M*dsub) and codebooks (M, K, dsub); got {tuple(x.shape)}, {tuple(codebooks.shape)}"
        )
    M, K, dsub = codebooks.shape
    if x.shape[1] != M * dsub:
        raise ValueError(f"x has dim {x.shape[1]}, codebooks need M*dsub = {M * dsub}")
    if normalize:
        x = normalize_subspaces(x, M)
        codebooks = torch.nn.functional.normalize(codebooks, dim=-1)
    p = torch.softmax(-tau_q * subspace_sq_distances(x, codebooks), dim=-1)  # (n, M, K)
    z = torch.einsum("nmk,mkd->nmd", p, codebooks)
    return z.reshape(x.shape[0], M * dsub)


class QuantizationHead(nn.Module):
    """Linear(in_dim -> M*dsub) then soft quantization against M learnable codebooks of K codewords."""

    def __init__(self, in_dim: int, M: int, K: int, dsub: int, tau_q: float = 5.0, normalize: bool = False):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("M", M), ("K", K), ("dsub", dsub)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.M, self.K, self.dsub, self.tau_q, self.normalize = M, K, dsub, float(tau_q), bool(normalize)
        self.fc = nn.Linear(in_dim, M * dsub, bias=False)
        # Layout: (M, K, dsub). Xavier-uniform over the (K, M*dsub) matrix the paper uses.
        bound = math.sqrt(6.0 / (K + M * dsub))
        self.codebooks = nn.Parameter(torch.empty(M, K, dsub).uniform_(-bound, bound))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """features (n, in_dim) -> x (n, M*dsub) in float32, also under bf16 autocast."""
        with torch.autocast(features.device.type, enabled=False):
            return self.fc(features.float())

    def forward(self, features: torch.Tensor):
        """features (n, in_dim) -> (x, z): pre-quantization features and their soft quantization.

        The head runs in float32 under bf16 autocast too: x is what the codebooks quantize and the index stores,
        and a bf16 mantissa has 8 bits (a run that projected in bf16 lost 0.008 mAP, docs/training.md)."""
        x = self.project(features)
        with torch.autocast(features.device.type, enabled=False):
            z = soft_quantize(x, self.codebooks.float(), self.tau_q, self.normalize)
        return x, z
