"""Image datasets as plain arrays: uint8 images (N, H, W) or (N, H, W, C) and labels (N,) or multi-hot (N, C).

Nothing here downloads. Fashion-MNIST is looked up in ``root``, then ``$SPQINDEX_DATA``, then the
Debian package's folder; a missing dataset raises FileNotFoundError saying how to get it.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ._cifar_pickle import load_cifar_batch

FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Dataset = Tuple[np.ndarray, np.ndarray]


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path!r} is not an IDX file (bad magic)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path!r}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(shape, dtype=np.int64)) if ndim else 1
    body = data[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"{path!r}: IDX header says {shape} ({count * dtype.itemsize} bytes), body has {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _find_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        p = folder / name
        if p.is_file():
            return p
    return None


def _candidate_dirs(root, subdir: str):
    if root is not None:
        yield Path(root)
        yield Path(root) / subdir
        return
    env = os.environ.get("SPQINDEX_DATA")
    if env:
        yield Path(env) / subdir
        yield Path(env)
    if subdir == "fashion-mnist":
        yield Path(FASHION_MNIST_DEBIAN)


def fashion_mnist(split: str = "train", root=None) -> Dataset:
    """Fashion-MNIST ``split`` ("train": 60k, "test": 10k) as uint8 (N, 28, 28) images and int64 labels."""
    if split not in _FASHION_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    img_stem, lab_stem = _FASHION_FILES[split]
    tried = []
    for folder in _candidate_dirs(root, "fashion-mnist"):
        tried.append(str(folder))
        img, lab = _find_file(folder, img_stem), _find_file(folder, lab_stem)
        if img is not None and lab is not None:
            images, labels = read_idx(img), read_idx(lab).astype(np.int64)
            if images.ndim != 3 or labels.shape != (images.shape[0],):
                raise ValueError(
                    f"{img}: expected (N, 28, 28) images and (N,) labels, got {images.shape}, {labels.shape}"
                )
            return images, labels
    raise FileNotFoundError(
        f"Fashion-MNIST ({img_stem}.gz, {lab_stem}.gz) not found in {', '.join(tried)}. Get it with "
        f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs to {FASHION_MNIST_DEBIAN}), or download "
        f"the four *-ubyte.gz files of github.com/zalandoresearch/fashion-mnist into a folder and pass root=<folder> "
        f"(CLI: --data-root) or set SPQINDEX_DATA=<folder>."
    )


def cifar10(split: str = "train", root=None) -> Dataset:
    """CIFAR-10 from the standard ``cifar-10-batches-py`` folder: uint8 (N, 32, 32, 3) images, int64 labels.

    The batches are Python pickles; they are read by a restricted parser that builds only dicts, lists,
    strings, numbers and numpy arrays and never imports or calls anything (see ``_cifar_pickle``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    tried = []
    for folder in _candidate_dirs(root, "cifar-10-batches-py"):
        tried.append(str(folder))
        if all((folder / nm).is_file() for nm in names):
            parts = [load_cifar_batch(folder / nm) for nm in names]
            images = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return np.ascontiguousarray(images), np.concatenate([p[1] for p in parts])
    raise FileNotFoundError(
        f"CIFAR-10 batches ({', '.join(names)}) not found in {', '.join(tried)}. Download "
        f"cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and pass "
        f"root=<path to cifar-10-batches-py> (CLI: --data-root) or set SPQINDEX_DATA to the folder that holds it."
    )


def image_folder(
    root, size: Optional[Tuple[int, int]] = None, grayscale: bool = False
) -> Tuple[np.ndarray, np.ndarray, list]:
    """Images in ``root/<class>/*`` (png, jpg, ...) -> (uint8 images, int64 labels, class names).

    All images must share one size unless ``size=(H, W)`` is given, in which case they are resized.
    """
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("image_folder needs Pillow: pip install pillow") from e
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{str(root)!r} has no class sub-folders (expected root/<class>/<image files>)")
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    images, labels = [], []
    for label, cls in enumerate(classes):
        for p in sorted((root / cls).iterdir()):
            if p.suffix.lower() not in exts:
                continue
            with Image.open(p) as im:
                im = im.convert("L" if grayscale else "RGB")
                if size is not None:
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
            labels.append(label)
    if not images:
        raise ValueError(f"no image files under {str(root)!r}")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images in {str(root)!r} have different sizes {sorted(shapes)[:3]}...; pass size=(H, W)")
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def arrays(images, labels=None) -> Dataset:
    """Validate plain arrays: uint8 (N, H, W) / (N, H, W, C) images; labels (N,) ints or (N, C) multi-hot."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(
            f"images must be uint8, got {images.dtype}; scale floats with (x * 255).round().astype(np.uint8)"
        )
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C) with N > 0, got {images.shape}")
    if images.ndim == 4 and images.shape[3] not in (1, 3):
        raise ValueError(f"images must be channels-last with 1 or 3 channels, got shape {images.shape}")
    if labels is None:
        labels = np.full(len(images), -1, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2) or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must be (N,) or (N, C) with N = {images.shape[0]}, got {labels.shape}")
    return images, labels.astype(np.int64) if labels.ndim == 1 else labels.astype(np.uint8)


def multi_hot(label_lists: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """[[0, 3], [2], []] -> (N, num_classes) uint8 multi-hot rows."""
    out = np.zeros((len(label_lists), num_classes), dtype=np.uint8)
    for i, row in enumerate(label_lists):
        for c in row:
            if not 0 <= int(c) < num_classes:
                raise ValueError(f"label {c} of row {i} is outside [0, {num_classes})")
            out[i, int(c)] = 1
    return out


def load(name: str, split: str = "train", root=None) -> Dataset:
    """By name: 'fashion-mnist', 'cifar10', a folder of class sub-folders, or an .npz with 'images' (+ 'labels')."""
    if name in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return fashion_mnist(split, root)
    if name in ("cifar10", "cifar-10"):
        return cifar10(split, root)
    p = Path(name)
    if p.suffix == ".npz" and p.is_file():
        with np.load(p, allow_pickle=False) as z:
            if "images" not in z:
                raise ValueError(f"{name!r} must hold an 'images' array (and optionally 'labels')")
            return arrays(z["images"], z["labels"] if "labels" in z else None)
    if p.is_dir():
        images, labels, _ = image_folder(p)
        return images, labels
    raise ValueError(
        f"unknown dataset {name!r}: use 'fashion-mnist', 'cifar10', a folder of class sub-folders, or an .npz file"
    )
