"""Cross-checks with FAISS: the same codebooks give the same codes and the same top-k ids."""

import numpy as np
import pytest

import spqindex
import reference as ref

faiss = pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; install it to cross-check")


def faiss_pq(cb):
    M, K, dsub = cb.shape
    pq = faiss.ProductQuantizer(M * dsub, M, K.bit_length() - 1)
    faiss.copy_array_to_vector(cb.ravel(), pq.centroids)
    return pq


@pytest.mark.parametrize("M, nbits, dsub", [(8, 8, 16), (16, 8, 8), (8, 4, 16), (7, 3, 5), (5, 6, 3), (3, 1, 2)])
def test_same_codes_as_faiss(M, nbits, dsub):
    rng = np.random.default_rng(M * 100 + nbits)
    cb = rng.standard_normal((M, 1 << nbits, dsub)).astype(np.float32)
    x = rng.standard_normal((5000, M * dsub)).astype(np.float32)
    ours = spqindex.Index(cb).encode(x)
    theirs = faiss_pq(cb).compute_codes(x)
    assert ours.shape == theirs.shape
    differ = np.flatnonzero((ours != theirs).any(1))
    # FAISS may use BLAS (‖x‖² − 2x·c + ‖c‖²) whose rounding can flip exact near-ties; allow a row
    # to differ only if both choices are within float32 rounding of each other in float64.
    assert len(differ) <= 5
    a, b = ref.unpack(ours[differ], M, nbits), ref.unpack(theirs[differ], M, nbits)
    xs = x[differ].reshape(len(differ), M, dsub).astype(np.float64)
    for i in range(len(differ)):
        for m in np.flatnonzero(a[i] != b[i]):
            da = ((xs[i, m] - cb[m, a[i, m]]) ** 2).sum()
            db = ((xs[i, m] - cb[m, b[i, m]]) ** 2).sum()
            assert abs(da - db) <= 1e-5 * max(da, db, 1e-6)


@pytest.mark.parametrize("M, nbits", [(8, 8), (4, 4), (6, 5)])
def test_same_topk_as_faiss_indexpq(M, nbits):
    rng = np.random.default_rng(7 + M)
    dsub = 4
    cb = rng.standard_normal((M, 1 << nbits, dsub)).astype(np.float32)
    x = rng.standard_normal((3000, M * dsub)).astype(np.float32)
    q = rng.standard_normal((20, M * dsub)).astype(np.float32)
    index = spqindex.Index(cb, metric="l2")
    index.add(x)
    D, I = index.search(q, 10)
    fi = faiss.IndexPQ(M * dsub, M, nbits)
    faiss.copy_array_to_vector(cb.ravel(), fi.pq.centroids)
    fi.is_trained = True
    fi.add_sa_codes(index.codes) if hasattr(fi, "add_sa_codes") else fi.add(x)
    Df, If = fi.search(q, 10)
    np.testing.assert_allclose(D, Df, rtol=1e-5, atol=1e-5)
    # Ids agree except where FAISS's summation order breaks an exact tie differently.
    mismatch = I != If
    assert np.all(np.isclose(D[mismatch], Df[mismatch], rtol=1e-5))
    assert mismatch.mean() < 0.01


def test_codes_move_from_faiss(rng):
    cb = rng.standard_normal((4, 16, 2)).astype(np.float32)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    index = spqindex.Index(cb)
    index.add_codes(faiss_pq(cb).compute_codes(x))
    np.testing.assert_array_equal(index.codes, index.encode(x))
