"""Cross quantized contrastive (CQC) loss of SPQ, optionally with negatives gathered from all DDP processes."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def nt_xent(
    u: torch.Tensor,
    v: torch.Tensor,
    tau: float = 0.5,
    gather_distributed: bool = False,
    negatives: Optional[torch.Tensor] = None,
    class_prior: float = 0.0,
) -> torch.Tensor:
    """NT-Xent (SimCLR) loss for positive pairs (u_i, v_i) with cosine similarity and temperature tau.

    The 2B samples [u; v] form the batch; each one's positive is its pair, the other 2B - 2 are negatives.
    gather_distributed: under torch.distributed, the columns are every process's [u; v] (2·N·B samples) and the
    rows this process's own 2B, so the mean over processes is the loss of one process holding the
    concatenated batch; gradients reach the gathered features through ``gather_with_grad``.
    negatives: (Q, D) more negatives for every row (e.g. a queue of past samples; no gradient flows to them).
    class_prior: tau+ of debiased contrastive learning (Chuang et al. 2020; not in SPQ): the share of negatives
    expected to be of the row's own class. 0 is plain NT-Xent. Else the N negatives' sum sum_k e^{s_k/tau} is replaced
    by its debiased estimate max((sum_k e^{s_k/tau} - N tau+ e^{s+/tau}) / (1 - tau+), N e^{-1/tau}).
    """
    if u.shape != v.shape or u.dim() != 2:
        raise ValueError(f"u and v must both be (B, D), got {tuple(u.shape)} and {tuple(v.shape)}")
    B = u.shape[0]
    u, v = F.normalize(u.float(), dim=1), F.normalize(v.float(), dim=1)
    rows = torch.cat([u, v])
    cols, offset, total = rows, 0, B  # total = samples per view over all processes
    if gather_distributed and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        all_u, all_v = torch.cat(gather_with_grad(u)), torch.cat(gather_with_grad(v))
        cols, offset, total = torch.cat([all_u, all_v]), dist.get_rank() * B, all_u.shape[0]
    if negatives is not None and negatives.shape[0]:
        if negatives.dim() != 2 or negatives.shape[1] != u.shape[1]:
            raise ValueError(f"negatives must be (Q, {u.shape[1]}), got {tuple(negatives.shape)}")
        cols = torch.cat([cols, F.normalize(negatives.detach().float(), dim=1)])  # after the batch: targets stay
    logits = rows @ cols.t() / tau
    own = torch.arange(B, device=u.device) + offset
    self_col = torch.cat([own, own + total])  # row i of [u; v] is column self_col[i]
    rows_i = torch.arange(2 * B, device=u.device)
    logits[rows_i, self_col] = float("-inf")
    target = torch.cat([own + total, own])
    if not class_prior:
        return F.cross_entropy(logits, target)
    return _debiased_nt_xent(logits, rows_i, target, tau, class_prior)


def _debiased_nt_xent(logits, rows_i, target, tau: float, class_prior: float) -> torch.Tensor:
    """-log(e^{s+} / (e^{s+} + Ng)) with Ng the debiased negative sum (``nt_xent``), computed with every
    exponent shifted by -1/tau (cosine <= 1) so nothing overflows."""
    shifted = logits - 1.0 / tau  # (2B, C) <= 0; self columns -inf
    pos = shifted[rows_i, target]
    n_neg = logits.shape[1] - 2  # all columns but self and the positive
    neg_sum = shifted.exp().sum(1) - pos.exp()
    floor = n_neg * math.exp(-2.0 / tau)  # N e^{-1/tau}, shifted
    ng = ((neg_sum - n_neg * class_prior * pos.exp()) / (1.0 - class_prior)).clamp(min=floor)
    return (torch.logaddexp(pos, ng.log()) - pos).mean()


def cqc_loss(
    xa: torch.Tensor,
    xb: torch.Tensor,
    za: torch.Tensor,
    zb: torch.Tensor,
    tau: float = 0.5,
    gather_distributed: bool = False,
    negatives: Optional[torch.Tensor] = None,
    class_prior: float = 0.0,
) -> torch.Tensor:
    """Features of view A against soft-quantized view B, and B against A, averaged.

    (The reference code sums the two terms; averaging only halves the gradient scale under Adam.)
    negatives: extra negatives for both terms; class_prior: debiased negatives (see ``nt_xent``).
    """
    return 0.5 * (
        nt_xent(xa, zb, tau, gather_distributed, negatives, class_prior)
        + nt_xent(xb, za, tau, gather_distributed, negatives, class_prior)
    )


class CQCLoss(nn.Module):
    """``cqc_loss`` as a module. gather_distributed=True: negatives from every DDP process (global batch).

    queue_size > 0 (not in SPQ; docs/training.md): the soft-quantized outputs of both views of the last steps,
    up to ``queue_size`` of them (first in, first out, detached), are extra negatives for every sample. Each
    process keeps its own queue. The queue is part of ``state_dict`` (extra state), so a checkpoint holds it.
    class_prior > 0 (not in SPQ; docs/training.md): debiased negatives, see ``nt_xent``.
    """

    def __init__(
        self, tau: float = 0.5, gather_distributed: bool = False, queue_size: int = 0, class_prior: float = 0.0
    ):
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        if not 0 <= class_prior < 1:
            raise ValueError(f"class_prior must be in [0, 1), got {class_prior!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 0:
            raise ValueError(f"queue_size must be an int >= 0, got {queue_size!r}")
        self.tau = float(tau)
        self.gather_distributed = bool(gather_distributed)
        self.queue_size = queue_size
        self.class_prior = float(class_prior)
        self.queue = torch.empty(0)  # (filled, D), newest last

    def forward(self, xa, xb, za, zb):
        queue = self.queue.to(za.device) if self.queue.shape[0] else None
        loss = cqc_loss(xa, xb, za, zb, self.tau, self.gather_distributed, queue, self.class_prior)
        if self.queue_size:
            fresh = torch.cat([za, zb]).detach().float()
            self.queue = (torch.cat([queue, fresh]) if queue is not None else fresh)[-self.queue_size :]
        return loss

    def get_extra_state(self):
        return {"queue": self.queue.detach().cpu()}

    def set_extra_state(self, state):
        queue = state["queue"]
        if queue.dim() != 2 and queue.numel():
            raise ValueError(f"a queue must be (n, D), got {tuple(queue.shape)}")
        if queue.shape[0] > self.queue_size:
            raise ValueError(f"a queue of {queue.shape[0]} does not fit queue_size {self.queue_size}")
        self.queue = queue


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for each slice and returns this process's.

    Each process's loss uses all slices; summing over processes gives d(sum of losses)/d(local slice). DDP then
    averages parameter gradients over the N processes, so the update is that of the mean loss, which equals
    the single-process loss on the concatenated batch.
    """

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads):
        stacked = torch.stack([g.contiguous() for g in grads])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def gather_with_grad(x: torch.Tensor):
    """Every process's ``x`` (same shape on all), in rank order; gradients flow back to each owner."""
    return _GatherWithGrad.apply(x)
