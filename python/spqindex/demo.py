"""``spqindex demo``: SPQ on Fashion-MNIST on CPU in minutes, versus classic PQ on raw pixels."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from . import datasets

_DEFAULTS = {"epochs": 4, "train_size": 0, "queries": 1000, "db_size": 0}
_QUICK = {"epochs": 1, "train_size": 512, "queries": 64, "db_size": 1024}


def _settings(args) -> dict:
    base = _QUICK if args.quick else _DEFAULTS
    return {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}


def _pick(images, labels, size: int, seed: int):
    if not size or size >= len(images):
        return images, labels
    rows = np.sort(np.random.default_rng(seed).choice(len(images), size, replace=False))
    return images[rows], labels[rows]


def run_demo(args) -> int:
    import spqindex
    from .metrics import map_at_n, precision_at_k
    from .train import SPQConfig, SPQModel, fit
    from .train.trainer import resolve_device

    s = _settings(args)
    t_start = time.perf_counter()
    x_train, y_train = datasets.fashion_mnist("train", args.data_root)
    x_test, y_test = datasets.fashion_mnist("test", args.data_root)
    x_db, y_db = _pick(x_train, y_train, s["db_size"], args.seed)
    x_q, y_q = _pick(x_test, y_test, s["queries"], args.seed)
    x_fit, _ = _pick(x_train, y_train, s["train_size"], args.seed + 1)
    top_n = min(1000, len(x_db))
    os.makedirs(args.out, exist_ok=True)

    # Short-run settings for CPU (the paper's lr 3e-4, batch 256, tau 0.5 and crops down to 8% are
    # tuned for thousands of epochs); chosen by small sweeps, see docs/training.md.
    cfg = SPQConfig(bits=args.bits, lr=1e-3, batch_size=min(64, len(x_fit)), tau=0.3, crop_scale=(0.8, 1.0),
                    seed=args.seed)
    model = SPQModel(cfg, "cnn28")
    rows = []

    def score(name, ids, seconds):
        rows.append({"method": name, "bits": args.bits, "map": map_at_n(ids, y_q, y_db, top_n),
                     "p@100": precision_at_k(ids, y_q, y_db, min(100, top_n)), "seconds": round(seconds, 1)})

    t = time.perf_counter()
    _, ids = model.build_index(x_db).search(model.embed(x_q), top_n)
    score("SPQ, untrained network", ids, time.perf_counter() - t)

    print(f"training SPQ ({args.bits} bits, M={cfg.M}, K={cfg.K}) on {len(x_fit)} Fashion-MNIST images "
          f"for {s['epochs']} epochs on {resolve_device(args.device)} ...", flush=True)
    t = time.perf_counter()
    history = fit(model, x_fit, epochs=s["epochs"], device=args.device, checkpoint_dir=args.out,
                  progress=True, record_steps=True)
    train_seconds = time.perf_counter() - t
    model.to("cpu")
    t = time.perf_counter()
    index = model.build_index(x_db)
    _, ids_spq = index.search(model.embed(x_q), top_n)
    score("SPQ (this run)", ids_spq, train_seconds + time.perf_counter() - t)
    index.save(os.path.join(args.out, "index.spqi"))

    # Not part of SPQ: Lloyd rounds on the learned codebooks over the training images' features.
    t = time.perf_counter()
    model.refine_codebooks(x_fit, iters=10)
    _, ids = model.build_index(x_db).search(model.embed(x_q), top_n)
    score("SPQ + 10 Lloyd rounds", ids, time.perf_counter() - t)

    t = time.perf_counter()
    M = cfg.M
    pixels_db = x_db.reshape(len(x_db), -1).astype(np.float32) / 255.0
    pixels_q = x_q.reshape(len(x_q), -1).astype(np.float32) / 255.0
    if pixels_db.shape[1] % M:
        raise ValueError(f"{args.bits} bits gives M={M}, which does not divide the 784 pixels")
    pq = spqindex.Index.train(pixels_db, M=M, nbits=cfg.nbits, metric="l2", seed=args.seed)
    pq.add(pixels_db)
    _, ids_pq = pq.search(pixels_q, top_n)
    score("classic PQ on raw pixels", ids_pq, time.perf_counter() - t)

    grid = os.path.join(args.out, "retrieval_grid.png")
    curve = os.path.join(args.out, "training_curve.png")
    _plot_grid(grid, x_q, y_q, x_db, y_db, ids_spq, ids_pq, args.seed)
    _plot_curve(curve, history)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"settings": s, "bits": args.bits, "queries": len(x_q), "database": len(x_db),
                   "top_n": top_n, "rows": rows}, f, indent=1)

    print()
    print(f"Fashion-MNIST, {len(x_q)} test queries, database {len(x_db)} train images, {args.bits}-bit codes")
    print(f"{'method':<28} {'mAP@' + str(top_n):>9} {'P@100':>7} {'seconds':>8}")
    for r in rows:
        print(f"{r['method']:<28} {r['map']:>9.4f} {r['p@100']:>7.4f} {r['seconds']:>8.1f}")
    print()
    print(f"retrieval grid: {grid}")
    print(f"training curve: {curve}")
    print(f"output folder:  {os.path.abspath(args.out)}  (total {time.perf_counter() - t_start:.0f} s)")
    return 0


def _plot_grid(path, x_q, y_q, x_db, y_db, ids_spq, ids_pq, seed, n_queries=6, k=10):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    picks = np.random.default_rng(seed).choice(len(x_q), min(n_queries, len(x_q)), replace=False)
    fig, axes = plt.subplots(2 * len(picks), k + 1, figsize=(k + 1, 2.1 * len(picks)))
    for r, qi in enumerate(picks):
        for block, (name, ids) in enumerate((("SPQ", ids_spq), ("PQ pixels", ids_pq))):
            row = axes[2 * r + block]
            row[0].imshow(x_q[qi], cmap="gray")
            row[0].set_title(f"query ({name})", fontsize=6)
            for j in range(k):
                ax = row[j + 1]
                hit = ids[qi, j]
                ax.imshow(x_db[hit], cmap="gray")
                if y_db[hit] != y_q[qi]:
                    ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor="red", lw=3))
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle("Top-10 per query; red frame = wrong class", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_curve(path, history):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [v for h in history for v in h.get("step_losses", [h["loss"]])]
    per_epoch = max(1, len(losses) // max(1, len(history)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(losses) + 1) / per_epoch, losses, lw=0.8, label="CQC loss per step")
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], "o-", label="epoch mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("SPQ training on Fashion-MNIST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
