"""The manifest of a sharded index: ``<directory>/manifest.json``, written last and atomically.

It names the shard files of one consistent snapshot. ``save`` writes changed shards to new files
(``shard-00003.g7.spqi``: shard 3 of generation 7), then replaces the manifest (temporary file,
fsync, rename, fsync of the directory), then deletes the files it no longer names. A crash at any
point leaves the previous manifest and every file it names intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict

import numpy as np

MANIFEST = "manifest.json"
FORMAT = "spqindex-sharded"
VERSION = 1


def shard_file(shard: int, generation: int) -> str:
    return f"shard-{shard:05d}.g{generation}.spqi"


def codebooks_sha256(codebooks: np.ndarray) -> str:
    """Hash of the codebooks' shape and little-endian float32 bytes."""
    cb = np.ascontiguousarray(codebooks, dtype="<f4")
    h = hashlib.sha256(repr(cb.shape).encode())
    h.update(cb.tobytes())
    return h.hexdigest()


def manifest_path(directory) -> str:
    return os.path.join(os.fspath(directory), MANIFEST)


def read_manifest(directory) -> Dict[str, Any]:
    """The manifest of ``directory`` as a dict; ValueError if it is not one this version reads."""
    path = manifest_path(directory)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, f"directory: no {MANIFEST} (not a sharded index)", path)
    with open(path, "rb") as f:
        try:
            m = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    if m.get("version") != VERSION:
        raise ValueError(f"{path}: manifest version {m.get('version')!r}, this spqindex reads {VERSION}")
    for key in ("metric", "codebooks_sha256", "shards", "generation", "id_mode", "next_id"):
        if key not in m:
            raise ValueError(f"{path}: manifest misses {key!r}")
    if not isinstance(m["shards"], list) or not m["shards"]:
        raise ValueError(f"{path}: manifest names no shards")
    for s in m["shards"]:
        if (
            not isinstance(s, dict)
            or not isinstance(s.get("file"), str)
            or os.sep in s["file"]
            or not isinstance(s.get("count"), int)
        ):
            raise ValueError(f"{path}: bad shard entry {s!r}")
    return m


def write_manifest(directory, manifest: Dict[str, Any]) -> None:
    """Atomically replaces the manifest: temporary file, fsync, rename, fsync of the directory."""
    directory = os.fspath(directory)
    final = manifest_path(directory)
    tmp = final + f".tmp-{os.getpid()}"
    data = json.dumps(dict(manifest, format=FORMAT, version=VERSION), indent=1, sort_keys=True).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
