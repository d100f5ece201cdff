import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spqindex.cli import build_parser, main

sys.path.insert(0, str(Path(__file__).parent))
from test_datasets import write_idx  # noqa: E402


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, images=rng.integers(0, 256, (80, 28, 28), dtype=np.uint8), labels=rng.integers(0, 3, 80))
    return str(path)


def test_train_eval_index_search_end_to_end(tmp_path, npz, capsys):
    run = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "--data",
                npz,
                "--out",
                run,
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--bits",
                "16",
                "--eval-every",
                "1",
                "--top-n",
                "10",
                "--quiet",
                "--threads",
                "2",
                "--backbone",
                "cnn28_deep",
                "--tau",
                "0.3",
                "--tau-q",
                "20",
                "--normalize-subspaces",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "trained 2 epochs" in out and "mAP@10" in out
    assert {"model.pt", "checkpoint.pt", "log.jsonl"} <= set(os.listdir(run))
    saved = torch.load(os.path.join(run, "model.pt"), weights_only=True)
    assert saved["backbone"] == "cnn28_deep" and saved["config"]["tau"] == 0.3 and saved["config"]["tau_q"] == 20.0
    assert saved["config"]["normalize_subspaces"] is True

    assert main(["eval", "--checkpoint", run, "--data", npz, "--top-n", "10", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["map"] <= 1 and scores["queries"] == 8 and scores["database"] == 72

    idx = str(tmp_path / "tiny.spqi")
    assert main(["index", "--checkpoint", os.path.join(run, "model.pt"), "--data", npz, "--out", idx]) == 0
    assert "indexed 72 images (2 bytes each)" in capsys.readouterr().out

    assert main(["search", "--checkpoint", run, "--index", idx, "--data", npz, "--query", "0", "3", "-k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("test[0]: ") and len(lines[0].split()) == 5


def test_resume_via_cli(tmp_path, npz, capsys):
    run = str(tmp_path / "run")
    common = [
        "train",
        "--data",
        npz,
        "--out",
        run,
        "--batch-size",
        "16",
        "--bits",
        "16",
        "--eval-every",
        "0",
        "--quiet",
    ]
    assert main(common + ["--epochs", "1"]) == 0
    assert main(common + ["--epochs", "2", "--resume"]) == 0
    assert "trained 2 epochs" in capsys.readouterr().out
    log = [json.loads(line)["epoch"] for line in open(os.path.join(run, "log.jsonl"))]
    assert log == [1, 2]
    assert main(common + ["--epochs", "3", "--resume", "--lr", "0.001"]) == 1
    assert "config" in capsys.readouterr().err

    # A finished run resumed with --refine-iters: no more training, refined codebooks in model.pt only.
    assert main(common + ["--epochs", "2", "--resume", "--refine-iters", "3"]) == 0
    out = capsys.readouterr().out
    assert "trained 2 epochs" in out and "refined the codebooks with 3 Lloyd rounds" in out
    saved = torch.load(os.path.join(run, "model.pt"), weights_only=True)
    ckpt = torch.load(os.path.join(run, "checkpoint.pt"), weights_only=True)
    assert saved["refine_iters"] == 3
    assert not torch.equal(saved["state_dict"]["head.codebooks"], ckpt["model"]["head.codebooks"])
    torch.testing.assert_close(saved["state_dict"]["head.fc.weight"], ckpt["model"]["head.fc.weight"])


def test_demo_quick_on_fake_fashion_mnist(tmp_path, capsys):
    rng = np.random.default_rng(3)
    root = tmp_path / "fm"
    root.mkdir()
    for stem, n in (("train", 300), ("t10k", 40)):
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--data-root", str(root), "--out", str(out), "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert "classic PQ on raw pixels" in text and "SPQ (this run)" in text
    assert (out / "retrieval_grid.png").stat().st_size > 1000
    assert (out / "training_curve.png").stat().st_size > 1000
    assert str(out.resolve()) in text
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == [
        "SPQ, untrained network",
        "SPQ (this run)",
        "SPQ + 10 Lloyd rounds",
        "classic PQ on raw pixels",
    ]


@pytest.mark.parametrize(
    "argv,code,needle",
    [
        (["train", "--bits", "x"], 2, "expected a positive integer, got 'x'"),
        (["train", "--epochs", "0"], 2, "expected a positive integer"),
        (["train", "--crop-scale", "2"], 2, "(0, 1]"),
        (["train", "--tau", "0"], 2, "expected a positive number, got '0'"),
        (["train", "--tau-q", "nan"], 2, "expected a positive number, got 'nan'"),
        (["train", "--lr", "-1"], 2, "expected a positive number"),
        (["train", "--refine-iters", "-1"], 2, "--refine-iters"),
        (["eval"], 2, "--checkpoint"),
        (["frobnicate"], 2, "invalid choice"),
        (["eval", "--checkpoint", "/nonexistent/run"], 1, "no model file"),
        (["train", "--data", "/nonexistent.npz", "--epochs", "1"], 1, "unknown dataset"),
        (
            ["train", "--data", "fashion-mnist", "--data-root", "/nonexistent"],
            1,
            "apt-get install dataset-fashion-mnist",
        ),
    ],
)
def test_bad_arguments_give_one_line_errors(argv, code, needle, capsys):
    with pytest.raises(SystemExit) if code == 2 else _noop():
        rc = main(argv)
        assert rc == code
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_help_is_complete(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    for cmd in ("train", "eval", "index", "search", "demo"):
        assert cmd in text
        with pytest.raises(SystemExit):
            parser.parse_args([cmd, "--help"])
        sub = capsys.readouterr().out
        assert "usage: spqindex " + cmd in sub and "--threads" in sub


def test_console_script_runs():
    exe = Path(sys.executable).parent / "spqindex"
    if not exe.exists():
        pytest.skip("console script not installed")
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "demo" in res.stdout
