"""Shared pieces of the robustness tests (a plain module, not a conftest, so that the top-level
tests/conftest.py stays the only module named ``conftest``)."""

from __future__ import annotations

import faulthandler
import os
import struct
import sys
import tempfile
import threading

import numpy as np

import spqindex

# Offsets of the fixed part of the file format (cpp/include/spqindex/io.h).
MAGIC = b"SPQIDX\0\0"
OFF_VERSION, OFF_HEADER_LEN = 8, 12
OFF_DIM, OFF_M, OFF_NBITS, OFF_METRIC, OFF_FLAGS = 16, 20, 24, 28, 32
OFF_NTOTAL, OFF_NEXT_ID = 36, 44
OFF_ID_FLAGS, OFF_BLOCK_ROWS, OFF_BLOCK_BYTES = 52, 56, 60  # version 2
HEADER_END = 64
U32_FIELDS = (
    OFF_VERSION,
    OFF_HEADER_LEN,
    OFF_DIM,
    OFF_M,
    OFF_NBITS,
    OFF_METRIC,
    OFF_FLAGS,
    OFF_ID_FLAGS,
    OFF_BLOCK_ROWS,
    OFF_BLOCK_BYTES,
)


def block_bytes(M: int, nbits: int) -> int:
    """Bytes per stored block of 64 rows (code_layout.h)."""
    if nbits == 4:
        return (M + 1) // 2 * 64
    if nbits == 8:
        return M * 64
    return 64 * ((M * nbits + 7) // 8)


def v2_offsets(dim: int, M: int, nbits: int, ntotal: int, grouped: bool = False):
    """(codes offset, ids offset) of a version-2 file (grouped: flag bit 2, the codeword order
    of M * 256 bytes after the codebooks)."""
    codes_off = -(-(HEADER_END + 4 * (1 << nbits) * dim + (256 * M if grouped else 0)) // 64) * 64
    return codes_off, codes_off + -(-ntotal // 64) * block_bytes(M, nbits)


U64_FIELDS = (OFF_NTOTAL, OFF_NEXT_ID)


def make_index(kind: str, rng: np.random.Generator, n: int = 50) -> spqindex.Index:
    """Small indexes covering the id modes and code layouts:
    seq (M=4, nbits=4, dim 8, ids assigned), explicit (same shape, user ids 100..),
    pad (M=3, nbits=4, dim 6: 4 padding bits per code row), nbits3 (M=5, nbits=3, dim 10),
    grouped8 (M=2, nbits=8, dim 2: the file stores the codeword order)."""
    if kind in ("seq", "explicit"):
        cb = rng.standard_normal((4, 16, 2)).astype(np.float32)
    elif kind == "pad":
        cb = rng.standard_normal((3, 16, 2)).astype(np.float32)
    elif kind == "nbits3":
        cb = rng.standard_normal((5, 8, 2)).astype(np.float32)
    elif kind == "grouped8":
        cb = rng.standard_normal((2, 256, 1)).astype(np.float32)
    else:
        raise ValueError(kind)
    index = spqindex.Index(cb, metric="l2")
    x = rng.standard_normal((n, index.dim)).astype(np.float32)
    index.add(x, ids=None if kind in ("seq", "nbits3", "grouped8") else 100 + np.arange(n))
    return index


def index_bytes(index: spqindex.Index) -> bytes:
    """The index as saved to disk: the strictest 'unchanged' check there is (codebooks, codes,
    ids, id mode and next id are all in it)."""
    fd, path = tempfile.mkstemp(prefix="spq-state-", suffix=".spq")
    os.close(fd)
    try:
        index.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        for p in (path,):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def saved_file(rng: np.random.Generator, kind: str = "explicit", n: int = 40) -> bytes:
    return index_bytes(make_index(kind, rng, n))


def set_u32(data: bytearray, off: int, value: int) -> None:
    struct.pack_into("<I", data, off, value & 0xFFFFFFFF)


def set_u64(data: bytearray, off: int, value: int) -> None:
    struct.pack_into("<Q", data, off, value & 0xFFFFFFFFFFFFFFFF)


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc, no psutil needed)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Watchdog:
    """Dumps every thread's stack and kills the process if a block runs past `seconds`
    (a deadlock must fail the run, not hang CI). Works without pytest-timeout."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        faulthandler.dump_traceback_later(self.seconds, exit=True, file=sys.stderr)
        return self

    def __exit__(self, *exc):
        faulthandler.cancel_dump_traceback_later()
        return False


def run_threads(targets, timeout: float):
    """Starts one thread per callable and joins them all within `timeout` seconds; re-raises the
    first exception a thread hit."""
    errors = []

    def wrap(fn):
        def inner():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported to the main thread
                errors.append(e)

        return inner

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    alive = [t for t in threads if t.is_alive()]
    if alive:
        raise AssertionError(f"{len(alive)} threads still running after {timeout} s (deadlock?)")
    if errors:
        raise errors[0]


# Set when the suite runs under AddressSanitizer (make test-asan preloads libasan): ASan's
# quarantine and shadow memory make RSS and address-space bounds meaningless there.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def scratch_dir(fallback: str) -> str:
    """A fresh directory on tmpfs when there is one (rewriting small files thousands of times on
    ext4 waits on the disk), else under `fallback`."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return tempfile.mkdtemp(prefix="spq-robust-", dir="/dev/shm")
    return tempfile.mkdtemp(prefix="spq-robust-", dir=fallback)
