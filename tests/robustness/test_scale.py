"""Scale limits: 64-bit code offsets (> 2^31 code bytes, marked slow) and clean MemoryError
when an add or a search cannot get memory under a limit the user set (RLIMIT_AS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import spqindex
from robust_helpers import UNDER_ASAN

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
def test_more_than_2_31_code_bytes(tmp_path):
    """4,195,304 codes of 512 bytes (2^31 + 512,000 code bytes, ~4.4 GB peak RSS): search,
    reconstruct, remove and save/load reach rows past the 2 GiB boundary."""
    M, n = 512, (1 << 22) + 1000
    cb = np.broadcast_to(np.arange(256, dtype=np.float32)[None, :, None], (M, 256, 1))
    index = spqindex.Index(np.ascontiguousarray(cb), metric="l2")
    codes = np.zeros((n, M), np.uint8)
    codes[-1] = 200  # the best match for the query, stored past 2^31 bytes
    codes[-2] = 199
    codes[(1 << 22) - 1] = 198  # the last row before the boundary
    index.add_codes(codes)
    del codes
    assert len(index) == n and n * index.code_size > 2**31
    q = np.full((1, M), 200, np.float32)
    D, I = index.search(q, 3)
    assert I.tolist() == [[n - 1, n - 2, (1 << 22) - 1]]
    assert D.tolist() == [[0.0, float(M), float(4 * M)]]
    np.testing.assert_array_equal(index.reconstruct([n - 1]), q)
    assert index.remove([0, 1, 2]) == 3  # moves every row, the last ones included
    assert index.search(q, 1)[1].tolist() == [[n - 1]]
    if shutil.disk_usage(tmp_path).free > 6 << 30:
        path = tmp_path / "big.spq"
        index.save(path)
        assert os.path.getsize(path) > 2**31
        del index
        for mmap in (True, False):
            loaded = spqindex.Index.load(path, mmap=mmap)
            assert loaded.search(q, 1)[1].tolist() == [[n - 1]]
            np.testing.assert_array_equal(loaded.reconstruct([n - 1]), q)
            del loaded


CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import spqindex
    from robust_helpers import index_bytes

    rng = np.random.default_rng(0)
    index = spqindex.Index(rng.standard_normal((16, 256, 2)).astype(np.float32))
    index.add(rng.standard_normal((1000, 32)).astype(np.float32))
    before = index_bytes(index)
    codes = np.ones((25_000_000, 16), np.uint8)       # 400 MB, allocated before the limit
    x = np.ones((4_000_000, 32), np.float32)          # 512 MB of vectors: their checks need more
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + (32 << 20), hard))
    out = {}
    for name, call in [("add_codes", lambda: index.add_codes(codes)),
                       ("add", lambda: index.add(x)),
                       ("search", lambda: index.search(x[:4], 50_000_000))]:
        try:
            call()
            out[name] = "no error"
        except MemoryError as e:
            out[name] = "MemoryError: " + str(e)
        except Exception as e:
            out[name] = type(e).__name__ + ": " + str(e)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    out["unchanged"] = index_bytes(index) == before
    index.add_codes(codes[:1000])                      # usable again once memory is back
    out["ntotal_after"] = len(index)
    print(json.dumps(out))
""")


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's allocator does not honour RLIMIT_AS gracefully")
def test_add_beyond_a_memory_limit_raises_and_changes_nothing():
    proc = subprocess.run([sys.executable, "-c", CHILD, HERE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(out)
    assert out["add_codes"].startswith("MemoryError: codes:"), out
    assert out["add"].startswith("MemoryError: x:"), out
    assert out["search"].startswith("MemoryError") and "k:" in out["search"], out
    assert out["unchanged"]
    assert out["ntotal_after"] == 2000
