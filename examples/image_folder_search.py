"""Image search over a plain folder of image files with a trained SPQ model, through the CLI.

1. a model: --model PATH (e.g. a published models/fmnist-spq32.pt), or else a tiny SPQ trained
   here on Fashion-MNIST (`spqindex train`, a few minutes on CPU);
2. a folder of PNG files: Fashion-MNIST test images named NNNNN-<class>.png;
3. `spqindex index --images DIR`, then `spqindex search --image FILE... --grid PNG`, which prints
   the top matches' file names;
4. precision@k of the class in the file names, over --queries images of the folder.

    python examples/image_folder_search.py --images 2000 --queries 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def cli(*args: str) -> str:
    cmd = [sys.executable, "-m", "spqindex.cli", *args]
    shown = args if len(args) < 24 else args[:23] + ("...",)
    print("$ spqindex " + " ".join(shown), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="trained SPQ model.pt (default: train a tiny one)")
    p.add_argument("--out", default="runs/image-folder", help="working folder")
    p.add_argument("--images", type=int, default=2000, help="test images written to the folder")
    p.add_argument("--queries", type=int, default=200, help="images of the folder used as queries for precision@k")
    p.add_argument("-k", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3, help="epochs of the tiny model")
    p.add_argument("--train-size", type=int, default=10000, help="training images of the tiny model")
    a = p.parse_args()

    from PIL import Image

    from spqindex import datasets

    os.makedirs(a.out, exist_ok=True)
    model = a.model
    if model is None:
        model = os.path.join(a.out, "tiny-spq", "model.pt")
        if not os.path.isfile(model):
            t0 = time.perf_counter()
            print(
                cli(
                    "train",
                    "--data",
                    "fashion-mnist",
                    "--out",
                    os.path.dirname(model),
                    "--bits",
                    "32",
                    "--epochs",
                    str(a.epochs),
                    "--train-size",
                    str(a.train_size),
                    "--eval-every",
                    "0",
                    "--batch-size",
                    "64",
                    "--lr",
                    "1e-3",
                    "--tau",
                    "0.3",
                    "--crop-scale",
                    "0.8",
                    "--quiet",
                )
            )
            print(f"(trained in {time.perf_counter() - t0:.0f} s)")

    folder = os.path.join(a.out, "fmnist-test-png")
    images, labels = datasets.fashion_mnist("test")
    names = []
    os.makedirs(folder, exist_ok=True)
    for i in range(min(a.images, len(images))):
        cls = datasets.FASHION_MNIST_CLASSES[labels[i]].replace("/", "-").replace(" ", "_").lower()
        names.append(f"{i:05d}-{cls}.png")
        if not os.path.isfile(os.path.join(folder, names[-1])):
            Image.fromarray(images[i]).save(os.path.join(folder, names[-1]))

    index = os.path.join(a.out, "fmnist-test.spqidx")
    print(cli("index", "--checkpoint", model, "--images", folder, "--out", index))
    queries = [os.path.join(folder, n) for n in names[:: max(1, len(names) // a.queries)][: a.queries]]
    grid = os.path.join(a.out, "grid.png")
    print(
        cli("search", "--checkpoint", model, "--index", index, "--image", *queries[:6], "-k", str(a.k), "--grid", grid)
    )
    lines = cli("search", "--checkpoint", model, "--index", index, "--image", *queries, "-k", str(a.k + 1)).splitlines()

    hits = []
    for q, line in zip(queries, lines):
        found = [tok.split("(")[0] for tok in line.split(": ", 1)[1].split()]
        found = [f for f in found if f != os.path.basename(q)][: a.k]  # the query itself is in the folder
        qcls = os.path.basename(q).split("-", 1)[1]
        hits.append(np.mean([f.split("-", 1)[1] == qcls for f in found]))
    print(
        f"# precision@{a.k} of the class in the file names: {np.mean(hits):.4f} "
        f"({len(queries)} queries, {len(names)} images, model {model})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
