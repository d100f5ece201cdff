"""Retrieval metrics on ranked result lists, as defined in the SPQ evaluation code.

Relevance: a database item is relevant to a query when their labels share a class. Labels are int class
ids (n,) or multi-hot (n, C). ``ranked_ids`` is (nq, >= n) database row ids, best first; -1 marks padding
(never relevant).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

_CHUNK = 1024  # queries per block, bounds memory for multi-hot labels


def _labels(labels, name: str) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim not in (1, 2) or a.shape[0] == 0:
        raise ValueError(f"{name} must be (n,) class ids or (n, C) multi-hot, got shape {a.shape}")
    if not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_) or np.issubdtype(a.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be integer, bool or float, got dtype {a.dtype}")
    return a


def relevance(ranked_ids, query_labels, db_labels, n=None) -> np.ndarray:
    """(nq, n) bool: is ranked_ids[i, j] relevant to query i."""
    ranked = np.asarray(ranked_ids)
    if ranked.ndim != 2:
        raise ValueError(f"ranked_ids must be (nq, k), got shape {ranked.shape}")
    if not np.issubdtype(ranked.dtype, np.integer):
        raise TypeError(f"ranked_ids must be integers, got dtype {ranked.dtype}")
    ql, dl = _labels(query_labels, "query_labels"), _labels(db_labels, "db_labels")
    if ql.ndim != dl.ndim or (ql.ndim == 2 and ql.shape[1] != dl.shape[1]):
        raise ValueError(
            f"query_labels {ql.shape} and db_labels {dl.shape} must both be class ids or multi-hot of equal width"
        )
    if ranked.shape[0] != ql.shape[0]:
        raise ValueError(f"ranked_ids has {ranked.shape[0]} rows but query_labels has {ql.shape[0]}")
    if n is not None:
        if n < 1 or ranked.shape[1] < n:
            raise ValueError(f"n must be in [1, {ranked.shape[1]}] (columns of ranked_ids), got {n}")
        ranked = ranked[:, :n]
    if ranked.size and ranked.max() >= dl.shape[0]:
        raise ValueError(f"ranked_ids holds id {ranked.max()} but db_labels has only {dl.shape[0]} rows")
    valid = ranked >= 0
    safe = np.where(valid, ranked, 0)
    out = np.empty(ranked.shape, dtype=bool)
    for s in range(0, ranked.shape[0], _CHUNK):
        e = s + _CHUNK
        if ql.ndim == 1:
            out[s:e] = dl[safe[s:e]] == ql[s:e, None]
        else:
            out[s:e] = np.einsum("qnc,qc->qn", dl[safe[s:e]].astype(np.float32), ql[s:e].astype(np.float32)) > 0
    return out & valid


def average_precisions(rel: np.ndarray) -> np.ndarray:
    """Per-query AP over the hits inside the list, normalised by those hits (0 when there are none)."""
    rel = np.asarray(rel, dtype=bool)
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    nhits = hits[:, -1]
    sum_prec = np.where(rel, hits / ranks, 0.0).sum(axis=1)
    return np.where(nhits > 0, sum_prec / np.maximum(nhits, 1), 0.0)


def map_at_n(ranked_ids, query_labels, db_labels, n: int = 1000) -> float:
    """mAP@N as in the SPQ code: mean over all queries of AP over the hits in the top N."""
    return float(average_precisions(relevance(ranked_ids, query_labels, db_labels, n)).mean())


def precision_at_k(ranked_ids, query_labels, db_labels, k: int = 100) -> float:
    """Mean fraction of relevant items among the top k."""
    return float(relevance(ranked_ids, query_labels, db_labels, k).mean())


def precision_recall_curve(ranked_ids, query_labels, db_labels, cutoffs=None) -> Tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall at each cutoff of the ranked lists.

    Recall divides by the number of relevant items in the whole database, so pass full rankings
    (k = database size) for a curve that reaches recall 1. Returns (precision, recall), each (len(cutoffs),).
    """
    ranked = np.asarray(ranked_ids)
    rel = relevance(ranked, query_labels, db_labels)
    k = rel.shape[1]
    cut = np.unique(np.linspace(1, k, min(k, 100)).astype(int)) if cutoffs is None else np.asarray(cutoffs, dtype=int)
    if cut.ndim != 1 or cut.size == 0 or cut.min() < 1 or cut.max() > k:
        raise ValueError(f"cutoffs must be a non-empty list of ints in [1, {k}]")
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    if ql.ndim == 1:
        classes, counts = np.unique(dl, return_counts=True)
        lookup = dict(zip(classes.tolist(), counts.tolist()))
        total = np.array([lookup.get(c, 0) for c in ql.tolist()], dtype=np.float64)
    else:
        total = ((ql.astype(np.float32) @ dl.astype(np.float32).T) > 0).sum(axis=1).astype(np.float64)
    hits = np.cumsum(rel, axis=1)[:, cut - 1].astype(np.float64)
    precision = (hits / cut).mean(axis=0)
    recall = (hits / np.maximum(total, 1)[:, None]).mean(axis=0)
    return precision, recall
