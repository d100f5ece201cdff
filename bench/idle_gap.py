"""Single-query latency after the machine has been idle: what a sporadic query pays beyond a warm one.

    python bench/idle_gap.py                  # M=16 4-bit codes, 20k and 1M vectors, gaps 0 / 0.5 / 5 / 50 ms
    SPQINDEX_SIMD=avx2 FAISS_SIMD_LEVEL=AVX2 python bench/idle_gap.py

Before each timed query the script sleeps for the gap (0: back to back). Rows: spqindex with 1 and 2
threads, faiss IndexPQFastScan with 1 thread (it does not split one query), and a numpy matrix-vector
product of similar size as a library-free control: if the control slows down after a gap as much as the
indexes do, the cost is the machine's (an idle virtual CPU is descheduled and woken), not the library's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from machine import cpu_model

import spqindex


def median_ms(fn, q: np.ndarray, gap: float, count: int) -> float:
    times = []
    for i in range(count):
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter()
        fn(q[i % q.shape[0] : i % q.shape[0] + 1], 10)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,1000000", help="comma list of database sizes")
    ap.add_argument("--gaps-ms", default="0,0.5,5,50", help="comma list of idle gaps before each query")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    d, M = args.d, args.M
    gaps = [float(g) / 1e3 for g in args.gaps_ms.split(",")]
    q = rng.standard_normal((200, d), dtype=np.float32)
    print(f"# {cpu_model()}; spqindex simd={spqindex.simd_level()}; M={M} nbits=4 d={d}; median ms per query")
    print("| n | library | " + " | ".join(f"gap {g * 1e3:g} ms" for g in gaps) + " |")
    print("|---|---|" + "---|" * len(gaps))
    for n in (int(v) for v in args.sizes.split(",")):
        x = rng.standard_normal((n, d), dtype=np.float32)
        ours = spqindex.Index.train(x[:20000], M=M, nbits=4, iters=5)
        ours.add(x)
        base = faiss.IndexPQ(d, M, 4)
        faiss.copy_array_to_vector(ours.codebooks.ravel(), base.pq.centroids)
        base.is_trained = True
        base.add(x)
        fast = faiss.IndexPQFastScan(base)
        control = x[:20000]  # numpy: a 20k x d float32 matrix-vector product
        rows = [
            ("spqindex, 1 thread", ours.search, 1),
            ("spqindex, 2 threads", ours.search, 2),
            ("faiss IndexPQFastScan, 1 thread", fast.search, 1),
            ("numpy 20k x d matvec (control)", lambda qq, k, c=control: c @ qq[0], 1),
        ]
        for name, fn, threads in rows:
            spqindex.set_num_threads(threads)
            fn(q[:1], 10)
            cells = [median_ms(fn, q, g, 40 if g >= 0.05 else 150) for g in gaps]
            print(f"| {n} | {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
