"""The product-quantization index: exact asymmetric-distance (ADC) search over packed codes."""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np

from . import _core
from ._validate import code_matrix, codebook_array, float_matrix, id_vector, int_arg
from .id_filter import IdFilter


def _metric_name(metric) -> str:
    """The metric's type; its value ("l2", "spq", "ip") is the core's rule (metric_from_string)."""
    if not isinstance(metric, str):
        raise TypeError(f'metric: expected a str ("l2", "spq" or "ip"), got {type(metric).__name__}')
    return metric


def _check_path(path, name: str = "path") -> str:
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{name}: is empty")
    if "\0" in path:
        raise ValueError(f"{name}: contains a NUL byte")
    return path


class Index:
    """Product-quantization index with exact top-k search.

    ``codebooks`` has shape ``(M, K, dsub)`` with ``K = 2**nbits``; vectors have ``dim = M * dsub``.
    Metrics: ``"l2"`` (sum of squared sub-space distances, FAISS IndexPQ), ``"spq"`` (sum of unsquared
    sub-space distances, the SPQ paper's retrieval), ``"ip"`` (inner product, larger is better).
    Codes use the FAISS ``ProductQuantizer`` byte layout, so they can move between both libraries.
    """

    def __init__(self, codebooks, metric: str = "l2"):
        self._core = _core.IndexCore(codebook_array(codebooks), _metric_name(metric))

    @classmethod
    def _wrap(cls, core) -> "Index":
        self = cls.__new__(cls)
        self._core = core
        return self

    @classmethod
    def train(
        cls,
        x,
        M: int = 8,
        nbits: int = 4,
        metric: str = "l2",
        iters: int = 25,
        seed: int = 0,
        max_points_per_centroid: int = 256,
    ) -> "Index":
        """Classic PQ: k-means codebooks per sub-space, learned from ``x`` (n, dim). Empty index."""
        from .pq import train_codebooks

        _core.check_metric(_metric_name(metric))  # before the k-means, not after
        codebooks = train_codebooks(
            x, M=M, nbits=nbits, iters=iters, seed=seed, max_points_per_centroid=max_points_per_centroid
        )
        return cls(codebooks, metric=metric)

    # --- properties -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._core.ntotal

    @property
    def ntotal(self) -> int:
        return self._core.ntotal

    @property
    def dim(self) -> int:
        return self._core.dim

    @property
    def M(self) -> int:
        return self._core.M

    @property
    def K(self) -> int:
        return self._core.K

    @property
    def nbits(self) -> int:
        return self._core.nbits

    @property
    def dsub(self) -> int:
        return self._core.dsub

    @property
    def code_size(self) -> int:
        return self._core.code_size

    @property
    def metric(self) -> str:
        return self._core.metric

    @property
    def codebooks(self) -> np.ndarray:
        """A copy of the codebooks, shape (M, K, dsub) float32."""
        return self._core.codebooks

    @property
    def read_only(self) -> bool:
        """True for an index loaded with ``mmap=True``."""
        return self._core.read_only

    @property
    def next_id(self) -> int:
        """The id the next ``add`` without ids gives: 1 + the largest id ever added (removed ones
        included), 0 for an empty index."""
        return self._core.next_id

    @property
    def ids(self) -> np.ndarray:
        """A copy of the stored ids in storage order, shape (ntotal,) int64."""
        return self._core.ids()

    @property
    def codes(self) -> np.ndarray:
        """A copy of the stored packed codes, shape (ntotal, code_size) uint8."""
        return self._core.codes()

    def __repr__(self) -> str:
        return (
            f"spqindex.Index(ntotal={self.ntotal}, dim={self.dim}, M={self.M}, nbits={self.nbits}, "
            f"metric={self.metric!r}, code_size={self.code_size}" + (", read_only=True" if self.read_only else "") + ")"
        )

    # --- mutation -----------------------------------------------------------------------------
    def add(self, x, ids=None) -> None:
        """Encodes and stores ``x`` (n, dim). ``ids``: unique non-negative int64, or None to continue
        from the largest id so far. All-or-nothing: on error the index is unchanged."""
        xa = float_matrix(x, "x", self.dim)
        ia = None if ids is None else id_vector(ids, "ids")
        try:
            self._core.add(xa, ia)
        except MemoryError:
            raise MemoryError(self._no_memory("x", xa.shape[0])) from None

    def add_codes(self, codes, ids=None) -> None:
        """Stores already packed codes (n, code_size) uint8, e.g. from ``encode`` or FAISS."""
        ca = code_matrix(codes, "codes")
        ia = None if ids is None else id_vector(ids, "ids")
        try:
            self._core.add_codes(ca, ia)
        except MemoryError:
            raise MemoryError(self._no_memory("codes", ca.shape[0])) from None

    def _no_memory(self, name: str, n: int) -> str:
        return (
            f"{name}: not enough memory to add {n} vectors (up to {n * (self.code_size + 8)} "
            f"bytes of codes and ids, on top of {self.ntotal} stored); the index is unchanged"
        )

    def merge_from(self, other: "Index", shift_ids: bool = False) -> None:
        """Appends every vector of ``other`` (same codebooks and metric, else ValueError). An id
        present in both is an error unless ``shift_ids=True``, which renumbers other's ids from
        this index's ``next_id`` on. All-or-nothing."""
        if not isinstance(other, Index):
            raise TypeError(f"other: expected a spqindex.Index, got {type(other).__name__}")
        if not isinstance(shift_ids, (bool, np.bool_)):
            raise TypeError(f"shift_ids: expected a bool, got {type(shift_ids).__name__}")
        try:
            self._core.merge_from(other._core, bool(shift_ids))
        except MemoryError:
            raise MemoryError(self._no_memory("other", len(other))) from None

    def remove(self, ids) -> int:
        """Removes the given ids; unknown ids are ignored. Returns how many were removed."""
        return int(self._core.remove(id_vector(ids, "ids")))

    # --- queries ------------------------------------------------------------------------------
    def search(self, q, k: int = 10, filter=None) -> Tuple[np.ndarray, np.ndarray]:
        """Exact top-k by ADC. Returns ``(D, I)`` of shape (nq, k), best first, ties by smaller id;
        missing results are padded with id -1 and distance +inf (-inf for "ip").
        ``filter``: ids (1-d integers, or a :class:`spqindex.IdFilter` to reuse over many searches)
        that may be returned; the result is then the exact top-k among them (ids not in the index
        are ignored), computed inside the scan."""
        k = int_arg(k, "k")  # its values: Index::check_k in the core
        if filter is None or isinstance(filter, IdFilter):
            fa = None if filter is None else filter._core
        else:
            fa = id_vector(filter, "filter")
        qa = float_matrix(q, "q", self.dim, check_finite=False)  # the core rejects NaN/Inf queries
        nq = qa.shape[0]
        try:
            return self._core.search(qa, k, fa)
        except MemoryError:
            raise MemoryError(f"k: not enough memory for results of shape ({nq}, {k}) ({12 * nq * k} bytes)") from None

    def range_search(self, q, radius) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored vector within ``radius``, FAISS convention: distance < radius for "l2" and
        "spq", inner product > radius for "ip". Returns ``(lims, D, I)``: the hits of query i are
        ``D[lims[i]:lims[i+1]]``, ``I[lims[i]:lims[i+1]]``, best first, ties by smaller id. Exact."""
        qa = float_matrix(q, "q", self.dim, check_finite=False)  # the core rejects NaN/Inf queries
        if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, (int, float, np.integer, np.floating)):
            raise TypeError(f"radius: expected a number, got {type(radius).__name__}")
        return self._core.range_search(qa, float(radius))

    def encode(self, x) -> np.ndarray:
        """Packed codes (n, code_size) uint8 of ``x``: nearest codeword per sub-space (squared L2)."""
        return self._core.encode(float_matrix(x, "x", self.dim))

    def decode(self, codes) -> np.ndarray:
        """Vectors (n, dim) float32 rebuilt from packed codes."""
        return self._core.decode(code_matrix(codes, "codes"))

    def reconstruct(self, ids) -> np.ndarray:
        """Decoded stored vectors for the given ids, shape (n, dim). Raises KeyError for unknown ids."""
        return self._core.reconstruct(id_vector(ids, "ids"))

    def to_gpu(self, device: int = 0):
        """A read-only GPU snapshot (``spqindex.gpu.GpuIndex``) whose ``search`` runs on CUDA device
        ``device`` and returns exactly this index's results. Needs a build with SPQINDEX_CUDA=ON and
        a GPU (``spqindex.cuda_available()``); see docs/gpu.md."""
        from .gpu import GpuIndex

        return GpuIndex(self, device)

    def to_faiss(self):
        """A FAISS ``IndexPQ`` (in an ``IndexIDMap2`` when ids are not 0..n-1) with the same codebooks,
        codes, ids and metric; see ``spqindex.faiss_convert``. Metric "spq" has no FAISS equivalent."""
        from .faiss_convert import to_faiss

        return to_faiss(self)

    # --- persistence --------------------------------------------------------------------------
    def save(self, path) -> None:
        """Writes the index atomically (temporary file, fsync, rename): a crash leaves either the
        old file or the new one, never a mix."""
        path = _check_path(path)
        if os.path.isdir(path):
            raise IsADirectoryError(21, "path: is a directory", path)
        self._core.save(path)

    @classmethod
    def load(cls, path, mmap: bool = False, verify: bool = True) -> "Index":
        """Reads an index saved by ``save``. With ``mmap=True`` the codes and ids stay in the file,
        mapped read-only and searched in place (the index cannot be modified; version-1 files must
        first be converted with ``spqindex upgrade OLD NEW``). ``verify=True`` checks the checksum
        and the content (reads the whole file); ``verify=False`` checks the header and sizes only,
        so a mapped file opens in constant time. Corrupted files raise ValueError."""
        path = _check_path(path)
        for name, value in (("mmap", mmap), ("verify", verify)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
        if os.path.isdir(path):
            raise IsADirectoryError(21, "path: is a directory", path)
        return cls._wrap(_core.IndexCore.load(path, bool(mmap), bool(verify)))
