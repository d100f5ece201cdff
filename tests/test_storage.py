"""Issue 12: the stored block layout maintained by add/remove, implicit ids, file format v2
(version-1 files, verify=False, mmap), merging, and the verify/upgrade/merge commands."""

import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import test_simd

import spqindex
from spqindex import _core
import reference as ref
from conftest import random_codebooks

CLI = os.path.join(os.path.dirname(sys.executable), "spqindex")
level = test_simd.level  # the fixture: every SIMD level this CPU has


def tie_heavy_codes(rng, n, M, nbits):
    """Codes drawn from few codewords, so that many rows share a score (tie order is tested)."""
    assign = rng.integers(0, min(3, 1 << nbits), (n, M))
    return assign, ref.pack(assign, nbits)


def check_against_reference(index, cb, model_assign, model_ids, metric, rng, k=12):
    np.testing.assert_array_equal(index.ids, model_ids)
    np.testing.assert_array_equal(
        index.codes, ref.pack(model_assign, index.nbits) if len(model_ids) else np.zeros((0, index.code_size), np.uint8)
    )
    q = rng.standard_normal((5, index.dim)).astype(np.float32)
    D, I = index.search(q, k)
    if len(model_ids):
        Dr, Ir = ref.search(cb, q, model_assign, model_ids, k, metric)
    else:
        Dr = np.full((5, k), -np.inf if metric == "ip" else np.inf, np.float32)
        Ir = np.full((5, k), -1, np.int64)
    np.testing.assert_array_equal(I, Ir)
    np.testing.assert_array_equal(D, Dr)


@pytest.mark.parametrize("nbits,M", [(4, 6), (4, 5), (8, 3), (3, 5)])
@pytest.mark.parametrize("explicit", [False, True])
def test_add_remove_add_churn_matches_reference(rng, level, nbits, M, explicit):
    metric = ["l2", "ip", "spq"][(M + nbits) % 3]
    cb = random_codebooks(rng, M, nbits, 2)
    index = spqindex.Index(cb, metric=metric)
    assign = np.zeros((0, M), np.int64)
    ids = np.zeros(0, np.int64)
    next_id = 0
    for step in range(8):
        n = int(rng.integers(1, 150))
        a, codes = tie_heavy_codes(rng, n, M, nbits)
        if explicit:
            new = next_id + rng.permutation(3 * n)[:n].astype(np.int64)  # not ascending
            index.add_codes(codes, ids=new)
            next_id = int(new.max()) + 1
        else:
            new = np.arange(next_id, next_id + n, dtype=np.int64)
            index.add_codes(codes)
            next_id += n
        assign = np.concatenate([assign, a])
        ids = np.concatenate([ids, new])
        check_against_reference(index, cb, assign, ids, metric, rng)
        if len(ids) and step % 2 == 0:
            doomed = rng.choice(ids, size=int(rng.integers(1, len(ids) + 1)), replace=False)
            assert index.remove(np.concatenate([doomed, [10**12]])) == len(doomed)
            keep = ~np.isin(ids, doomed)
            assign, ids = assign[keep], ids[keep]
            check_against_reference(index, cb, assign, ids, metric, rng)
        assert index._core.next_id == next_id


