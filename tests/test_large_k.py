"""Large k (the selection path of topk_select.h, taken by the planner when k >= 64 and the
database has >= 8k rows) against the numpy reference (tests/reference.py), at every SIMD level:
row numbers and shuffled ids, many ties, both planner paths, filters and float fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import test_simd

import spqindex

level = test_simd.level  # the fixture: every SIMD level this CPU has


check = test_simd.check_search


def tied_index(rng, M, nbits, n, metric, ids=None):
    # Integer codebooks and codes from a few hundred distinct rows: many exact score ties.
    dsub = 2
    cb = rng.integers(-2, 3, size=(M, 1 << nbits, dsub)).astype(np.float32)
    index = spqindex.Index(cb, metric=metric)
    distinct = rng.integers(0, 1 << nbits, size=(300, M))
    rows = distinct[rng.integers(0, 300, size=n)]
    codes = np.zeros((n, index.code_size), dtype=np.uint8)
    for m in range(M):  # FAISS layout (ref.pack, vectorized)
        bit = m * nbits
        codes[:, bit // 8] |= (rows[:, m] << (bit % 8)).astype(np.uint8)
    index.add_codes(codes, ids=ids)
    return index


@pytest.mark.parametrize("metric", ["l2", "spq", "ip"])
@pytest.mark.parametrize("nbits", [4, 8])
def test_large_k_exact(level, metric, nbits):
    rng = np.random.default_rng(nbits * 10 + len(metric))
    M, dsub, n = 8, 3, 9000
    index = spqindex.Index(rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32), metric=metric)
    index.add(rng.standard_normal((n, M * dsub), dtype=np.float32))
    q = rng.standard_normal((5, M * dsub), dtype=np.float32)
    for k in (100, 1000, n - 1, n, n + 5):
        check(index, q, k)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nbits", [4, 8])
def test_large_k_ties_and_shuffled_ids(level, metric, nbits):
    rng = np.random.default_rng(nbits + 3)
    n = 9000
    q = rng.integers(-2, 3, size=(4, 8 * 2)).astype(np.float32)
    for ids in (None, rng.permutation(n) * 3 + 7):  # row numbers, then ids not ascending
        index = tied_index(rng, 8, nbits, n, metric, ids)
        for k in (100, 1000, n - 1, n, n + 5):
            check(index, q, k)


@pytest.mark.parametrize("nbits", [4, 8])
def test_large_k_split_over_database(level, nbits):
    # Few queries over a large database: every query is split over blocks, each task selects.
    rng = np.random.default_rng(17)
    n = 70_000
    index = tied_index(rng, 8, nbits, n, "spq", rng.permutation(n))
    q = rng.integers(-2, 3, size=(2, 16)).astype(np.float32)
    for threads in (1, 2, 3):
        spqindex.set_num_threads(threads)
        try:
            check(index, q[:1], 1000)
            check(index, q, 300)
        finally:
            spqindex.set_num_threads(2)


@pytest.mark.parametrize("nbits", [4, 8])
def test_large_k_filter_and_float_fallback(level, nbits):
    rng = np.random.default_rng(29)
    n = 9000
    index = tied_index(rng, 8, nbits, n, "l2", rng.permutation(n))
    q = rng.integers(-2, 3, size=(3, 16)).astype(np.float32)
    allowed = rng.choice(n, size=6000, replace=False)
    check(index, q, 1000, filter=allowed)  # filters keep the heap scan with allow masks
    check(index, q, 5999, filter=allowed)
    # LUTs the quantizer refuses (too wide for uint8 sums) take the float scan per query.
    huge = spqindex.Index(index.codebooks * np.float32(1e18), metric="l2")
    huge.add_codes(index.codes, ids=index.ids)
    check(huge, q * np.float32(1e18), 1000)
