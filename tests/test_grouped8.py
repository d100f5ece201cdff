"""8-bit codes are stored in the grouped internal codeword order (grouped_scan.h, code_layout.h);
every API and the file keep FAISS numbering. Exactness at every SIMD level (AVX2 takes the
grouped kernel) with ties, filters and range search against tests/reference.py, and the FAISS
numbering at every boundary: codes, add_codes, decode, reconstruct, files (memory and mmap),
merges between mapped (file numbering) and in-memory (internal numbering) indexes."""

from __future__ import annotations

import numpy as np
import pytest
import test_simd
from test_simd import unpack

import spqindex
import reference as ref

level = test_simd.level  # the fixture: every SIMD level this CPU has


def tied_index(rng, M=6, n=5000, metric="l2", ids=None):
    cb = rng.integers(-2, 3, size=(M, 256, 2)).astype(np.float32)
    index = spqindex.Index(cb, metric=metric)
    distinct = rng.integers(0, 256, size=(40, M))
    codes = distinct[rng.integers(0, 40, size=n)].astype(np.uint8)  # 8-bit: FAISS row = codes
    index.add_codes(codes, ids=ids)
    return index, codes


check = test_simd.check_search


def check_range(index, q, radius):
    S = ref.adc(index.codebooks, q, unpack(index.codes, index.M, index.nbits), index.metric)
    lims, D, I = index.range_search(q, radius)
    for i in range(q.shape[0]):
        hit = S[i] > radius if index.metric == "ip" else S[i] < radius
        key = -S[i] if index.metric == "ip" else S[i]
        order = [j for j in np.lexsort((index.ids, key)) if hit[j]]
        np.testing.assert_array_equal(I[lims[i] : lims[i + 1]], index.ids[order])
        np.testing.assert_array_equal(D[lims[i] : lims[i + 1]], S[i][order])


@pytest.mark.parametrize("metric", ["l2", "spq", "ip"])
def test_exact_ties_filters_range(level, metric):
    rng = np.random.default_rng(len(metric))
    index, _ = tied_index(rng, metric=metric, ids=rng.permutation(5000) + 3)
    q = rng.integers(-2, 3, size=(5, 12)).astype(np.float32)
    for k in (1, 10, 100):
        check(index, q, k)
        check(index, q, k, filter=rng.choice(index.ids, size=1500, replace=False))
    S = ref.adc(index.codebooks, q[:1], unpack(index.codes, 6, 8), metric)[0]
    check_range(index, q, float(np.sort(S)[50] if metric != "ip" else -np.sort(-S)[50]))


def test_random_codebooks_exact(level):
    rng = np.random.default_rng(5)
    for M, dsub in ((8, 16), (16, 8), (3, 1)):
        index = spqindex.Index(rng.standard_normal((M, 256, dsub), dtype=np.float32), metric="spq")
        index.add(rng.standard_normal((4000, M * dsub), dtype=np.float32))
        check(index, rng.standard_normal((7, M * dsub), dtype=np.float32), 10)


def test_faiss_numbering_at_every_boundary(tmp_path):
    rng = np.random.default_rng(9)
    index, codes = tied_index(rng, M=5, n=700)
    np.testing.assert_array_equal(index.codes, codes)
    np.testing.assert_array_equal(index.decode(codes), index.decode(index.codes))
    x = rng.standard_normal((50, 10), dtype=np.float32)
    enc = index.encode(x)
    np.testing.assert_array_equal(enc, ref.pack(ref.encode(index.codebooks, x), 8))
    rec = index.reconstruct(index.ids[:20])
    cb = index.codebooks
    expect = np.concatenate([cb[m, codes[:20, m]] for m in range(5)], axis=1)
    np.testing.assert_array_equal(rec, expect)
    index.remove(index.ids[::3])
    kept = np.delete(codes, np.s_[::3], axis=0)
    np.testing.assert_array_equal(index.codes, kept)
    path = tmp_path / "i.spq"
    index.save(path)
    q = rng.integers(-2, 3, size=(3, 10)).astype(np.float32)
    D, I = index.search(q, 30)
    for mmap in (False, True):
        back = spqindex.Index.load(path, mmap=mmap)
        np.testing.assert_array_equal(back.codes, kept)  # the file holds FAISS numbering
        D2, I2 = back.search(q, 30)
        np.testing.assert_array_equal(I2, I)
        np.testing.assert_array_equal(D2, D)
    # Merges across numberings: a mapped index (file numbering) into a fresh one and back.
    mapped = spqindex.Index.load(path, mmap=True)
    fresh = spqindex.Index(cb)
    fresh.merge_from(mapped)
    np.testing.assert_array_equal(fresh.codes, kept)
    fresh.save(tmp_path / "j.spq")
    assert (tmp_path / "j.spq").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nbits", [8, 4])
def test_queries_that_prune_poorly_finish_exactly_on_the_float_scan(level, metric, nbits):
    """Unclustered data and wide sub-spaces: the kernel bound passes most rows, so after the first
    4096 rows a query continues on the float scan (fastscan_topk.cpp); results stay exact, also for
    a query split over the database, filters and range search."""
    rng = np.random.default_rng(nbits)
    M, dsub, n = 8, 16, 20000
    index = spqindex.Index(rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32), metric=metric)
    index.add(rng.standard_normal((n, M * dsub), dtype=np.float32), ids=rng.permutation(3 * n)[:n])
    q = rng.standard_normal((6, M * dsub), dtype=np.float32)
    for k in (1, 10, 300):
        check(index, q, k)
        check(index, q[:1], k)  # one query: split over the database
    check(index, q, 10, filter=rng.choice(index.ids, size=n // 2, replace=False))
    S = ref.adc(index.codebooks, q[:2], unpack(index.codes, M, nbits), metric)
    check_range(index, q[:2], float(np.sort(S[0])[200] if metric != "ip" else -np.sort(-S[0])[200]))
