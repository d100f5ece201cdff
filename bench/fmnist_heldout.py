"""Recipe experiments on Fashion-MNIST without touching the test split: a learning curve on held-out train images.

    python bench/fmnist_heldout.py --bits 16 --tau-q 5 --epochs 8 --step 2 --out runs/heldout-16-tq5

Trains SPQ (by default the fashion_mnist_results.py recipe: cnn28, lr 1e-3, batch 64, tau 0.3, crops 0.8-1) on 50,000
train images and, every --step epochs, scores 2,000 queries drawn from the other 10,000 train images against
those 50,000: mAP@1000 by exact cosine on the features, through the model's own codebooks (metric "spq"), and
through the codebooks after 10 Lloyd rounds (``SPQModel.refine_codebooks``); with the quantization error of
both. One JSON line per evaluation (also merged into OUT/log.jsonl); re-running with the same --out resumes.

    python bench/fmnist_heldout.py --table runs/a runs/b      # the learning curves of finished or running runs
"""

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

import spqindex
from spqindex import datasets
from spqindex.metrics import map_at_n
from spqindex.train import SPQConfig, SPQModel, fit


def codes_map(model, fd, fq, yq, yd) -> float:
    index = spqindex.Index(model.codebooks(), metric="spq")
    index.add(fd)
    return map_at_n(index.search(fq, 1000)[1], yq, yd, 1000)


def heldout_split():
    """(xd, yd, xq, yq): 50,000 train images as the database, 2,000 other train images as queries (fixed)."""
    x, y = datasets.fashion_mnist("train")
    perm = np.random.default_rng(123).permutation(len(x))
    return x[perm[:50000]], y[perm[:50000]], x[perm[50000:52000]], y[perm[50000:52000]]


def heldout_row(model, xd, yd, xq, yq) -> dict:
    """Held-out mAP@1000 by exact cosine on the features, through the model's codebooks and through refined
    codebooks, with the quantization errors: one row of a learning curve."""
    t = time.perf_counter()
    fd, fq = model.embed(xd), model.embed(xq)
    unit_d = fd / np.linalg.norm(fd, axis=1, keepdims=True)
    unit_q = fq / np.linalg.norm(fq, axis=1, keepdims=True)
    cosine_ids = torch.topk(torch.from_numpy(unit_q @ unit_d.T), 1000, dim=1).indices.numpy()
    refined = copy.deepcopy(model)
    stats = refined.refine_codebooks(xd, iters=10)
    return {
        "map_cosine": round(map_at_n(cosine_ids, yq, yd, 1000), 4),
        "map_codebooks": round(codes_map(model, fd, fq, yq, yd), 4),
        "map_refined": round(codes_map(refined, fd, fq, yq, yd), 4),
        "error_codebooks": round(stats["mse_before"], 4),
        "error_refined": round(stats["mse_after"], 4),
        "feature_sq_norm": round(float((fd**2).sum(1).mean()), 4),
        "heldout_seconds": round(time.perf_counter() - t),
    }


def fit_heldout(model, xd, epochs: int, out: str, on_epoch_end, **fit_args):
    """Train on the split's database images on the CPU, resuming from (and checkpointing to) ``out``."""
    return fit(
        model,
        xd,
        epochs=epochs,
        device="cpu",
        checkpoint_dir=out,
        resume=True,
        progress=False,
        on_epoch_end=on_epoch_end,
        **fit_args,
    )


def print_table(outs) -> None:
    """One row per evaluated epoch of each run's log.jsonl (held-out mAP@1000, quantization error)."""
    print(f"{'run':<28}{'epoch':>6}{'cosine':>8}{'codes':>8}{'refined':>9}{'err':>8}{'img/s':>7}")
    for out in outs:
        with open(os.path.join(out, "log.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for r in rows:
            if "map_codebooks" in r:
                print(
                    f"{os.path.basename(out.rstrip('/')):<28}{r['epoch']:>6}{r['map_cosine']:>8.4f}"
                    f"{r['map_codebooks']:>8.4f}{r['map_refined']:>9.4f}{r['error_codebooks']:>8.3f}"
                    f"{r['images_per_s']:>7.0f}"
                )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bits", type=int, default=16)
    p.add_argument("--tau-q", type=float, default=5.0)
    p.add_argument("--tau", type=float, default=0.3)
    p.add_argument("--normalize-subspaces", action="store_true", help="SPQConfig(normalize_subspaces=True)")
    p.add_argument("--queue-size", type=int, default=0, help="SPQConfig.queue_size (negatives from past steps)")
    p.add_argument("--class-prior", type=float, default=0.0, help="SPQConfig.class_prior (debiased negatives)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--crop-scale", type=float, default=0.8, help="smallest RandomResizedCrop area")
    p.add_argument("--seed", type=int, default=0, help="SPQConfig.seed (the split stays fixed)")
    p.add_argument("--backbone", default="cnn28", choices=["cnn28", "cnn28_deep"])
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="fit(bf16=True): bfloat16 autocast on the CPU")
    p.add_argument("--out")
    p.add_argument("--table", nargs="+", metavar="OUT", help="print the learning curves of these runs and exit")
    args = p.parse_args()
    if args.table:
        print_table(args.table)
        return
    if not args.out:
        p.error("--out is required to train")
    torch.set_num_threads(args.threads)
    xd, yd, xq, yq = heldout_split()
    cfg = SPQConfig(
        bits=args.bits,
        lr=args.lr,
        batch_size=args.batch_size,
        crop_scale=(args.crop_scale, 1.0),
        seed=args.seed,
        tau=args.tau,
        tau_q=args.tau_q,
        normalize_subspaces=args.normalize_subspaces,
        queue_size=args.queue_size,
        class_prior=args.class_prior,
    )
    model = SPQModel(cfg, args.backbone)

    def evaluate(epoch: int, model: SPQModel):
        if epoch % args.step and epoch != args.epochs:
            return None
        row = heldout_row(model, xd, yd, xq, yq)
        print(json.dumps({"epoch": epoch, **row}), flush=True)
        return row

    fit_heldout(model, xd, args.epochs, args.out, evaluate, bf16=args.bf16 or None)


if __name__ == "__main__":
    main()
