"""The pure parts of spqindex.distributed (no Ray): top-k merge, id routing, manifest file."""

import json
import os

import numpy as np
import pytest

import spqindex
from spqindex.distributed.manifest import codebooks_sha256, read_manifest, write_manifest
from spqindex.distributed.merge import merge_topk
from spqindex.distributed.routing import balanced_ranges, hash_shard


@pytest.mark.parametrize("metric", ["l2", "spq", "ip"])
def test_merge_equals_one_index_with_ties_and_padding(rng, metric):
    # Few codewords and many vectors: many equal distances, so the tie order is exercised.
    cb = rng.standard_normal((2, 4, 2)).astype(np.float32)
    full = spqindex.Index(cb, metric=metric)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    ids = rng.choice(10**6, 300, replace=False)
    full.add(x, ids=ids)
    q = rng.standard_normal((20, 4)).astype(np.float32)
    where = hash_shard(ids, 3)
    parts = []
    for s in range(3):
        part = spqindex.Index(cb, metric=metric)
        part.add(x[where == s], ids=ids[where == s])
        parts.append(part)
    for k in (1, 50, 400):  # 400 > ntotal: padded
        results = [p.search(q, k) for p in parts]
        D, I = merge_topk([r[0] for r in results], [r[1] for r in results], k, metric)
        D0, I0 = full.search(q, k)
        np.testing.assert_array_equal(I, I0)
        np.testing.assert_array_equal(D, D0)
    assert len(np.unique(full.search(q, 50)[0])) < 20 * 50  # ties really occur


def test_merge_puts_padding_last_and_keeps_it(rng):
    D = [np.array([[1.0, np.inf]], np.float32), np.array([[0.5, np.inf]], np.float32)]
    I = [np.array([[7, -1]]), np.array([[9, -1]])]
    d, i = merge_topk(D, I, 3, "l2")
    assert i.tolist() == [[9, 7, -1]] and d[0, 2] == np.inf
    D = [np.array([[1.0, -np.inf]], np.float32), np.array([[1.0, -np.inf]], np.float32)]
    I = [np.array([[8, -1]]), np.array([[3, -1]])]
    d, i = merge_topk(D, I, 3, "ip")
    assert i.tolist() == [[3, 8, -1]] and d[0, 2] == -np.inf


def test_hash_shard_is_deterministic_spread_and_in_range():
    ids = np.arange(100000, dtype=np.int64)
    s = hash_shard(ids, 7)
    assert s.min() == 0 and s.max() == 6
    counts = np.bincount(s, minlength=7)
    assert counts.min() > 0.9 * 100000 / 7  # sequential ids spread evenly
    np.testing.assert_array_equal(s, hash_shard(ids.copy(), 7))
    # Routing must never change between versions (saved shards depend on it): a plain-int reference.
    assert hash_shard(np.array([0, 1, 12345, 2**62]), 1000).tolist() == _splitmix_reference([0, 1, 12345, 2**62], 1000)


def _splitmix_reference(ids, n):
    out = []
    for v in ids:
        z = (v + 0x9E3779B97F4A7C15) % 2**64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        z ^= z >> 31
        out.append(z % n)
    return out


def test_balanced_ranges():
    r = balanced_ranges(10, 4)
    assert r.tolist() == [0, 2, 5, 7, 10]
    assert balanced_ranges(2, 4).tolist() == [0, 0, 1, 1, 2]


def test_manifest_roundtrip_and_rejects(tmp_path, rng):
    cb = rng.standard_normal((2, 4, 3)).astype(np.float32)
    m = {
        "metric": "l2",
        "codebooks_sha256": codebooks_sha256(cb),
        "generation": 3,
        "id_mode": None,
        "next_id": 0,
        "shards": [{"file": "shard-00000.g3.spqi", "count": 5}],
    }
    write_manifest(tmp_path, m)
    got = read_manifest(tmp_path)
    assert got["generation"] == 3 and got["version"] == 1 and got["shards"] == m["shards"]
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary left behind
    assert codebooks_sha256(cb) != codebooks_sha256(cb + 1e-6)
    (tmp_path / "manifest.json").write_text(json.dumps(dict(got, version=99)))
    with pytest.raises(ValueError, match="version"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(dict(got, shards=[{"file": "../x", "count": 1}])))
    with pytest.raises(ValueError, match="shard entry"):
        read_manifest(tmp_path)
    os.unlink(tmp_path / "manifest.json")
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path)


def test_import_spqindex_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, spqindex, spqindex.distributed; assert 'ray' not in sys.modules, 'ray imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
