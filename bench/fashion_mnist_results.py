"""SPQ vs classic PQ on raw pixels, full Fashion-MNIST protocol, for docs/results.md.

Database = 60k train images, queries = 10k test images, mAP@1000 (SPQ code's definition).
SPQ is trained from scratch (cnn28 backbone) on the 60k train images without labels; classic PQ is
``spqindex.Index.train`` (k-means, K=16, metric "l2") on the 784 raw pixels scaled to [0, 1].

    python bench/fashion_mnist_results.py --bits 16 32 64 --epochs 8 --out runs/fmnist-results

Re-running with the same --out resumes unfinished trainings from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import spqindex
from spqindex import datasets
from spqindex.metrics import map_at_n
from spqindex.train import SPQConfig, SPQModel, fit
from spqindex.train.evaluate import retrieval_scores


def raw_pixel_pq(x_db, x_q, y_db, y_q, bits: int, top_n: int, seed: int) -> dict:
    t = time.perf_counter()
    M = bits // 4
    db = x_db.reshape(len(x_db), -1).astype(np.float32) / 255.0
    q = x_q.reshape(len(x_q), -1).astype(np.float32) / 255.0
    index = spqindex.Index.train(db, M=M, nbits=4, metric="l2", seed=seed)
    index.add(db)
    _, ids = index.search(q, top_n)
    return {"map": map_at_n(ids, y_q, y_db, top_n), "seconds": round(time.perf_counter() - t, 1)}


def spq(x_db, x_q, y_db, y_q, bits: int, epochs: int, top_n: int, seed: int, out: str, crop: float) -> dict:
    t = time.perf_counter()
    torch.manual_seed(seed)
    model = SPQModel(SPQConfig(bits=bits, crop_scale=(crop, 1.0), seed=seed), "cnn28")
    run = os.path.join(out, f"spq{bits}")
    history = fit(model, x_db, epochs=epochs, device="cpu", checkpoint_dir=run, resume=True, progress=True)
    train_s = sum(h["seconds"] for h in history)
    scores = retrieval_scores(model.to("cpu"), (x_q, y_q), (x_db, y_db), top_n)
    return {"map": scores["map"], "p@100": scores["p@100"], "epochs": epochs, "train_seconds": round(train_s, 1),
            "seconds": round(time.perf_counter() - t, 1), "final_loss": history[-1]["loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--crop-scale", type=float, default=0.2, help="smallest RandomResizedCrop area")
    p.add_argument("--top-n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/fmnist-results")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    x_db, y_db = datasets.fashion_mnist("train")
    x_q, y_q = datasets.fashion_mnist("test")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} threads {torch.get_num_threads()}, CPU only"
    rows = []
    t0 = time.perf_counter()
    for bits in args.bits:
        pq = raw_pixel_pq(x_db, x_q, y_db, y_q, bits, args.top_n, args.seed)
        print(json.dumps({"bits": bits, "method": "pq-raw-pixels", **pq}), flush=True)
        sq = spq(x_db, x_q, y_db, y_q, bits, args.epochs, args.top_n, args.seed, args.out, args.crop_scale)
        print(json.dumps({"bits": bits, "method": "spq", **sq}), flush=True)
        rows.append({"bits": bits, "pq": pq, "spq": sq})
    wall = time.perf_counter() - t0
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "wall_seconds": round(wall), "args": vars(args), "rows": rows}, f, indent=1)
    print(f"\nFashion-MNIST: database 60000 train, queries 10000 test, mAP@{args.top_n}; {machine}")
    print(f"| bits | classic PQ, raw pixels | SPQ ({args.epochs} epochs, from scratch) | SPQ train time |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bits']} | {r['pq']['map']:.4f} | {r['spq']['map']:.4f} | {r['spq']['train_seconds'] / 60:.1f} min |")
    print(f"total wall time {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
