"""Save/load: round trips, mmap, atomicity, and corrupted files."""

import os

import numpy as np
import pytest

import spqindex
from conftest import random_codebooks


def build(rng, metric="l2", n=257, explicit=False):
    cb = random_codebooks(rng, 5, 3, 3)
    index = spqindex.Index(cb, metric=metric)
    x = rng.standard_normal((n, 15)).astype(np.float32)
    index.add(x, ids=rng.permutation(10 * n)[:n] if explicit else None)
    return index, x


def same(a, b):
    assert (a.metric, a.dim, a.M, a.nbits, len(a)) == (b.metric, b.dim, b.M, b.nbits, len(b))
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.ids, b.ids)


@pytest.mark.parametrize("metric", ["l2", "spq", "ip"])
@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("explicit", [False, True])
def test_roundtrip(rng, tmp_path, metric, mmap, explicit):
    index, x = build(rng, metric, explicit=explicit)
    path = tmp_path / "a.spq"
    index.save(path)
    loaded = spqindex.Index.load(path, mmap=mmap)
    same(index, loaded)
    np.testing.assert_array_equal(index.search(x[:7], 9)[1], loaded.search(x[:7], 9)[1])
    assert loaded.read_only == mmap
    if not mmap:  # the loaded index keeps the id mode and next id
        if explicit:
            loaded.add(x[:1], ids=[10**6])
        else:
            loaded.add(x[:1])
            assert loaded.ids[-1] == len(index)


def test_empty_index_roundtrip(rng, tmp_path):
    index = spqindex.Index(random_codebooks(rng, 2, 8, 1), metric="ip")
    index.save(tmp_path / "e.spq")
    loaded = spqindex.Index.load(tmp_path / "e.spq")
    assert len(loaded) == 0
    D, I = loaded.search(np.ones((2, 2), np.float32), 3)
    assert np.all(I == -1) and np.all(D == -np.inf)


def test_mmap_is_read_only(rng, tmp_path):
    index, x = build(rng)
    index.save(tmp_path / "m.spq")
    loaded = spqindex.Index.load(tmp_path / "m.spq", mmap=True)
    for mutate in (lambda: loaded.add(x[:1]), lambda: loaded.remove([0]), lambda: loaded.add_codes(loaded.codes[:1])):
        with pytest.raises(RuntimeError, match="read-only"):
            mutate()
    assert len(loaded) == len(index)


def test_codes_are_64_byte_aligned(rng, tmp_path):
    index, _ = build(rng)
    index.save(tmp_path / "x.spq")
    data = (tmp_path / "x.spq").read_bytes()
    codebytes = index.codes.tobytes()
    off = 64 + 5 * 8 * 3 * 4  # v2: nbits 3 is stored as FAISS rows in blocks of 64
    off = (off + 63) // 64 * 64
    assert data[off : off + len(codebytes)] == codebytes


def test_checksum_is_xxh64(rng, tmp_path):
    xxhash = pytest.importorskip("xxhash", reason="xxhash is in the test extra")
    index, _ = build(rng)
    index.save(tmp_path / "c.spq")
    data = (tmp_path / "c.spq").read_bytes()
    assert int.from_bytes(data[-8:], "little") == xxhash.xxh64(data[:-8]).intdigest()


def test_save_replaces_atomically_and_leaves_no_temp(rng, tmp_path):
    a, _ = build(rng, n=10)
    b, _ = build(rng, n=20)
    path = tmp_path / "i.spq"
    a.save(path)
    b.save(str(path))
    assert len(spqindex.Index.load(path)) == 20
    assert os.listdir(tmp_path) == ["i.spq"]


def test_path_errors(rng, tmp_path):
    index, _ = build(rng, n=3)
    with pytest.raises(IsADirectoryError):
        index.save(tmp_path)
    with pytest.raises(FileNotFoundError):
        index.save(tmp_path / "missing" / "x.spq")
    with pytest.raises(FileNotFoundError):
        spqindex.Index.load(tmp_path / "nope.spq")
    with pytest.raises(IsADirectoryError):
        spqindex.Index.load(tmp_path)
    with pytest.raises(TypeError, match="path"):
        index.save(12)


def test_rejects_bad_magic_version_and_size(rng, tmp_path):
    index, _ = build(rng, n=10)
    path = tmp_path / "v.spq"
    index.save(path)
    good = path.read_bytes()
    cases = {
        "magic": b"NOTANIDX" + good[8:],
        "version": good[:8] + (3).to_bytes(4, "little") + good[12:],
        "truncated": good[:-1],
        "ntotal": good[:36] + (2**62).to_bytes(8, "little") + good[44:],
        "checksum": good[:-8] + bytes(8),
    }
    for data in cases.values():
        path.write_bytes(data)
        with pytest.raises(ValueError, match="index file"):
            spqindex.Index.load(path)


def test_thousand_corrupted_files_raise_cleanly(rng, tmp_path):
    """Issue 2's bar: 1,000 randomly truncated or byte-flipped files only ever raise ValueError."""
    index, _ = build(rng, n=40, explicit=True)
    path = tmp_path / "good.spq"
    index.save(path)
    good = path.read_bytes()
    bad_path = tmp_path / "bad.spq"
    for trial in range(1000):
        data = bytearray(good)
        if trial % 2:
            data = data[: rng.integers(0, len(good))]
        else:
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(len(data))] ^= 1 << rng.integers(8)
        bad_path.write_bytes(bytes(data))
        for mmap in (False, True):
            with pytest.raises(ValueError):
                spqindex.Index.load(bad_path, mmap=mmap)
