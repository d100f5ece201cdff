"""The published Fashion-MNIST models (models/fmnist-spq*.pt): their recorded hash and mAP, and the CLI."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from spqindex import datasets
from spqindex.cli import main
from spqindex.commands import load_split
from spqindex.metrics import map_at_n
from spqindex.train import SPQModel

ROOT = Path(__file__).parents[2]
MANIFEST = ROOT / "models" / "fmnist-spq.json"


def _published():
    if not MANIFEST.exists():
        return []
    return sorted(json.loads(MANIFEST.read_text()).items())


def test_manifest_entries_match_their_files_and_the_results_doc():
    rows = _published()
    if not rows:
        pytest.skip("no published model yet (models/fmnist-spq.json missing)")
    doc = (ROOT / "docs" / "results.md").read_text()
    for name, row in rows:
        path = ROOT / row["file"]
        assert path.name == name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"], name
        assert path.stat().st_size < 5_000_000, "published models must stay small (cnn28-sized)"
        line = next((ln for ln in doc.splitlines() if name in ln and row["sha256"] in ln), None)
        assert line is not None, f"docs/results.md has no row naming {name} with its SHA-256"
        assert f"{row['map@1000']:.4f}" in line, f"docs/results.md's {name} row does not show {row['map@1000']:.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, _ in _published()] or ["fmnist-spq32.pt"])
def test_published_model_rescores_to_its_documented_map(name):
    """The outside check: SPQModel.load, embed 60k train / 10k test, model.build_index, mAP@1000 itself."""
    rows = dict(_published())
    if name not in rows:
        pytest.skip(f"{name} is not published yet")
    try:
        x_db, y_db = datasets.fashion_mnist("train")
        x_q, y_q = datasets.fashion_mnist("test")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model = SPQModel.load(ROOT / rows[name]["file"])
    index = model.build_index(x_db)
    _, ids = index.search(model.embed(x_q), 1000)
    # mAP@1000 written out here (not through spqindex.metrics): mean over queries of the average precision
    # over the relevant items among the top 1000.
    rel = (y_db[ids] == y_q[:, None]).astype(np.float64)
    hits = np.cumsum(rel, axis=1)
    ap = (rel * hits / np.arange(1, 1001)).sum(axis=1) / np.maximum(rel.sum(axis=1), 1)
    assert abs(ap.mean() - rows[name]["map@1000"]) <= 0.002
    assert abs(map_at_n(ids, y_q, y_db, 1000) - ap.mean()) < 1e-9


def test_cli_index_and_search_accept_a_published_model_file(tmp_path, capsys):
    rows = _published()
    if not rows:
        pytest.skip("no published model yet (models/fmnist-spq.json missing)")
    model_file = str(ROOT / rows[0][1]["file"])
    rng = np.random.default_rng(0)
    data = tmp_path / "small.npz"
    np.savez(data, images=rng.integers(0, 256, (120, 28, 28), dtype=np.uint8), labels=rng.integers(0, 10, 120))
    index_file = tmp_path / "small.spqi"
    assert main(["index", "--checkpoint", model_file, "--data", str(data), "--out", str(index_file)]) == 0
    assert (
        main(
            [
                "search",
                "--checkpoint",
                model_file,
                "--index",
                str(index_file),
                "--data",
                str(data),
                "--split",
                "train",
                "--query",
                "0",
                "5",
                "-k",
                "3",
            ]
        )
        == 0
    )
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("train[")]
    got = [[int(i) for i in re.findall(r"(\d+)\(", ln.split(":", 1)[1])] for ln in lines]
    # The same through the Python API on the same split.
    images, _ = load_split(str(data), "train")
    model = SPQModel.load(model_file)
    _, ids = model.build_index(images).search(model.embed(images[[0, 5]]), 3)
    assert got == ids.tolist()
