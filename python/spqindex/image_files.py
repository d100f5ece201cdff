"""Indexes of plain image folders: the file list beside the index, and a grid of search results.

``spqindex index --images DIR`` stores row i of the index as ``DIR/names[i]``; the names go to
``{index file}.names.json`` ({"root": DIR, "names": [...]}) so ``spqindex search --image FILE``
can print file names instead of row numbers, and ``--grid OUT.png`` can draw them.
"""

from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Tuple

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(folder) -> List[str]:
    """Image files under ``folder`` (recursively), as sorted paths relative to it."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--images: {folder!r} is not a folder")
    names = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        names += [
            os.path.relpath(os.path.join(root, f), folder)
            for f in sorted(files)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    if not names:
        raise ValueError(f"--images: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}")
    return names


def names_path(index_path) -> str:
    return os.fspath(index_path) + ".names.json"


def save_names(index_path, root, names: Sequence[str]) -> None:
    path = names_path(index_path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"root": os.path.abspath(os.fspath(root)), "names": list(names)}, f)
    os.replace(tmp, path)


def load_names(index_path) -> Optional[Tuple[str, List[str]]]:
    """(root, names) written by ``save_names``, or None for an index without a file list."""
    path = names_path(index_path)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data["root"], data["names"]


def write_grid(out, queries: Sequence[str], results: Sequence[Sequence[str]], thumb: int = 64) -> None:
    """One row per query: the query image, a gap, then its results best first (image files)."""
    from PIL import Image, ImageDraw

    cols = 2 + max((len(r) for r in results), default=0)
    grid = Image.new("RGB", (cols * thumb, len(queries) * thumb), "white")
    draw = ImageDraw.Draw(grid)
    for row, (q, res) in enumerate(zip(queries, results)):
        for col, path in [(0, q)] + [(2 + j, p) for j, p in enumerate(res)]:
            with Image.open(path) as im:
                grid.paste(im.convert("RGB").resize((thumb, thumb)), (col * thumb, row * thumb))
        draw.rectangle([0, row * thumb, thumb - 1, (row + 1) * thumb - 1], outline="red")
    grid.save(out)
