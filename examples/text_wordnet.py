"""Text retrieval on real sentence embeddings: WordNet glosses embedded with all-MiniLM-L6-v2.

Recall@10 against exact float search (cosine), precision@10 of the lexicographer-file label, and
query throughput, for spqindex and FAISS at the same bytes per vector (48 B: M=48 x 8 bits and
M=96 x 4 bits; FAISS IndexPQ and IndexPQFastScan). The embeddings are cached under runs/ by
examples/wordnet_glosses.py (a fixed random order of all glosses, so --limit N is a random subset).

    HF_HUB_OFFLINE=1 python examples/text_wordnet.py --limit 20000      # embeds what is missing
    python examples/text_wordnet.py --cached-only                       # the largest cached subset
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wordnet_glosses import CHUNK, LEXNAMES, embed, load_glosses  # noqa: E402

import spqindex  # noqa: E402


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def cached_prefix(cache: str, total: int) -> int:
    n = 0
    while n < total and os.path.isfile(f"{cache}-{n}-{min(CHUNK, total - n)}.npy"):
        n += min(CHUNK, total - n)
    return n


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def recall_at(I: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k].tolist()) & set(b[:k].tolist())) / k for a, b in zip(I, truth)]))


def label_precision(I: np.ndarray, yq: np.ndarray, ydb: np.ndarray, k: int = 10) -> float:
    return float((ydb[I[:, :k]] == yq[:, None]).mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=0, help="use the first N glosses of the fixed shuffle (0: all)")
    p.add_argument("--cached-only", action="store_true", help="use the largest already-embedded subset")
    p.add_argument("--queries", type=int, default=1000, help="held-out glosses used as queries")
    p.add_argument("--cache", default="runs/wordnet-minilm")
    p.add_argument("--iters", type=int, default=20, help="k-means iterations (both libraries)")
    p.add_argument("--metrics", default="ip,l2", help="comma-separated, of ip and l2 (default: both)")
    a = p.parse_args()

    glosses, labels, _ = load_glosses()
    order = np.random.default_rng(0).permutation(len(glosses))
    n = a.limit or len(glosses)
    if a.cached_only:
        n = min(n, cached_prefix(a.cache, len(glosses)))
        if n == 0:
            raise SystemExit("no cached embeddings: run examples/wordnet_glosses.py first")
    order = order[:n]
    x = embed([glosses[i] for i in order], cache=a.cache)  # unit norm (n, 384)
    y = labels[order]
    xq, yq, xb, yb = x[-a.queries :], y[-a.queries :], x[: -a.queries], y[: -a.queries]
    k = 10

    import faiss

    threads = spqindex.get_num_threads()
    faiss.omp_set_num_threads(threads)
    print(
        f"# WordNet glosses: {len(xb)} database + {len(xq)} queries of {n} (of {len(glosses)}), dim {x.shape[1]}, "
        f"{len(LEXNAMES)} lexicographer files"
    )
    print(
        f"# CPU: {cpu_model()}; spqindex.simd_level() = {spqindex.simd_level()}; threads = {threads}; "
        f"faiss {faiss.__version__}"
    )

    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(xb)
    _, truth = exact.search(xq, k)
    t_exact = best_of(lambda: exact.search(xq, k))
    print(
        f"# exact float search (FAISS IndexFlatIP, {4 * x.shape[1]} B/vector): "
        f"label P@10 {label_precision(truth, yq, yb):.4f}, {len(xq) / t_exact:.0f} queries/s"
    )
    print()
    print("| library | index | metric | bytes/vector | recall@10 | label P@10 | train s | queries/s |")
    print("|---|---|---|---|---|---|---|---|")

    def row(lib, name, metric, nbytes, index_search, train_s):
        _, I = index_search()
        t = best_of(index_search)
        print(
            f"| {lib} | {name} | {metric} | {nbytes} | {recall_at(I, truth):.4f} | "
            f"{label_precision(I, yq, yb):.4f} | {train_s:.1f} | {len(xq) / t:.0f} |",
            flush=True,
        )

    for metric in a.metrics.split(","):
        fmetric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
        for M, nbits in ((48, 8), (96, 4)):
            t0 = time.perf_counter()
            ours = spqindex.Index.train(xb, M=M, nbits=nbits, metric=metric, iters=a.iters)
            ours.add(xb)
            t_ours = time.perf_counter() - t0
            row(
                "spqindex",
                f"Index M={M} nbits={nbits}",
                metric,
                ours.code_size,
                lambda ours=ours: ours.search(xq, k),
                t_ours,
            )

            t0 = time.perf_counter()
            fpq = faiss.IndexPQ(x.shape[1], M, nbits, fmetric)
            fpq.pq.cp.niter = a.iters
            fpq.train(xb)
            fpq.add(xb)
            t_faiss = time.perf_counter() - t0
            row(
                "faiss",
                f"IndexPQ M={M} nbits={nbits}",
                metric,
                fpq.pq.code_size,
                lambda fpq=fpq: fpq.search(xq, k),
                t_faiss,
            )
            if nbits == 4:
                fs = faiss.IndexPQFastScan(fpq)  # same codebooks and codes, packed for the 4-bit scan
                row(
                    "faiss", f"IndexPQFastScan M={M}", metric, fpq.pq.code_size, lambda fs=fs: fs.search(xq, k), t_faiss
                )
            conv = spqindex.from_faiss(fpq)  # FAISS's codebooks and codes, searched by spqindex
            row(
                "spqindex",
                f"from_faiss(IndexPQ M={M} nbits={nbits})",
                metric,
                conv.code_size,
                lambda conv=conv: conv.search(xq, k),
                t_faiss,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
