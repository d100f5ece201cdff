"""The demo's time budget: the plan from a measured throughput, and a budgeted run on fake data."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spqindex.cli import main
from spqindex.demo import plan_training
from spqindex.train import SPQConfig
from spqindex.train.trainer import training_throughput

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_datasets import write_idx  # noqa: E402


def test_plan_uses_all_images_for_whole_epochs_when_they_fit():
    assert plan_training(300.0, 1000.0, 60000) == (5, 60000)  # 300k images fit: 5 epochs of 60k
    assert plan_training(59.0, 1000.0, 60000) == (1, 59000)  # less than one epoch: a subset
    assert plan_training(0.1, 1000.0, 60000) == (1, 512)  # at least 512 images
    assert plan_training(-5.0, 1000.0, 300) == (1, 300)  # never more than there are
    assert plan_training(300.0, 1000.0, 60000, epochs=2) == (2, 60000)
    assert plan_training(60.0, 1000.0, 60000, epochs=3) == (3, 20000)
    assert plan_training(300.0, 1000.0, 60000, train_size=10000) == (30, 10000)
    assert plan_training(1.0, 1000.0, 60000, train_size=0) == (1, 60000)  # 0 = all images
    with pytest.raises(ValueError, match="images_per_s"):
        plan_training(60.0, 0.0, 60000)


def test_training_throughput_is_positive_and_leaves_the_global_rng_alone():
    x = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    state = torch.get_rng_state()
    ips = training_throughput(SPQConfig(bits=16, batch_size=16), x, "cpu", steps=1)
    assert np.isfinite(ips) and ips > 0
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="steps"):
        training_throughput(SPQConfig(bits=16), x, "cpu", steps=0)


def test_demo_plans_epochs_and_images_from_its_budget(tmp_path, capsys):
    rng = np.random.default_rng(5)
    root = tmp_path / "fm"
    root.mkdir()
    for stem, n in (("train", 1500), ("t10k", 40)):
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--minutes",
                "0.05",
                "--queries",
                "16",
                "--data-root",
                str(root),
                "--out",
                str(out),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "time budget 0.05 min" in capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    plan, settings = result["plan"], result["settings"]
    assert plan["measured_train_images_per_s"] > 0 and plan["measured_embed_images_per_s"] > 0
    assert isinstance(plan["cpu_bf16"], bool)  # chosen by measuring both precisions on this CPU
    # 3 s cannot hold more than the 512-image floor at CPU speed: one epoch on 512 images
    assert (settings["epochs"], settings["train_size"]) == (1, 512)
    assert result["database"] == 1000  # the smallest database the plan picks
    assert [r["method"] for r in result["rows"]][-1] == "classic PQ on raw pixels"
