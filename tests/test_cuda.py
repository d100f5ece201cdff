"""The CUDA path against the CPU index: every GPU result must be identical (ids and the float32
bits of the distances). Runs only where a CUDA device is usable; elsewhere the tests are skipped
with the reason "no CUDA device" (only the no-device behaviour is checked)."""

from __future__ import annotations

import gzip
import os
import threading

import numpy as np
import pytest

import spqindex
from spqindex import _core

HAVE_CUDA = spqindex.cuda_available()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no CUDA device")
METRICS = ("l2", "spq", "ip")


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def make_index(rng, M, nbits, dsub, n, metric, ids=None, scale=1.0):
    K = 1 << nbits
    cb = (rng.standard_normal((M, K, dsub)) * scale).astype(np.float32)
    index = spqindex.Index(cb, metric=metric)
    if n:
        x = (rng.standard_normal((n, M * dsub)) * scale).astype(np.float32)
        index.add(x, ids=ids)
    return index


def assert_same(cpu, gpu):
    Dc, Ic = cpu
    Dg, Ig = gpu
    assert Dg.dtype == np.float32 and Ig.dtype == np.int64
    assert Dg.shape == Dc.shape and Ig.shape == Ic.shape
    np.testing.assert_array_equal(Ig, Ic)
    # Bitwise: same float32 sums in the same order, no FMA.
    np.testing.assert_array_equal(Dg.view(np.uint32), Dc.view(np.uint32))


# --- without a device -----------------------------------------------------------------------------


@pytest.mark.skipif(HAVE_CUDA, reason="checks the behaviour without a CUDA device")
def test_to_gpu_without_device_raises_clearly():
    index = make_index(np.random.default_rng(0), 4, 4, 2, 10, "l2")
    with pytest.raises(RuntimeError, match="CUDA"):
        index.to_gpu()
    assert spqindex.cuda_available() is False


def test_cuda_available_is_bool():
    assert isinstance(spqindex.cuda_available(), bool)
    if not _core.cuda_built():
        assert spqindex.cuda_available() is False


class _FakeCudaArray:
    """Only the __cuda_array_interface__ dict: checks the parsing, never dereferenced."""

    def __init__(self, shape, typestr="<f4", strides=None, stream=None):
        self.__cuda_array_interface__ = dict(
            shape=shape, typestr=typestr, strides=strides, data=(123456, False), version=3, stream=stream
        )


def test_cuda_array_interface_parsing():
    from spqindex.gpu import _device_matrix

    assert _device_matrix(np.zeros((2, 8), np.float32), "q", 8, 0) is None  # host arrays: None
    _, ptr, n, stream = _device_matrix(_FakeCudaArray((5, 8), stream=7), "q", 8, 0)
    assert (ptr, n, stream) == (123456, 5, 7)
    assert _device_matrix(_FakeCudaArray((8,)), "q", 8, 0)[2] == 1  # one 1-d query
    assert _device_matrix(_FakeCudaArray((3, 8), strides=(32, 4)), "q", 8, 0)[3] == 0
    with pytest.raises(TypeError, match="float32"):
        _device_matrix(_FakeCudaArray((3, 8), typestr="<f8"), "q", 8, 0)
    with pytest.raises(ValueError, match="shape"):
        _device_matrix(_FakeCudaArray((3, 9)), "q", 8, 0)
    with pytest.raises(ValueError, match="contiguous"):
        _device_matrix(_FakeCudaArray((3, 8), strides=(64, 4)), "q", 8, 0)


# --- exactness against the CPU ------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "M,nbits,dsub",
    [
        (8, 4, 16),
        (16, 8, 8),
        (3, 4, 5),
        (5, 8, 3),
        (7, 4, 1),
        (16, 4, 2),
        (4, 2, 4),
        (6, 3, 2),
        (9, 5, 3),
        (2, 1, 7),
        (33, 8, 1),
        (64, 4, 2),
    ],
)
def test_search_matches_cpu(metric, M, nbits, dsub):
    rng = np.random.default_rng(M * 100 + nbits)
    index = make_index(rng, M, nbits, dsub, 5003, metric)
    gpu = index.to_gpu()
    q = rng.standard_normal((37, M * dsub)).astype(np.float32)
    for k in (1, 10, 100, 1024):
        assert_same(index.search(q, k), gpu.search(q, k))


@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", [0, 1, 2, 31, 1023, 1024, 1025, 4097])
def test_odd_sizes_and_padding(metric, n):
    rng = np.random.default_rng(n)
    index = make_index(rng, 4, 4, 3, n, metric)
    gpu = index.to_gpu()
    q = rng.standard_normal((5, 12)).astype(np.float32)
    for k in (1, 3, n + 1, n + 7, 2048):
        assert_same(index.search(q, k), gpu.search(q, k))


