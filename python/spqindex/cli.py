"""The ``spqindex`` command line: train, eval, index, search, demo."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

DATA_HELP = (
    "dataset: 'fashion-mnist', 'cifar10', a folder of class sub-folders, or an .npz with "
    "'images' (uint8 N,H,W[,C]) and 'labels'"
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int, what: str):
    """An argparse type: an int >= low, with a one-line error naming what was expected."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return v

    return parse


_positive = _int_at_least(1, "positive")
_nonneg = _int_at_least(0, "non-negative")


def _float_in(high: float, what: str):
    """An argparse type: a float in (0, high], with a one-line error naming what was expected."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not 0 < v <= high or v == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    return parse


_unit = _float_in(1.0, "a number in (0, 1]")
_positive_float = _float_in(float("inf"), "a positive number")


def _add_data(p, split_default: Optional[str] = None) -> None:
    p.add_argument("--data", default="fashion-mnist", help=DATA_HELP + " (default: fashion-mnist)")
    p.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="folder holding the dataset files (default: $SPQINDEX_DATA, then the Debian package's folder)",
    )
    if split_default is not None:
        p.add_argument(
            "--split",
            choices=("train", "test"),
            default=split_default,
            help=f"which split of a named dataset (default: {split_default})",
        )


def _add_runtime(p) -> None:
    p.add_argument(
        "--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:N' (default: auto)"
    )
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads for PyTorch (default: all cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spqindex", description="Self-supervised product quantization (SPQ): train, index, search.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="train an SPQ model on unlabeled images",
        description="Train SPQ on the train split; evaluate mAP@N with test-split queries against the "
        "train split as database. Writes OUT/model.pt, OUT/checkpoint.pt, OUT/log.jsonl.",
    )
    _add_data(p)
    p.add_argument("--out", default="runs/spq", help="run folder (default: runs/spq)")
    p.add_argument("--bits", type=_positive, default=32, help="code length; M = bits / log2(K) (default: 32)")
    p.add_argument("--K", type=_positive, default=16, help="codewords per codebook, a power of two (default: 16)")
    p.add_argument("--dsub", type=_positive, default=16, help="sub-space dimension (default: 16)")
    p.add_argument(
        "--backbone",
        choices=("auto", "cnn28", "cnn28_deep", "resnet18_cifar", "efficientnet_lite0"),
        default="auto",
        help="auto: cnn28 for 28x28 gray images, else resnet18_cifar (default: auto)",
    )
    p.add_argument("--epochs", type=_positive, default=50, help="training epochs (default: 50)")
    p.add_argument("--batch-size", type=_positive, default=256, help="batch size, over all processes (default: 256)")
    p.add_argument("--lr", type=_positive_float, default=3e-4, help="Adam learning rate (default: 3e-4)")
    p.add_argument("--tau", type=_positive_float, default=0.5, help="temperature of the CQC loss (default: 0.5)")
    p.add_argument(
        "--tau-q",
        type=_positive_float,
        default=5.0,
        help="soft-quantization scale: softmax(-tau_q * squared distance) (default: 5)",
    )
    p.add_argument(
        "--normalize-subspaces",
        action="store_true",
        help="soft-quantize unit-norm sub-vectors with unit-norm codewords; features and codebooks are "
        "exported normalised per sub-space (not in the paper; better codes with few codebooks)",
    )
    p.add_argument(
        "--queue-size",
        type=_nonneg,
        default=0,
        help="past steps' quantized outputs kept as extra negatives of the CQC loss, up to this many "
        "(not in the paper; default: 0, off)",
    )
    p.add_argument(
        "--class-prior",
        type=float,
        default=0.0,
        help="debiased negatives of the CQC loss: the share of a sample's negatives expected to be of its own "
        "class, e.g. 0.1 for 10 balanced classes (not in the paper; default: 0, off)",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast on the CPU too (faster on CPUs with AVX512-BF16 or AMX; always on with CUDA)",
    )
    p.add_argument(
        "--refine-iters",
        type=_nonneg,
        default=0,
        help="after training, this many Lloyd (k-means) rounds on the codebooks over the training "
        "images' features; not part of SPQ, helps with few codebooks (default: 0)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="cosine over the whole run, or constant (default: cosine)",
    )
    p.add_argument("--crop-scale", type=_unit, default=0.08, help="smallest RandomResizedCrop area (default: 0.08)")
    p.add_argument("--train-size", type=_nonneg, default=0, help="train on a random subset of this size (0: all)")
    p.add_argument("--eval-every", type=_nonneg, default=5, help="evaluate every N epochs and at the end (0: never)")
    p.add_argument(
        "--eval-queries", type=_nonneg, default=1000, help="test queries for evaluation (0: all; default 1000)"
    )
    p.add_argument("--top-n", type=_positive, default=1000, help="N of mAP@N (default: 1000)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_runtime(p)

    p = sub.add_parser(
        "eval",
        help="mAP@N of a trained model (test queries vs train database)",
        description="Index the train split with the model's codebooks, search the test split, print "
        "mAP@N and precision@100.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a model file (a run's model.pt, or a published models/fmnist-spq32.pt), or a run folder",
    )
    _add_data(p)
    p.add_argument("--top-n", type=_positive, default=1000, help="N of mAP@N (default: 1000)")
    p.add_argument("--queries", type=_nonneg, default=0, help="use this many test queries (0: all)")
    p.add_argument("--db-size", type=_nonneg, default=0, help="use this many database images (0: all)")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    _add_runtime(p)

    p = sub.add_parser(
        "index",
        help="build and save an index of a dataset with a trained model",
        description="Embed a dataset split with the model, encode it with the model's codebooks "
        "(metric 'spq'), and save the index file.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a model file (a run's model.pt, or a published models/fmnist-spq32.pt), or a run folder",
    )
    _add_data(p, split_default="train")
    p.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="index every image file under DIR instead of a dataset; the file names go to OUT.names.json",
    )
    p.add_argument("--out", required=True, help="index file to write")
    _add_runtime(p)

    p = sub.add_parser(
        "search",
        help="search a saved index with dataset images or image files",
        description="Print, for each query, the ids (rows of the indexed split) of the k nearest "
        "items, best first, with their distances.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a model file (a run's model.pt, or a published models/fmnist-spq32.pt), or a run folder",
    )
    p.add_argument("--index", required=True, help="index file written by 'spqindex index'")
    _add_data(p, split_default="test")
    p.add_argument(
        "--query",
        type=_nonneg,
        nargs="*",
        default=None,
        metavar="ROW",
        help="rows of the dataset split to use as queries (default: row 0)",
    )
    p.add_argument(
        "--image",
        nargs="*",
        default=None,
        metavar="FILE",
        help="image files to use as queries instead (resized to the model's input size)",
    )
    p.add_argument("-k", type=_positive, default=10, help="results per query (default: 10)")
    p.add_argument(
        "--grid",
        default=None,
        metavar="PNG",
        help="with --image and an index of an image folder: write the queries and their results as a grid",
    )
    _add_runtime(p)

    p = sub.add_parser(
        "demo",
        help="train a small SPQ on Fashion-MNIST on CPU and compare with classic PQ",
        description="Trains SPQ (32 bits) on Fashion-MNIST within --minutes on CPU, indexes the "
        "60k train images, searches test queries, prints mAP@1000 of SPQ vs classic PQ "
        "on raw pixels at the same bits, and writes a retrieval grid and a training curve.",
    )
    p.add_argument("--out", default="spqindex-demo", help="output folder (default: spqindex-demo)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="folder holding the Fashion-MNIST files")
    p.add_argument("--bits", type=_positive, default=32, help="code length (default: 32)")
    p.add_argument(
        "--minutes",
        type=_positive_float,
        default=5.0,
        help="time budget of the whole demo; epochs and training images are set from the training "
        "speed measured at startup (default: 5)",
    )
    p.add_argument("--epochs", type=_positive, default=None, help="training epochs (default: set by --minutes)")
    p.add_argument(
        "--train-size", type=_nonneg, default=None, help="training images, 0 = all 60000 (default: set by --minutes)"
    )
    p.add_argument("--queries", type=_positive, default=None, help="test queries for mAP (default: 1000)")
    p.add_argument("--db-size", type=_nonneg, default=None, help="database images (default: 0 = all 60000)")
    p.add_argument("--quick", action="store_true", help="a tiny run for smoke tests (seconds, meaningless numbers)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_runtime(p)

    p = sub.add_parser(
        "verify",
        help="check an index file completely without loading it",
        description="Checks the checksum, header, codebooks, codes and ids of an index file "
        "(version-2 files are memory-mapped, not read into memory) and prints a summary.",
    )
    p.add_argument("path", help="index file")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")

    p = sub.add_parser(
        "upgrade",
        help="convert an index file to the current format version",
        description="Reads OLD (any supported version, fully verified) and writes NEW in the "
        "current format, atomically. OLD and NEW may be the same path.",
    )
    p.add_argument("old", metavar="OLD", help="index file to read")
    p.add_argument("new", metavar="NEW", help="index file to write")

    p = sub.add_parser(
        "merge",
        help="merge index files into one, streaming",
        description="Writes OUT holding every vector of IN... in order (as Index.merge_from "
        "would), streaming the inputs instead of loading them; written atomically. "
        "Inputs need the same codebooks and metric and the current format version.",
    )
    p.add_argument("out", metavar="OUT", help="index file to write")
    p.add_argument("inputs", metavar="IN", nargs="+", help="index files to merge")
    p.add_argument(
        "--shift-ids",
        action="store_true",
        help="renumber each input's ids after the ids so far (else a repeated id is an error)",
    )
    from .distributed.cli import add_parser as add_shard_parser  # spqindex shard build|search|info

    add_shard_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        if getattr(args, "run", None) is not None:  # commands that live in their own module
            return args.run(args)
        from . import commands

        return getattr(commands, args.command)(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, OSError) as e:
        print(f"spqindex {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"spqindex {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
