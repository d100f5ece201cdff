"""Global negatives under DDP: 2 gloo processes with batch b each train like one process with batch 2b."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spqindex.train import SPQConfig, SPQModel
from spqindex.train.loss import CQCLoss
from spqindex.train.trainer import _TwoViews

WORLD, B, TAU = 2, 6, 0.3


def _views():
    g = torch.Generator().manual_seed(7)
    return torch.rand(WORLD * B, 1, 28, 28, generator=g), torch.rand(WORLD * B, 1, 28, 28, generator=g)


def _model():
    model = SPQModel(SPQConfig(bits=16, seed=3), "cnn28")
    # Eval mode: BatchNorm uses running statistics, so every feature depends on its own image only and the
    # split into shards changes nothing but the loss (per-process BatchNorm statistics are not shared by DDP).
    return model.eval()


def _grads(model):
    return {"codebooks": model.head.codebooks.grad.clone(), "fc": model.head.fc.weight.grad.clone()}


def _worker(rank, port, out, gather):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        model = _model()
        net = torch.nn.parallel.DistributedDataParallel(_TwoViews(model))
        view_a, view_b = (v[rank * B : (rank + 1) * B] for v in _views())
        (xa, za), (xb, zb) = net(view_a, view_b)
        loss = CQCLoss(TAU, gather_distributed=gather)(xa, xb, za, zb)
        loss.backward()  # DDP averages the parameter gradients over the processes
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        if rank == 0:
            torch.save({"loss": mean_loss / WORLD, **_grads(model)}, out)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(tmp_path, gather):
    out = os.fspath(tmp_path / f"rank0-{gather}.pt")
    mp.spawn(_worker, args=(_free_port(), out, gather), nprocs=WORLD, join=True)
    return torch.load(out, weights_only=True)


def _single_process():
    model = _model()
    view_a, view_b = _views()
    (xa, za), (xb, zb) = _TwoViews(model)(view_a, view_b)
    loss = CQCLoss(TAU)(xa, xb, za, zb)
    loss.backward()
    return {"loss": loss.detach(), **_grads(model)}


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo unavailable"
)
def test_two_processes_with_gathered_negatives_equal_one_process_on_the_whole_batch(tmp_path):
    single = _single_process()
    ddp = _run_two_processes(tmp_path, gather=True)
    torch.testing.assert_close(ddp["loss"], single["loss"], rtol=1e-6, atol=1e-6)
    for name in ("codebooks", "fc"):
        assert single[name].abs().max() > 0
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-5, atol=1e-7)
    # Local negatives only (the old behaviour) is a different loss: the check above can fail.
    local = _run_two_processes(tmp_path, gather=False)
    assert abs(float(local["loss"]) - float(single["loss"])) > 1e-3
    assert not torch.allclose(local["codebooks"], single["codebooks"], rtol=1e-3, atol=1e-6)
