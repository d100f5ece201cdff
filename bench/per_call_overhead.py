"""Fixed cost of one single-query search: spqindex (Python API and the native call alone) vs FAISS.

    python bench/per_call_overhead.py

d=128, M=16, k=10, nbits 4 (vs IndexPQFastScan) and 8 (vs IndexPQ), the same k-means codebooks in both
libraries, on a 64-vector index (almost pure per-call cost: validation, binding, LUT build and
quantization, top-k) and on a 20,000-vector one. Best of 7 runs of 2,000 calls, after 200 warm-up calls.
"""

import time

import faiss
import numpy as np

import spqindex


def best_us(fn, calls: int = 2000, runs: int = 7) -> float:
    for _ in range(200):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls * 1e6)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    d, M = 128, 16
    xb = rng.standard_normal((20000, d)).astype(np.float32)
    q = rng.standard_normal((1, d)).astype(np.float32)
    print(
        f"# spqindex {spqindex.__version__} simd={spqindex.simd_level()} threads={spqindex.get_num_threads()} "
        f"vs faiss {faiss.__version__}; d={d} M={M} k=10 nq=1; microseconds per call"
    )
    print("| nbits | n | spqindex Index.search | native call only | faiss | spqindex / faiss |")
    print("|---:|---:|---:|---:|---:|---:|")
    for nbits in (4, 8):
        codebooks = spqindex.Index.train(xb, M=M, nbits=nbits, seed=0).codebooks
        for n in (64, 20000):
            ours = spqindex.Index(codebooks, metric="l2")
            ours.add(xb[:n])
            theirs = faiss.IndexPQFastScan(d, M, 4) if nbits == 4 else faiss.IndexPQ(d, M, 8)
            faiss.copy_array_to_vector(codebooks.ravel(), theirs.pq.centroids)
            theirs.is_trained = True
            theirs.add(xb[:n])
            api = best_us(lambda ours=ours: ours.search(q, 10))
            core = best_us(lambda ours=ours: ours._core.search(q, 10))
            ref = best_us(lambda theirs=theirs: theirs.search(q, 10))
            print(f"| {nbits} | {n} | {api:.1f} | {core:.1f} | {ref:.1f} | {api / ref:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
