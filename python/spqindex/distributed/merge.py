"""Merge of per-shard top-k lists into the global top-k, in the single Index's order.

Order: best distance first (smallest for "l2"/"spq", largest for "ip"), ties by smaller id, padding
(id -1, distance +inf, or -inf for "ip") last. Each shard's exact top-k under that order contains
its part of the global top-k, so merging the S lists of k is exact.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def merge_topk(
    Ds: Sequence[np.ndarray], Is: Sequence[np.ndarray], k: int, metric: str
) -> Tuple[np.ndarray, np.ndarray]:
    """(nq, k) float32 distances and int64 ids from S pairs of (nq, k_s) shard results."""
    D = np.concatenate([np.asarray(d, dtype=np.float32) for d in Ds], axis=1)
    I = np.concatenate([np.asarray(i, dtype=np.int64) for i in Is], axis=1)
    nq = D.shape[0]
    if D.shape[1] < k:  # fewer candidates than k (only with no shards at all): pad
        pad = k - D.shape[1]
        fill = -np.inf if metric == "ip" else np.inf
        D = np.concatenate([D, np.full((nq, pad), fill, np.float32)], axis=1)
        I = np.concatenate([I, np.full((nq, pad), -1, np.int64)], axis=1)
    key = -D if metric == "ip" else D
    # np.lexsort: the last key is the primary one.
    order = np.lexsort((I, key, I < 0), axis=1)[:, :k]
    return (
        np.ascontiguousarray(np.take_along_axis(D, order, axis=1)),
        np.ascontiguousarray(np.take_along_axis(I, order, axis=1)),
    )
