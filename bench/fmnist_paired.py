"""How sure is "SPQ beats raw-pixel PQ" on Fashion-MNIST: per-query AP differences with a standard error.

    python bench/fmnist_paired.py runs/fmnist-v2r

For each spq<bits>/ folder of a ``fashion_mnist_results.py`` run: mAP@1000 of the 10k test queries against the
60k train images for classic PQ on raw pixels (``Index.train``, seed 0, as in that script), the SPQ model as
trained (model.pt) and with refined codebooks (model-refined.pt, when present); then, for each SPQ variant, the
mean per-query AP difference to PQ, its standard error over queries (paired), and the share of queries where
SPQ's AP is higher.
"""

import os
import sys

import numpy as np
import torch

from spqindex import datasets
from spqindex.metrics import average_precisions, relevance
from spqindex.train import SPQModel
from fashion_mnist_results import raw_pixel_pq_ids  # bench/ is on sys.path when run as a script


def per_query_ap(ids, yq, yd):
    return average_precisions(relevance(ids, yq, yd, 1000))


def main(run: str) -> None:
    torch.set_num_threads(1)
    xd, yd = datasets.fashion_mnist("train")
    xq, yq = datasets.fashion_mnist("test")
    print("| bits | PQ mAP | SPQ variant | SPQ mAP | mean AP difference ± s.e. | queries where SPQ is better |")
    print("|---:|---:|---|---:|---:|---:|")
    for bits in (16, 32, 64):
        folder = os.path.join(run, f"spq{bits}")
        if not os.path.isdir(folder):
            continue
        ap_pq = per_query_ap(raw_pixel_pq_ids(xd, xq, bits, 1000), yq, yd)
        for name in ("model.pt", "model-refined.pt"):
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                continue
            model = SPQModel.load(path)
            ap = per_query_ap(model.build_index(xd).search(model.embed(xq), 1000)[1], yq, yd)
            diff = ap - ap_pq
            se = diff.std(ddof=1) / np.sqrt(len(diff))
            variant = "as trained" if name == "model.pt" else f"+ {model.refine_iters} Lloyd rounds"
            print(
                f"| {bits} | {ap_pq.mean():.4f} | {variant} | {ap.mean():.4f} | {diff.mean():+.4f} ± {se:.4f} | "
                f"{(diff > 0).mean():.1%} |",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
