"""A reusable filter for ``Index.search``: the ids that may be returned."""

from __future__ import annotations

import numpy as np

from . import _core
from ._validate import id_vector


class IdFilter:
    """The ids that ``Index.search(q, k, filter=...)`` may return, prepared once for many searches.

    Passing an id array as ``filter`` builds the per-block row masks of the scan on every call (linear
    in the number of ids); an ``IdFilter`` keeps the masks of the last index state it searched, so
    the searches that follow on that index skip that work until the index changes (any ``add``,
    ``remove`` or ``merge_from``; the masks are then rebuilt once). Ids not in the index are ignored.
    Like FAISS's ``IDSelectorBatch``; one filter may serve many threads and indexes at once.
    """

    def __init__(self, ids) -> None:
        self._core = _core.IdFilterCore(id_vector(ids, "ids"))

    def __len__(self) -> int:
        return len(self._core)

    @property
    def ids(self) -> np.ndarray:
        """A copy of the ids, shape (n,) int64, as given."""
        return self._core.ids()

    def __repr__(self) -> str:
        return f"spqindex.IdFilter({len(self)} ids)"
