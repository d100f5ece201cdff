"""Retrieval evaluation of a trained model through the native index (metric "spq")."""

from __future__ import annotations

from typing import Dict, Sequence

from ..metrics import map_at_n, precision_at_k


def retrieval_scores(model, query: Sequence, database: Sequence, top_n: int = 1000) -> Dict[str, float]:
    """Index the database images, search the query images, and score the rankings.

    query, database: (images, labels) pairs. Returns {"map": mAP@top_n, "p@100": precision@100}
    (p@100 only when top_n >= 100).
    """
    if len(query) != 2 or len(database) != 2:
        raise ValueError("query and database must each be an (images, labels) pair")
    (q_images, q_labels), (db_images, db_labels) = query, database
    if not isinstance(top_n, int) or top_n < 1:
        raise ValueError(f"top_n must be a positive int, got {top_n!r}")
    k = min(top_n, len(db_images))
    index = model.build_index(db_images)
    _, ids = index.search(model.embed(q_images), k)
    scores = {"map": map_at_n(ids, q_labels, db_labels, n=k)}
    if k >= 100:
        scores["p@100"] = precision_at_k(ids, q_labels, db_labels, k=100)
    return scores
