"""Classic product quantization: k-means codebooks learned independently per sub-space."""

from __future__ import annotations

import numpy as np

from . import _core
from ._validate import codebook_array, float_matrix, positive_int


def train_codebooks(
    x, M: int = 8, nbits: int = 4, iters: int = 25, seed: int = 0, max_points_per_centroid: int = 256
) -> np.ndarray:
    """Lloyd's k-means with K = 2**nbits centroids in each of the M sub-spaces of ``x`` (n, dim).

    Assignment uses the native encoder (nearest codeword, all sub-spaces at once). Like FAISS,
    at most ``max_points_per_centroid * K`` training points are sampled; empty clusters are
    re-seeded by splitting the largest one. Returns codebooks (M, K, dsub) float32.
    """
    M = positive_int(M, "M")
    nbits = positive_int(nbits, "nbits")
    if nbits > 8:
        raise ValueError(f"nbits: must be in 1..8, got {nbits}")
    iters = positive_int(iters, "iters")
    max_points_per_centroid = positive_int(max_points_per_centroid, "max_points_per_centroid")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    xa = float_matrix(x, "x")
    n, dim = xa.shape
    if dim % M:
        raise ValueError(f"M: must divide the dimension {dim}, got {M}")
    K = 1 << nbits
    if n < K:
        raise ValueError(f"x: need at least K={K} training vectors, got {n}")
    dsub = dim // M
    rng = np.random.default_rng(seed)
    if n > max_points_per_centroid * K:
        xa = xa[np.sort(rng.choice(n, max_points_per_centroid * K, replace=False))]
        n = xa.shape[0]
    xs = xa.reshape(n, M, dsub)

    codebooks = np.empty((M, K, dsub), dtype=np.float32)
    for m in range(M):
        codebooks[m] = _kmeans_plus_plus(xs[:, m], K, rng)
    _lloyd(codebooks, xa, nbits, iters, rng)
    return codebooks


def refine_codebooks(x, codebooks, iters: int = 10) -> np.ndarray:
    """Lloyd's k-means started from given codebooks (M, K, dsub): ``iters`` rounds of hard assignment
    (nearest codeword in squared L2, as the index encodes) and centroid update on all of ``x`` (n, M*dsub).

    Lowers the quantization error of codebooks learned some other way (e.g. SPQ's soft quantization) on the
    vectors they will encode; codewords that get no vector keep their value. Returns new codebooks; the
    input is not modified.
    """
    iters = positive_int(iters, "iters")
    cb = codebook_array(codebooks).copy()
    _core.check_codebooks(cb)  # the core's value rules, before the embedding of x
    M, K, dsub = cb.shape
    nbits = K.bit_length() - 1
    xa = float_matrix(x, "x")
    if xa.shape[1] != M * dsub:
        raise ValueError(f"x: dimension {xa.shape[1]} does not match the codebooks' M*dsub = {M * dsub}")
    if xa.shape[0] < 1:
        raise ValueError("x: need at least one vector")
    _lloyd(cb, xa, nbits, iters, rng=None)
    return cb


def _lloyd(codebooks: np.ndarray, xa: np.ndarray, nbits: int, iters: int, rng) -> None:
    """``iters`` Lloyd rounds on ``codebooks`` (M, K, dsub) in place over the vectors ``xa`` (n, M*dsub).

    Empty clusters are re-seeded by splitting the largest one when ``rng`` is given, else keep their value.
    """
    M, K, dsub = codebooks.shape
    xs = xa.reshape(xa.shape[0], M, dsub)
    for _ in range(iters):
        assign = unpack_codes(_core.IndexCore(codebooks, "l2").encode(xa), M, nbits)  # (n, M)
        for m in range(M):
            a = assign[:, m]
            counts = np.bincount(a, minlength=K)
            sums = np.stack([np.bincount(a, weights=xs[:, m, d], minlength=K) for d in range(dsub)], axis=1)
            nonempty = counts > 0
            codebooks[m, nonempty] = (sums[nonempty] / counts[nonempty, None]).astype(np.float32)
            if rng is not None:
                for k in np.flatnonzero(~nonempty):
                    _split_largest(codebooks[m], counts, k, rng)


def _kmeans_plus_plus(xm: np.ndarray, K: int, rng, max_candidates_per_centroid: int = 64) -> np.ndarray:
    """k-means++ seeding (D² sampling) on a subsample of at most 64*K points of one sub-space."""
    n = xm.shape[0]
    if n > max_candidates_per_centroid * K:
        xm = xm[rng.choice(n, max_candidates_per_centroid * K, replace=False)]
    xm = xm.astype(np.float64)
    centers = np.empty((K, xm.shape[1]), dtype=np.float64)
    centers[0] = xm[rng.integers(xm.shape[0])]
    d2 = ((xm - centers[0]) ** 2).sum(1)
    for k in range(1, K):
        total = d2.sum()
        i = rng.choice(xm.shape[0], p=d2 / total) if total > 0 else rng.integers(xm.shape[0])
        centers[k] = xm[i]
        np.minimum(d2, ((xm - centers[k]) ** 2).sum(1), out=d2)
    return centers.astype(np.float32)


def unpack_codes(codes: np.ndarray, M: int, nbits: int) -> np.ndarray:
    """Packed FAISS-layout codes (n, code_size) uint8 -> (n, M) int64 codeword indices."""
    if nbits == 8:
        return codes[:, :M].astype(np.int64)
    bits = np.unpackbits(codes, axis=1, bitorder="little")[:, : M * nbits]
    bits = bits.reshape(codes.shape[0], M, nbits).astype(np.int64)
    return (bits << np.arange(nbits, dtype=np.int64)).sum(axis=2)


def pack_codes(assign: np.ndarray, nbits: int) -> np.ndarray:
    """(n, M) codeword indices -> packed FAISS-layout codes (n, ceil(M*nbits/8)) uint8."""
    assign = np.asarray(assign, dtype=np.int64)
    n, M = assign.shape
    bits = ((assign[:, :, None] >> np.arange(nbits)) & 1).astype(np.uint8).reshape(n, M * nbits)
    return np.packbits(bits, axis=1, bitorder="little")


def _split_largest(centroids: np.ndarray, counts: np.ndarray, empty: int, rng) -> None:
    """Re-seeds an empty cluster next to the most populated one (FAISS-style split)."""
    big = int(np.argmax(counts))
    eps = 1.0 / 1024
    noise = rng.standard_normal(centroids.shape[1]).astype(np.float32) * eps
    scale = np.abs(centroids[big]) + eps
    centroids[empty] = centroids[big] + noise * scale
    centroids[big] = centroids[big] - noise * scale
    counts[empty] = counts[big] // 2
    counts[big] -= counts[empty]
