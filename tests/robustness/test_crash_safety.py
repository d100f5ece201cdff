"""A process saving over an existing index is killed with SIGKILL at random moments; the file on
disk must always be exactly the old or the new index, loadable and checksum-valid.

Temp-file policy (docs/robustness.md): save writes `<path>.tmp-XXXXXX` (mkstemp), fsyncs it
and renames it over `<path>`. A save killed before the rename leaves that temp file behind.
Loads never read temp files, and the library does not delete them on its own (another process
may be in the middle of a save); they are safe to delete when no save is running. The test
checks that nothing else is ever left behind and that at most one temp file appears per kill.
"""

from __future__ import annotations

import os
import random
import signal
import time

import numpy as np
import pytest

import spqindex
from robust_helpers import index_bytes

KILLS = 120


def build(seed: int) -> spqindex.Index:
    rng = np.random.default_rng(seed)
    index = spqindex.Index(rng.standard_normal((16, 256, 4)).astype(np.float32), metric="l2")
    # 60,000 rows of 16 bytes + 8-byte ids: a ~1.5 MB file, so a save spans many write calls.
    index.add_codes(rng.integers(0, 256, (60_000, 16), dtype=np.uint8))
    return index


def saver(index: spqindex.Index, path: str, ready_fd: int) -> None:
    """Child after fork: tell the parent, then save over `path` until killed."""
    try:
        os.write(ready_fd, b"x")
        while True:
            index.save(path)
    finally:
        os._exit(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_during_save_leaves_old_or_new(tmp_path):
    versions = [build(1), build(2)]
    blobs = [index_bytes(v) for v in versions]
    assert blobs[0] != blobs[1]
    path = str(tmp_path / "live.spq")
    versions[0].save(path)

    # How long one save takes here (fsync included), to spread the kills over it.
    t0 = time.perf_counter()
    for _ in range(3):
        versions[0].save(path)
    save_s = (time.perf_counter() - t0) / 3

    rnd = random.Random(1234)
    current = 0
    outcomes = {"old": 0, "new": 0}
    temp_files_seen = 0
    for kill in range(KILLS):
        target = 1 - current
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            saver(versions[target], path, w)
        os.close(w)
        os.read(r, 1)
        os.close(r)
        # Anywhere from "before the first byte" to "a few saves later".
        time.sleep(rnd.uniform(0, 3 * save_s))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

        with open(path, "rb") as f:
            on_disk = f.read()
        assert on_disk in blobs, f"kill {kill}: the file is neither the old nor the new index"
        loaded = spqindex.Index.load(path)  # checks the checksum and every field
        assert len(loaded) == 60_000
        state = blobs.index(on_disk)
        outcomes["new" if state == target else "old"] += 1
        current = state

        leftovers = [n for n in os.listdir(tmp_path) if n != "live.spq"]
        assert all(n.startswith("live.spq.tmp-") and len(n) == len("live.spq.tmp-XXXXXX") for n in leftovers), leftovers
        assert len(leftovers) <= 1, "more than one temp file from one kill"
        for n in leftovers:  # what a user would do: delete stale temp files when no save runs
            temp_files_seen += 1
            os.unlink(tmp_path / n)

    print(f"{KILLS} kills: {outcomes}, save {save_s * 1e3:.1f} ms, temp files left by kills: {temp_files_seen}")
    # The kills really landed on both sides of the rename.
    assert outcomes["old"] > 0 and outcomes["new"] > 0
    assert temp_files_seen > 0
