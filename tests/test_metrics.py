import sys
from pathlib import Path

import numpy as np
import pytest

from spqindex.metrics import average_precisions, map_at_n, precision_at_k, precision_recall_curve, relevance

sys.path.insert(0, str(Path(__file__).parent / "train"))
from naive import map_at_n_spq  # noqa: E402


def _ranking(rng, nq, ndb):
    return np.argsort(rng.random((nq, ndb)), axis=1)


@pytest.mark.parametrize("seed", range(5))
def test_map_matches_the_spq_code_single_label(seed):
    rng = np.random.default_rng(seed)
    ql, dl = rng.integers(0, 4, 30), rng.integers(0, 4, 200)
    ids = _ranking(rng, 30, 200)
    for n in (1, 10, 50, 200):
        np.testing.assert_allclose(map_at_n(ids, ql, dl, n), map_at_n_spq(ids, ql, dl, n), rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_map_matches_the_spq_code_multi_label(seed):
    rng = np.random.default_rng(seed)
    ql = (rng.random((25, 6)) < 0.25).astype(np.uint8)
    dl = (rng.random((150, 6)) < 0.25).astype(np.uint8)
    ql[0] = 0  # a query with no labels has no hits: it counts 0
    ids = _ranking(rng, 25, 150)
    for n in (5, 40, 150):
        np.testing.assert_allclose(map_at_n(ids, ql, dl, n), map_at_n_spq(ids, ql, dl, n), rtol=1e-12)


def test_map_hand_examples():
    db = np.array([0, 1, 0, 1, 0])
    # hits at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert map_at_n(np.array([[0, 1, 2, 3, 4]]), np.array([0]), db, 3) == pytest.approx((1 + 2 / 3) / 2)
    # no hit in the top 2 -> 0, averaged with a perfect query
    assert map_at_n(np.array([[1, 3, 0], [0, 2, 4]]), np.array([0, 0]), db, 2) == pytest.approx(0.5)
    # padding (-1) is never relevant
    assert map_at_n(np.array([[-1, 0]]), np.array([0]), db, 2) == pytest.approx(0.5)
    assert average_precisions(np.zeros((2, 3), bool)).tolist() == [0.0, 0.0]


def test_precision_and_pr_curve():
    rng = np.random.default_rng(7)
    ql, dl = rng.integers(0, 3, 20), rng.integers(0, 3, 90)
    ids = _ranking(rng, 20, 90)
    rel = np.array([[dl[j] == ql[i] for j in ids[i]] for i in range(20)])
    assert precision_at_k(ids, ql, dl, 10) == pytest.approx(rel[:, :10].mean())
    p, r = precision_recall_curve(ids, ql, dl, cutoffs=[1, 10, 90])
    assert p[1] == pytest.approx(rel[:, :10].mean())
    np.testing.assert_allclose(r[-1], 1.0)  # full rankings reach recall 1
    assert np.all(np.diff(r) >= 0)
    p2, r2 = precision_recall_curve(
        ids, np.eye(3, dtype=np.uint8)[ql], np.eye(3, dtype=np.uint8)[dl], cutoffs=[1, 10, 90]
    )
    np.testing.assert_allclose(p, p2)
    np.testing.assert_allclose(r, r2)


def test_metric_errors():
    ids = np.zeros((2, 5), dtype=np.int64)
    with pytest.raises(ValueError, match="rows"):
        map_at_n(ids, np.zeros(3, int), np.zeros(5, int), 5)
    with pytest.raises(ValueError, match="n must be"):
        map_at_n(ids, np.zeros(2, int), np.zeros(5, int), 6)
    with pytest.raises(TypeError, match="integers"):
        map_at_n(ids.astype(float), np.zeros(2, int), np.zeros(5, int), 5)
    with pytest.raises(ValueError, match="db_labels has only"):
        relevance(ids + 7, np.zeros(2, int), np.zeros(5, int))
    with pytest.raises(ValueError, match="multi-hot"):
        relevance(ids, np.zeros((2, 3), int), np.zeros((5, 4), int))
