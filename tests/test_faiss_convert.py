"""spqindex.from_faiss / Index.to_faiss: codebooks, codes, ids and metric move both ways unchanged."""

import numpy as np
import pytest

import spqindex

faiss = pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; install it to test conversion")

METRICS = {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT}


def data(d, n=2000, nq=25, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((nq, d)).astype(np.float32))


def faiss_pq(x, M, nbits, metric):
    fi = faiss.IndexPQ(x.shape[1], M, nbits, METRICS[metric])
    fi.train(x)
    fi.add(x)
    return fi


def faiss_codes(fi):
    return faiss.vector_to_array(fi.codes).reshape(fi.ntotal, fi.pq.code_size)


def assert_same_search(a, b, q, k=10):
    Da, Ia = a.search(q, k)
    Db, Ib = b.search(q, k)
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_array_equal(Da, Db)


def assert_matches_faiss(ours, fi, q, k=10):
    """FAISS's own search agrees: same scores rank by rank, and each id FAISS returns has that score
    for the decoded vector (ids may differ only among exact ties, which FAISS breaks its own way)."""
    D, I = ours.search(q, k)
    Df, If = fi.search(q, k)
    np.testing.assert_allclose(D, Df, rtol=1e-4, atol=1e-4)
    x_hat = ours.reconstruct(If.ravel()).reshape(*If.shape, -1).astype(np.float64)
    if ours.metric == "ip":
        score = np.einsum("qkd,qd->qk", x_hat, q)
    else:
        score = ((x_hat - q[:, None, :]) ** 2).sum(-1)
    np.testing.assert_allclose(score, Df, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("M, nbits", [(8, 8), (8, 4), (5, 6), (3, 1)])
def test_from_indexpq(metric, M, nbits):
    x, q = data(M * 3, seed=M + nbits)
    fi = faiss_pq(x, M, nbits, metric)
    ours = spqindex.from_faiss(fi)
    assert (ours.metric, ours.M, ours.nbits, len(ours)) == (metric, M, nbits, len(x))
    np.testing.assert_array_equal(ours.codebooks.ravel(), faiss.vector_to_array(fi.pq.centroids))
    np.testing.assert_array_equal(ours.codes, faiss_codes(fi))
    np.testing.assert_array_equal(ours.ids, np.arange(len(x)))
    assert_matches_faiss(ours, fi, q)
    back = ours.to_faiss()  # FAISS -> spqindex -> FAISS: FAISS answers exactly as before
    assert type(back) is faiss.IndexPQ and back.metric_type == METRICS[metric]
    np.testing.assert_array_equal(faiss_codes(back), faiss_codes(fi))
    np.testing.assert_array_equal(back.search(q, 10)[1], fi.search(q, 10)[1])


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("M", [8, 5])  # odd M: FAISS pads the fast-scan blocks to an even M
def test_from_fastscan_reads_the_packed_blocks(metric, M):
    x, q = data(M * 4, n=1000 + 7, seed=M)
    fi = faiss_pq(x, M, 4, metric)
    fs = faiss.IndexPQFastScan(fi)  # codes packed into blocks of 32 rows with interleaved nibbles
    fs.add(x[:40])  # and some added after the conversion, so the last block is partial
    ours = spqindex.from_faiss(fs)
    assert len(ours) == fs.ntotal == len(x) + 40
    np.testing.assert_array_equal(ours.codes[: len(x)], faiss_codes(fi))
    np.testing.assert_array_equal(ours.codes[len(x) :], fi.pq.compute_codes(x[:40]))
    # fast-scan search is approximate (quantized LUTs); the exact reference is IndexPQ on the same codes
    ref = faiss.IndexPQ(fi.d, M, 4, METRICS[metric])
    ref.pq = fi.pq
    ref.is_trained = True
    ref.add_sa_codes(ours.codes)
    assert_matches_faiss(ours, ref, q)


@pytest.mark.parametrize("wrapper", ["IndexIDMap", "IndexIDMap2"])
@pytest.mark.parametrize("fast", [False, True])
def test_from_idmap_carries_ids(wrapper, fast):
    x, q = data(32)
    fi = faiss.IndexPQ(32, 8, 4)
    fi.train(x)
    inner = faiss.IndexPQFastScan(fi) if fast else fi
    wrapped = getattr(faiss, wrapper)(inner)
    ids = np.random.default_rng(1).choice(10**9, len(x), replace=False).astype(np.int64)
    wrapped.add_with_ids(x, ids)
    ours = spqindex.from_faiss(wrapped)
    np.testing.assert_array_equal(ours.ids, ids)
    np.testing.assert_array_equal(ours.codes, fi.pq.compute_codes(x))
    D, I = ours.search(q, 5)
    assert np.isin(I, ids).all()
    back = ours.to_faiss()
    assert isinstance(back, faiss.IndexIDMap2)
    np.testing.assert_array_equal(faiss.vector_to_array(back.id_map), ids)
    Db, Ib = back.search(q, 5)
    np.testing.assert_allclose(D, Db, rtol=1e-4, atol=1e-4)
    assert (I == Ib).mean() > 0.98


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nbits", [4, 8, 3])
def test_spqindex_round_trip_is_exact(metric, nbits):
    x, q = data(24, seed=nbits)
    idx = spqindex.Index.train(x, M=6, nbits=nbits, metric=metric, iters=5)
    idx.add(x[:-30])
    idx.remove(np.arange(0, len(x), 7))  # holes: ids are no longer 0..n-1 -> IndexIDMap2
    idx.add(x[-30:])
    fi = idx.to_faiss()
    assert isinstance(fi, faiss.IndexIDMap2) and fi.ntotal == len(idx)
    back = spqindex.from_faiss(fi)
    assert back.metric == metric
    np.testing.assert_array_equal(back.codebooks, idx.codebooks)
    np.testing.assert_array_equal(back.codes, idx.codes)
    np.testing.assert_array_equal(back.ids, idx.ids)
    assert_same_search(idx, back, q, k=20)
    assert_matches_faiss(idx, fi, q)


def test_plain_ids_give_a_plain_indexpq_and_empty_indexes_convert():
    x, q = data(16)
    idx = spqindex.Index.train(x, M=4, nbits=4, iters=3)
    empty = idx.to_faiss()
    assert type(empty) is faiss.IndexPQ and empty.ntotal == 0 and empty.is_trained
    assert len(spqindex.from_faiss(empty)) == 0
    idx.add(x)
    fi = idx.to_faiss()
    assert type(fi) is faiss.IndexPQ
    assert_same_search(idx, spqindex.from_faiss(fi), q)


def test_spq_metric_has_no_faiss_equivalent():
    x, _ = data(16)
    idx = spqindex.Index(spqindex.Index.train(x, M=4, nbits=4, iters=2).codebooks, metric="spq")
    with pytest.raises(ValueError, match="metric: 'spq' has no FAISS equivalent"):
        idx.to_faiss()


def test_unsupported_types_are_refused_by_name():
    with pytest.raises(TypeError, match="index: unsupported FAISS index type IndexFlat"):
        spqindex.from_faiss(faiss.IndexFlatL2(8))
    with pytest.raises(TypeError, match="index: unsupported FAISS index type IndexScalarQuantizer"):
        spqindex.from_faiss(faiss.IndexIDMap(faiss.IndexScalarQuantizer(8, faiss.ScalarQuantizer.QT_8bit)))
    with pytest.raises(TypeError, match="index: expected a FAISS index"):
        spqindex.from_faiss(np.zeros((3, 8), np.float32))


def test_inconsistent_faiss_indexes_are_refused():
    x, _ = data(16)
    untrained = faiss.IndexPQ(16, 4, 4)
    with pytest.raises(ValueError, match="index: the IndexPQ is not trained"):
        spqindex.from_faiss(untrained)
    l1 = faiss.IndexPQ(16, 4, 4, faiss.METRIC_L1)
    l1.train(x)
    with pytest.raises(ValueError, match="index: IndexPQ uses FAISS metric type"):
        spqindex.from_faiss(l1)
    wide = faiss.IndexPQ(16, 2, 10)  # 1024 codewords per sub-space
    wide.is_trained = True
    with pytest.raises(ValueError, match="nbits=10"):
        spqindex.from_faiss(wide)
    bad = faiss_pq(x, 4, 4, "l2")
    bad.d = 12  # a hand-edited index whose dimension disagrees with its quantizer
    with pytest.raises(ValueError, match=r"index: IndexPQ has d=12 but its quantizer M\*dsub = 4\*4"):
        spqindex.from_faiss(bad)
    bad.d = 16
    bad.reset()
    dup = faiss.IndexIDMap(bad)
    dup.add_with_ids(x[:3], np.array([5, 5, 6]))  # IndexIDMap allows duplicate ids; spqindex does not
    with pytest.raises(ValueError, match="index: its IndexIDMap ids cannot be carried over"):
        spqindex.from_faiss(dup)
