"""Mined positives (not in the paper): view B of an image may come from another image of its group.

SPQ's positives are two augmentations of one image. Here a training image may instead be paired with a
"partner" drawn from a group of images believed to show the same kind of object, e.g. images that spherical
k-means puts in the same cluster in several feature spaces at once (``GroupPartners``; the groups can be
replaced between epochs with ``set_groups``), or images near it in other feature spaces (``ListPartners``, a
candidate list per image). ``fit(partners=...)`` takes either, or any ``partners(epoch, idx) -> ids``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def spherical_kmeans(x: np.ndarray, k: int, iters: int = 20, seed: int = 0) -> np.ndarray:
    """Cluster the rows of ``x`` (n, d) by cosine similarity into ``k`` clusters; returns (n,) int64 labels.
    Lloyd rounds on unit vectors: assign to the centroid of largest dot product, centroid = normalised mean;
    an empty cluster keeps its previous centroid."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < k or k < 1:
        raise ValueError(f"x must be (n, d) with n >= k >= 1, got shape {x.shape} and k={k}")
    unit = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(x)), dim=1)
    g = torch.Generator().manual_seed(seed)
    centroids = unit[torch.randperm(len(unit), generator=g)[:k]].clone()
    for _ in range(iters):
        labels = (unit @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, unit)
        filled = sums.norm(dim=1) > 0
        centroids[filled] = torch.nn.functional.normalize(sums[filled], dim=1)
    return (unit @ centroids.T).argmax(1).numpy().astype(np.int64)


def consensus_groups(labelings: Sequence[np.ndarray]) -> np.ndarray:
    """Group id per image: images share a group when every labeling puts them together (the intersection of
    the clusterings); ids are 0..G-1."""
    if not labelings:
        raise ValueError("labelings must hold at least one (n,) array of cluster labels")
    stacked = np.stack([np.asarray(lab, dtype=np.int64) for lab in labelings], axis=1)
    return np.unique(stacked, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return float(p)


def _batch_rng(seed: int, epoch: int, idx: np.ndarray) -> np.random.Generator:
    """The draws of one batch: a function of (seed, epoch, batch ids) only, so a resumed run repeats them."""
    return np.random.default_rng([seed, epoch, int(idx[0]), int(idx[-1]), len(idx)])


class GroupPartners:
    """``partners(epoch, idx)`` for ``fit``: with probability ``p`` an image's partner is a uniformly drawn
    other member of its group, else the image itself (then view B is the plain SPQ positive). Draws depend
    only on (seed, epoch, idx), so a resumed run draws the same partners."""

    def __init__(self, groups: np.ndarray, p: float = 0.5, seed: int = 0):
        self.p, self.seed = _check_p(p), int(seed)
        self.set_groups(groups)

    def set_groups(self, groups: np.ndarray) -> None:
        groups = np.asarray(groups)
        if groups.ndim != 1 or groups.dtype.kind not in "iu":
            raise ValueError(f"groups must be a 1-d integer array (a group id per training image), got {groups!r:.80}")
        self.groups = groups.astype(np.int64)
        # Members of group g: self.order[self.start[g] : self.start[g] + self.size[g]].
        self.order = np.argsort(self.groups, kind="stable")
        self.size = np.bincount(self.groups)
        self.start = np.concatenate([[0], np.cumsum(self.size)[:-1]])
        self.rank = np.empty_like(self.order)  # rank[i]: position of image i among its group's members
        self.rank[self.order] = np.arange(len(self.order)) - self.start[self.groups[self.order]]

    def __call__(self, epoch: int, idx: np.ndarray) -> np.ndarray:
        rng = _batch_rng(self.seed, epoch, idx)
        g = self.groups[idx]
        others = self.size[g] - 1
        r = (rng.random(len(idx)) * others).astype(np.int64)  # uniform in [0, others), then skip the image itself
        r += r >= self.rank[idx]
        use = (rng.random(len(idx)) < self.p) & (others > 0)
        r = np.minimum(r, others)  # a singleton (others 0) would step past its group; it keeps itself below
        return np.where(use, self.order[self.start[g] + r], idx)


class ListPartners:
    """``partners(epoch, idx)`` for ``fit`` from a candidate list per image (CSR: image i's candidates are
    ``indices[indptr[i]:indptr[i + 1]]``): with probability ``p`` a uniformly drawn candidate, else the image
    itself (also when it has none). Draws depend only on (seed, epoch, idx)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, p: float = 0.5, seed: int = 0):
        indptr, indices = np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)
        if indptr.ndim != 1 or len(indptr) < 2 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must be a non-decreasing 1-d array starting at 0 (CSR row pointers)")
        if indices.shape != (indptr[-1],) or (len(indices) and (indices.min() < 0 or indices.max() >= len(indptr) - 1)):
            raise ValueError(f"indices must hold indptr[-1] = {indptr[-1]} image ids in [0, {len(indptr) - 1})")
        self.indptr, self.indices, self.p, self.seed = indptr, indices, _check_p(p), int(seed)

    def __call__(self, epoch: int, idx: np.ndarray) -> np.ndarray:
        rng = _batch_rng(self.seed, epoch, idx)
        count = self.indptr[idx + 1] - self.indptr[idx]
        r = (rng.random(len(idx)) * count).astype(np.int64)
        use = (rng.random(len(idx)) < self.p) & (count > 0)
        at = np.minimum(self.indptr[idx] + r, max(len(self.indices) - 1, 0))  # in bounds where count is 0 too
        return np.where(use, self.indices[at], idx)
