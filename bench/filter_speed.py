"""Filtered search speed: no filter vs a 90% and a 1% allow-list, batch and single query.

    python bench/filter_speed.py [--n 1000000]

Same data as compare_faiss.py (clustered, d=128, k=10), k-means codebooks, implicit ids. The allow-list
is given two ways: an int64 id array (sorted), which each search turns into one 64-bit mask word per
block (time linear in the list's length on every call), and a spqindex.IdFilter of the same ids, which
keeps those masks between searches of an unchanged index.
"""

import argparse

import numpy as np
from machine import best_time, cpu_model

import spqindex


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    n, d = a.n, 128
    print(f"# {cpu_model()} | simd {spqindex.simd_level()} | threads {spqindex.get_num_threads()} | n={n} k=10")
    print("| codes | filter | nq=100 ms | QPS | nq=1 ms (median of 20) |")
    print("|---|---|---:|---:|---:|")
    for M, nbits in ((16, 4), (8, 8)):
        centers = rng.standard_normal((256, d)).astype(np.float32)
        xb = (centers[rng.integers(0, 256, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
        index = spqindex.Index.train(xb[:20000], M=M, nbits=nbits, seed=0)
        index.add(xb)
        q = (centers[rng.integers(0, 256, 100)] + 0.3 * rng.standard_normal((100, d))).astype(np.float32)
        for frac, prepared in ((None, False), (0.9, False), (0.9, True), (0.01, False), (0.01, True)):
            allowed = None if frac is None else np.sort(rng.choice(n, int(frac * n), replace=False))
            if prepared:
                allowed = spqindex.IdFilter(allowed)
            tb = best_time(lambda allowed=allowed, index=index, q=q: index.search(q, 10, filter=allowed), 5)
            t1 = np.median(
                [
                    best_time(
                        lambda i=i, allowed=allowed, index=index, q=q: index.search(q[i : i + 1], 10, filter=allowed), 3
                    )
                    for i in range(20)
                ]
            )
            name = "none" if frac is None else f"{frac:.0%} of ids" + (", IdFilter" if prepared else "")
            print(f"| M={M} nbits={nbits} | {name} | {tb * 1e3:.1f} | {100 / tb:.0f} | {t1 * 1e3:.3f} |")


if __name__ == "__main__":
    main()
