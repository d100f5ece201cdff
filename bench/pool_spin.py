"""What the thread pool's idle spin costs and buys: single-query latency and CPU time per call.

    python bench/pool_spin.py [--n 1000000] [--calls 2000] [--gap-ms 5]

One process per SPQINDEX_SPIN_US setting (the pool reads it when it is made): unset (adaptive, the
default), 2000 (the old fixed default) and 0 (sleep at once). Each runs single queries (nq=1, k=10,
d=128, M=16, 4-bit, k-means codebooks, all threads) in two patterns:
- back to back: the next call as soon as the last returns (a query loop, a busy server);
- spaced: one call every --gap-ms (a search now and then inside other work).
Latency is the best and the median over all calls; CPU ms per call is the process's CPU time (all its
threads, so a spinning idle worker shows up) divided by the calls, over the whole pattern.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from machine import cpu_model


def measure(n: int, calls: int, gap_ms: float) -> None:
    import numpy as np

    import spqindex

    rng = np.random.default_rng(0)
    d, M = 128, 16
    centers = rng.standard_normal((256, d)).astype(np.float32)
    xb = (centers[rng.integers(0, 256, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
    index = spqindex.Index.train(xb[:20000], M=M, nbits=4, seed=0)
    index.add(xb)
    queries = rng.standard_normal((calls, 1, d)).astype(np.float32)

    def pattern(gap_s: float) -> tuple[float, float, float]:
        for q in queries[:100]:  # warm-up: the fast-scan blocks are built on the first search
            index.search(q, 10)
        lat = []
        cpu0 = time.process_time()
        for q in queries:
            if gap_s:
                time.sleep(gap_s)
            t = time.perf_counter()
            index.search(q, 10)
            lat.append(time.perf_counter() - t)
        cpu = (time.process_time() - cpu0) / len(queries)
        return min(lat) * 1e3, statistics.median(lat) * 1e3, cpu * 1e3

    for name, gap in (("back to back", 0.0), (f"one every {gap_ms:g} ms", gap_ms / 1e3)):
        best, med, cpu = pattern(gap)
        print(f"{name}\t{best:.3f}\t{med:.3f}\t{cpu:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="database vectors")
    ap.add_argument("--calls", type=int, default=2000, help="single queries per pattern")
    ap.add_argument("--gap-ms", type=float, default=5.0, help="pause before each call of the spaced pattern")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        measure(args.n, args.calls, args.gap_ms)
        return

    import spqindex

    print(
        f"# {cpu_model()}, simd={spqindex.simd_level()}, threads={spqindex.get_num_threads()}, "
        f"n={args.n}, d=128 M=16 nbits=4 k=10 nq=1, {args.calls} calls per pattern"
    )
    print("| SPQINDEX_SPIN_US | pattern | best ms | median ms | CPU ms per call |")
    print("|---|---|---:|---:|---:|")
    for spin in (None, "2000", "0"):
        env = dict(os.environ)
        env.pop("SPQINDEX_SPIN_US", None)
        if spin is not None:
            env["SPQINDEX_SPIN_US"] = spin
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--n",
            str(args.n),
            "--calls",
            str(args.calls),
            "--gap-ms",
            str(args.gap_ms),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        for line in out.strip().splitlines():
            pattern, best, med, cpu = line.split("\t")
            label = "unset (adaptive)" if spin is None else spin
            print(f"| {label} | {pattern} | {best} | {med} | {cpu} |", flush=True)


if __name__ == "__main__":
    main()
