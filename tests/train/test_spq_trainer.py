import json

import numpy as np
import pytest
import torch

from spqindex import datasets
from spqindex.train import SPQConfig, SPQModel, fit
from spqindex.train.evaluate import retrieval_scores


def tiny_images(n=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def tiny_model(perturb=False, queue_size=0):
    model = SPQModel(SPQConfig(bits=16, batch_size=16, queue_size=queue_size), "cnn28")
    if perturb:  # weights that resume must overwrite
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
    return model


@pytest.mark.parametrize("queue_size", [0, 40])  # 40: the queue of negatives is in the checkpoint too
def test_resume_reproduces_the_uninterrupted_run(tmp_path, monkeypatch, queue_size):
    x = tiny_images()
    straight = fit(tiny_model(queue_size=queue_size), x, epochs=2, progress=False, record_steps=True)

    class Crash(Exception):
        pass

    def crash(self, path):  # dies right after the epoch-1 checkpoint is written
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(SPQModel, "save", crash)
        with pytest.raises(Crash):
            fit(
                tiny_model(queue_size=queue_size),
                x,
                epochs=2,
                checkpoint_dir=tmp_path,
                progress=False,
                record_steps=True,
            )
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = fit(
        tiny_model(perturb=True, queue_size=queue_size),
        x,
        epochs=2,
        checkpoint_dir=tmp_path,
        resume=True,
        progress=False,
        record_steps=True,
    )
    assert len(resumed) == 2
    assert resumed[0]["step_losses"] == straight[0]["step_losses"]
    assert resumed[1]["step_losses"] == straight[1]["step_losses"]  # same next-step loss after resume
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    queue = ckpt["criterion"]["_extra_state"]["queue"]
    assert queue.shape == ((40, 64) if queue_size else (0,))  # fit built its loss with the config's queue
    log = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert [r["epoch"] for r in log] == [2]  # the crashed run died before logging epoch 1
    assert SPQModel.load(tmp_path / "model.pt").codebooks().shape == (4, 16, 16)


def test_eval_restores_train_mode_and_logs_map(tmp_path):
    x = tiny_images(40)
    y = np.arange(40) % 4
    model = tiny_model()
    hist = fit(
        model, x, epochs=2, eval_data=((x[:8], y[:8]), (x, y)), top_n=10, progress=False, checkpoint_dir=tmp_path
    )
    assert all("map" in h for h in hist) and 0 <= hist[-1]["map"] <= 1
    assert model.training
    assert all(m.training for m in model.modules())
    fit(tiny_model(), x, epochs=1, checkpoint_dir=tmp_path, progress=False)  # fresh run, fresh log
    assert [json.loads(line)["epoch"] for line in open(tmp_path / "log.jsonl")] == [1]


def test_on_epoch_end_records_merge_into_history_and_log(tmp_path):
    x = tiny_images(32)
    seen = []

    def probe(epoch, model):
        seen.append((epoch, model.training))
        model.eval()  # fit must put it back in train mode
        return {"probe": epoch * 10} if epoch == 2 else None

    model = tiny_model()
    hist = fit(model, x, epochs=2, checkpoint_dir=tmp_path, progress=False, on_epoch_end=probe)
    assert seen == [(1, True), (2, True)]
    assert "probe" not in hist[0] and hist[1]["probe"] == 20
    assert [json.loads(line).get("probe") for line in open(tmp_path / "log.jsonl")] == [None, 20]
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="on_epoch_end"):
        fit(tiny_model(), x, epochs=1, progress=False, on_epoch_end=lambda e, m: 1.5)


def test_construction_is_seeded():
    a, b = SPQModel(SPQConfig(seed=3), "cnn28"), SPQModel(SPQConfig(seed=3), "cnn28")
    c = SPQModel(SPQConfig(seed=4), "cnn28")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.head.codebooks, c.head.codebooks)


def test_fit_validates_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="epochs"):
        fit(model, tiny_images(), epochs=0)
    with pytest.raises(TypeError, match="uint8"):
        fit(model, tiny_images().astype(np.float32), epochs=1)
    with pytest.raises(ValueError, match="channels"):
        fit(model, np.zeros((8, 28, 28, 3), np.uint8), epochs=1)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(model, tiny_images(), epochs=1, resume=True)
    with pytest.raises(ValueError, match="2 images"):
        fit(model, tiny_images(1), epochs=1)
    with pytest.raises(TypeError, match="bf16"):
        fit(model, tiny_images(), epochs=1, bf16="yes")


def test_bf16_on_cpu_trains_in_bfloat16():
    """bf16=True runs the forward pass under CPU autocast: the same seed gives other (finite) step losses."""
    plain = fit(tiny_model(), tiny_images(), epochs=1, progress=False, record_steps=True)
    half = fit(tiny_model(), tiny_images(), epochs=1, progress=False, record_steps=True, bf16=True)
    assert np.isfinite(half[0]["step_losses"]).all()
    assert half[0]["step_losses"] != plain[0]["step_losses"]
    np.testing.assert_allclose(half[0]["step_losses"][0], plain[0]["step_losses"][0], rtol=0.05)


def _fashion_or_skip():
    try:
        return datasets.fashion_mnist("train"), datasets.fashion_mnist("test")
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_two_epochs_on_real_data_beat_the_untrained_model():
    (x_tr, y_tr), (x_te, y_te) = _fashion_or_skip()
    rng = np.random.default_rng(0)
    tr = np.sort(rng.choice(len(x_tr), 3000, replace=False))
    te = np.sort(rng.choice(len(x_te), 300, replace=False))
    query, database = (x_te[te], y_te[te]), (x_tr[tr], y_tr[tr])
    torch.manual_seed(0)
    model = SPQModel(SPQConfig(bits=32, batch_size=128, crop_scale=(0.2, 1.0)), "cnn28")
    before = retrieval_scores(model, query, database, top_n=100)["map"]
    hist = fit(model, x_tr[tr], epochs=2, eval_data=(query, database), top_n=100, progress=False)
    after = hist[-1]["map"]
    assert hist[-1]["loss"] < hist[0]["loss"] or after > before
    assert after > before + 0.02, (before, after)


def test_resume_refuses_another_config(tmp_path):
    fit(tiny_model(), tiny_images(), epochs=1, checkpoint_dir=tmp_path, progress=False)
    other = SPQModel(SPQConfig(bits=16, batch_size=16, lr=1e-3), "cnn28")
    with pytest.raises(ValueError, match="config"):
        fit(other, tiny_images(), epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)
    normalized = SPQModel(SPQConfig(bits=16, batch_size=16, normalize_subspaces=True), "cnn28")
    with pytest.raises(ValueError, match="config"):
        fit(normalized, tiny_images(), epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)


def test_resume_accepts_a_checkpoint_from_before_a_config_field(tmp_path):
    fit(tiny_model(), tiny_images(), epochs=1, checkpoint_dir=tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["config"]["normalize_subspaces"]  # as written by an older version
    del state["config"]["queue_size"], state["config"]["class_prior"]
    del state["criterion"]  # before the queue of negatives
    torch.save(state, tmp_path / "checkpoint.pt")
    hist = fit(tiny_model(), tiny_images(), epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2]