@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("nq,k", [(1, 1), (1, 10), (1, 1000), (1, 1024), (3, 1024), (64, 10), (257, 100), (1000, 10)])
def test_large_database_many_chunks(metric, nq, k):
    # nq=1 splits the database over many blocks: exercises the merge passes.
    rng = np.random.default_rng(nq + k)
    index = make_index(rng, 8, 4, 4, 300_001, metric)
    gpu = index.to_gpu()
    q = rng.standard_normal((nq, 32)).astype(np.float32)
    assert_same(index.search(q, k), gpu.search(q, k))


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("nbits", [4, 8])
def test_million_codes_k_2048(nbits):
    rng = np.random.default_rng(nbits)
    index = make_index(rng, 16, nbits, 2, 1_000_003, "l2")
    gpu = index.to_gpu()
    q = rng.standard_normal((3, 32)).astype(np.float32)
    for k in (1, 1024, 2048):
        assert_same(index.search(q, k), gpu.search(q, k))


# --- ties: order by (distance, id) ---------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
def test_all_scores_equal_ties_by_smaller_id(metric):
    rng = np.random.default_rng(1)
    cb = np.ones((4, 16, 2), np.float32)  # every code scores the same
    index = spqindex.Index(cb, metric=metric)
    ids = rng.permutation(50_000).astype(np.int64) * 3 + 7  # explicit ids, storage order shuffled
    index.add(rng.standard_normal((50_000, 8)).astype(np.float32), ids=ids)
    gpu = index.to_gpu()
    q = rng.standard_normal((4, 8)).astype(np.float32)
    for k in (1, 10, 1024):
        cpu_res = index.search(q, k)
        assert_same(cpu_res, gpu.search(q, k))
        np.testing.assert_array_equal(cpu_res[1][0], np.sort(ids)[:k])


@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
def test_many_ties_integer_codebooks(metric):
    # Small integer values: float sums are exact and collide often.
    rng = np.random.default_rng(2)
    cb = rng.integers(-2, 3, size=(6, 16, 2)).astype(np.float32)
    index = spqindex.Index(cb, metric=metric)
    n = 20_000
    ids = rng.choice(10**12, size=n, replace=False).astype(np.int64)
    index.add_codes(rng.integers(0, 256, size=(n, 3), dtype=np.uint8), ids=ids)
    gpu = index.to_gpu()
    q = rng.integers(-2, 3, size=(9, 12)).astype(np.float32)
    for k in (1, 5, 64, 1024):
        assert_same(index.search(q, k), gpu.search(q, k))


@needs_cuda
def test_duplicate_codewords_encode_ties_to_smaller_index():
    rng = np.random.default_rng(3)
    cb = rng.standard_normal((4, 16, 3)).astype(np.float32)
    cb[:, 9] = cb[:, 2]  # equal distances: both must pick 2
    index = spqindex.Index(cb, metric="l2")
    x = np.concatenate([rng.standard_normal((500, 12)).astype(np.float32), cb[:, 2].reshape(1, 12).repeat(3, 0)])
    gpu = index.to_gpu()
    np.testing.assert_array_equal(gpu.encode(x), index.encode(x))


# --- encode ---------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("M,nbits,dsub", [(8, 4, 16), (16, 8, 8), (3, 3, 5), (5, 7, 2), (1, 1, 9)])
def test_encode_matches_cpu(M, nbits, dsub):
    rng = np.random.default_rng(M + nbits)
    index = make_index(rng, M, nbits, dsub, 0, "l2")
    gpu = index.to_gpu()
    for n in (0, 1, 129, 10_007):
        x = rng.standard_normal((n, M * dsub)).astype(np.float32)
        np.testing.assert_array_equal(gpu.encode(x), index.encode(x))


# --- ids, removals, files -------------------------------------------------------------------------


@needs_cuda
def test_removed_and_explicit_ids(tmp_path):
    rng = np.random.default_rng(4)
    ids = rng.choice(10**9, size=30_000, replace=False).astype(np.int64)
    index = make_index(rng, 8, 8, 2, 30_000, "spq", ids=ids)
    index.remove(ids[::3])
    q = rng.standard_normal((11, 16)).astype(np.float32)
    assert_same(index.search(q, 100), index.to_gpu().search(q, 100))
    index.save(tmp_path / "i.spq")
    mapped = spqindex.Index.load(tmp_path / "i.spq", mmap=True)
    assert_same(index.search(q, 100), mapped.to_gpu().search(q, 100))


