"""The SPQ training loop: two augmented views, CQC loss, Adam; checkpoints, resume, evaluation, DDP."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist

from .augment import make_augmentation
from .config import SPQConfig
from .evaluate import retrieval_scores
from .images import check_images, image_size, num_channels, to_tensor
from .loss import cqc_loss
from .model import SPQModel

_CKPT_FORMAT = "spqindex.checkpoint/1"


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e


def _distributed() -> tuple:
    """(rank, world_size, local_rank, initialised_here) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    here = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        here = True
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")), here


def _lr_at(cfg, step: int, total: int) -> float:
    if cfg.lr_schedule == "constant" or total <= 1:
        return cfg.lr
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / total))


def fit(model: SPQModel, train_images, epochs: int = 50, device="auto", eval_data: Optional[Sequence] = None,
        checkpoint_dir: Optional[Union[str, os.PathLike]] = None, resume: bool = False, eval_every: int = 1,
        top_n: int = 1000, progress: bool = True, channels_last: Optional[bool] = None,
        record_steps: bool = False, on_epoch_end: Optional[Callable[[int, SPQModel], Optional[Dict]]] = None
        ) -> List[Dict]:
    """Train ``model`` with SPQ on unlabeled ``train_images`` for ``epochs`` epochs; return the history.

    eval_data: ``(query, database)``, each ``(images, labels)``; mAP@top_n is computed through
    ``spqindex.Index(metric="spq")`` every ``eval_every`` epochs and after the last one.
    checkpoint_dir: gets checkpoint.pt (resume state), model.pt (``SPQModel.load``) and log.jsonl every epoch.
    record_steps: keep every step's loss in each epoch's record ("step_losses").
    on_epoch_end: called as ``on_epoch_end(epoch, model)`` after each epoch's evaluation (on rank 0 only); a dict
    it returns is merged into that epoch's record (history, log.jsonl). The model is put back in train mode after.
    resume: continue from checkpoint_dir/checkpoint.pt if it exists; training is deterministic on CPU, so a
    resumed run reproduces an uninterrupted one. Under ``torchrun`` each process trains on its shard with
    DistributedDataParallel; rank 0 evaluates and writes files.
    """
    if not isinstance(model, SPQModel):
        raise TypeError(f"model must be an SPQModel, got {type(model).__name__}")
    check_images(train_images)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive int, got {eval_every!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")
    if eval_data is not None and len(eval_data) != 2:
        raise ValueError("eval_data must be (query, database), each an (images, labels) pair")
    channels = num_channels(train_images)
    if model.in_channels is not None and channels != model.in_channels:
        raise ValueError(f"train_images have {channels} channels, the model takes {model.in_channels}")

    cfg = model.cfg
    rank, world, local_rank, own_group = _distributed()
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if channels_last is None:
        channels_last = True  # faster on CUDA, and also on CPU (oneDNN) for the backbones here
    torch.manual_seed(cfg.seed + rank)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = _TwoViews(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    augment = make_augmentation(image_size(train_images), channels, cfg.crop_scale).to(dev)

    n = len(train_images)
    batch = min(cfg.batch_size // world, n // world)
    if batch < 2:
        raise ValueError(f"need at least 2 images per process per batch; have {n} images for {world} processes")
    steps = (n // world) // batch
    total_steps = epochs * steps

    history: List[Dict] = []
    start_epoch = 0
    ckpt_path = os.path.join(checkpoint_dir, "checkpoint.pt") if checkpoint_dir is not None else None
    if checkpoint_dir is not None and rank == 0:
        os.makedirs(checkpoint_dir, exist_ok=True)
    if resume and ckpt_path is not None and os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location=dev, weights_only=True)
        if state.get("format") != _CKPT_FORMAT:
            raise ValueError(f"{ckpt_path!r} is not a spqindex training checkpoint")
        if SPQConfig.from_dict(state["config"]).to_dict() != cfg.to_dict():  # fields added later take defaults
            raise ValueError(f"{ckpt_path!r} was written with config {state['config']}, not this model's {cfg.to_dict()}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if dev.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], dev)
        history = [dict(h) for h in state["history"]]
        start_epoch = int(state["epoch"])
    log_path = os.path.join(checkpoint_dir, "log.jsonl") if checkpoint_dir is not None else None
    if log_path is not None and rank == 0 and start_epoch == 0:
        open(log_path, "w").close()  # a fresh run starts a fresh log

    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    net.train()
    for epoch in range(start_epoch, epochs):
        order = np.random.default_rng(cfg.seed + epoch).permutation(n)[rank::world]
        t0, seen, step_losses = time.perf_counter(), 0, []
        bar = _progress(steps, f"epoch {epoch + 1}/{epochs}", progress and rank == 0)
        for step in range(steps):
            lr = _lr_at(cfg, epoch * steps + step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = np.sort(order[step * batch:(step + 1) * batch])
            images = to_tensor(train_images, idx, dev)
            with torch.no_grad():
                view_a, view_b = augment(images), augment(images)
            if channels_last:
                view_a = view_a.contiguous(memory_format=torch.channels_last)
                view_b = view_b.contiguous(memory_format=torch.channels_last)
            with autocast:
                (xa, za), (xb, zb) = net(view_a, view_b)
            loss = cqc_loss(xa.float(), xb.float(), za, zb, cfg.tau)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RuntimeError(f"loss became {value} at epoch {epoch + 1} step {step + 1}")
            step_losses.append(value)
            seen += len(idx) * world
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "loss": sum(step_losses) / steps, "lr": lr, "seconds": round(seconds, 3),
                  "images_per_s": round(seen / seconds, 1)}
        if record_steps:
            record["step_losses"] = step_losses
        if eval_data is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            if rank == 0:
                te = time.perf_counter()
                record.update(retrieval_scores(model, eval_data[0], eval_data[1], top_n))
                record["eval_seconds"] = round(time.perf_counter() - te, 3)
            net.train()
        if on_epoch_end is not None and rank == 0:
            extra = on_epoch_end(epoch + 1, model)
            if extra is not None:
                if not isinstance(extra, dict):
                    raise TypeError(f"on_epoch_end must return a dict or None, got {type(extra).__name__}")
                record.update(extra)
            net.train()
        if world > 1:
            dist.barrier()
        history.append(record)
        if rank == 0:
            if progress:
                print(json.dumps({k: v for k, v in record.items() if k != "step_losses"}), flush=True)
            if checkpoint_dir is not None:
                _save_checkpoint(ckpt_path, model, optimizer, epoch + 1, history, dev)
                model.save(os.path.join(checkpoint_dir, "model.pt"))
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
    if own_group:
        dist.destroy_process_group()
    return history


class _TwoViews(torch.nn.Module):
    """Both views in one call (DDP expects one forward per backward); each view gets its own BatchNorm
    statistics, as in the reference."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, view_a, view_b):
        return self.model(view_a), self.model(view_b)


def _save_checkpoint(path, model, optimizer, epoch, history, dev) -> None:
    state = {"format": _CKPT_FORMAT, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "rng_cpu": torch.get_rng_state(), "history": history, "config": model.cfg.to_dict()}
    if dev.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(dev)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
