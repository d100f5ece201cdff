"""Every SIMD level against a numpy reference of the exact contract.

Reference: LUT entries summed over dsub in order (float32), IP negated inside; the score of a
code is the float32 sum of its LUT entries over m = 0..M-1 in order; top-k by (score, id).
Encoding: nearest codeword by the same sequential squared distance, ties to the smaller index.
"""

from __future__ import annotations

import numpy as np
import pytest

import spqindex
from spqindex import _core
import reference as ref

_ORDER = ["scalar", "avx2", "avx512"]  # x86 levels, each includes the ones before it
_CPU = _core.cpu_simd_level()
LEVELS = ["scalar", "neon"] if _CPU == "neon" else _ORDER[: _ORDER.index(_CPU) + 1]


@pytest.fixture(params=LEVELS)
def level(request):
    before = _core.simd_level()
    _core.set_simd_level(request.param)
    yield request.param
    _core.set_simd_level(before)


def unpack(codes: np.ndarray, M: int, nbits: int) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1, bitorder="little")[:, : M * nbits]
    bits = bits.reshape(codes.shape[0], M, nbits).astype(np.int64)
    return (bits << np.arange(nbits)).sum(axis=2)


def check_search(index: spqindex.Index, q: np.ndarray, k: int, filter=None):
    """index.search (with the optional allow-list) equals tests/reference.py bit for bit."""
    assign = unpack(index.codes, index.M, index.nbits)
    ids = index.ids
    if filter is not None:
        keep = np.isin(ids, filter)
        assign, ids = assign[keep], ids[keep]
    Dr, Ir = ref.search(index.codebooks, q, assign, ids, k, index.metric)
    D, I = index.search(q, k) if filter is None else index.search(q, k, filter=filter)
    np.testing.assert_array_equal(I, Ir)
    np.testing.assert_array_equal(D, Dr)


def ref_lut(codebooks: np.ndarray, metric: str, q: np.ndarray) -> np.ndarray:
    M, K, dsub = codebooks.shape
    qs = q.reshape(M, 1, dsub).astype(np.float32)
    lut = np.zeros((M, K), dtype=np.float32)
    for d in range(dsub):
        if metric == "ip":
            lut += qs[:, :, d] * codebooks[:, :, d]
        else:
            diff = qs[:, :, d] - codebooks[:, :, d]
            lut += diff * diff
    if metric == "spq":
        lut = np.sqrt(lut)
    if metric == "ip":
        lut = -lut
    return lut


def ref_search(codebooks, metric, codes, ids, q, k):
    M = codebooks.shape[0]
    n = codes.shape[0]
    D = np.full((q.shape[0], k), -np.inf if metric == "ip" else np.inf, dtype=np.float32)
    I = np.full((q.shape[0], k), -1, dtype=np.int64)
    for i, qi in enumerate(q):
        lut = ref_lut(codebooks, metric, qi)
        s = np.zeros(n, dtype=np.float32)
        for m in range(M):
            s += lut[m, codes[:, m]]
        order = np.lexsort((ids, s))[:k]
        D[i, : len(order)] = -s[order] if metric == "ip" else s[order]
        I[i, : len(order)] = ids[order]
    return D, I


def ref_encode(codebooks, x):
    M, K, dsub = codebooks.shape
    xs = x.reshape(x.shape[0], M, 1, dsub)
    dist = np.zeros((x.shape[0], M, K), dtype=np.float32)
    for d in range(dsub):
        diff = xs[:, :, :, d] - codebooks[None, :, :, d]
        dist += diff * diff
    return dist.argmin(axis=2)  # first minimum: ties to the smaller index


def check(index: spqindex.Index, q: np.ndarray, k: int):
    codes = unpack(index.codes, index.M, index.nbits)
    D, I = index.search(q, k)
    Dr, Ir = ref_search(index.codebooks, index.metric, codes, index.ids, q, k)
    np.testing.assert_array_equal(I, Ir)
    np.testing.assert_array_equal(D, Dr)


SHAPES = [  # M, nbits, dsub, n, k, nq
    (8, 4, 16, 1000, 10, 5),
    (5, 4, 3, 333, 7, 9),
    (3, 8, 1, 97, 200, 3),
    (17, 4, 49, 2000, 25, 4),
    (1, 4, 2, 65, 5, 6),
    (7, 8, 5, 1500, 10, 5),
    (16, 8, 8, 3001, 50, 3),
    (9, 4, 1, 4097, 3, 11),
    (6, 3, 4, 500, 10, 3),
    (4, 2, 7, 300, 10, 3),
]


