"""Coverage-guided fuzzing of Index.load with atheris (libFuzzer for Python).

    python fuzz/fuzz_load.py fuzz/corpus -runs=200000          # or -max_total_time=600
    make fuzz                                                    # the same, bounded, for CI

The first input byte chooses a mode: odd -> the trailing XXH64 of the rest is recomputed before
loading, so mutations reach the checks behind the checksum (header semantics, NaN codebooks,
padding bits, ids); even -> the bytes are loaded as they are. The second byte's low bit picks
mmap. Every input must load into a working index or raise ValueError/OSError; anything else
(another exception, a crash, an allocation over the RLIMIT_AS cap set below) is a finding.

Coverage: with the default (gcc) build atheris sees the Python layer only; for native coverage
build the extension with clang and -fsanitize=fuzzer-no-link (see docs/robustness.md).
"""
import os
import resource
import struct
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import numpy as np
    import spqindex
    from spqindex import _core

_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
_FD, _PATH = tempfile.mkstemp(prefix="spq-atheris-", suffix=".spq", dir=_DIR)
os.close(_FD)
_MAX_LEN = 1 << 20


def TestOneInput(data: bytes) -> None:
    if len(data) < 2 or len(data) > _MAX_LEN:
        return
    fix, mmap, body = data[0] & 1, bool(data[1] & 1), bytearray(data[2:])
    if fix and len(body) >= 8:
        struct.pack_into("<Q", body, len(body) - 8, _core.xxh64(bytes(body[:-8])))
    with open(_PATH, "wb") as f:
        f.write(body)
    try:
        index = spqindex.Index.load(_PATH, mmap=mmap)
    except (ValueError, OSError):
        return
    D, I = index.search(np.zeros((2, index.dim), np.float32), 3)
    assert I.shape == (2, 3) and len(index.ids) == len(index)
    if len(index):
        index.reconstruct(index.ids[:1])


def main() -> None:
    # Cap the address space: a load may only allocate what the (<= 1 MiB) file justifies.
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
    try:
        atheris.Setup(sys.argv, TestOneInput)
        atheris.Fuzz()
    finally:
        os.unlink(_PATH)


if __name__ == "__main__":
    main()
