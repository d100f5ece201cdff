"""Which shard holds an id, and how new ids are numbered.

User-given ids go to shard ``splitmix64(id) % S``, so an id can only ever be on one shard (a
duplicate add is refused by that shard, and remove/lookup need no directory). Ids the index
numbers itself (``add(x)`` without ids) continue a global counter kept by the driver and saved in
the manifest, exactly like ``Index.add``; such a batch goes whole to the smallest shard.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hash_shard(ids: np.ndarray, num_shards: int) -> np.ndarray:
    """Shard number (int64) of each id: splitmix64 finaliser of the id, modulo ``num_shards``."""
    z = np.asarray(ids, dtype=np.int64).astype(np.uint64) + _GOLDEN  # wraps modulo 2**64
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(num_shards)).astype(np.int64)


def balanced_ranges(n: int, num_shards: int) -> np.ndarray:
    """Start offsets (num_shards + 1,) splitting n rows into contiguous, near-equal ranges."""
    return (np.arange(num_shards + 1, dtype=np.int64) * n) // num_shards
