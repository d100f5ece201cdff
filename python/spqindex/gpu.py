"""The optional CUDA path: a read-only GPU snapshot of an :class:`~spqindex.Index`.

``index.to_gpu(device=0)`` copies the codes and ids to the device once; ``search`` then runs the LUT,
the ADC scan and the top-k selection there and returns exactly what ``index.search`` returns (same
ids, bitwise-equal distances). Queries may be numpy arrays (copied to the device) or CUDA arrays
(torch CUDA tensors, or anything with ``__cuda_array_interface__``), which are read in place:
no host round trip. Results come back as numpy arrays, like the CPU index's.

The snapshot does not follow later changes of the CPU index: modify the CPU index and call
``to_gpu`` again.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from . import _core
from ._validate import float_matrix, int_arg

#: Largest k searched on the GPU; a larger k is answered by the CPU index (same results).
MAX_K = int(getattr(_core, "cuda_max_k", 2048))


def _require_cuda() -> None:
    if not _core.cuda_built():
        raise RuntimeError(
            "spqindex was built without CUDA: reinstall it with "
            "SPQINDEX_CUDA=ON pip install . (needs nvcc); see docs/gpu.md"
        )
    if not _core.cuda_available():
        raise RuntimeError("no CUDA device is available (no GPU, or no NVIDIA driver)")


def device_info(device: int = 0) -> dict:
    """``{"name", "peak_bandwidth_gbs", "sm_count"}`` of a CUDA device."""
    _require_cuda()
    return dict(_core.cuda_device_info(int(device)))


def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch")


def _device_matrix(value, name: str, dim: int, device: int):
    """A CUDA array as (keep_alive, pointer, rows, producer stream); None for host arrays.

    torch tensors are converted on the device when needed (dtype to float32, made contiguous);
    other ``__cuda_array_interface__`` objects must already be C-contiguous float32."""
    if _is_torch(value) and getattr(value, "is_cuda", False):
        t = value.detach()
        if t.dim() == 1 and t.shape[0] == dim:
            t = t.unsqueeze(0)
        if t.dim() != 2:
            raise ValueError(f"{name}: expected a 2-d tensor (n, dim), got shape {tuple(t.shape)}")
        if t.shape[1] != dim:
            raise ValueError(f"{name}: expected {dim} columns (the index dim), got {t.shape[1]}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
        if t.device.index != device:
            raise ValueError(f"{name}: tensor on {t.device} but the index is on cuda:{device}")
        t = t.float().contiguous()  # no-ops for contiguous float32
        value = t
    cai = getattr(value, "__cuda_array_interface__", None)
    if cai is None:
        return None
    shape = tuple(cai["shape"])
    if len(shape) == 1 and shape[0] == dim:
        shape = (1, dim)
    if len(shape) != 2 or shape[1] != dim:
        raise ValueError(f"{name}: expected shape (n, {dim}), got {tuple(cai['shape'])}")
    if np.dtype(cai["typestr"]) != np.float32:
        raise TypeError(f"{name}: expected a float32 CUDA array, got {cai['typestr']} (convert it on the device first)")
    strides = cai.get("strides")
    if strides is not None and shape[0] > 1 and tuple(strides) != (4 * dim, 4):
        raise ValueError(f"{name}: CUDA array must be C-contiguous")
    stream = cai.get("stream") or 0
    return value, int(cai["data"][0]), int(shape[0]), int(stream)


class GpuIndex:
    """Read-only GPU snapshot of an Index; see the module docstring. Made by ``Index.to_gpu``."""

    def __init__(self, index, device: int = 0):
        _require_cuda()
        if isinstance(device, (bool, np.bool_)) or not isinstance(device, (int, np.integer)):
            raise TypeError(f"device: expected an int, got {type(device).__name__}")
        self._cpu = index
        self._core = _core.GpuIndexCore(index._core, int(device))

    # --- properties ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._core.ntotal

    @property
    def ntotal(self) -> int:
        return self._core.ntotal

    @property
    def dim(self) -> int:
        return self._core.dim

    @property
    def device(self) -> int:
        return self._core.device

    @property
    def metric(self) -> str:
        return self._cpu.metric

    @property
    def M(self) -> int:
        return self._cpu.M

    @property
    def nbits(self) -> int:
        return self._cpu.nbits

    @property
    def last_search_ms(self) -> float:
        """Device time of the last search (LUT, scan, selection, results), in milliseconds."""
        return self._core.last_search_ms

    def __repr__(self) -> str:
        return (
            f"spqindex.GpuIndex(ntotal={self.ntotal}, dim={self.dim}, M={self.M}, "
            f"nbits={self.nbits}, metric={self.metric!r}, device={self.device})"
        )

    def to_cpu(self):
        """The CPU index this snapshot was made from."""
        return self._cpu

    # --- queries ------------------------------------------------------------------------------
    def search(self, q, k: int = 10) -> Tuple[np.ndarray, np.ndarray]:
        """Exact top-k on the GPU; same contract and results as ``Index.search``.

        ``q``: (nq, dim) numpy array (copied to the device) or CUDA array (read in place)."""
        k = int_arg(k, "k")  # its values: Index::check_k in the core
        dev = _device_matrix(q, "q", self.dim, self.device)
        if k > MAX_K:  # beyond the shared-memory selection: the CPU index gives the same answer
            if dev is not None:
                q = dev[0].cpu() if _is_torch(dev[0]) else np.asarray(q)
            return self._cpu.search(q, k)
        if dev is None:
            return self._core.search(float_matrix(q, "q", self.dim, check_finite=False), k)  # core checks NaN/Inf
        _keep, ptr, nq, stream = dev
        return self._core.search_ptr(ptr, nq, k, stream)

    def encode(self, x) -> np.ndarray:
        """Packed codes (n, code_size) uint8 computed on the GPU; identical to ``Index.encode``."""
        dev = _device_matrix(x, "x", self.dim, self.device)
        if dev is None:
            return self._core.encode(float_matrix(x, "x", self.dim))
        _keep, ptr, n, stream = dev
        return self._core.encode_ptr(ptr, n, stream)
