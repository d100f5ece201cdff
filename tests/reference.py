"""Naive numpy reference of the index contract (exact float32 ADC sums, ties by smaller id), written
for clarity, not speed.

Float32 sums are accumulated in the same order as the contract (over d inside a sub-space,
then over m), so results must match the native core bit for bit.
"""

from __future__ import annotations

import numpy as np


def subspace_l2(x: np.ndarray, C: np.ndarray) -> np.ndarray:
    """x (n, dsub), C (K, dsub) -> (n, K) float32, Σ_d (x_d − c_d)² summed over d in order."""
    out = np.zeros((x.shape[0], C.shape[0]), dtype=np.float32)
    for d in range(x.shape[1]):
        diff = x[:, d : d + 1] - C[None, :, d]
        out += diff * diff
    return out


def subspace_ip(x: np.ndarray, C: np.ndarray) -> np.ndarray:
    out = np.zeros((x.shape[0], C.shape[0]), dtype=np.float32)
    for d in range(x.shape[1]):
        out += x[:, d : d + 1] * C[None, :, d]
    return out


def encode(codebooks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n, M) int64 nearest codeword per sub-space; argmin returns the first (smallest) index."""
    M, K, dsub = codebooks.shape
    x = np.asarray(x, dtype=np.float32)
    return np.stack(
        [subspace_l2(x[:, m * dsub : (m + 1) * dsub], codebooks[m]).argmin(1) for m in range(M)], axis=1
    ).astype(np.int64)


def pack(assign: np.ndarray, nbits: int) -> np.ndarray:
    """(n, M) codes -> FAISS packed layout: code m at bits [m*nbits, (m+1)*nbits), LSB first."""
    n, M = assign.shape
    code_size = (M * nbits + 7) // 8
    out = np.zeros((n, code_size), dtype=np.uint8)
    for i in range(n):
        acc = 0
        for m in range(M):
            acc |= int(assign[i, m]) << (m * nbits)
        out[i] = np.frombuffer(acc.to_bytes(code_size, "little"), dtype=np.uint8)
    return out


def unpack(codes: np.ndarray, M: int, nbits: int) -> np.ndarray:
    n = codes.shape[0]
    out = np.zeros((n, M), dtype=np.int64)
    for i in range(n):
        acc = int.from_bytes(codes[i].tobytes(), "little")
        for m in range(M):
            out[i, m] = (acc >> (m * nbits)) & ((1 << nbits) - 1)
    return out


def lut(codebooks: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """(nq, M, K) float32 table, in the metric's natural sign (IP not negated)."""
    M, K, dsub = codebooks.shape
    q = np.asarray(q, dtype=np.float32)
    tabs = []
    for m in range(M):
        qm = q[:, m * dsub : (m + 1) * dsub]
        if metric == "ip":
            t = subspace_ip(qm, codebooks[m])
        else:
            t = subspace_l2(qm, codebooks[m])
            if metric == "spq":
                t = np.sqrt(t)
        tabs.append(t)
    return np.stack(tabs, axis=1)


def adc(codebooks: np.ndarray, q: np.ndarray, assign: np.ndarray, metric: str) -> np.ndarray:
    """(nq, n) scores: Σ_m lut[m, code_m] accumulated in float32 in order m = 0..M-1."""
    T = lut(codebooks, q, metric)
    if metric == "ip":
        T = -T  # the core sums negated IP entries; negation is exact, so is the sum
    nq, M, _ = T.shape
    out = np.zeros((nq, assign.shape[0]), dtype=np.float32)
    for m in range(M):
        out += T[:, m, assign[:, m]]
    return -out if metric == "ip" else out


def search(codebooks, q, assign, ids, k: int, metric: str):
    """Brute-force exact top-k: order by (score, id), best first; pads with (±inf, -1)."""
    S = adc(codebooks, q, assign, metric)
    key = -S if metric == "ip" else S
    nq = S.shape[0]
    pad = -np.inf if metric == "ip" else np.inf
    D = np.full((nq, k), pad, dtype=np.float32)
    I = np.full((nq, k), -1, dtype=np.int64)
    for i in range(nq):
        order = np.lexsort((ids, key[i]))[:k]
        D[i, : len(order)] = S[i, order]
        I[i, : len(order)] = ids[order]
    return D, I
