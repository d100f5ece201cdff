"""pytest-benchmark benches of the hot paths (add, encode, search at nq=1 and nq=1000).

    pytest bench/test_bench_index.py --benchmark-only
Sizes stay small (100k codes) so a run takes seconds; bench/compare_faiss.py has the 1M table.
"""

from __future__ import annotations

import numpy as np
import pytest

import spqindex

N, D = 100_000, 128


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, D), dtype=np.float32) * 3
    x = rng.standard_normal((N + 1000, D), dtype=np.float32) + centers[rng.integers(64, size=N + 1000)]
    return x[:N], x[N:]


def make_index(x, M, nbits, metric="l2"):
    """Codebooks = sub-vectors of random data rows (no k-means: these benches time the core)."""
    rng = np.random.default_rng(1)
    K = 1 << nbits
    rows = x[rng.choice(len(x), size=K, replace=False)]  # (K, D)
    cb = np.ascontiguousarray(rows.reshape(K, M, D // M).transpose(1, 0, 2))
    return spqindex.Index(cb, metric=metric)


CONFIGS = [(8, 4), (16, 4), (8, 8), (16, 8)]
ids = [f"M{M}-nbits{b}" for M, b in CONFIGS]


@pytest.fixture(scope="module", params=CONFIGS, ids=ids)
def filled(request, data):
    x, _ = data
    index = make_index(x, *request.param)
    index.add(x)
    return index


@pytest.mark.parametrize("M,nbits", CONFIGS, ids=ids)
def test_encode(benchmark, data, M, nbits):
    x, _ = data
    index = make_index(x, M, nbits)
    benchmark(index.encode, x[:20_000])


@pytest.mark.parametrize("M,nbits", CONFIGS, ids=ids)
def test_add(benchmark, data, M, nbits):
    x, _ = data

    def run():
        index = make_index(x, M, nbits)
        index.add(x[:20_000])

    benchmark(run)


def test_search_nq1(benchmark, filled, data):
    _, q = data
    benchmark(filled.search, q[:1], 10)


def test_search_nq1000(benchmark, filled, data):
    _, q = data
    benchmark.pedantic(filled.search, args=(q, 10), rounds=3, iterations=1)
