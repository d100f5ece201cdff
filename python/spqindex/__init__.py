"""spqindex: self-supervised product quantization (SPQ) and a fast, exact native PQ index."""

from ._core import cuda_available, get_num_threads, set_num_threads
from ._core import simd_level as _simd_level
from .faiss_convert import from_faiss
from .id_filter import IdFilter
from .index import Index

__version__ = "0.1.0"  # the only place the version is written: pyproject.toml reads it from here
__all__ = [
    "Index",
    "IdFilter",
    "from_faiss",
    "set_num_threads",
    "get_num_threads",
    "simd_level",
    "cuda_available",
    "__version__",
]


def simd_level() -> str:
    """The SIMD kernels in use: "scalar", "avx2" or "avx512" (SPQINDEX_SIMD can force a lower one)."""
    return _simd_level()
