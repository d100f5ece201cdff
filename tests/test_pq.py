"""spqindex.pq.refine_codebooks: Lloyd rounds from given codebooks, against a naive numpy reference."""

import numpy as np
import pytest

import spqindex
from spqindex.pq import refine_codebooks
import reference as ref


def naive_lloyd(x, codebooks, iters):
    cb = codebooks.astype(np.float64).copy()
    M, K, dsub = cb.shape
    for _ in range(iters):
        assign = ref.encode(cb.astype(np.float32), x)
        for m in range(M):
            for k in range(K):
                members = x[assign[:, m] == k, m * dsub : (m + 1) * dsub]
                if len(members):
                    cb[m, k] = members.astype(np.float64).mean(axis=0)
    return cb.astype(np.float32)


def quantization_error(x, codebooks):
    index = spqindex.Index(codebooks, metric="l2")
    return float(((index.decode(index.encode(x)) - x) ** 2).sum(axis=1).mean())


@pytest.mark.parametrize("M,nbits,dsub", [(2, 4, 8), (4, 2, 3), (1, 8, 2)])
def test_refine_matches_naive_lloyd(rng, M, nbits, dsub):
    x = rng.standard_normal((3000, M * dsub)).astype(np.float32)
    start = rng.standard_normal((M, 1 << nbits, dsub)).astype(np.float32) * 3  # far from the data: some empty
    before = start.copy()
    got = refine_codebooks(x, start, iters=4)
    np.testing.assert_array_equal(start, before)  # the input is not modified
    np.testing.assert_allclose(got, naive_lloyd(x, start, 4), rtol=1e-5, atol=1e-6)


def test_refine_lowers_error_each_round_and_keeps_empty_codewords(rng):
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    start = rng.standard_normal((2, 16, 8)).astype(np.float32)
    start[1, 5] = 100.0  # no vector is nearest to it
    errors = [quantization_error(x, start)]
    cb = start
    for _ in range(5):
        cb = refine_codebooks(x, cb, iters=1)
        errors.append(quantization_error(x, cb))
    assert all(b <= a * (1 + 1e-6) for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.8 * errors[0]
    np.testing.assert_array_equal(cb[1, 5], start[1, 5])
    np.testing.assert_array_equal(refine_codebooks(x, start, iters=5), cb)  # 5 rounds at once == 5 single rounds


@pytest.mark.parametrize(
    "make_args,exc,match",
    [
        (lambda x, cb: (x[:, :15], cb), ValueError, "x"),
        (lambda x, cb: (x[:0], cb), ValueError, "x"),
        (lambda x, cb: (x, cb[0]), ValueError, "codebooks"),
        (lambda x, cb: (x, cb[:, :12]), ValueError, "codebooks"),
        (lambda x, cb: (x, np.where(cb > 1, np.nan, cb)), ValueError, "codebooks"),
        (lambda x, cb: (x.astype(np.int32), cb), TypeError, "x"),
    ],
)
def test_refine_rejects_bad_input(rng, make_args, exc, match):
    x = rng.standard_normal((100, 16)).astype(np.float32)
    cb = rng.standard_normal((2, 16, 8)).astype(np.float32)
    with pytest.raises(exc, match=match):
        refine_codebooks(*make_args(x, cb))
    with pytest.raises(ValueError, match="iters"):
        refine_codebooks(x, cb, iters=0)
