"""Resident memory stays flat over 10,000 add/search/remove/save/load cycles (error paths
included: a rejected add and a rejected corrupt file every cycle)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import spqindex
from robust_helpers import UNDER_ASAN, rss_bytes, scratch_dir

CYCLES = 10_000
WARMUP = 1_000
RSS_BOUND = 4 << 20  # growth allowed after warm-up: a leak of >= ~470 bytes a cycle fails


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's quarantine holds freed memory; ASan checks leaks itself")
def test_rss_flat_over_10k_cycles(tmp_path):
    rng = np.random.default_rng(0)
    cb = rng.standard_normal((4, 256, 4)).astype(np.float32)
    x = rng.standard_normal((32, 16)).astype(np.float32)
    q = rng.standard_normal((3, 16)).astype(np.float32)
    work = scratch_dir(str(tmp_path))
    path = os.path.join(work, "cycle.spq")
    corrupt = os.path.join(work, "corrupt.spq")
    try:
        index = spqindex.Index(cb, metric="spq")
        index.add(x, ids=np.arange(32))
        index.save(corrupt)
        with open(corrupt, "r+b") as f:
            f.seek(100)
            f.write(b"\xff")
        base = None
        next_id = 1000
        for cycle in range(CYCLES):
            ids = np.arange(next_id, next_id + 32)
            next_id += 32
            index.add(x, ids=ids)
            D, I = index.search(q, 10)
            assert I.shape == (3, 10)
            index.reconstruct(ids[:4])
            index.decode(index.encode(x[:4]))
            assert index.remove(ids) == 32
            with pytest.raises(ValueError):
                index.add(x[:2], ids=[0, 0])  # duplicate: rejected
            with pytest.raises(ValueError):
                spqindex.Index.load(corrupt, mmap=bool(cycle & 1))
            index.save(path)
            index = spqindex.Index.load(path, mmap=bool(cycle & 2))
            if index.read_only:
                index = spqindex.Index.load(path)  # must stay writable for the next cycle
            if cycle == WARMUP:
                base = rss_bytes()
        growth = rss_bytes() - base
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"RSS growth over {CYCLES - WARMUP} cycles after warm-up: {growth / 1024:.0f} KiB")
    assert len(index) == 32
    assert growth < RSS_BOUND