@pytest.mark.parametrize("metric", ["l2", "spq", "ip"])
@pytest.mark.parametrize("M,nbits,dsub,n,k,nq", SHAPES)
def test_search_exact(level, metric, M, nbits, dsub, n, k, nq):
    rng = np.random.default_rng(M * 1000 + nbits * 100 + dsub)
    cb = rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32)
    index = spqindex.Index(cb, metric=metric)
    index.add(rng.standard_normal((n, M * dsub), dtype=np.float32))
    check(index, rng.standard_normal((nq, M * dsub), dtype=np.float32), k)


@pytest.mark.parametrize("metric", ["l2", "spq", "ip"])
@pytest.mark.parametrize("nbits", [4, 8])
def test_many_ties(level, metric, nbits):
    # Integer codebooks and queries, codes drawn from a handful of rows: most scores tie.
    rng = np.random.default_rng(nbits)
    M, dsub = 5, 3
    cb = rng.integers(-2, 3, size=(M, 1 << nbits, dsub)).astype(np.float32)
    index = spqindex.Index(cb, metric=metric)
    distinct = rng.integers(0, 1 << nbits, size=(6, M))
    rows = distinct[rng.integers(0, 6, size=3000)]
    codes = np.zeros((3000, index.code_size), dtype=np.uint8)
    for m in range(M):  # pack (FAISS layout)
        bit = m * nbits
        codes[:, bit // 8] |= (rows[:, m] << (bit % 8)).astype(np.uint8)
    index.add_codes(codes)
    q = rng.integers(-2, 3, size=(4, M * dsub)).astype(np.float32)
    check(index, q, 40)
    check(index, q[:1], 3000 + 5)  # k > ntotal


@pytest.mark.parametrize("nbits", [4, 8])
def test_batches_remove(level, nbits):
    rng = np.random.default_rng(7)
    M, dsub = 6, 4
    index = spqindex.Index(rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32))
    q = rng.standard_normal((5, M * dsub), dtype=np.float32)
    for n in (1, 63, 64, 100, 37):  # searches between adds repack only the tail
        index.add(rng.standard_normal((n, M * dsub), dtype=np.float32))
        check(index, q, 10)
    assert index.remove(np.arange(0, 265, 3)) == 89
    check(index, q, 10)
    index.add(rng.standard_normal((70, M * dsub), dtype=np.float32))
    check(index, q, 300)


@pytest.mark.parametrize("nbits", [4, 8])
def test_one_query_split_over_database(level, nbits):
    # Enough rows for the database split path (few queries, several tasks per query).
    rng = np.random.default_rng(11)
    M, dsub, n = 8, 2, 70_000
    index = spqindex.Index(rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32))
    codes = rng.integers(0, 256, size=(n, index.code_size), dtype=np.uint8)
    index.add_codes(codes)
    for threads in (1, 2, 3):
        spqindex.set_num_threads(threads)
        try:
            check(index, rng.standard_normal((1, M * dsub), dtype=np.float32), 10)
            check(index, rng.standard_normal((2, M * dsub), dtype=np.float32), 5)
        finally:
            spqindex.set_num_threads(2)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nbits", [4, 8])
