import numpy as np
import pytest
import torch

from spqindex.train.model import QuantizationHead, soft_quantize
from naive import soft_quantize_loop


@pytest.mark.parametrize("M,K,dsub,tau_q", [(1, 2, 1, 5.0), (4, 16, 3, 5.0), (8, 16, 16, 0.5), (2, 8, 4, 50.0)])
def test_soft_quantize_matches_loop(M, K, dsub, tau_q):
    g = torch.Generator().manual_seed(M * 100 + K)
    x = torch.randn(7, M * dsub, generator=g, dtype=torch.float64) * 0.5
    C = torch.randn(M, K, dsub, generator=g, dtype=torch.float64) * 0.5
    got = soft_quantize(x, C, tau_q).numpy()
    np.testing.assert_allclose(got, soft_quantize_loop(x.numpy(), C.numpy(), tau_q), rtol=1e-10, atol=1e-12)


def test_soft_quantize_limits():
    g = torch.Generator().manual_seed(0)
    C = torch.randn(3, 16, 4, generator=g)
    x = torch.randn(5, 12, generator=g)
    # Large tau_q -> hard assignment to the nearest codeword.
    hard = soft_quantize(x, C, 1e4)
    nearest = ((x.view(5, 3, 1, 4) - C[None]) ** 2).sum(-1).argmin(-1)
    expect = torch.stack([C[m, nearest[:, m]] for m in range(3)], 1).reshape(5, 12)
    torch.testing.assert_close(hard, expect)
    # tau_q -> 0: uniform weights, the codebook mean.
    flat = soft_quantize(x, C, 1e-9)
    torch.testing.assert_close(flat, C.mean(1).reshape(1, 12).expand(5, 12), rtol=1e-5, atol=1e-5)


def test_soft_quantize_gradients_reach_x_and_codebooks():
    x = torch.randn(6, 32, requires_grad=True)
    C = torch.randn(2, 16, 16, requires_grad=True)
    soft_quantize(x, C, 5.0).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert C.grad is not None and C.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda a, b: soft_quantize(a, b, 2.0),
        (x[:2, :8].detach().double().requires_grad_(), C[:, :4, :4].detach().double().requires_grad_()),
    )


def test_soft_quantize_rejects_bad_shapes():
    with pytest.raises(ValueError, match="M\\*dsub"):
        soft_quantize(torch.zeros(2, 10), torch.zeros(2, 16, 4))
    with pytest.raises(ValueError, match="codebooks"):
        soft_quantize(torch.zeros(2, 8), torch.zeros(16, 8))


def test_head_shapes_and_init():
    head = QuantizationHead(64, M=8, K=16, dsub=16, tau_q=5.0)
    assert head.codebooks.shape == (8, 16, 16)
    bound = (6.0 / (16 + 8 * 16)) ** 0.5
    assert head.codebooks.abs().max() <= bound
    x, z = head(torch.randn(5, 64))
    assert x.shape == z.shape == (5, 128)
    with pytest.raises(ValueError, match="M"):
        QuantizationHead(64, M=0, K=16, dsub=16)


def test_normalized_soft_quantize_is_the_plain_one_on_unit_vectors_and_scale_free():
    g = torch.Generator().manual_seed(5)
    M, K, dsub = 3, 16, 4
    x = torch.randn(6, M * dsub, generator=g, dtype=torch.float64)
    C = torch.randn(M, K, dsub, generator=g, dtype=torch.float64)
    xu = x.reshape(6, M, dsub)
    xu = (xu / xu.norm(dim=-1, keepdim=True)).reshape(6, M * dsub)
    Cu = C / C.norm(dim=-1, keepdim=True)
    got = soft_quantize(x, C, 5.0, normalize=True)
    np.testing.assert_allclose(got.numpy(), soft_quantize_loop(xu.numpy(), Cu.numpy(), 5.0), rtol=1e-10, atol=1e-12)
    # Scaling the features or the codewords changes nothing: tau_q alone sets the sharpness.
    torch.testing.assert_close(soft_quantize(3.0 * x, 0.1 * C, 5.0, normalize=True), got)
    assert not torch.allclose(soft_quantize(3.0 * x, C, 5.0), soft_quantize(x, C, 5.0))


def test_normalized_head_model_exports_unit_subvectors(tmp_path):
    from spqindex.train import SPQConfig, SPQModel

    cfg = SPQConfig(bits=16, normalize_subspaces=True)
    model = SPQModel(cfg, "cnn28")
    assert model.head.normalize
    images = np.random.default_rng(0).integers(0, 256, (9, 28, 28), dtype=np.uint8)
    feats = model.embed(images)
    np.testing.assert_allclose(np.linalg.norm(feats.reshape(9, cfg.M, cfg.dsub), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(model.codebooks(), axis=-1), 1.0, rtol=1e-5)
    model.save(tmp_path / "m.pt")
    loaded = SPQModel.load(tmp_path / "m.pt")
    assert loaded.cfg.normalize_subspaces and loaded.head.normalize
    np.testing.assert_array_equal(loaded.embed(images), feats)
    # The exported features are what the quantizer sees: hard codes of the index = argmax of soft weights.
    index = model.build_index(images)
    x, _ = model.eval()(torch.from_numpy(images[:, None].astype(np.float32) / 255.0))
    xu = torch.nn.functional.normalize(x.detach().reshape(9, cfg.M, cfg.dsub), dim=-1)
    cu = torch.from_numpy(model.codebooks())
    nearest = ((xu[:, :, None] - cu[None]) ** 2).sum(-1).argmin(-1).numpy()
    from spqindex.pq import unpack_codes

    np.testing.assert_array_equal(unpack_codes(index.codes, cfg.M, cfg.nbits), nearest)


def test_head_projects_in_float32_under_bf16_autocast():
    head = QuantizationHead(in_dim=32, M=2, K=4, dsub=8)
    features = torch.randn(5, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x, z = head(features)
        bf16_fc = head.fc(features)  # what an autocast Linear gives: bfloat16
    assert x.dtype == z.dtype == torch.float32 and bf16_fc.dtype == torch.bfloat16
    torch.testing.assert_close(x, head.fc(features), rtol=0, atol=0)  # exactly the float32 projection
