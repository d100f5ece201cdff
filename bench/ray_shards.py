"""ShardedIndex on one node vs a local Index on the same codes: batch QPS, single-query latency,
Ray's fixed cost per search call, the driver's merge cost, and each shard's scan rate.

    python bench/ray_shards.py                 # 10M codes (M=16, nbits=4: 8 bytes each), 1/2/4 shards
    python bench/ray_shards.py --n 1000000     # smaller

Codes are random bytes (the scan cost does not depend on their values). Every sharded result is
checked against the local Index (ids and distances). The numbers feed the model of docs/scale.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import spqindex  # noqa: E402


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls (min-of-many: the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def latency(search, queries, repeats: int) -> float:
    """Median over the queries of the min-of-``repeats`` time of a one-query search, seconds."""
    return float(np.median([timed(lambda: search(q[None, :]), repeats) for q in queries]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000_000, help="codes in the index (default: 10M)")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--nbits", type=int, default=4)
    ap.add_argument("--dsub", type=int, default=8)
    ap.add_argument("--nq", type=int, default=1000, help="queries of the batch (QPS)")
    ap.add_argument("--nlat", type=int, default=30, help="single queries timed for the latency median")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the local Index "
                    "(default: all cores); each of S shards gets max(1, threads // S) and num_cpus threads/S")
    ap.add_argument("--address", default=None, help="Ray cluster to join (default: a local instance)")
    ap.add_argument("--dir", default=None, help="folder for the shard files (default: a temporary one)")
    args = ap.parse_args()

    import ray

    from spqindex.distributed import ShardedIndex
    from spqindex.distributed.merge import merge_topk

    rng = np.random.default_rng(0)
    K, dim = 1 << args.nbits, args.M * args.dsub
    cb = rng.standard_normal((args.M, K, args.dsub)).astype(np.float32)
    index = spqindex.Index(cb, metric="l2")
    code_size = index.code_size
    chunk = 1_000_000
    for s in range(0, args.n, chunk):
        index.add_codes(rng.integers(0, 256, (min(chunk, args.n - s), code_size), dtype=np.uint8))
    q = rng.standard_normal((args.nq, dim)).astype(np.float32)
    ql = rng.standard_normal((args.nlat, dim)).astype(np.float32)
    spqindex.set_num_threads(args.threads)

    if args.address is None:
        ray.init(address="local", num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    print(f"# CPU: {cpu_model()}; simd={spqindex.simd_level()}; cores={os.cpu_count()}; ray {ray.__version__}; "
          f"spqindex {spqindex.__version__}")
    print(f"# n={args.n} M={args.M} nbits={args.nbits} ({code_size} B/code) k={args.k} nq={args.nq} "
          f"threads={args.threads}; times are min of {args.repeats}, latency = median over {args.nlat} queries")

    ref = index.search(q, args.k)
    t_batch = timed(lambda: index.search(q, args.k), args.repeats)
    t_one = latency(lambda x: index.search(x, args.k), ql, args.repeats)
    one_thread = spqindex.get_num_threads()
    spqindex.set_num_threads(1)
    t_one_1t = latency(lambda x: index.search(x, args.k), ql[:10], args.repeats)
    spqindex.set_num_threads(one_thread)
    rows = [("local Index", args.threads, t_batch, t_one, "")]
    print(f"# scan rate, one thread, one query: {args.n / t_one_1t / 1e6:.0f} M codes/s "
          f"({t_one_1t * 1e3:.2f} ms for {args.n} codes)")

    # Ray's fixed cost: a 1000-code index per shard; the search time is then all overhead.
    tiny = spqindex.Index(cb, metric="l2")
    tiny.add_codes(rng.integers(0, 256, (1000, code_size), dtype=np.uint8))
    overhead = {}
    for S in [int(v) for v in args.shards.split(",")]:
        with tempfile.TemporaryDirectory(dir=args.dir) as d, \
                ShardedIndex.from_index(tiny, os.path.join(d, "x"), num_shards=S, num_cpus=args.threads / S / 2,
                                        threads=1, placement=None) as sx:
            overhead[S] = latency(lambda x: sx.search(x, args.k), ql, args.repeats) - \
                latency(lambda x: tiny.search(x, args.k), ql, args.repeats)
    parts = [np.sort(rng.random((args.nq, args.k)).astype(np.float32), axis=1) for _ in range(4)]
    ids = [rng.integers(0, args.n, (args.nq, args.k)) for _ in range(4)]
    t_merge = timed(lambda: merge_topk(parts, ids, args.k, "l2"), args.repeats)
    print(f"# merge of 4 shard lists on the driver: {t_merge * 1e6 / args.nq:.2f} us per query (nq={args.nq})")
    print("# Ray fixed cost per search call (single query, 1000 codes per shard, minus the local search): "
          + ", ".join(f"{S} shards {overhead[S] * 1e3:.2f} ms" for S in overhead))

    for S in [int(v) for v in args.shards.split(",")]:
        threads = max(1, args.threads // S)
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            t0 = time.perf_counter()
            sx = ShardedIndex.from_index(index, os.path.join(d, "x"), num_shards=S, num_cpus=args.threads / S,
                                         threads=threads, placement="pack")
            t_build = time.perf_counter() - t0
            try:
                D, I = sx.search(q, args.k)
                ok = np.array_equal(I, ref[1]) and np.array_equal(D, ref[0])
                tb = timed(lambda: sx.search(q, args.k), args.repeats)
                t1 = latency(lambda x: sx.search(x, args.k), ql, args.repeats)
            finally:
                sx.close()
            rows.append((f"ShardedIndex S={S}", f"{S}x{threads}", tb, t1,
                         f"ids/dists equal: {ok}; from_index {t_build:.1f} s"))

    print("| engine | threads | batch QPS | single-query ms | notes |")
    print("|---|---|---|---|---|")
    for name, th, tb, t1, note in rows:
        print(f"| {name} | {th} | {args.nq / tb:.0f} | {t1 * 1e3:.2f} | {note} |")
    ray.shutdown()
    return 0 if all("False" not in r[4] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
