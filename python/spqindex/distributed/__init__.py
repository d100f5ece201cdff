"""Scale-out on Ray (extra ``spqindex[ray]``): an index sharded over Ray actors, searched exactly.

    from spqindex.distributed import ShardedIndex, build_sharded
    sx = ShardedIndex.from_index(index, "shards/", num_shards=4)
    D, I = sx.search(q, k)        # == index.search(q, k)

Importing this package does not import ray; using ``ShardedIndex`` or ``build_sharded`` does.
"""

from __future__ import annotations

from .errors import ShardUnavailableError

__all__ = ["ShardedIndex", "build_sharded", "ShardUnavailableError", "read_manifest"]


def __getattr__(name):  # ray is imported on first use, not with the package
    if name == "ShardedIndex":
        from .sharded import ShardedIndex

        return ShardedIndex
    if name == "build_sharded":
        from .build import build_sharded

        return build_sharded
    if name == "read_manifest":
        from .manifest import read_manifest

        return read_manifest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
