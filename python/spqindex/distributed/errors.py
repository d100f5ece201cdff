"""Errors of the sharded index."""

from __future__ import annotations

from typing import Sequence


class ShardUnavailableError(RuntimeError):
    """Some shards did not answer (after one retry): the result would have come from fewer shards.

    ``missing`` lists the shard numbers that did not answer."""

    def __init__(self, missing: Sequence[int], detail: str = ""):
        self.missing = sorted(int(i) for i in missing)
        super().__init__(
            f"shards {self.missing} did not answer after one retry"
            + (f": {detail}" if detail else "")
            + "; no result is returned from fewer shards (search(..., allow_partial=True) "
            "returns what the others found and names the missing shards)"
        )
