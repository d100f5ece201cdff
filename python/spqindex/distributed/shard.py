"""One shard: a Ray actor holding an ``Index`` loaded from its file (memory-mapped).

The actor is constructed from (directory, shard number) and reads the manifest to find its file,
so a restart after a crash (Ray's ``max_restarts``) loads the last saved snapshot. The first
add/remove since a load makes a writable in-memory copy (``Index.load(mmap=False)``); ``save``
writes it to a new file and maps that one again. Every reply carries the actor's ``token``, new on
each start. Every call names the token the driver expects; an actor with another token (it was
restarted) does nothing and answers ``(token,)``, so no change or answer ever comes from a restarted
shard before the driver has replayed the changes made since the last save.
"""

from __future__ import annotations

import os
import uuid
from typing import Optional

import numpy as np

import spqindex
from .manifest import codebooks_sha256, read_manifest


def _open_shard(path: str, mmap: bool = True) -> spqindex.Index:
    """The one place a shard file is opened. The checksum is verified (``Index.load``'s default): the
    manifest checks counts, metric and codebooks, not the codes, and a scan reads every page anyway;
    ``verify=False`` would make a restart O(1) at the price of trusting the file."""
    return spqindex.Index.load(path, mmap=mmap)


class ShardServer:
    """The actor's class (made a Ray actor by ``ShardedIndex``)."""

    def __init__(self, directory: str, shard: int, threads: int):
        spqindex.set_num_threads(int(threads))
        self.token = uuid.uuid4().hex
        self._shard = int(shard)
        entry = read_manifest(directory)["shards"][self._shard]
        self._path = os.path.join(directory, entry["file"])
        self._index = _open_shard(self._path)
        self._sorted_ids: Optional[np.ndarray] = None

    # --- introspection -------------------------------------------------------------------------
    def hello(self) -> dict:
        import ray

        return {
            "token": self.token,
            "count": len(self._index),
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "threads": spqindex.get_num_threads(),
            "codebooks_sha256": codebooks_sha256(self._index.codebooks),
            "metric": self._index.metric,
            "file": os.path.basename(self._path),
            "read_only": self._index.read_only,
        }

    # --- queries -------------------------------------------------------------------------------
    def search(self, expect: str, q: np.ndarray, k: int):
        if expect != self.token:
            return (self.token,)
        D, I = self._index.search(q, k)
        return self.token, D, I

    # --- changes -------------------------------------------------------------------------------
    def _writable(self) -> spqindex.Index:
        if self._index.read_only:
            self._index = _open_shard(self._path, mmap=False)
        return self._index

    def add_codes(self, expect: str, codes: np.ndarray, ids: np.ndarray):
        if expect != self.token:
            return (self.token,)
        self._writable().add_codes(codes, ids)
        self._sorted_ids = None
        return self.token, len(self._index)

    def remove(self, expect: str, ids: np.ndarray):
        if expect != self.token:
            return (self.token,)
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self._index.ids)
        pos = np.searchsorted(self._sorted_ids, ids)
        present = (
            (pos < self._sorted_ids.size) & (self._sorted_ids[np.minimum(pos, self._sorted_ids.size - 1)] == ids)
            if self._sorted_ids.size
            else np.zeros(len(ids), bool)
        )
        n = 0
        if present.any():  # a read-only shard holding none of the ids stays mapped
            n = self._writable().remove(ids[present])
            self._sorted_ids = None
        return self.token, n, len(self._index)

    def replay(self, ops: list):
        """Re-applies the changes made since the last save, in order, after a restart."""
        for op, *args in ops:
            if op == "add":
                self._writable().add_codes(*args)
            else:
                self._writable().remove(args[0])
        self._sorted_ids = None
        return self.token, len(self._index)

    def save(self, expect: str, path: str):
        """Writes the shard to ``path`` (atomically, ``Index.save``) and maps that file."""
        if expect != self.token:
            return (self.token,)
        self._index.save(path)
        self._path = path
        self._index = _open_shard(path)
        return self.token, len(self._index)