def test_ties_at_floor_score(level, metric, nbits):
    # Rows holding each sub-space's best codeword for a query score the lowest any code can (the
    # floor): a scan stops a query once its heap holds k of them, and a split query's tasks stop
    # at the first block past such a heap. Tie counts below, at and above k; both split paths.
    rng = np.random.default_rng(31 + nbits)
    M, dsub, n = 8, 2, 70_000
    cb = rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32)
    q = rng.standard_normal((6, M * dsub), dtype=np.float32)
    rows = rng.integers(0, 1 << nbits, size=(n, M))
    for i, ties in enumerate([3, 10, 11, 300, 3000, 20_000]):
        order = ref_lut(cb, metric, q[i]).argsort(axis=1)
        rows[rng.choice(n, ties, replace=False)] = order[:, 0]
        # Just above the floor: the second-best codeword in one sub-space.
        near = rng.choice(n, 200, replace=False)
        rows[near] = order[:, 0]
        m = rng.integers(0, M, 200)
        rows[near, m] = order[m, 1]
    codes = np.zeros((n, M * nbits // 8), dtype=np.uint8)
    for m in range(M):  # pack (FAISS layout)
        bit = m * nbits
        codes[:, bit // 8] |= (rows[:, m] << (bit % 8)).astype(np.uint8)
    index = spqindex.Index(cb, metric=metric)
    index.add_codes(codes, ids=np.arange(n) * 2 + 5)  # explicit ids, ascending
    for threads in (1, 2, 3):
        spqindex.set_num_threads(threads)
        try:
            for i in range(6):
                check(index, q[i : i + 1], 10)  # one query split over the database
            check(index, q[3:5], 10)
            check(index, q, 10)  # query ranges
            check(index, q, 11)
            check_search(index, q[4:6], 10, filter=index.ids[rng.random(n) < 0.5])
        finally:
            spqindex.set_num_threads(2)


@pytest.mark.parametrize("metric", ["l2", "spq", "ip"])
def test_clustered_4bit_refined_steps(level, metric):
    # Clustered data, queries near the data: after the first chunk the k-th score lies far
    # below the LUT range, so the scan quantizes each LUT again with finer steps (entries past
    # the cap clipped); results stay exact in both split paths.
    rng = np.random.default_rng(41)
    M, dsub, n = 8, 4, 40_000
    centers = rng.standard_normal((50, M * dsub)).astype(np.float32) * 3
    x = centers[rng.integers(0, 50, n)] + rng.standard_normal((n, M * dsub)).astype(np.float32)
    cb = np.stack([x[rng.choice(n, 16, replace=False), m * dsub : (m + 1) * dsub] for m in range(M)])
    index = spqindex.Index(cb, metric=metric)
    index.add(x)
    q = centers[rng.integers(0, 50, 12)] + 0.5 * rng.standard_normal((12, M * dsub)).astype(np.float32)
    for threads in (1, 2):
        spqindex.set_num_threads(threads)
        try:
            for k in (1, 10, 100):
                check(index, q, k)
                check(index, q[:1], k)
        finally:
            spqindex.set_num_threads(2)


@pytest.mark.parametrize(
    "scale,metrics", [(1e-30, ("l2", "ip")), (1e17, ("l2", "ip")), (1e18, ("l2", "ip")), (1e25, ("l2",))]
)
@pytest.mark.parametrize("nbits", [4, 8])
def test_extreme_values(level, scale, metrics, nbits):
    # Tiny (subnormal LUT entries), huge (quantizer refuses: float fallback) and overflowing
    # (infinite LUT entries, "l2" only: "ip" would give NaN) scales.
    rng = np.random.default_rng(3)
    M, dsub = 4, 3
    cb = rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32) * np.float32(scale)
    for metric in metrics:
        index = spqindex.Index(cb, metric=metric)
        index.add(rng.standard_normal((500, M * dsub), dtype=np.float32) * np.float32(scale))
        check(index, rng.standard_normal((3, M * dsub), dtype=np.float32) * np.float32(scale), 10)


@pytest.mark.parametrize("dsub", [1, 2, 3, 7, 8, 15, 16, 17, 31, 49])
@pytest.mark.parametrize("nbits", [1, 4, 5, 8])
def test_encode_exact(level, dsub, nbits):
    rng = np.random.default_rng(dsub * 10 + nbits)
    M = 3
    cb = rng.standard_normal((M, 1 << nbits, dsub), dtype=np.float32)
    cb[:, 1] = cb[:, 0]  # exact ties: the smaller index wins
    index = spqindex.Index(cb)
    x = rng.standard_normal((777, M * dsub), dtype=np.float32)
    x[:50] = cb[:, 0].reshape(-1)
    np.testing.assert_array_equal(unpack(index.encode(x), M, nbits), ref_encode(cb, x))


def test_levels_agree_bitwise():
    rng = np.random.default_rng(5)
    cb = rng.standard_normal((8, 16, 4), dtype=np.float32)
    index = spqindex.Index(cb, metric="spq")
    index.add(rng.standard_normal((5000, 32), dtype=np.float32))
    q = rng.standard_normal((20, 32), dtype=np.float32)
    before = _core.simd_level()
    results = []
    try:
        for lv in LEVELS:
            _core.set_simd_level(lv)
            results.append(index.search(q, 17))
    finally:
        _core.set_simd_level(before)
    for D, I in results[1:]:
        np.testing.assert_array_equal(D, results[0][0])
        np.testing.assert_array_equal(I, results[0][1])


def test_set_simd_level_rejects_unknown():
    with pytest.raises(ValueError, match="level"):
        _core.set_simd_level("sse9")
    if _CPU != "neon":
        with pytest.raises(ValueError, match="neon"):  # a known level this CPU lacks
            _core.set_simd_level("neon")


@pytest.mark.parametrize("scale", [1e-20, 1.0, 1e15, 1e19])
@pytest.mark.parametrize("K,dsub", [(256, 8), (64, 3), (128, 16), (256, 49), (256, 2)])
def test_encode_near_ties(level, scale, K, dsub):
    # Exact ties at distant k (other SIMD lanes and chunks), 1-ulp neighbours, midpoints between
    # codewords; tiny scales (subnormal distances) and huge ones (beyond the FMA bound).
    rng = np.random.default_rng(K + dsub)
    M = 2
    cb = rng.standard_normal((M, K, dsub), dtype=np.float32)
    cb[:, K - 9] = cb[:, 5]
    cb[:, K - 1] = np.nextafter(cb[:, 5], np.float32(np.inf))
    cb *= np.float32(scale)
    index = spqindex.Index(cb)
    a, b = rng.integers(0, K, size=(2, 300))
    mid = (cb[:, a] + cb[:, b]) / np.float32(2)  # (M, 300, dsub)
    x = np.concatenate(
        [
            np.tile(cb[:, 5].reshape(1, -1), (3, 1)),
            np.tile(cb[:, K - 1].reshape(1, -1), (3, 1)),
            mid.transpose(1, 0, 2).reshape(300, -1),
            rng.standard_normal((300, M * dsub), dtype=np.float32) * np.float32(scale),
        ]
    ).astype(np.float32)
    np.testing.assert_array_equal(unpack(index.encode(x), M, index.nbits), ref_encode(cb, x))


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("M,nbits", [(2, 4), (3, 4), (2, 8)])
def test_scores_within_one_quantization_step(level, metric, M, nbits):
    # Few sub-quantizers: distinct scores lie about one uint8 LUT step apart, so the candidate
    # bound (quantization error + float summation error) decides which rows reach the rescoring.
    rng = np.random.default_rng(M * nbits)
    K = 1 << nbits
    index = spqindex.Index(rng.standard_normal((M, K, 4), dtype=np.float32), metric=metric)
    n = 5000
    rows = rng.integers(0, K, size=(n, M))
    codes = np.zeros((n, index.code_size), dtype=np.uint8)
    for m in range(M):
        bit = m * nbits
        codes[:, bit // 8] |= (rows[:, m] << (bit % 8)).astype(np.uint8)
    index.add_codes(codes)
    q = rng.standard_normal((30, M * 4), dtype=np.float32)
    for k in (1, 7, 60):
        check(index, q, k)


@pytest.mark.parametrize("K,dsub", [(256, 8), (64, 16)])
def test_encode_codewords_closer_than_rounding(level, K, dsub):
    # Pairs of codewords 1e-5 apart and points next to them: the FMA estimate cannot order the
    # pair, only the exact sequential distance can.
    rng = np.random.default_rng(K)
    M = 2
    cb = rng.standard_normal((M, K, dsub), dtype=np.float32)
    cb[:, 1::2] = cb[:, 0::2] + rng.standard_normal((M, K // 2, dsub), dtype=np.float32) * np.float32(1e-5)
    index = spqindex.Index(cb)
    j = rng.integers(0, K, size=2000)
    x = cb[:, j] + rng.standard_normal((M, 2000, dsub), dtype=np.float32) * np.float32(1e-5)
    x = x.transpose(1, 0, 2).reshape(2000, -1).astype(np.float32)
    np.testing.assert_array_equal(unpack(index.encode(x), M, index.nbits), ref_encode(cb, x))


@pytest.mark.parametrize("nbits", [4, 8])
def test_explicit_ids_not_ascending(level, nbits):
    # Heaps hold row numbers only while ids ascend with rows; shuffled ids take the id path.
    rng = np.random.default_rng(21)
    M, dsub = 4, 2
    cb = rng.integers(-1, 2, size=(M, 1 << nbits, dsub)).astype(np.float32)  # many ties
    index = spqindex.Index(cb)
    index.add(rng.standard_normal((3000, M * dsub), dtype=np.float32), ids=np.arange(3000) + 10_000)
    q = rng.integers(-1, 2, size=(4, M * dsub)).astype(np.float32)
    check(index, q, 25)  # ascending
    index.add(rng.standard_normal((2000, M * dsub), dtype=np.float32), ids=rng.permutation(2000))
    check(index, q, 25)  # no longer ascending
    index.remove(np.arange(2000))
    check(index, q, 25)  # ascending again after the remove
