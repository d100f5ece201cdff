"""The Index API against the numpy reference (tests/reference.py)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spqindex
import reference as ref
from conftest import random_codebooks

METRICS = ["l2", "spq", "ip"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    M=st.integers(1, 64),
    nbits=st.integers(1, 8),
    dsub=st.integers(1, 9),
    n=st.integers(0, 300),
    nq=st.integers(1, 5),
    k=st.integers(1, 40),
    metric=st.sampled_from(METRICS),
    seed=st.integers(0, 2**31),
)
def test_search_matches_reference(M, nbits, dsub, n, nq, k, metric, seed):
    rng = np.random.default_rng(seed)
    cb = random_codebooks(rng, M, nbits, dsub)
    index = spqindex.Index(cb, metric=metric)
    x = rng.standard_normal((n, M * dsub)).astype(np.float32)
    index.add(x)
    q = rng.standard_normal((nq, M * dsub)).astype(np.float32)
    D, I = index.search(q, k)
    assign = ref.encode(cb, x)
    Dr, Ir = ref.search(cb, q, assign, np.arange(n, dtype=np.int64), k, metric)
    np.testing.assert_array_equal(I, Ir)
    np.testing.assert_array_equal(D, Dr)  # same summation order -> bit-identical


@settings(max_examples=40, deadline=None)
@given(
    M=st.integers(1, 20),
    nbits=st.integers(1, 8),
    dsub=st.integers(1, 7),
    n=st.integers(0, 60),
    seed=st.integers(0, 2**31),
)
def test_encode_pack_decode(M, nbits, dsub, n, seed):
    rng = np.random.default_rng(seed)
    cb = random_codebooks(rng, M, nbits, dsub)
    index = spqindex.Index(cb)
    x = rng.standard_normal((n, M * dsub)).astype(np.float32)
    codes = index.encode(x)
    assert codes.shape == (n, (M * nbits + 7) // 8) and codes.dtype == np.uint8
    assign = ref.encode(cb, x)
    np.testing.assert_array_equal(codes, ref.pack(assign, nbits))
    np.testing.assert_array_equal(ref.unpack(codes, M, nbits), assign)
    x_hat = index.decode(codes)
    np.testing.assert_array_equal(x_hat, cb[np.arange(M)[None, :], assign].reshape(n, M * dsub))


def test_encode_ties_pick_smaller_index():
    cb = np.zeros((2, 4, 1), dtype=np.float32)
    cb[:, :, 0] = [[-1, 1, 1, 3], [2, 0, 2, 0]]
    index = spqindex.Index(cb)
    codes = index.encode(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(ref.unpack(codes, 2, 2), [[0, 0], [1, 1]])


@pytest.mark.parametrize("metric", METRICS)
def test_ties_ordered_by_id_and_padding(metric):
    cb = np.zeros((2, 2, 1), dtype=np.float32)
    cb[:, 1, 0] = 1.0
    index = spqindex.Index(cb, metric=metric)
    x = np.zeros((5, 2), dtype=np.float32)  # all identical codes -> all scores tie
    index.add(x, ids=np.array([40, 10, 30, 20, 0]))
    D, I = index.search(np.ones((1, 2), dtype=np.float32), k=7)
    np.testing.assert_array_equal(I[0], [0, 10, 20, 30, 40, -1, -1])
    pad = -np.inf if metric == "ip" else np.inf
    assert D[0, 5] == pad and D[0, 6] == pad
    assert np.all(D[0, :5] == D[0, 0])


def test_ip_is_larger_is_better(rng):
    cb = random_codebooks(rng, 4, 3, 2)
    index = spqindex.Index(cb, metric="ip")
    x = rng.standard_normal((50, 8)).astype(np.float32)
    index.add(x)
    D, _ = index.search(x[:3], 10)
    assert np.all(np.diff(D, axis=1) <= 0)


def test_ids_continue_from_largest(rng):
    cb = random_codebooks(rng, 2, 2, 2)
    index = spqindex.Index(cb)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    index.add(x)
    index.add(x)
    np.testing.assert_array_equal(index.ids, np.arange(10))
    assert index.remove([9, 8, 100]) == 2
    assert index.next_id == 10  # removed ids are not given again
    index.add(x[:1])
    np.testing.assert_array_equal(index.ids, [0, 1, 2, 3, 4, 5, 6, 7, 10])
    assert index.next_id == 11


def test_explicit_ids_remove_readd_reconstruct(rng):
    cb = random_codebooks(rng, 3, 4, 2)
    index = spqindex.Index(cb, metric="spq")
    x = rng.standard_normal((20, 6)).astype(np.float32)
    ids = np.arange(20, dtype=np.int64) * 7 + 3
    index.add(x, ids=ids)
    assert len(index) == 20
    np.testing.assert_array_equal(index.reconstruct(ids[[4, 2]]), index.decode(index.encode(x[[4, 2]])))
    assert index.remove(ids[::2]) == 10
    D, I = index.search(x, 20)
    assert set(I[I >= 0].tolist()) <= set(ids[1::2].tolist())
    with pytest.raises(KeyError):
        index.reconstruct(ids[:1])
    index.add(x[::2], ids=ids[::2])  # re-adding removed ids is allowed
    assert len(index) == 20
    with pytest.raises(ValueError, match="ids"):
        index.add(x[:1], ids=ids[1:2])  # still present
    with pytest.raises(ValueError, match="ids"):
        index.add(x[:1])  # this index uses explicit ids
    assert len(index) == 20


def test_add_codes_roundtrip_and_padding_check(rng):
    cb = random_codebooks(rng, 3, 3, 2)  # 9 bits -> 2 bytes, 7 padding bits
    index = spqindex.Index(cb)
    x = rng.standard_normal((10, 6)).astype(np.float32)
    codes = index.encode(x)
    index.add_codes(codes)
    np.testing.assert_array_equal(index.codes, codes)
    bad = codes.copy()
    bad[0, 1] |= 0x80
    with pytest.raises(ValueError, match="codes"):
        index.add_codes(bad)
    assert len(index) == 10


def test_conversions_accepted(rng):
    cb = random_codebooks(rng, 2, 4, 3).astype(np.float64)
    index = spqindex.Index(cb)
    x = rng.standard_normal((30, 12)).astype(np.float64)[:, ::2]  # non-contiguous float64
    index.add(x)
    index.add(x.astype(np.float16))
    D1, I1 = index.search(x[:2].astype(np.float32), 3)
    D2, I2 = index.search(x[:2], 3)
    np.testing.assert_array_equal(I1, I2)
    D3, I3 = index.search(x[0], 3)  # a single 1-d query
    np.testing.assert_array_equal(I3, I1[:1])


def test_torch_tensors_accepted(rng):
    torch = pytest.importorskip("torch", reason="torch is only in the train extra")
    cb = random_codebooks(rng, 2, 4, 3)
    index = spqindex.Index(torch.from_numpy(cb))
    x = rng.standard_normal((30, 6)).astype(np.float32)
    index.add(torch.from_numpy(x), ids=torch.arange(30))
    D, I = index.search(torch.from_numpy(x[:4]), 1)
    assert I.shape == (4, 1)


@pytest.mark.parametrize(
    "bad, exc, arg",
    [
        (lambda i, x: i.add(x[:, :5]), ValueError, "x"),
        (lambda i, x: i.add(x.astype(np.int32)), TypeError, "x"),
        (lambda i, x: i.add(np.where(np.arange(12) == 3, np.nan, x)), ValueError, "x"),
        (lambda i, x: i.add(x[:3], ids=[1, 2, 3]), ValueError, "ids"),  # this index assigns ids itself
        (lambda i, x: i.search(x, 0), ValueError, "k"),
        (lambda i, x: i.search(np.where(np.arange(12) == 3, np.nan, x), 2), ValueError, "q"),  # checked in C++
        (lambda i, x: i.search(np.where(np.arange(12) == 5, -np.inf, x), 2), ValueError, "q"),
        (lambda i, x: i.search(x.astype(np.float64) * 1e300, 2), ValueError, "q"),  # overflows float32
        (lambda i, x: i.search(x, 2.5), TypeError, "k"),
        (lambda i, x: i.search(x, -3), ValueError, "k"),
        (lambda i, x: i.add(x[:2], ids=[5]), ValueError, "ids"),
        (lambda i, x: i.remove([1.5]), TypeError, "ids"),
    ],
)
def test_bad_input_leaves_index_unchanged(small_index, bad, exc, arg):
    index, x = small_index
    before = index.codes.copy(), index.ids.copy()
    with pytest.raises(exc, match=f"^{arg}:"):
        bad(index, x)
    np.testing.assert_array_equal(index.codes, before[0])
    np.testing.assert_array_equal(index.ids, before[1])


def test_constructor_validation(rng):
    with pytest.raises(ValueError, match="K must be a power of two"):
        spqindex.Index(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="codebooks"):
        spqindex.Index(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="codebooks"):
        spqindex.Index(np.zeros((2, 4, 4), np.int32))
    with pytest.raises(ValueError, match="NaN"):
        spqindex.Index(np.full((2, 4, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="metric"):
        spqindex.Index(np.zeros((2, 4, 4), np.float32), metric="cosine")


def test_properties_and_repr(small_index):
    index, _ = small_index
    assert (index.dim, index.M, index.K, index.nbits, index.dsub, index.code_size) == (12, 4, 16, 4, 3, 2)
    assert index.metric == "l2" and len(index) == 100 and index.codebooks.shape == (4, 16, 3)
    assert "ntotal=100" in repr(index)


def test_threads_and_single_query_split(rng):
    """One query over a database large enough to be split across threads equals the reference."""
    cb = random_codebooks(rng, 4, 8, 2)
    index = spqindex.Index(cb, metric="l2")
    x = rng.standard_normal((70000, 8)).astype(np.float32)
    index.add(x)
    q = rng.standard_normal((1, 8)).astype(np.float32)
    old = spqindex.get_num_threads()
    try:
        results = []
        for t in (1, 2, 3):
            spqindex.set_num_threads(t)
            results.append(index.search(q, 25))
    finally:
        spqindex.set_num_threads(old)
    assign = index.codes[:, :4].astype(np.int64)
    Dr, Ir = ref.search(cb, q, assign, np.arange(70000), 25, "l2")
    for D, I in results:
        np.testing.assert_array_equal(I, Ir)
        np.testing.assert_array_equal(D, Dr)


def test_train_kmeans(rng):
    centers = rng.standard_normal((16, 8)).astype(np.float32) * 5
    x = centers[rng.integers(0, 16, 4000)] + 0.01 * rng.standard_normal((4000, 8)).astype(np.float32)
    index = spqindex.Index.train(x, M=2, nbits=4, iters=20, seed=0)
    assert index.codebooks.shape == (2, 16, 4) and len(index) == 0
    err = np.mean((index.decode(index.encode(x)) - x) ** 2)
    assert err < 0.5  # the data has 16 clusters per sub-space; trained codebooks must fit them
    again = spqindex.Index.train(x, M=2, nbits=4, iters=20, seed=0)
    np.testing.assert_array_equal(index.codebooks, again.codebooks)  # seeded
    with pytest.raises(ValueError, match="M"):
        spqindex.Index.train(x, M=3, nbits=4)
    with pytest.raises(ValueError, match="x"):
        spqindex.Index.train(x[:8], M=2, nbits=4)


def test_search_works_in_forked_child(rng):
    """After fork() the thread pool's workers do not exist in the child; search must still run."""
    import os

    cb = random_codebooks(rng, 4, 8, 2)
    index = spqindex.Index(cb)
    x = rng.standard_normal((50000, 8)).astype(np.float32)
    index.add(x)
    expected = index.search(x[:40], 5)[1]  # uses the pool in the parent first
    pid = os.fork()
    if pid == 0:  # child: exit code tells the parent whether results matched
        ok = np.array_equal(index.search(x[:40], 5)[1], expected) and np.array_equal(
            index.search(x[:1], 5)[1], expected[:1]
        )
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
