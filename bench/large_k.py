"""Large-k search speed: SPQ's evaluation shape (10k queries x 50k codes, k=1000, M=8 4-bit,
metric "spq", 2 threads), the selection path (topk_select.h) against the heap scan.

The heap-scan row is the same search with filter=every id: filtered searches keep the heap scan
(with all-ones allow masks, a small extra cost), so both paths run on the same index and data.
Min of --repeats runs each; results checked identical.

    python bench/large_k.py                 # the issue 14 shape
    python bench/large_k.py --level avx2    # spqindex forced to AVX2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from machine import cpu_model

import spqindex
from spqindex import _core


def best_of(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--nq", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--M", type=int, default=8)
    ap.add_argument("--nbits", type=int, default=4)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--metric", default="spq")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--level", choices=["scalar", "avx2", "avx512", "neon"])
    a = ap.parse_args()
    if a.level:
        _core.set_simd_level(a.level)
    spqindex.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((100, a.d)).astype(np.float32) * 3

    def data(n):
        return (centers[rng.integers(0, 100, n)] + rng.standard_normal((n, a.d))).astype(np.float32)

    x, q = data(a.n), data(a.nq)
    dsub = a.d // a.M
    K = 1 << a.nbits
    cb = np.stack([x[rng.choice(a.n, K, replace=False), m * dsub : (m + 1) * dsub] for m in range(a.M)])
    index = spqindex.Index(cb.astype(np.float32), metric=a.metric)
    index.add(x)
    print(f"cpu: {cpu_model()} | spqindex simd_level: {spqindex.simd_level()} | threads: {a.threads}")
    print(f"{a.nq} queries x {a.n} codes, k={a.k}, M={a.M}, nbits={a.nbits}, metric={a.metric}, min of {a.repeats}")
    t_sel, (D1, I1) = best_of(lambda: index.search(q, a.k), a.repeats)
    t_heap, (D2, I2) = best_of(lambda: index.search(q, a.k, filter=index.ids), a.repeats)
    same = np.array_equal(I1, I2) and np.array_equal(D1, D2)
    print(f"selection (search):             {t_sel:.3f} s")
    print(f"heap scan (search, filter=all):  {t_heap:.3f} s")
    print(f"identical results: {same}")


if __name__ == "__main__":
    main()