@needs_cuda
def test_snapshot_does_not_follow_cpu_changes():
    rng = np.random.default_rng(5)
    index = make_index(rng, 4, 4, 2, 1000, "l2")
    gpu = index.to_gpu()
    index.add(rng.standard_normal((10, 8)).astype(np.float32))
    assert len(gpu) == 1000 and len(index) == 1010


# --- queries from torch CUDA tensors --------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
def test_torch_cuda_queries_read_in_place(metric):
    torch = _torch_cuda()
    if torch is None:
        pytest.skip("torch with CUDA is not installed")
    rng = np.random.default_rng(6)
    index = make_index(rng, 8, 4, 4, 20_000, metric)
    gpu = index.to_gpu()
    q = rng.standard_normal((17, 32)).astype(np.float32)
    expected = index.search(q, 50)
    t = torch.from_numpy(q).cuda()
    assert_same(expected, gpu.search(t, 50))
    assert_same(expected, gpu.search(t.double(), 50))  # converted on the device
    wide = torch.zeros((17, 64), device="cuda")
    wide[:, ::2] = t
    assert_same(expected, gpu.search(wide[:, ::2], 50))  # non-contiguous
    assert_same(index.search(q[:1], 5), gpu.search(t[0], 5))  # 1-d query
    # Produced on a side stream: the search must wait for it.
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        t2 = torch.from_numpy(q).cuda(non_blocking=True) * 1.0
        assert_same(expected, gpu.search(t2, 50))
    np.testing.assert_array_equal(gpu.encode(t), index.encode(q))


@needs_cuda
def test_bad_inputs():
    rng = np.random.default_rng(7)
    index = make_index(rng, 4, 4, 2, 100, "l2")
    gpu = index.to_gpu()
    with pytest.raises(ValueError):
        gpu.search(np.full((2, 8), np.nan, np.float32), 5)
    with pytest.raises(ValueError):
        gpu.search(np.zeros((2, 7), np.float32), 5)
    with pytest.raises(ValueError):
        gpu.search(np.zeros((2, 8), np.float32), 0)
    with pytest.raises(ValueError):
        index.to_gpu(device=spqindex.gpu._core.cuda_device_count())
    torch = _torch_cuda()
    if torch is not None:
        t = torch.zeros((2, 8), device="cuda")
        t[1, 3] = float("inf")
        with pytest.raises(ValueError, match="NaN or Inf"):
            gpu.search(t, 5)
        with pytest.raises(TypeError):
            gpu.search(torch.zeros((2, 8), dtype=torch.int32, device="cuda"), 5)


@needs_cuda
def test_k_above_gpu_limit_falls_back_to_cpu():
    rng = np.random.default_rng(8)
    index = make_index(rng, 4, 4, 2, 5000, "l2")
    q = rng.standard_normal((2, 8)).astype(np.float32)
    k = spqindex.gpu.MAX_K + 1
    assert_same(index.search(q, k), index.to_gpu().search(q, k))


@needs_cuda
def test_concurrent_searches():
    rng = np.random.default_rng(9)
    index = make_index(rng, 8, 8, 2, 50_000, "l2")
    gpu = index.to_gpu()
    qs = [rng.standard_normal((20, 16)).astype(np.float32) for _ in range(8)]
    expected = [index.search(q, 32) for q in qs]
    got = [None] * len(qs)

    def work(i):
        got[i] = gpu.search(qs[i], 32)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(qs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got):
        assert_same(e, g)


# --- real data ------------------------------------------------------------------------------------


def _fashion_mnist_pixels(limit):
    root = os.environ.get("SPQINDEX_DATA", "/usr/share/datasets/fashion-mnist")
    for name in ("train-images-idx3-ubyte.gz", "fashion-mnist-train-images-idx3-ubyte.gz"):
        path = os.path.join(root, name)
        if os.path.exists(path):
            with gzip.open(path, "rb") as f:
                data = np.frombuffer(f.read(), np.uint8, offset=16)
            return data.reshape(-1, 784)[:limit].astype(np.float32) / 255.0
    return None


@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
def test_fashion_mnist_pixels(metric):
    x = _fashion_mnist_pixels(60_000)
    if x is None:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    index = spqindex.Index.train(x[:10_000], M=16, nbits=8, metric=metric, iters=5, seed=0)
    index.add(x)
    gpu = index.to_gpu()
    q = x[:200] + np.float32(0.01)
    assert_same(index.search(q, 100), gpu.search(q, 100))
    np.testing.assert_array_equal(gpu.encode(x[:5000]), index.encode(x[:5000]))
