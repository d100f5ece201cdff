import numpy as np
import pytest
import torch

from spqindex.train.loss import CQCLoss, cqc_loss, nt_xent
from naive import nt_xent_loop


@pytest.mark.parametrize("B,D,tau", [(2, 3, 0.5), (5, 8, 0.5), (8, 16, 0.1), (3, 4, 2.0)])
def test_nt_xent_matches_loop(B, D, tau):
    g = torch.Generator().manual_seed(B * D)
    u = torch.randn(B, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, D, generator=g, dtype=torch.float64)
    got = float(nt_xent(u, v, tau))
    np.testing.assert_allclose(got, nt_xent_loop(u.numpy(), v.numpy(), tau), rtol=1e-6)


def test_cqc_is_the_average_of_both_crossings():
    g = torch.Generator().manual_seed(1)
    xa, xb, za, zb = (torch.randn(6, 12, generator=g, dtype=torch.float64) for _ in range(4))
    expect = 0.5 * (nt_xent_loop(xa.numpy(), zb.numpy(), 0.5) + nt_xent_loop(xb.numpy(), za.numpy(), 0.5))
    np.testing.assert_allclose(float(cqc_loss(xa, xb, za, zb, 0.5)), expect, rtol=1e-6)
    np.testing.assert_allclose(float(CQCLoss(tau=0.5)(xa, xb, za, zb)), expect, rtol=1e-6)


def test_loss_is_low_for_aligned_views_and_has_gradients():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 32, generator=g)
    aligned = float(cqc_loss(x, x, x, x))
    shuffled = float(cqc_loss(x, x, x[torch.randperm(16, generator=g)], x[torch.randperm(16, generator=g)]))
    assert aligned < shuffled
    xa = x.clone().requires_grad_()
    cqc_loss(xa, torch.randn(16, 32), torch.randn(16, 32), torch.randn(16, 32)).backward()
    assert xa.grad is not None and torch.isfinite(xa.grad).all()


def test_extra_negatives_match_the_loop():
    g = torch.Generator().manual_seed(3)
    u, v = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(2))
    neg = torch.randn(7, 6, generator=g, dtype=torch.float64) * 3  # scale: cosine ignores it
    got = float(nt_xent(u, v, 0.5, negatives=neg))
    np.testing.assert_allclose(got, nt_xent_loop(u.numpy(), v.numpy(), 0.5, neg.numpy()), rtol=1e-6)
    assert got > float(nt_xent(u, v, 0.5))  # more negatives, larger loss
    with pytest.raises(ValueError, match="negatives"):
        nt_xent(u, v, 0.5, negatives=torch.zeros(3, 5))


@pytest.mark.parametrize("B,tau,prior", [(4, 0.5, 0.1), (8, 0.3, 0.1), (6, 0.2, 0.5), (3, 1.0, 0.9)])
def test_debiased_negatives_match_the_loop(B, tau, prior):
    g = torch.Generator().manual_seed(B)
    u, v = (torch.randn(B, 6, generator=g, dtype=torch.float64) for _ in range(2))
    neg = torch.randn(5, 6, generator=g, dtype=torch.float64)
    for extra in (None, neg):
        got = float(nt_xent(u, v, tau, negatives=extra, class_prior=prior))
        want = nt_xent_loop(u.numpy(), v.numpy(), tau, None if extra is None else extra.numpy(), prior)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    # aligned views with the floor active: the estimate never goes below N e^(-1/tau), so the loss stays finite
    x = torch.nn.functional.normalize(torch.randn(B, 6, generator=g), dim=1).requires_grad_()
    loss = CQCLoss(tau, class_prior=prior)(x, x, x, x)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert float(CQCLoss(tau, class_prior=prior)(u, v, u, v)) != pytest.approx(float(CQCLoss(tau)(u, v, u, v)))


def test_queue_holds_the_last_quantized_outputs_first_in_first_out():
    g = torch.Generator().manual_seed(4)
    steps = [tuple(torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(4)) for _ in range(4)]
    loss = CQCLoss(tau=0.5, queue_size=8)
    seen = []  # every za, zb so far, oldest first
    for xa, xb, za, zb in steps:
        queue = torch.cat(seen)[-8:] if seen else None
        expect = 0.5 * (
            nt_xent_loop(xa.numpy(), zb.numpy(), 0.5, None if queue is None else queue.numpy())
            + nt_xent_loop(xb.numpy(), za.numpy(), 0.5, None if queue is None else queue.numpy())
        )
        np.testing.assert_allclose(float(loss(xa, xb, za, zb)), expect, rtol=1e-6)
        seen += [za, zb]
        np.testing.assert_allclose(loss.queue.numpy(), torch.cat(seen)[-8:].numpy(), rtol=1e-6)
    # The queue is the module's extra state: a fresh module loading it continues identically.
    again = CQCLoss(tau=0.5, queue_size=8)
    again.load_state_dict(loss.state_dict())
    xa, xb, za, zb = steps[0]
    assert float(again(xa, xb, za, zb)) == float(loss(xa, xb, za, zb))
    with pytest.raises(ValueError, match="queue_size"):
        CQCLoss(tau=0.5, queue_size=4).load_state_dict(loss.state_dict())
    with pytest.raises(ValueError, match="queue_size"):
        CQCLoss(tau=0.5, queue_size=-1)


def test_loss_rejects_bad_inputs():
    for prior in (-0.1, 1.0):
        with pytest.raises(ValueError, match="class_prior"):
            CQCLoss(0.5, class_prior=prior)
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="tau"):
        CQCLoss(tau=0)
