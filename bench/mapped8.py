"""Search speed of a memory-mapped 8-bit index against the same index in memory.

    SPQINDEX_SIMD=avx2 python bench/mapped8.py          # 1M x 128 clustered, M=8 and 16, 2 threads

Since format flag bit 2 (docs/format.md) an 8-bit file keeps the grouped codeword order, so a
mapped index runs the same kernels as one in memory; before it a mapped 8-bit file was searched in
FAISS numbering, which at the AVX2 level meant the float scan. Run it with a build from before and
after to compare (the script uses only the API both have). Batch QPS (nq=1000) and nq=1 latency,
best of --repeats; the mapped file's pages are in the page cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from compare_faiss import clustered
from machine import best_time, cpu_model

import spqindex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    spqindex.set_num_threads(args.threads)
    print(
        f"CPU: {cpu_model()}; spqindex from {os.path.dirname(spqindex.__file__)}; SIMD level: {spqindex.simd_level()}"
    )
    rng = np.random.default_rng(0)
    x = clustered(args.n + 1000, 128, 1000, rng)
    x, q = x[: args.n], x[args.n :]  # queries from the same clusters
    print(f"{'M':>3}{'memory QPS':>12}{'mapped QPS':>12}{'ratio':>7}{'memory nq=1 ms':>16}{'mapped nq=1 ms':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for M in (8, 16):
            index = spqindex.Index.train(x[:100_000], M=M, nbits=8, iters=10, seed=0)
            index.add(x)
            path = os.path.join(tmp, f"m{M}.spq")
            index.save(path)
            mapped = spqindex.Index.load(path, mmap=True)
            row = []
            for ix in (index, mapped):
                ix.search(q, 10)
                qps = len(q) / best_time(lambda ix=ix: ix.search(q, 10), args.repeats)
                lat = []
                for i in range(200):
                    t0 = time.perf_counter()
                    ix.search(q[i : i + 1], 10)
                    lat.append(time.perf_counter() - t0)
                row.append((qps, 1e3 * float(np.median(lat))))
            (mq, ml), (pq, pl) = row
            print(f"{M:>3}{mq:>12.0f}{pq:>12.0f}{pq / mq:>7.2f}{ml:>16.3f}{pl:>16.3f}")
            del mapped


if __name__ == "__main__":
    main()
