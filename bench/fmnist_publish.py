"""Publish a trained Fashion-MNIST SPQ model: models/fmnist-spq<bits>.pt, its SHA-256 and full-protocol mAP@1000.

    python bench/fmnist_publish.py models/checkpoints/fmnist-v4/spq32/model.pt --threads 1

Copies the model (``SPQModel.save``: tensors and plain values only) to models/fmnist-spq<bits>.pt, then scores
THAT file the way an outside check does: ``SPQModel.load``, ``model.embed`` of the 60k train images (database)
and the 10k test images (queries), ``model.build_index``, search top 1000, mAP@1000. The row (file, SHA-256,
mAP, P@100, epochs, the command) goes into models/fmnist-spq.json, which tests/train/test_published_models.py
checks against the file and docs/results.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time

import torch

from spqindex import datasets
from spqindex.metrics import map_at_n, precision_at_k
from spqindex.train import SPQModel

MANIFEST = os.path.join("models", "fmnist-spq.json")


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def full_protocol_map(path: str, top_n: int = 1000) -> dict:
    """mAP@top_n and P@100 of the model file at ``path``: 60k train images as database, 10k test queries."""
    x_db, y_db = datasets.fashion_mnist("train")
    x_q, y_q = datasets.fashion_mnist("test")
    model = SPQModel.load(path)
    index = model.build_index(x_db)
    _, ids = index.search(model.embed(x_q), top_n)
    return {"map": map_at_n(ids, y_q, y_db, top_n), "p@100": precision_at_k(ids, y_q, y_db, 100)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="model.pt of a finished (or stopped) training run")
    p.add_argument("--command", default=None, help="the training command to record (default: from log.jsonl's run)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = SPQModel.load(args.model)
    bits = model.cfg.bits
    out = os.path.join("models", f"fmnist-spq{bits}.pt")
    os.makedirs("models", exist_ok=True)
    model.save(out)
    t = time.perf_counter()
    scores = full_protocol_map(out)
    log = os.path.join(os.path.dirname(args.model), "log.jsonl")
    epochs = sum(1 for _ in open(log)) if os.path.exists(log) else None
    row = {
        "file": out,
        "sha256": sha256(out),
        "bytes": os.path.getsize(out),
        "bits": bits,
        "map@1000": round(scores["map"], 4),
        "p@100": round(scores["p@100"], 4),
        "epochs_trained": epochs,
        "config": model.cfg.to_dict(),
        "backbone": model.backbone_name,
        "refine_iters": model.refine_iters,
        "train_command": args.command,
        "publish_command": shlex.join(["python"] + sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "score_seconds": round(time.perf_counter() - t, 1),
    }
    manifest = {}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            manifest = json.load(f)
    manifest[os.path.basename(out)] = row
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
