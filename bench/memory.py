"""Memory and open/first-search cost of a stored index, side by side with FAISS on the same codes.

For each configuration (M=8 4-bit, M=16 4-bit, M=8 8-bit), each measurement runs in a fresh
child process so that resident memory is not polluted by earlier steps:

  build RSS      resident-memory growth after adding n random codes (chunks of 1M, the chunk
                 freed after each add): spqindex (implicit ids), faiss IndexPQ (add_sa_codes)
                 and faiss IndexPQFastScan (converted from that IndexPQ, which is then freed).
                 Goal: spqindex <= 1.05 * n * code_size + 32 MiB and not above faiss.
  open ms        Index.load(path, mmap=True, verify=False) of the saved file (goal < 50 ms).
  heap growth    RssAnon growth over the first search of the mapped index (goal < 1 MiB).
  first / warm   first search (nq=1, k=10) of the mapped index, pages in the page cache, vs
                 the best of the next 5 (goal <= 1.5x); "faults": the most page faults taken by a
                 first search (pages the open did not map). Process start-up (thread pool, SIMD
                 dispatch) is paid beforehand by a search of a small in-memory index.
  Open and search are measured in --repeats fresh processes: best open/first/warm, worst heap;
  "ratio" is the median over the processes of each one's first / its best warm search (the goal
  is judged on it), "min/min" the best first over the best warm of all processes (the warm side
  then has 5x the samples, so it reads high on a noisy machine).

    python bench/memory.py --quick            # n = 1M (seconds)
    python bench/memory.py --n 20000000       # the issue's size (about 1 GiB of files in --dir)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from machine import cpu_model

CONFIGS = [(8, 4), (16, 4), (8, 8)]
CHUNK = 1_000_000
MiB = 1 << 20


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss() -> int:
    return status_kib("VmRSS") * 1024


def codebooks(M: int, nbits: int, dsub: int = 4) -> np.ndarray:
    rng = np.random.default_rng(M * 100 + nbits)
    return rng.standard_normal((M, 1 << nbits, dsub)).astype(np.float32)


def code_chunks(n: int, code_size: int):
    rng = np.random.default_rng(0)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        yield rng.integers(0, 256, (m, code_size), dtype=np.uint8)


def child_build_spq(n, M, nbits, path):
    import spqindex

    cb = codebooks(M, nbits)
    index = spqindex.Index(cb)
    base = rss()
    for chunk in code_chunks(n, index.code_size):
        index.add_codes(chunk)
        del chunk
    grown = rss() - base
    index.save(path)
    return {"rss": grown}


def child_build_faiss(n, M, nbits, fastscan):
    import faiss

    cb = codebooks(M, nbits)
    d = M * cb.shape[2]
    base_rss = rss()
    pq = faiss.IndexPQ(d, M, nbits)
    faiss.copy_array_to_vector(cb.ravel(), pq.pq.centroids)
    pq.is_trained = True
    for chunk in code_chunks(n, pq.code_size):
        pq.add_sa_codes(chunk)
        del chunk
    if not fastscan:
        return {"rss": rss() - base_rss}
    fs = faiss.IndexPQFastScan(pq)
    del pq
    return {"rss": rss() - base_rss, "ntotal": fs.ntotal}


def child_open_search(path, M, nbits):
    import spqindex

    q = np.random.default_rng(1).standard_normal((1, M * 4)).astype(np.float32)
    # Process start-up costs (thread pool, kernel dispatch) are paid on another, small index.
    warmup = spqindex.Index(codebooks(M, nbits))
    warmup.add_codes(next(code_chunks(100_000, warmup.code_size)))
    warmup.search(q, 10)
    del warmup
    anon0 = status_kib("RssAnon")
    t0 = time.perf_counter()
    index = spqindex.Index.load(path, mmap=True, verify=False)
    open_ms = 1e3 * (time.perf_counter() - t0)
    anon1 = status_kib("RssAnon")
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    index.search(q, 10)
    first = time.perf_counter() - t0
    first_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    anon2 = status_kib("RssAnon")
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        index.search(q, 10)
        warm.append(time.perf_counter() - t0)
    return {
        "open_ms": open_ms,
        "open_heap": (anon1 - anon0) * 1024,
        "search_heap": (anon2 - anon1) * 1024,
        "first_ms": 1e3 * first,
        "first_faults": first_faults,
        "warm_ms": 1e3 * min(warm),
    }


def run_child(*args) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000_000, help="vectors per configuration (default 20M)")
    ap.add_argument("--quick", action="store_true", help="n = 1M")
    ap.add_argument("--dir", default=None, help="folder for the index files (default: a temporary one)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="fresh processes per open/search measurement; the best of each is shown (default 5)",
    )
    ap.add_argument("--no-faiss", action="store_true", help="skip the faiss columns")
    ap.add_argument(
        "--configs", nargs="+", default=None, metavar="MxNBITS", help="e.g. 8x4 16x4 8x8 (default: all three)"
    )
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "spq":
            res = child_build_spq(int(rest[0]), int(rest[1]), int(rest[2]), rest[3])
        elif kind in ("faiss-pq", "faiss-fs"):
            res = child_build_faiss(int(rest[0]), int(rest[1]), int(rest[2]), kind == "faiss-fs")
        else:
            res = child_open_search(rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(res))
        return 0

    import spqindex

    n = 1_000_000 if args.quick else args.n
    has_faiss = False
    if not args.no_faiss:
        try:
            import faiss  # noqa: F401

            has_faiss = True
        except ImportError:
            print("faiss not installed: its columns are skipped")
    print(f"CPU: {cpu_model()}; spqindex SIMD level: {spqindex.simd_level()}; threads: {spqindex.get_num_threads()}")
    print(
        f"n = {n:,}; RSS in MiB; goal: spq build <= 1.05*n*code_size + 32 MiB and <= faiss, "
        f"open < 50 ms, search heap < 1 MiB, first/warm <= 1.5"
    )
    head = (
        f"{'config':<12}{'code_size':>10}{'spq RSS':>9}{'limit':>8}{'IndexPQ':>9}{'FastScan':>9}"
        f"{'open ms':>9}{'heap KiB':>9}{'first ms':>9}{'warm ms':>9}{'ratio':>7}{'min/min':>9}{'faults':>8}  ok"
    )
    print(head)
    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    all_ok = True
    configs = [tuple(map(int, c.split("x"))) for c in args.configs] if args.configs else CONFIGS
    for M, nbits in configs:
        cs = (M * nbits + 7) // 8
        path = os.path.join(tmp.name, f"m{M}b{nbits}.spq")
        # faiss first: its builds free hundreds of MiB just before the next process, which in one
        # run (session 6) slowed the first searches that followed; spqindex's build and save then
        # come right before the opens, as in a user's save-then-open.
        pq = run_child("faiss-pq", n, M, nbits) if has_faiss else None
        fs = run_child("faiss-fs", n, M, nbits) if has_faiss and nbits == 4 else None
        spq = run_child("spq", n, M, nbits, path)
        run_child("open", path, M, nbits)  # brings the file's pages into the page cache
        runs = [run_child("open", path, M, nbits) for _ in range(args.repeats)]
        op = {
            "open_ms": min(r["open_ms"] for r in runs),
            "search_heap": max(r["search_heap"] for r in runs),
            "first_ms": min(r["first_ms"] for r in runs),
            "warm_ms": min(r["warm_ms"] for r in runs),
            "ratio": statistics.median(r["first_ms"] / r["warm_ms"] for r in runs),
            "first_faults": max(r["first_faults"] for r in runs),
        }
        limit = 1.05 * n * cs + 32 * MiB
        faiss_min = min([r["rss"] for r in (pq, fs) if r] or [float("inf")])
        ratio = op["ratio"]
        ok = (
            spq["rss"] <= limit
            and spq["rss"] <= faiss_min + 1 * MiB
            and op["open_ms"] < 50
            and op["search_heap"] < MiB
            and ratio <= 1.5
        )
        all_ok &= ok
        col = lambda r: f"{r['rss'] / MiB:>9.1f}" if r else f"{'n/a':>9}"  # noqa: E731
        print(
            f"{f'M={M} {nbits}-bit':<12}{cs:>10}{spq['rss'] / MiB:>9.1f}{limit / MiB:>8.0f}{col(pq)}{col(fs)}"
            f"{op['open_ms']:>9.2f}{op['search_heap'] / 1024:>9.0f}{op['first_ms']:>9.2f}{op['warm_ms']:>9.2f}"
            f"{ratio:>7.2f}{op['first_ms'] / op['warm_ms']:>9.2f}{op['first_faults']:>8}  {'yes' if ok else 'NO'}"
        )
        os.unlink(path)
    tmp.cleanup()
    print("all goals met" if all_ok else "some goals NOT met (see the ok column)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
