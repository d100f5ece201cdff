"""Coverage-guided fuzzing of Index.load with atheris (libFuzzer for Python).

    python fuzz/fuzz_load.py fuzz/corpus -runs=200000          # or -max_total_time=600
    make fuzz                                                    # the same, bounded, for CI

The first input byte chooses a mode: odd -> the trailing XXH64 of the rest is recomputed before
loading, so mutations reach the checks behind the checksum (header semantics, NaN codebooks,
padding bits, ids); even -> the bytes are loaded as they are. The second byte's low bit picks
mmap, its bit 1 verify=False (header and sizes only: the content is then not checked, and the
index must still search and reconstruct without faults). Every input must load into a working index or raise ValueError/OSError; anything else
(another exception, a crash, an allocation over the RLIMIT_AS cap set below) is a finding.

Coverage: with the default (gcc) build atheris sees Python coverage only, so the target turns
the loader's rejection reason into Python branches (_rejected_by); for true native coverage,
build the extension with clang and -fsanitize=fuzzer-no-link (see docs/robustness.md).
"""

import os
import resource
import struct
import sys
import tempfile

import atheris
import numpy as np

with atheris.instrument_imports():
    import spqindex
    from spqindex import _core

# One scratch file per process, on tmpfs when there is one; removed after every input, because
# libFuzzer ends the process without running Python's cleanup.
_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
_PATH = os.path.join(_DIR, f"spq-atheris-{os.getpid()}.spq")
_MAX_LEN = 1 << 20


@atheris.instrument_func
def _rejected_by(msg: str) -> None:
    """One Python branch per check of the C++ loader that can reject a file. With a gcc build
    atheris sees only Python coverage; these branches turn "which check fired" into coverage,
    so inputs that get further into the loader are kept in the corpus."""
    if "too short" in msg:
        return
    elif "empty file" in msg:
        return
    elif "bad magic" in msg:
        return
    elif "format version" in msg:
        return
    elif "header length" in msg:
        return
    elif "bad M" in msg:
        return
    elif "bad dim" in msg:
        return
    elif "bad nbits" in msg:
        return
    elif "metric id" in msg:
        return
    elif "unknown flags" in msg:
        return
    elif "next id" in msg:
        return
    elif "impossible ntotal" in msg:
        return
    elif "does not match its header" in msg:
        return
    elif "checksum mismatch" in msg:
        return
    elif "NaN or Inf" in msg:
        return
    elif "padding bits" in msg:
        return
    elif "id out of range" in msg:
        return
    elif "duplicate ids" in msg:
        return
    elif "truncated" in msg:
        return
    elif "block rows" in msg:
        return
    elif "block bytes" in msg:
        return
    elif "ids missing" in msg:
        return
    elif "ascending flag" in msg:
        return
    elif "cannot be memory-mapped" in msg:
        return
    elif "codeword order" in msg:
        return
    elif "codes grouped flag" in msg:
        return
    else:
        return


@atheris.instrument_func
def TestOneInput(data: bytes) -> None:
    if len(data) < 2 or len(data) > _MAX_LEN:
        return
    fix, mmap, verify = data[0] & 1, bool(data[1] & 1), not data[1] & 2
    body = bytearray(data[2:])
    if fix and len(body) >= 8:
        struct.pack_into("<Q", body, len(body) - 8, _core.xxh64(bytes(body[:-8])))
    with open(_PATH, "wb") as f:
        f.write(body)
    try:
        index = spqindex.Index.load(_PATH, mmap=mmap, verify=verify)
    except OSError:
        return
    except ValueError as e:
        _rejected_by(str(e))
        return
    finally:
        os.unlink(_PATH)  # a mapped index keeps its pages; the name can go
    D, I = index.search(np.zeros((2, index.dim), np.float32), 3)
    assert I.shape == (2, 3) and len(index.ids) == len(index)
    if len(index):
        index.reconstruct(index.ids[:1])


def main() -> None:
    # Cap the address space: a load may only allocate what the (<= 1 MiB) file justifies.
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
