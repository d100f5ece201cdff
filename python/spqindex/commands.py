"""Implementations of the ``spqindex`` sub-commands (argument parsing lives in cli.py)."""

from __future__ import annotations

import json
import os
import time
from typing import Tuple

import numpy as np

from . import datasets

_NAMED = ("fashion-mnist", "fashion_mnist", "fmnist", "cifar10", "cifar-10")


def load_split(name: str, split: str, root=None, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A named dataset's split; for a folder or .npz, 'test' is a held-out 10% (at most 1000) and 'train' the rest."""
    if name in _NAMED:
        return datasets.load(name, split, root)
    images, labels = datasets.load(name, root=root)
    n_test = min(1000, max(1, len(images) // 10))
    perm = np.random.default_rng(seed).permutation(len(images))
    rows = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    return images[rows], labels[rows]


def subset(images, labels, size: int, seed: int):
    """A random subset of ``size`` rows (all rows when size is 0 or too large), in original order."""
    if not size or size >= len(images):
        return images, labels
    rows = np.sort(np.random.default_rng(seed).choice(len(images), size, replace=False))
    return images[rows], labels[rows]


def load_model(path: str, device: str = "auto"):
    from .train.model import SPQModel
    from .train.trainer import resolve_device

    if os.path.isdir(path):
        path = os.path.join(path, "model.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r} (expected model.pt written by 'spqindex train')")
    return SPQModel.load(path).to(resolve_device(device))


def train(args) -> int:
    from .train import SPQConfig, SPQModel, fit

    x_train, y_train = load_split(args.data, "train", args.data_root, args.seed)
    x_fit, _ = subset(x_train, y_train, args.train_size, args.seed)
    eval_data = None
    if args.eval_every:
        x_test, y_test = load_split(args.data, "test", args.data_root, args.seed)
        eval_data = (subset(x_test, y_test, args.eval_queries, args.seed), (x_train, y_train))
    backbone = args.backbone
    if backbone == "auto":
        backbone = "cnn28" if x_train.ndim == 3 and x_train.shape[1:] == (28, 28) else "resnet18_cifar"
    channels = 1 if x_train.ndim == 3 else x_train.shape[3]
    cfg = SPQConfig(
        bits=args.bits,
        K=args.K,
        dsub=args.dsub,
        lr=args.lr,
        tau=args.tau,
        tau_q=args.tau_q,
        batch_size=args.batch_size,
        lr_schedule=args.lr_schedule,
        crop_scale=(args.crop_scale, 1.0),
        seed=args.seed,
        normalize_subspaces=args.normalize_subspaces,
        queue_size=args.queue_size,
        class_prior=args.class_prior,
    )
    model = SPQModel(cfg, backbone, in_channels=channels)
    t0 = time.perf_counter()
    history = fit(
        model,
        x_fit,
        epochs=args.epochs,
        device=args.device,
        eval_data=eval_data,
        checkpoint_dir=args.out,
        resume=args.resume,
        eval_every=args.eval_every or args.epochs + 1,
        top_n=args.top_n,
        progress=not args.quiet,
        bf16=args.bf16 or None,
    )
    last = history[-1] if history else {}
    score = f", mAP@{args.top_n} {last['map']:.4f}" if "map" in last else ""
    print(
        f"trained {len(history)} epochs in {time.perf_counter() - t0:.0f} s{score}; model: "
        f"{os.path.join(args.out, 'model.pt')}"
    )
    if args.refine_iters:
        stats = model.refine_codebooks(x_fit, args.refine_iters)
        if eval_data is not None:
            from .train.evaluate import retrieval_scores

            refined = retrieval_scores(model, *eval_data, args.top_n)
            score = f", mAP@{args.top_n} {refined['map']:.4f}"
        model.save(os.path.join(args.out, "model.pt"))
        print(
            f"refined the codebooks with {args.refine_iters} Lloyd rounds: quantization error "
            f"{stats['mse_before']:.4g} -> {stats['mse_after']:.4g}{score}"
        )
    return 0


def eval(args) -> int:  # noqa: A001 - the sub-command's name
    from .train.evaluate import retrieval_scores

    model = load_model(args.checkpoint, args.device)
    x_db, y_db = subset(*load_split(args.data, "train", args.data_root), args.db_size, 0)
    x_q, y_q = subset(*load_split(args.data, "test", args.data_root), args.queries, 0)
    scores = retrieval_scores(model, (x_q, y_q), (x_db, y_db), args.top_n)
    scores.update(queries=len(x_q), database=len(x_db), top_n=min(args.top_n, len(x_db)))
    if args.json:
        print(json.dumps(scores))
    else:
        line = f"mAP@{scores['top_n']} {scores['map']:.4f}"
        if "p@100" in scores:
            line += f"  P@100 {scores['p@100']:.4f}"
        print(f"{line}  ({len(x_q)} queries, {len(x_db)} database images)")
    return 0


def index(args) -> int:
    from . import image_files

    model = load_model(args.checkpoint, args.device)
    if args.images:
        names = image_files.list_images(args.images)
        images = _read_images([os.path.join(args.images, n) for n in names], model)
    else:
        images, _ = load_split(args.data, args.split, args.data_root)
    idx = model.build_index(images)
    idx.save(args.out)
    if args.images:
        image_files.save_names(args.out, args.images, names)
    print(f"indexed {len(idx)} images ({idx.code_size} bytes each) -> {args.out}")
    return 0


def search(args) -> int:
    import spqindex
    from . import image_files

    model = load_model(args.checkpoint, args.device)
    idx = spqindex.Index.load(args.index)
    if args.image:
        names, queries = args.image, _read_images(args.image, model)
    else:
        images, _ = load_split(args.data, args.split, args.data_root)
        rows = args.query if args.query else [0]
        bad = [r for r in rows if r >= len(images)]
        if bad:
            raise ValueError(f"--query rows {bad} are out of range: the {args.split} split has {len(images)} images")
        names, queries = [f"{args.split}[{r}]" for r in rows], images[np.asarray(rows)]
    D, I = idx.search(model.embed(queries), args.k)
    files = image_files.load_names(args.index)
    for name, d, i in zip(names, D, I):
        hits = [a if files is None else files[1][a] for a in i.tolist() if a >= 0]
        print(f"{name}: " + " ".join(f"{h}({b:.3f})" for h, b in zip(hits, d.tolist())))
    if args.grid:
        if files is None or not args.image:
            raise ValueError("--grid: needs --image queries and an index made with 'spqindex index --images'")
        image_files.write_grid(
            args.grid, args.image, [[os.path.join(files[0], files[1][a]) for a in i.tolist() if a >= 0] for i in I]
        )
        print(f"grid: {args.grid}")
    return 0


def _read_images(paths, model) -> np.ndarray:
    from PIL import Image

    from .train.backbones import GRAY28_BACKBONES

    out = []
    gray = model.in_channels == 1
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("L" if gray else "RGB")
            if model.backbone_name in GRAY28_BACKBONES:
                im = im.resize((28, 28), Image.BILINEAR)
            elif model.backbone_name == "resnet18_cifar":
                im = im.resize((32, 32), Image.BILINEAR)
            out.append(np.asarray(im, dtype=np.uint8))
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"query images have different sizes {sorted(shapes)}; resize them to one size")
    return np.stack(out)


def demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def verify(args) -> int:
    from . import _core

    summary = _core.verify_file(args.path)
    if args.json:
        print(json.dumps(summary))
    else:
        ids = "stored" if summary["ids_stored"] else "implicit (0..n-1)"
        print(
            f"{args.path}: ok (format version {summary['version']}, {summary['ntotal']} vectors, "
            f"dim {summary['dim']}, M {summary['M']}, nbits {summary['nbits']}, "
            f"metric {summary['metric']}, ids {ids})"
        )
    return 0


def upgrade(args) -> int:
    import spqindex

    idx = spqindex.Index.load(args.old)
    idx.save(args.new)
    print(f"{args.old} -> {args.new}: {len(idx)} vectors, format version 2")
    return 0


def merge(args) -> int:
    import spqindex
    from . import _core

    _core.merge_files(args.out, list(args.inputs), bool(args.shift_ids))
    n = len(spqindex.Index.load(args.out, mmap=True, verify=False))
    print(f"merged {len(args.inputs)} files -> {args.out}: {n} vectors")
    return 0
