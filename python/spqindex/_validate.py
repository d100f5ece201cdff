"""Conversion and checking of user arrays before they reach the native core.

Every function names the offending argument in its message. Conversions that copy (dtype change,
non-contiguous input, torch tensors on the CPU) are done once, here, and only when needed.
"""

from __future__ import annotations

import numpy as np

_FLOAT_KINDS = ("f",)


def to_numpy(value, name: str) -> np.ndarray:
    """Accepts numpy arrays, array-likes and torch CPU tensors (without importing torch)."""
    if type(value).__module__.startswith("torch"):
        if getattr(value, "device", None) is not None and value.device.type != "cpu":
            raise ValueError(f"{name}: torch tensor on {value.device}; move it to the CPU first (.cpu())")
        value = value.detach().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{name}: cannot be converted to an array ({e})") from None
    return arr


def float_matrix(
    value, name: str, dim: int | None = None, allow_empty: bool = True, check_finite: bool = True
) -> np.ndarray:
    """(n, dim) float32 C-contiguous, finite. float16/float64 are converted; ints are refused.

    check_finite=False leaves the NaN/Inf check to the caller (the native search does it without a
    temporary array, ~1.4 µs cheaper per single-query call).
    """
    arr = to_numpy(value, name)
    if arr.dtype.kind not in _FLOAT_KINDS:
        raise TypeError(f"{name}: expected a floating-point array (float32, float64 or float16), got {arr.dtype}")
    if arr.ndim == 1 and dim is not None and arr.shape[0] == dim:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (n, dim), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:  # before the float32 copy; pure-Python users (langchain) rely on it
        raise ValueError(f"{name}: expected {dim} columns (the index dim), got {arr.shape[1]}")
    if not allow_empty and arr.shape[0] == 0:
        raise ValueError(f"{name}: is empty")
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:  # the common case skips errstate (µs per call)
        with np.errstate(over="ignore"):  # overflow to Inf is reported just below
            arr = np.ascontiguousarray(arr, dtype=np.float32)
    if check_finite and not all_finite(arr):
        raise ValueError(f"{name}: contains NaN or Inf (or values too large for float32)")
    return arr


def all_finite(arr: np.ndarray, block: int = 1 << 20) -> bool:
    """np.isfinite(arr).all() without a temporary as large as the input (blocks of rows)."""
    if arr.ndim != 2 or arr.size <= block:
        return bool(np.isfinite(arr).all())
    rows = max(1, block // max(arr.shape[1], 1))
    return all(np.isfinite(arr[i : i + rows]).all() for i in range(0, arr.shape[0], rows))


def codebook_array(codebooks) -> np.ndarray:
    """(M, K, dsub) float32 C-contiguous. Values (M, dsub >= 1, K a power of two in 2..256, finite)
    are the core's rule (Codebooks), checked when the index is built or by ``_core.check_codebooks``."""
    arr = to_numpy(codebooks, "codebooks")
    if arr.dtype.kind != "f":
        raise TypeError(f"codebooks: expected a floating-point array, got {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"codebooks: expected shape (M, K, dsub), got {arr.shape}")
    with np.errstate(over="ignore"):  # overflow to Inf is the core's NaN/Inf error
        return np.ascontiguousarray(arr, dtype=np.float32)


def id_vector(value, name: str) -> np.ndarray:
    """(n,) int64 C-contiguous. Accepts any integer dtype; bools and floats are refused."""
    arr = to_numpy(value, name)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.dtype.kind not in ("i", "u") or arr.dtype == np.bool_:
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name}: expected an integer array, got {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: values exceed the int64 range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def code_matrix(value, name: str) -> np.ndarray:
    """uint8 C-contiguous packed codes; their shape (n, code_size) is checked by the binding."""
    arr = to_numpy(value, name)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name}: expected packed codes of dtype uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def int_arg(value, name: str) -> int:
    """A Python int from an int-like argument (TypeError otherwise); ValueError beyond int64.
    Its value rule belongs to whoever uses it (e.g. k: the core)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name}: {value} is out of the int64 range")
    return int(value)


def positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value}")
    return int(value)