def test_implicit_ids_until_they_carry_information(rng, tmp_path):
    cb = random_codebooks(rng, 4, 4, 2)
    x = rng.standard_normal((100, 8)).astype(np.float32)
    index = spqindex.Index(cb)
    index.add(x[:60])
    index.add(x[60:])
    assert not index._core.ids_stored
    np.testing.assert_array_equal(index.ids, np.arange(100))
    index.save(tmp_path / "implicit.spq")
    # v2 layout: no id section (codes of 2 blocks of 64 rows x 2 records x 64 bytes + checksum)
    codes_off = (64 + 4 * 16 * 8 + 63) // 64 * 64
    assert os.path.getsize(tmp_path / "implicit.spq") == codes_off + 2 * 128 + 8
    assert index.remove(np.array([5, 7])) == 2  # remove materialises
    assert index._core.ids_stored
    ids = np.delete(np.arange(100), [5, 7])
    np.testing.assert_array_equal(index.ids, ids)
    index.add(x[:3])  # assigned ids continue from next_id
    np.testing.assert_array_equal(index.ids[-3:], [100, 101, 102])
    np.testing.assert_array_equal(index.reconstruct([101]), index.decode(index.encode(x[1:2])))
    with pytest.raises(KeyError):
        index.reconstruct([5])

    explicit = spqindex.Index(cb)
    explicit.add(x[:4], ids=[0, 1, 2, 3])  # user-given ids are stored even when they are 0..n-1
    assert explicit._core.ids_stored
    with pytest.raises(ValueError, match="ids"):
        explicit.add(x[:1])
    empty_removal = spqindex.Index(cb)
    empty_removal.add(x[:10])
    assert empty_removal.remove([99]) == 0 and not empty_removal._core.ids_stored
    loaded = spqindex.Index.load(tmp_path / "implicit.spq", mmap=True, verify=False)
    assert not loaded._core.ids_stored and loaded._core.next_id == 100
    np.testing.assert_array_equal(
        loaded.reconstruct([42]), spqindex.Index.load(tmp_path / "implicit.spq").reconstruct([42])
    )


def write_v1(path, index):
    """A version-1 file by hand, in the layout io.h documents (FAISS rows, ids always)."""
    cb = index.codebooks
    codes, ids = index.codes, index.ids
    head = b"SPQIDX\0\0" + struct.pack("<II", 1, 36)
    mode = {"l2": 0, "spq": 1, "ip": 2}[index.metric]
    id_mode = (
        0 if len(index) == 0 else (2 if index._core.ids_stored and not np.array_equal(ids, np.arange(len(ids))) else 1)
    )
    head += struct.pack("<IIIIIQQ", index.dim, index.M, index.nbits, mode, id_mode, len(index), index._core.next_id)
    data = bytearray(head + cb.tobytes())
    data += bytes(-len(data) % 64)
    data += codes.tobytes()
    data += bytes(-len(data) % 8)
    data += ids.astype("<i8").tobytes()
    data += struct.pack("<Q", _core.xxh64(bytes(data)))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("nbits,M,explicit", [(4, 3, False), (8, 2, True), (3, 5, True), (4, 4, True)])
def test_v1_files_load_and_are_refused_under_mmap(rng, tmp_path, nbits, M, explicit):
    cb = random_codebooks(rng, M, nbits, 2)
    index = spqindex.Index(cb, metric="ip")
    x = rng.standard_normal((130, 2 * M)).astype(np.float32)
    index.add(x, ids=rng.permutation(1000)[:130] if explicit else None)
    old = tmp_path / "old.spq"
    write_v1(old, index)
    loaded = spqindex.Index.load(old)
    for a, b in ((loaded.codes, index.codes), (loaded.ids, index.ids), (loaded.codebooks, index.codebooks)):
        np.testing.assert_array_equal(a, b)
    assert loaded._core.next_id == index._core.next_id and loaded.metric == "ip"
    assert loaded._core.ids_stored == explicit  # assigned 0..n-1 ids are not kept
    np.testing.assert_array_equal(loaded.search(x[:4], 7)[1], index.search(x[:4], 7)[1])
    with pytest.raises(ValueError, match="spqindex upgrade OLD NEW"):
        spqindex.Index.load(old, mmap=True)
    new = tmp_path / "new.spq"
    assert subprocess.run([CLI, "upgrade", str(old), str(new)], capture_output=True).returncode == 0
    up = spqindex.Index.load(new, mmap=True)
    np.testing.assert_array_equal(up.search(x[:4], 7)[1], index.search(x[:4], 7)[1])
    index.save(tmp_path / "direct.spq")
    assert new.read_bytes() == (tmp_path / "direct.spq").read_bytes()


