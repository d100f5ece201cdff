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
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from machine import best_time, cpu_model

import spqindex  # noqa: E402


def latency(search, queries, repeats: int) -> float:
    """Median over the queries of the min-of-``repeats`` time of a one-query search, seconds."""
    return float(np.median([best_time(lambda q=q: search(q[None, :]), repeats) for q in queries]))


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
    ap.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="threads of the local Index "
        "(default: all cores); each of S shards gets max(1, threads // S) and num_cpus threads/S",
    )
    ap.add_argument("--address", default=None, help="Ray cluster to join (default: a local instance)")
    ap.add_argument("--dir", default=None, help="folder for the shard files (default: a temporary one)")
    ap.add_argument("--node-cores", type=int, default=16, help="model: cores per node (an assumption)")
    ap.add_argument(
        "--node-gbs",
        type=float,
        default=100.0,
        help="model: memory bandwidth per node in GB/s, caps the scan rate (an assumption)",
    )
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
    print(
        f"# CPU: {cpu_model()}; simd={spqindex.simd_level()}; cores={os.cpu_count()}; ray {ray.__version__}; "
        f"spqindex {spqindex.__version__}"
    )
    print(
        f"# n={args.n} M={args.M} nbits={args.nbits} ({code_size} B/code) k={args.k} nq={args.nq} "
        f"threads={args.threads}; times are min of {args.repeats}, latency = median over {args.nlat} queries"
    )

    ref = index.search(q, args.k)
    t_batch = best_time(lambda: index.search(q, args.k), args.repeats)
    t_one = latency(lambda x: index.search(x, args.k), ql, args.repeats)
    one_thread = spqindex.get_num_threads()
    spqindex.set_num_threads(1)
    t_one_1t = latency(lambda x: index.search(x, args.k), ql[:10], args.repeats)
    t_batch_1t = best_time(lambda: index.search(q, args.k), 1)
    spqindex.set_num_threads(one_thread)
    rows = [("local Index", args.threads, t_batch, t_one, "")]
    print(
        f"# scan rate, one thread, one query: {args.n / t_one_1t / 1e6:.0f} M codes/s "
        f"({t_one_1t * 1e3:.2f} ms for {args.n} codes)"
    )

    # Ray's fixed cost: a 1000-code index per shard; the search time is then all overhead.
    tiny = spqindex.Index(cb, metric="l2")
    tiny.add_codes(rng.integers(0, 256, (1000, code_size), dtype=np.uint8))
    overhead = {}
    for S in [int(v) for v in args.shards.split(",")]:
        with (
            tempfile.TemporaryDirectory(dir=args.dir) as d,
            ShardedIndex.from_index(
                tiny, os.path.join(d, "x"), num_shards=S, num_cpus=args.threads / S / 2, threads=1, placement=None
            ) as sx,
        ):
            overhead[S] = latency(lambda x: sx.search(x, args.k), ql, args.repeats) - latency(
                lambda x: tiny.search(x, args.k), ql, args.repeats
            )
    parts = [np.sort(rng.random((args.nq, args.k)).astype(np.float32), axis=1) for _ in range(4)]
    ids = [rng.integers(0, args.n, (args.nq, args.k)) for _ in range(4)]
    t_merge = best_time(lambda: merge_topk(parts, ids, args.k, "l2"), args.repeats)
    print(f"# merge of 4 shard lists on the driver: {t_merge * 1e6 / args.nq:.2f} us per query (nq={args.nq})")
    print(
        "# Ray fixed cost per search call (single query, 1000 codes per shard, minus the local search): "
        + ", ".join(f"{S} shards {overhead[S] * 1e3:.2f} ms" for S in overhead)
    )

    for S in [int(v) for v in args.shards.split(",")]:
        threads = max(1, args.threads // S)
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            t0 = time.perf_counter()
            sx = ShardedIndex.from_index(
                index, os.path.join(d, "x"), num_shards=S, num_cpus=args.threads / S, threads=threads, placement="pack"
            )
            t_build = time.perf_counter() - t0
            try:
                D, I = sx.search(q, args.k)
                ok = np.array_equal(I, ref[1]) and np.array_equal(D, ref[0])
                tb = best_time(lambda sx=sx: sx.search(q, args.k), args.repeats)
                t1 = latency(lambda x, sx=sx: sx.search(x, args.k), ql, args.repeats)
            finally:
                sx.close()
            rows.append(
                (f"ShardedIndex S={S}", f"{S}x{threads}", tb, t1, f"ids/dists equal: {ok}; from_index {t_build:.1f} s")
            )

    print("| engine | threads | batch QPS | single-query ms | notes |")
    print("|---|---|---|---|---|")
    for name, th, tb, t1, note in rows:
        print(f"| {name} | {th} | {args.nq / tb:.0f} | {t1 * 1e3:.2f} | {note} |")
    ray.shutdown()
    print_model(
        args,
        code_size,
        r1=args.n / t_one_1t,
        rb=args.n * args.nq / t_batch_1t,
        overhead=overhead,
        merge_per_query=t_merge / args.nq,
    )
    return 0 if all("False" not in r[4] for r in rows) else 1


def print_model(args, code_size: int, r1: float, rb: float, overhead: dict, merge_per_query: float) -> None:
    """docs/scale.md's model from this run's measurements; one shard per node, its cores as threads.

    scan rate of a node: min(cores * r, bandwidth / code_size) (r: one thread's measured rate)
    single query: t_call(N) + (n / N) / single-query rate + merge;  t_call(N) = a + b * N, a line
    through the measured per-call costs with at most one shard per core. batch: QPS = 1 / ((n / N) / batch rate + t_call(N) / nq + merge).
    memory per node: (n / N) * (code_size + 8) bytes (codes and ids), doubled while a shard holds
    unsaved changes (its writable copy).
    """
    # Fit only the shard counts that fit this node's cores (more would measure actors waiting for
    # a core, not the cost of a call); on a cluster each shard has its own node.
    fit = [s for s in sorted(overhead) if s <= max(2, args.threads)]
    S = np.array(fit, dtype=float)
    t = np.array([overhead[s] for s in fit])
    b, a = np.polyfit(S, t, 1) if len(S) > 1 else (0.0, float(t[0]))
    cap = args.node_gbs * 1e9 / code_size
    node_r1 = min(args.node_cores * r1, cap)
    node_rb = min(args.node_cores * rb, cap * args.nq)  # a batch reads each code once per block of queries
    print(
        f"\n# model inputs (measured here): one thread scans {r1 / 1e9:.2f} G codes/s for one query, "
        f"{rb / 1e9:.2f} G code-queries/s in a batch of {args.nq}; Ray call {a * 1e3:.2f} ms + "
        f"{b * 1e3:.2f} ms per shard; merge {merge_per_query * 1e6:.2f} us per query"
    )
    print(
        f"# assumptions: {args.node_cores} cores per node, {args.node_gbs:.0f} GB/s per node "
        f"(caps one query's scan at {cap / 1e9:.1f} G codes/s); one shard per node"
    )
    print("| vectors | nodes | memory per node GB | single-query ms | batch QPS |")
    print("|---|---|---|---|---|")
    for n in (100_000_000, 1_000_000_000):
        for N in (1, 4, 16, 64):
            call = a + b * N
            t1 = call + n / N / node_r1 + merge_per_query
            qps = 1.0 / (n / N / node_rb * 1.0 + call / args.nq + merge_per_query)
            print(f"| {n / 1e6:.0f}M | {N} | {n / N * (code_size + 8) / 1e9:.2f} | {t1 * 1e3:.1f} | {qps:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
