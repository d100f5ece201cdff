"""8-bit index files keep the stored codeword order (format flag bit 2, docs/format.md): mapped
8-bit indexes search with the grouped kernels, files without the order still load and merge."""

import struct
import subprocess

import numpy as np
import pytest
import test_simd
from test_storage import CLI

import spqindex
from spqindex import _core
import reference as ref
from conftest import random_codebooks

level = test_simd.level  # the fixture: every SIMD level this CPU has
OFF_FLAGS = 52
GROUPED = 4


def clustered_index(rng, M=3, dsub=2, n=700, explicit=False, metric="l2"):
    """An 8-bit index over clustered vectors, so the grouped bound prunes as on real data."""
    cb = random_codebooks(rng, M, 8, dsub)
    index = spqindex.Index(cb, metric=metric)
    centers = rng.standard_normal((20, M * dsub)).astype(np.float32)
    x = centers[rng.integers(0, 20, n)] + 0.1 * rng.standard_normal((n, M * dsub)).astype(np.float32)
    index.add(x, ids=rng.permutation(10 * n)[:n] if explicit else None)
    return index


def flags(path) -> int:
    return struct.unpack_from("<I", path.read_bytes(), OFF_FLAGS)[0]


def order_table(path, M, dsub) -> np.ndarray:
    start = 64 + 4 * M * 256 * dsub
    return np.frombuffer(path.read_bytes()[start : start + 256 * M], np.uint8).reshape(M, 256)


def with_checksum(data: bytearray) -> bytes:
    struct.pack_into("<Q", data, len(data) - 8, _core.xxh64(bytes(data[:-8])))
    return bytes(data)


def write_v2_faiss_numbered(path, index):
    """An 8-bit version-2 file as the format had it before flag bit 2: blocks of FAISS codes."""
    codes, M, n = index.codes, index.M, len(index)
    stored = index._core.ids_stored
    head = b"SPQIDX\0\0" + struct.pack("<II", 2, 48)
    metric = {"l2": 0, "spq": 1, "ip": 2}[index.metric]
    id_mode = 0 if n == 0 else (2 if stored else 1)
    ascending = not stored or bool(np.all(np.diff(index.ids) > 0))
    head += struct.pack("<IIIIIQQ", index.dim, M, 8, metric, id_mode, n, index._core.next_id)
    head += struct.pack("<III", (1 if stored else 0) | (2 if ascending else 0), 64, 64 * M)
    data = bytearray(head + index.codebooks.tobytes())
    data += bytes(-len(data) % 64)
    nb = -(-n // 64)
    rows = np.zeros((nb * 64, M), np.uint8)
    rows[:n] = codes
    # per block and sub-space m, 64 bytes: byte 2i holds row i, byte 2i+1 row 32 + i
    blocks = np.empty((nb, M, 64), np.uint8)
    r = rows.reshape(nb, 64, M).transpose(0, 2, 1)
    blocks[:, :, 0::2], blocks[:, :, 1::2] = r[:, :, :32], r[:, :, 32:]
    data += blocks.tobytes()
    if stored:
        data += index.ids.astype("<i8").tobytes()
    path.write_bytes(with_checksum(data + bytes(8)))


def assert_same_search(a, b, q, k=15):
    for x, y in zip(a.search(q, k), b.search(q, k)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("metric", ["l2", "ip", "spq"])
@pytest.mark.parametrize("explicit", [False, True])
def test_8bit_files_store_the_order_and_mapped_search_is_exact(rng, tmp_path, level, metric, explicit):
    index = clustered_index(rng, explicit=explicit, metric=metric)
    path = tmp_path / "a.spq"
    index.save(path)
    assert flags(path) & GROUPED
    order = order_table(path, index.M, 2)
    assert all(sorted(row) == list(range(256)) for row in order.tolist())
    q = rng.standard_normal((6, index.dim)).astype(np.float32)
    assign = ref.unpack(index.codes, index.M, 8)
    Dr, Ir = ref.search(index.codebooks, q, assign, index.ids, 15, metric)
    for mmap in (False, True):
        for verify in (True, False):
            loaded = spqindex.Index.load(path, mmap=mmap, verify=verify)
            np.testing.assert_array_equal(loaded.codes, index.codes)
            D, I = loaded.search(q, 15)
            np.testing.assert_array_equal(I, Ir)
            np.testing.assert_array_equal(D, Dr)
    loaded = spqindex.Index.load(path)
    loaded.save(tmp_path / "b.spq")  # a loaded grouped file is saved byte for byte
    assert (tmp_path / "b.spq").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("explicit", [False, True])
def test_files_without_the_order_load_upgrade_and_merge(rng, tmp_path, explicit):
    index = clustered_index(rng, n=300, explicit=explicit)
    old = tmp_path / "old.spq"
    write_v2_faiss_numbered(old, index)
    assert not flags(old) & GROUPED
    q = rng.standard_normal((5, index.dim)).astype(np.float32)
    for mmap in (False, True):
        loaded = spqindex.Index.load(old, mmap=mmap)
        np.testing.assert_array_equal(loaded.codes, index.codes)
        np.testing.assert_array_equal(loaded.ids, index.ids)
        assert_same_search(loaded, index, q)
    new = tmp_path / "new.spq"
    assert subprocess.run([CLI, "upgrade", str(old), str(new)], capture_output=True).returncode == 0
    index.save(tmp_path / "direct.spq")
    assert new.read_bytes() == (tmp_path / "direct.spq").read_bytes()

    # merge across numberings: the output takes the first input's, rows are converted
    other = spqindex.Index(index.codebooks, metric=index.metric)
    other.add_codes(
        rng.integers(0, 256, (200, index.M), dtype=np.uint8), ids=10_000 + np.arange(200) if explicit else None
    )
    grouped = tmp_path / "grouped.spq"
    other.save(grouped)
    for first, second, grouped_out in ((old, grouped, False), (grouped, old, True)):
        out = tmp_path / "merged.spq"
        args = [CLI, "merge", str(out), str(first), str(second)] + ([] if explicit else ["--shift-ids"])
        assert subprocess.run(args, capture_output=True).returncode == 0
        assert bool(flags(out) & GROUPED) == grouped_out
        merged = spqindex.Index.load(out, mmap=True)
        a, b = (index, other) if first == old else (other, index)
        want = spqindex.Index(index.codebooks, metric=index.metric)
        want.merge_from(a, shift_ids=not explicit)
        want.merge_from(b, shift_ids=not explicit)
        np.testing.assert_array_equal(merged.codes, want.codes)
        np.testing.assert_array_equal(merged.ids, want.ids)
        assert_same_search(merged, want, q)


def test_a_bad_order_or_a_misplaced_flag_is_refused(rng, tmp_path):
    index = clustered_index(rng, n=100)
    path = tmp_path / "a.spq"
    index.save(path)
    data = bytearray(path.read_bytes())
    start = 64 + 4 * index.M * 256 * 2
    data[start + 256 + 7] = data[start + 256 + 8]  # sub-space 1 maps two codes to one
    path.write_bytes(with_checksum(data))
    for mmap in (False, True):
        for verify in (True, False):
            with pytest.raises(ValueError, match="codeword order is not a permutation"):
                spqindex.Index.load(path, mmap=mmap, verify=verify)
    four = spqindex.Index(random_codebooks(rng, 4, 4, 2))
    four.add(rng.standard_normal((50, 8)).astype(np.float32))
    four.save(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, OFF_FLAGS, flags(path) | GROUPED)
    path.write_bytes(with_checksum(data))
    with pytest.raises(ValueError, match="codes grouped flag with nbits 4"):
        spqindex.Index.load(path)
