"""SPQ vs classic PQ on raw pixels, full Fashion-MNIST protocol, for docs/results.md.

Database = 60k train images, queries = 10k test images, mAP@1000 (SPQ code's definition).
SPQ is trained from scratch (cnn28 backbone) on the 60k train images without labels; classic PQ is
``spqindex.Index.train`` (k-means, K=16, metric "l2") on the 784 raw pixels scaled to [0, 1].

    python bench/fashion_mnist_results.py --bits 16 32 64 --epochs 8 --out runs/fmnist-results

Each bit width writes OUT/result-<bits>.json; widths can run as separate processes (``--bits 32
--threads 1``) and ``--table`` prints the table of what OUT holds. Re-running with the same --out
resumes unfinished trainings from their checkpoints (a finished one is only evaluated again).
With --refine-iters N (default 10) SPQ is scored a second time after N Lloyd (k-means) rounds on its learned
codebooks over the 60k train images' features (``SPQModel.refine_codebooks``; no labels; not part of SPQ).
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


def raw_pixel_pq_ids(x_db, x_q, bits: int, top_n: int, seed: int = 0) -> np.ndarray:
    """Ranked database ids (nq, top_n) of classic PQ (k-means, K=16, metric "l2") on pixels in [0, 1]."""
    db = x_db.reshape(len(x_db), -1).astype(np.float32) / 255.0
    q = x_q.reshape(len(x_q), -1).astype(np.float32) / 255.0
    index = spqindex.Index.train(db, M=bits // 4, nbits=4, metric="l2", seed=seed)
    index.add(db)
    return index.search(q, top_n)[1]


def raw_pixel_pq(x_db, x_q, y_db, y_q, bits: int, top_n: int, seed: int) -> dict:
    t = time.perf_counter()
    ids = raw_pixel_pq_ids(x_db, x_q, bits, top_n, seed)
    return {"map": map_at_n(ids, y_q, y_db, top_n), "seconds": round(time.perf_counter() - t, 1)}


def spq(x_db, x_q, y_db, y_q, bits: int, args) -> dict:
    t = time.perf_counter()
    cfg = SPQConfig(
        bits=bits,
        lr=args.lr,
        batch_size=args.batch_size,
        crop_scale=(args.crop_scale, 1.0),
        tau=args.tau,
        tau_q=args.tau_q,
        seed=args.seed,
        normalize_subspaces=args.normalize_subspaces,
    )
    model = SPQModel(cfg, args.backbone)
    run = os.path.join(args.out, f"spq{bits}")
    # Periodic evaluation on 2,000 of the test queries (the final score below uses all 10,000).
    rows = np.random.default_rng(args.seed).choice(len(x_q), min(2000, len(x_q)), replace=False)
    eval_data = ((x_q[rows], y_q[rows]), (x_db, y_db)) if args.eval_every else None
    history = fit(
        model,
        x_db,
        epochs=args.epochs,
        device="cpu",
        checkpoint_dir=run,
        resume=True,
        progress=True,
        eval_data=eval_data,
        eval_every=args.eval_every or args.epochs + 1,
        top_n=args.top_n,
    )
    train_s = sum(h["seconds"] for h in history)
    scores = retrieval_scores(model.to("cpu"), (x_q, y_q), (x_db, y_db), args.top_n)
    curve = [{"epoch": h["epoch"], "map_2k_queries": round(h["map"], 4)} for h in history if "map" in h]
    row = {
        "map": scores["map"],
        "p@100": scores["p@100"],
        "epochs": args.epochs,
        "backbone": args.backbone,
        "curve": curve,
        "train_seconds": round(train_s, 1),
        "final_loss": history[-1]["loss"],
        "config": cfg.to_dict(),
    }
    if args.refine_iters:
        # Lloyd rounds on the learned codebooks over the database (= training) images' features; no labels.
        stats = model.refine_codebooks(x_db, args.refine_iters)
        refined = retrieval_scores(model, (x_q, y_q), (x_db, y_db), args.top_n)
        model.save(os.path.join(run, "model-refined.pt"))
        row["refined"] = {"iters": args.refine_iters, "map": refined["map"], "p@100": refined["p@100"], **stats}
    row["seconds"] = round(time.perf_counter() - t, 1)
    return row


def print_table(out: str) -> None:
    rows = []
    for name in sorted(os.listdir(out)):
        if name.startswith("result-") and name.endswith(".json"):
            with open(os.path.join(out, name)) as f:
                rows.append(json.load(f))
    rows.sort(key=lambda r: r["bits"])
    if not rows:
        raise SystemExit(f"no result-*.json in {out}")
    print(f"Fashion-MNIST: database 60000 train, queries 10000 test, mAP@{rows[0]['top_n']}; {rows[0]['machine']}")
    print(
        "| bits | classic PQ, raw pixels | SPQ, from scratch | SPQ + Lloyd refinement | SPQ epochs | "
        "SPQ train time | wall time |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        refined = r["spq"].get("refined")
        refined = f"{refined['map']:.4f} ({refined['iters']} rounds)" if refined else "-"
        print(
            f"| {r['bits']} | {r['pq']['map']:.4f} | {r['spq']['map']:.4f} | {refined} | {r['spq']['epochs']} | "
            f"{r['spq']['train_seconds'] / 60:.1f} min | {r['wall_seconds'] / 60:.1f} min |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--crop-scale", type=float, default=0.8, help="smallest RandomResizedCrop area")
    p.add_argument("--tau", type=float, default=0.3, help="CQC loss temperature")
    p.add_argument("--tau-q", type=float, default=5.0, help="soft-quantization scale")
    p.add_argument("--backbone", default="cnn28", choices=("cnn28", "cnn28_deep"))
    p.add_argument(
        "--normalize-subspaces",
        action="store_true",
        help="SPQConfig(normalize_subspaces=True): unit-norm sub-vectors and codewords (not in the paper)",
    )
    p.add_argument(
        "--refine-iters",
        type=int,
        default=10,
        help="also score SPQ after this many Lloyd rounds on its codebooks (0: skip)",
    )
    p.add_argument("--eval-every", type=int, default=0, help="mAP on 2,000 test queries every N epochs (0: never)")
    p.add_argument("--top-n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--out", default="runs/fmnist-results")
    p.add_argument("--table", action="store_true", help="only print the table of the results in --out")
    args = p.parse_args()
    if args.table:
        print_table(args.out)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    x_db, y_db = datasets.fashion_mnist("train")
    x_q, y_q = datasets.fashion_mnist("test")
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, CPU only, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads per run"
    )
    for bits in args.bits:
        t0 = time.perf_counter()
        pq = raw_pixel_pq(x_db, x_q, y_db, y_q, bits, args.top_n, args.seed)
        print(json.dumps({"bits": bits, "method": "pq-raw-pixels", **pq}), flush=True)
        sq = spq(x_db, x_q, y_db, y_q, bits, args)
        print(json.dumps({"bits": bits, "method": "spq", **sq}), flush=True)
        row = {
            "bits": bits,
            "top_n": args.top_n,
            "machine": machine,
            "args": vars(args),
            "pq": pq,
            "spq": sq,
            "wall_seconds": round(time.perf_counter() - t0),
        }
        with open(os.path.join(args.out, f"result-{bits}.json"), "w") as f:
            json.dump(row, f, indent=1)
    print_table(args.out)


if __name__ == "__main__":
    main()
