"""``spqindex shard build|search|info`` (build and search in-process on the local Ray instance)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import ray_helpers

import spqindex
from spqindex.cli import main


@pytest.fixture(scope="module")
def ray_local():
    yield from ray_helpers.local_ray()


@pytest.mark.ray
def test_shard_build_search_info(ray_local, tmp_path, rng, capsys):
    x = rng.standard_normal((900, 8)).astype(np.float32)
    trained = spqindex.Index.train(x, M=4, nbits=4, metric="l2")
    trained.save(tmp_path / "codebooks.spqi")
    np.save(tmp_path / "x.npy", x)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    np.save(tmp_path / "q.npy", q)
    out = tmp_path / "shards"
    assert (
        main(
            [
                "shard",
                "build",
                "--data",
                str(tmp_path / "x.npy"),
                "--out",
                str(out),
                "--codebooks",
                str(tmp_path / "codebooks.spqi"),
                "--metric",
                "ip",
                "--shards",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    assert "900 vectors in 3 shards" in capsys.readouterr().out
    assert main(["shard", "search", str(out), "--queries", str(tmp_path / "q.npy"), "-k", "5", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    index = spqindex.Index(trained.codebooks, metric="ip")
    index.add(x)
    D, I = index.search(q, 5)
    assert [r["ids"] for r in rows] == I.tolist()
    np.testing.assert_array_equal(np.array([r["distances"] for r in rows], np.float32), D)
    assert main(["shard", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "900 vectors, 3 shards, metric ip" in text and text.count("shard-0000") == 3


def test_shard_info_needs_no_ray_and_errors_are_one_line(tmp_path, rng):
    from spqindex.distributed.manifest import codebooks_sha256, write_manifest

    cb = rng.standard_normal((2, 4, 2)).astype(np.float32)
    index = spqindex.Index(cb)
    index.add(rng.standard_normal((10, 4)).astype(np.float32), ids=np.arange(10) * 3)
    index.save(tmp_path / "shard-00000.g0.spqi")
    write_manifest(
        tmp_path,
        {
            "metric": "l2",
            "codebooks_sha256": codebooks_sha256(cb),
            "generation": 0,
            "id_mode": "explicit",
            "next_id": 0,
            "ntotal": 10,
            "dim": 4,
            "M": 2,
            "nbits": 2,
            "shards": [{"file": "shard-00000.g0.spqi", "count": 10}, {"file": "shard-00001.g0.spqi", "count": 0}],
        },
    )
    code = "import sys; from spqindex.cli import main; r = main(sys.argv[1:]); assert 'ray' not in sys.modules; sys.exit(r)"
    r = subprocess.run([sys.executable, "-c", code, "shard", "info", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "10 vectors, 2 shards" in r.stdout and "shard 1: shard-00001.g0.spqi  0 vectors  MISSING" in r.stdout
    r = subprocess.run(
        [sys.executable, "-c", code, "shard", "info", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "manifest.json" in r.stderr
    r = subprocess.run([sys.executable, "-c", code, "shard"], capture_output=True, text=True)
    assert r.returncode == 2 and "ACTION" in r.stderr
