"""``spqindex demo``: SPQ on Fashion-MNIST on CPU within a time budget, versus classic PQ on raw pixels."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from . import datasets

_DEFAULTS = {"epochs": None, "train_size": None, "queries": 1000, "db_size": 0}  # None: set by the time budget
_QUICK = {"epochs": 1, "train_size": 512, "queries": 64, "db_size": 1024}
_MARGIN = 0.85  # share of the time left for training that it is planned to take (speed varies under load)
_EVAL_SHARE = 0.35  # at most this share of the budget goes to the two embedding passes (it sizes the database)
_FIXED_S = 15.0  # classic PQ, plots, files
_BF16_GAIN = 1.2  # CPU bf16 autocast is used when it trains at least this much faster than float32
_MIN_TRAIN = 512


def _settings(args) -> dict:
    base = _QUICK if args.quick else _DEFAULTS
    return {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}


def _pick(images, labels, size: int, seed: int):
    if not size or size >= len(images):
        return images, labels
    rows = np.sort(np.random.default_rng(seed).choice(len(images), size, replace=False))
    return images[rows], labels[rows]


def plan_training(seconds: float, images_per_s: float, available: int, epochs=None, train_size=None) -> tuple:
    """(epochs, train_size) that train in about ``seconds`` at ``images_per_s``; given values are kept.

    All ``available`` images for as many whole epochs as fit, else one epoch on the subset that fits
    (at least 512 images).
    """
    if not images_per_s > 0:
        raise ValueError(f"images_per_s must be > 0, got {images_per_s!r}")
    budget = max(0.0, seconds) * images_per_s  # images (pairs of views) that fit
    if train_size == 0:
        train_size = available
    if train_size is None:
        if epochs is None:
            train_size = available if budget >= available else int(budget)
        else:
            train_size = int(budget / epochs)
        train_size = min(available, max(_MIN_TRAIN, train_size))
    if epochs is None:
        epochs = max(1, int(budget // train_size))
    return epochs, train_size


def run_demo(args) -> int:
    import spqindex
    from .metrics import map_at_n, precision_at_k
    from .pq import refine_codebooks
    from .train import SPQConfig, SPQModel, fit
    from .train.trainer import resolve_device, training_throughput

    s = _settings(args)
    budget_s = 60.0 * args.minutes
    t_start = time.perf_counter()
    x_train, y_train = datasets.fashion_mnist("train", args.data_root)
    x_test, y_test = datasets.fashion_mnist("test", args.data_root)
    x_q, y_q = _pick(x_test, y_test, s["queries"], args.seed)
    os.makedirs(args.out, exist_ok=True)
    device = resolve_device(args.device)

    # Short-run settings for CPU (the paper's lr 3e-4, batch 256, tau 0.5 and crops down to 8% are
    # tuned for thousands of epochs); chosen by small sweeps, see docs/training.md.
    cfg = SPQConfig(bits=args.bits, lr=1e-3, batch_size=64, tau=0.3, crop_scale=(0.8, 1.0), seed=args.seed)
    model = SPQModel(cfg, "cnn28")

    # The time budget: measure embedding and training speed here, then size the database (two embedding
    # passes: untrained and trained network) and the training (epochs, images) to fit what is left.
    plan = {"minutes": args.minutes}
    bf16 = None  # fit's default: on with CUDA, off on the CPU
    if s["epochs"] is None or s["train_size"] is None:
        model.to(device).embed(x_train[:256])  # warm-up: the first batches run slower
        t = time.perf_counter()
        model.embed(x_train[256:1280])
        embed_ips = len(x_train[256:1280]) / (time.perf_counter() - t)
        train_ips = training_throughput(cfg, x_train, device)
        if device.type == "cpu":  # bf16 autocast where the CPU runs it faster (AVX512-BF16, AMX), else float32
            bf16_ips = training_throughput(cfg, x_train, device, bf16=True)
            if bf16_ips > _BF16_GAIN * train_ips:
                bf16, train_ips = True, bf16_ips
            plan["cpu_bf16"] = bool(bf16)
        left_s = budget_s - (time.perf_counter() - t_start) - _FIXED_S
        db_size = s["db_size"] or min(len(x_train), max(1000, int(_EVAL_SHARE * left_s * embed_ips / 2) - len(x_q)))
        train_s = _MARGIN * (left_s - 2 * (db_size + len(x_q)) / embed_ips)
        epochs, train_size = plan_training(train_s, train_ips, len(x_train), s["epochs"], s["train_size"])
        s.update(epochs=epochs, train_size=train_size, db_size=db_size)
        plan.update(
            {
                "measured_train_images_per_s": round(train_ips, 1),
                "measured_embed_images_per_s": round(embed_ips, 1),
                "training_seconds_planned": round(epochs * train_size / train_ips, 1),
            }
        )
        print(
            f"time budget {args.minutes:g} min: training {train_ips:.0f} images/s{' (bf16)' if bf16 else ''}, "
            f"embedding {embed_ips:.0f} "
            f"images/s (measured) -> {epochs} epochs on {train_size} images, database {db_size} images",
            flush=True,
        )
    x_db, y_db = _pick(x_train, y_train, s["db_size"], args.seed)
    x_fit, _ = _pick(x_train, y_train, s["train_size"], args.seed + 1)
    top_n = min(1000, len(x_db))
    rows = []

    def score(name, codebooks, feats_db, feats_q, seconds):
        index = spqindex.Index(codebooks, metric="spq")
        index.add(feats_db)
        _, ids = index.search(feats_q, top_n)
        rows.append(
            {
                "method": name,
                "bits": args.bits,
                "map": map_at_n(ids, y_q, y_db, top_n),
                "p@100": precision_at_k(ids, y_q, y_db, min(100, top_n)),
                "seconds": round(seconds, 1),
            }
        )
        return index, ids

    t = time.perf_counter()
    score("SPQ, untrained network", model.codebooks(), model.embed(x_db), model.embed(x_q), 0.0)
    rows[-1]["seconds"] = round(time.perf_counter() - t, 1)

    cfg.batch_size = min(64, len(x_fit))
    model = SPQModel(cfg, "cnn28")
    print(
        f"training SPQ ({args.bits} bits, M={cfg.M}, K={cfg.K}) on {len(x_fit)} Fashion-MNIST images "
        f"for {s['epochs']} epochs on {device} ...",
        flush=True,
    )
    t = time.perf_counter()
    history = fit(
        model,
        x_fit,
        epochs=s["epochs"],
        device=device,
        checkpoint_dir=args.out,
        progress=True,
        record_steps=True,
        bf16=bf16,
    )
    plan["training_seconds"] = round(time.perf_counter() - t, 1)
    model.to("cpu")
    feats_db, feats_q = model.embed(x_db), model.embed(x_q)
    index, ids_spq = score("SPQ (this run)", model.codebooks(), feats_db, feats_q, time.perf_counter() - t)
    index.save(os.path.join(args.out, "index.spqi"))

    # Not part of SPQ: Lloyd rounds on the learned codebooks over the database images' features (no labels).
    t = time.perf_counter()
    score("SPQ + 10 Lloyd rounds", refine_codebooks(feats_db, model.codebooks(), 10), feats_db, feats_q, 0.0)
    rows[-1]["seconds"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    M = cfg.M
    pixels_db = x_db.reshape(len(x_db), -1).astype(np.float32) / 255.0
    pixels_q = x_q.reshape(len(x_q), -1).astype(np.float32) / 255.0
    if pixels_db.shape[1] % M:
        raise ValueError(f"{args.bits} bits gives M={M}, which does not divide the 784 pixels")
    pq = spqindex.Index.train(pixels_db, M=M, nbits=cfg.nbits, metric="l2", seed=args.seed)
    pq.add(pixels_db)
    _, ids_pq = pq.search(pixels_q, top_n)
    rows.append(
        {
            "method": "classic PQ on raw pixels",
            "bits": args.bits,
            "map": map_at_n(ids_pq, y_q, y_db, top_n),
            "p@100": precision_at_k(ids_pq, y_q, y_db, min(100, top_n)),
            "seconds": round(time.perf_counter() - t, 1),
        }
    )

    grid = os.path.join(args.out, "retrieval_grid.png")
    curve = os.path.join(args.out, "training_curve.png")
    _plot_grid(grid, x_q, y_q, x_db, y_db, ids_spq, ids_pq, args.seed)
    _plot_curve(curve, history)
    total_s = time.perf_counter() - t_start
    plan["total_seconds"] = round(total_s, 1)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {
                "settings": s,
                "plan": plan,
                "bits": args.bits,
                "queries": len(x_q),
                "database": len(x_db),
                "top_n": top_n,
                "rows": rows,
            },
            f,
            indent=1,
        )

    print()
    print(f"Fashion-MNIST, {len(x_q)} test queries, database {len(x_db)} train images, {args.bits}-bit codes")
    print(f"{'method':<28} {'mAP@' + str(top_n):>9} {'P@100':>7} {'seconds':>8}")
    for r in rows:
        print(f"{r['method']:<28} {r['map']:>9.4f} {r['p@100']:>7.4f} {r['seconds']:>8.1f}")
    print()
    print(f"retrieval grid: {grid}")
    print(f"training curve: {curve}")
    print(f"output folder:  {os.path.abspath(args.out)}  (total {total_s:.0f} s, budget {budget_s:.0f} s)")
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
