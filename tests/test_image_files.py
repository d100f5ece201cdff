"""`spqindex index --images DIR` and `spqindex search --image FILE --grid PNG` on a plain image folder."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra: the CLI embeds images with an SPQ model")
from PIL import Image  # noqa: E402

import spqindex  # noqa: E402
from spqindex import image_files  # noqa: E402
from spqindex.cli import main  # noqa: E402

# Builds and runs a torch model through the CLI (tens of seconds); like tests/train and test_cli.py it
# stays out of the sanitizer run (make test-asan uses -m "not slow").
pytestmark = pytest.mark.slow


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i in range(30):
        where = root / "sub" if i % 3 == 0 else root
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(where / f"im{i:02d}.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "big-color.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def model_path(tmp_path):
    from spqindex.train import SPQConfig, SPQModel

    path = tmp_path / "model.pt"
    SPQModel(SPQConfig(bits=16), "cnn28").save(path)  # untrained weights: the plumbing is under test
    return str(path)


def test_list_images_is_recursive_sorted_and_skips_other_files(folder):
    names = image_files.list_images(folder)
    assert len(names) == 31
    assert "notes.txt" not in names and os.path.join("sub", "im00.png") in names and "big-color.jpg" in names
    assert names.index("big-color.jpg") < names.index("im01.png")
    with pytest.raises(FileNotFoundError, match="--images"):
        image_files.list_images(folder / "missing")
    (folder / "empty").mkdir()
    with pytest.raises(ValueError, match="--images: no image files"):
        image_files.list_images(folder / "empty")


def test_index_and_search_an_image_folder(tmp_path, folder, model_path, capsys):
    out = str(tmp_path / "imgs.spqidx")
    assert main(["index", "--checkpoint", model_path, "--images", str(folder), "--out", out]) == 0
    assert "indexed 31 images" in capsys.readouterr().out
    sidecar = json.load(open(out + ".names.json"))
    assert sidecar["root"] == str(folder) and sidecar["names"] == image_files.list_images(folder)

    queries = [str(folder / "im05.png"), str(folder / "sub" / "im09.png")]
    grid = str(tmp_path / "grid.png")
    assert (
        main(["search", "--checkpoint", model_path, "--index", out, "--image", *queries, "-k", "4", "--grid", grid])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    # the printed names are the index's own top-4 ids mapped through the sidecar
    from spqindex.commands import _read_images, load_model

    model = load_model(model_path, "cpu")
    D, I = spqindex.Index.load(out).search(model.embed(_read_images(queries, model)), 4)
    for line, q, d, ids in zip(lines, queries, D, I):
        expect = " ".join(f"{sidecar['names'][a]}({b:.3f})" for a, b in zip(ids.tolist(), d.tolist()))
        assert line == f"{q}: {expect}"
    assert lines[-1] == f"grid: {grid}"
    with Image.open(grid) as im:
        assert im.size == ((2 + 4) * 64, 2 * 64)


def test_grid_needs_an_image_folder_index(tmp_path, model_path, capsys):
    rng = np.random.default_rng(1)
    npz = tmp_path / "d.npz"
    np.savez(npz, images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), labels=np.zeros(20, np.int64))
    out = str(tmp_path / "d.spqidx")
    assert main(["index", "--checkpoint", model_path, "--data", str(npz), "--out", out]) == 0
    img = tmp_path / "q.png"
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(img)
    assert (
        main(
            [
                "search",
                "--checkpoint",
                model_path,
                "--index",
                out,
                "--image",
                str(img),
                "--grid",
                str(tmp_path / "g.png"),
            ]
        )
        == 1
    )
    assert "--grid: needs --image queries and an index made with 'spqindex index --images'" in capsys.readouterr().err