def test_verify_false_opens_without_reading_and_searches_in_place(rng, tmp_path):
    cb = random_codebooks(rng, 8, 4, 2)
    index = spqindex.Index(cb)
    index.add(rng.standard_normal((3000, 16)).astype(np.float32), ids=np.arange(3000) * 2)
    path = tmp_path / "a.spq"
    index.save(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # checksum broken: only a verified load notices
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        spqindex.Index.load(path, mmap=True)
    for mmap in (False, True):
        fast = spqindex.Index.load(path, mmap=mmap, verify=False)
        q = rng.standard_normal((3, 16)).astype(np.float32)
        for a, b in zip(fast.search(q, 20), index.search(q, 20)):
            np.testing.assert_array_equal(a, b)
    path.write_bytes(bytes(data[:-9]) + bytes(data[-8:]))  # sizes are still checked
    with pytest.raises(ValueError, match="does not match its header"):
        spqindex.Index.load(path, mmap=True, verify=False)
    with pytest.raises(TypeError, match="verify"):
        spqindex.Index.load(path, verify="no")


def build_parts(rng, cb, sizes, explicit):
    parts, xs = [], []
    base = 0
    for n in sizes:
        p = spqindex.Index(cb, metric="spq")
        x = rng.standard_normal((n, cb.shape[0] * cb.shape[2])).astype(np.float32)
        if explicit:
            p.add(x, ids=base + rng.permutation(2 * n)[:n])
            base += 2 * n
        else:
            p.add(x)
        parts.append(p)
        xs.append(x)
    return parts, xs


def saved(index, path):
    index.save(path)
    return path.read_bytes()


@pytest.mark.parametrize("nbits", [4, 8, 2])
@pytest.mark.parametrize("explicit", [False, True])
def test_merge_equals_index_built_from_concatenation(rng, tmp_path, nbits, explicit):
    cb = random_codebooks(rng, 3, nbits, 2)
    parts, xs = build_parts(rng, cb, [70, 0, 64, 5], explicit)
    whole = spqindex.Index(cb, metric="spq")
    if explicit:
        whole.add(np.concatenate(xs), ids=np.concatenate([p.ids for p in parts]))
    else:
        whole.add(np.concatenate(xs))
    merged = spqindex.Index(cb, metric="spq")
    for p in parts:
        merged.merge_from(p, shift_ids=not explicit)
    assert merged._core.ids_stored == whole._core.ids_stored
    want = saved(whole, tmp_path / "whole.spq")
    assert saved(merged, tmp_path / "merged.spq") == want
    # the streaming command gives the same file
    paths = []
    for i, p in enumerate(parts):
        paths.append(str(tmp_path / f"part{i}.spq"))
        p.save(paths[-1])
    out = tmp_path / "out.spq"
    args = [CLI, "merge", str(out)] + paths + ([] if explicit else ["--shift-ids"])
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == want
    assert subprocess.run([CLI, "verify", str(out)], capture_output=True).returncode == 0


def test_merge_errors_name_the_argument_and_leave_the_index_unchanged(rng, tmp_path):
    cb = random_codebooks(rng, 3, 4, 2)
    a, b = build_parts(rng, cb, [10, 10], explicit=False)[0]
    before = saved(a, tmp_path / "a.spq")
    with pytest.raises(ValueError, match="other: id"):
        a.merge_from(b)  # both hold ids 0..9
    other_cb = spqindex.Index(random_codebooks(rng, 3, 4, 2), metric="spq")
    other_cb.add(rng.standard_normal((2, 6)).astype(np.float32))
    with pytest.raises(ValueError, match="other: codebooks"):
        a.merge_from(other_cb)
    other_metric = spqindex.Index(cb, metric="l2")
    other_metric.add(rng.standard_normal((2, 6)).astype(np.float32))
    with pytest.raises(ValueError, match="other: metric"):
        a.merge_from(other_metric)
    with pytest.raises(ValueError, match="other"):
        a.merge_from(a)
    with pytest.raises(TypeError, match="other"):
        a.merge_from("a.spq")
    assert saved(a, tmp_path / "a.spq") == before
    a.merge_from(b, shift_ids=True)
    np.testing.assert_array_equal(a.ids, np.arange(20))
    # the command reports collisions and a v1 input the same way
    b.save(tmp_path / "b.spq")
    a.save(tmp_path / "a.spq")
    proc = subprocess.run(
        [CLI, "merge", str(tmp_path / "o.spq"), str(tmp_path / "a.spq"), str(tmp_path / "b.spq")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "is in more than one file" in proc.stderr
    assert not (tmp_path / "o.spq").exists()
    write_v1(tmp_path / "v1.spq", b)
    proc = subprocess.run(
        [CLI, "merge", str(tmp_path / "o.spq"), str(tmp_path / "v1.spq")], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "spqindex upgrade OLD NEW" in proc.stderr


def test_verify_command(rng, tmp_path):
    a = build_parts(rng, random_codebooks(rng, 2, 4, 2), [30], explicit=True)[0][0]
    path = tmp_path / "a.spq"
    a.save(path)
    proc = subprocess.run([CLI, "verify", str(path), "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '"ntotal": 30' in proc.stdout and '"ids_stored": true' in proc.stdout
    data = bytearray(path.read_bytes())
    data[200] ^= 1
    path.write_bytes(bytes(data))
    proc = subprocess.run([CLI, "verify", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "checksum" in proc.stderr


def test_kill_during_merge_leaves_old_or_new_output(rng, tmp_path):
    """SIGKILL at random moments of `spqindex merge`: OUT is always the old file or the complete
    new one (temporary files may be left behind, never a torn OUT)."""
    cb = random_codebooks(rng, 16, 4, 1)
    paths = []
    for i in range(3):
        p = spqindex.Index(cb)
        p.add_codes(rng.integers(0, 256, (300_000, 8), dtype=np.uint8))
        paths.append(str(tmp_path / f"in{i}.spq"))
        p.save(paths[-1])
    out = tmp_path / "out.spq"
    old = spqindex.Index(cb)
    old.add_codes(rng.integers(0, 256, (10, 8), dtype=np.uint8))
    old.save(out)
    old_bytes = out.read_bytes()
    new_bytes = None
    outcomes = set()
    mid_write = 0
    for trial in range(6):
        proc = subprocess.Popen(
            [CLI, "merge", str(out)] + paths + ["--shift-ids"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if trial % 2 == 0:  # the moment the temporary output appears: mid-write
            deadline = time.time() + 60
            while proc.poll() is None and time.time() < deadline:
                if any(".tmp-" in name for name in os.listdir(tmp_path)):
                    mid_write += 1
                    break
                time.sleep(0.0005)
        else:
            time.sleep(0.2 * trial)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = out.read_bytes()
        if data == old_bytes:
            outcomes.add("old")
            continue
        _core.verify_file(str(out))  # complete and consistent
        assert len(spqindex.Index.load(out, mmap=True)) == 900_000
        outcomes.add("new")
        new_bytes = data if new_bytes is None else new_bytes
        assert data == new_bytes
        out.write_bytes(old_bytes)  # restore, so later kills test the replacement again
    assert mid_write > 0 and "old" in outcomes
    for name in os.listdir(tmp_path):
        if ".tmp-" in name:
            os.unlink(tmp_path / name)


@pytest.mark.parametrize("nbits,M", [(4, 6), (8, 3), (3, 5)])
@pytest.mark.parametrize("metric", ["l2", "ip", "spq"])
def test_filtered_search_is_exact_among_allowed_ids(rng, level, nbits, M, metric):
    """Issue 15 item 1: search(q, k, filter=ids) == the reference top-k over the allowed rows."""
    cb = random_codebooks(rng, M, nbits, 2)
    index = spqindex.Index(cb, metric=metric)
    n = 3000
    assign, codes = tie_heavy_codes(rng, n, M, nbits)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    index.add_codes(codes, ids=ids)
    index.remove(ids[::7])
    keep = np.ones(n, bool)
    keep[::7] = False
    assign, ids = assign[keep], ids[keep]
    q = rng.standard_normal((6, index.dim)).astype(np.float32)
    for frac in (0.0, 0.01, 0.3, 1.0):
        allowed = ids[rng.random(len(ids)) < frac]
        filt = np.concatenate([allowed, [-5, 10**9]])  # unknown ids are ignored
        for k in (1, 10, 200):
            D, I = index.search(q, k, filter=filt)
            sel = np.isin(ids, allowed)
            if sel.any():
                Dr, Ir = ref.search(cb, q, assign[sel], ids[sel], k, metric)
            else:
                Dr = np.full((6, k), -np.inf if metric == "ip" else np.inf, np.float32)
                Ir = np.full((6, k), -1, np.int64)
            np.testing.assert_array_equal(I, Ir)
            np.testing.assert_array_equal(D, Dr)
    np.testing.assert_array_equal(index.search(q, 5, filter=ids)[1], index.search(q, 5)[1])
    with pytest.raises(TypeError, match="filter"):
        index.search(q, 5, filter=np.array([1.5]))


@pytest.mark.parametrize("nbits", [4, 8])
def test_filtered_search_when_one_query_is_split_over_the_database(rng, level, nbits):
    """nq=1 over 40,000 rows: the planner splits the database over the threads."""
    threads = spqindex.get_num_threads()
    spqindex.set_num_threads(4)
    try:
        cb = random_codebooks(rng, 4, nbits, 2)
        index = spqindex.Index(cb, metric="l2")
        assign, codes = tie_heavy_codes(rng, 40_000, 4, nbits)
        index.add_codes(codes)
        ids = np.arange(40_000)
        allowed = ids[rng.random(40_000) < 0.05]
        q = rng.standard_normal((1, index.dim)).astype(np.float32)
        for k in (1, 50):
            D, I = index.search(q, k, filter=allowed)
            sel = np.isin(ids, allowed)
            Dr, Ir = ref.search(cb, q, assign[sel], ids[sel], k, "l2")
            np.testing.assert_array_equal(I, Ir)
            np.testing.assert_array_equal(D, Dr)
    finally:
        spqindex.set_num_threads(threads)


def reference_range(cb, q, assign, ids, radius, metric):
    S = ref.adc(cb, q, assign, metric)
    lims, D, I = [0], [], []
    for i in range(S.shape[0]):
        hit = S[i] > radius if metric == "ip" else S[i] < radius
        key = -S[i][hit] if metric == "ip" else S[i][hit]
        order = np.lexsort((ids[hit], key))
        D.append(S[i][hit][order])
        I.append(ids[hit][order])
        lims.append(lims[-1] + int(hit.sum()))
    return np.array(lims), np.concatenate(D).astype(np.float32), np.concatenate(I).astype(np.int64)


@pytest.mark.parametrize("nbits,M", [(4, 6), (8, 3), (3, 5)])
@pytest.mark.parametrize("metric", ["l2", "ip", "spq"])
@pytest.mark.parametrize("nq", [1, 5])
def test_range_search_matches_reference(rng, level, nbits, M, metric, nq):
    """Issue 15 item 2: lims, D, I = range_search(q, radius), FAISS convention, exact; the radius
    is set to scores that occur, so the strict comparison is tested on ties."""
    threads = spqindex.get_num_threads()
    spqindex.set_num_threads(4)  # nq=1 over 40,000 rows: the database is split over threads
    try:
        cb = random_codebooks(rng, M, nbits, 2)
        index = spqindex.Index(cb, metric=metric)
        n = 40_000 if nq == 1 else 3000
        assign, codes = tie_heavy_codes(rng, n, M, nbits)
        ids = rng.permutation(3 * n)[:n].astype(np.int64)
        index.add_codes(codes, ids=ids)
        q = rng.standard_normal((nq, index.dim)).astype(np.float32)
        S = ref.adc(cb, q, assign, metric)
        for quantile in (0.0, 0.001, 0.02, 0.5):
            radius = float(np.quantile(S[0], 1 - quantile if metric == "ip" else quantile, method="nearest"))
            lims, D, I = index.range_search(q, radius)
            lr, Dr, Ir = reference_range(cb, q, assign, ids, radius, metric)
            np.testing.assert_array_equal(lims, lr)
            np.testing.assert_array_equal(I, Ir)
            np.testing.assert_array_equal(D, Dr)
    finally:
        spqindex.set_num_threads(threads)
    with pytest.raises(ValueError, match="radius"):
        index.range_search(q, float("nan"))
    with pytest.raises(TypeError, match="radius"):
        index.range_search(q, "1")
    empty = spqindex.Index(cb, metric=metric)
    lims, D, I = empty.range_search(q, 1.0)
    assert lims.tolist() == [0] * (nq + 1) and D.shape == (0,) and I.shape == (0,)
