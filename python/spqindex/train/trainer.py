"""The SPQ training loop: two augmented views, CQC loss, Adam; checkpoints, resume, evaluation, DDP.

``fit`` reads as the loop of a self-supervised example: for every batch make two views, step, and after
every epoch evaluate and checkpoint. Each of those is one small function below.
"""

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
from .loss import CQCLoss
from .model import SPQModel, autocast

_CKPT_FORMAT = "spqindex.checkpoint/1"


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e


def fit(
    model: SPQModel,
    train_images,
    epochs: int = 50,
    device="auto",
    eval_data: Optional[Sequence] = None,
    checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
    resume: bool = False,
    eval_every: int = 1,
    top_n: int = 1000,
    progress: bool = True,
    channels_last: Optional[bool] = None,
    record_steps: bool = False,
    on_epoch_end: Optional[Callable[[int, SPQModel], Optional[Dict]]] = None,
    bf16: Optional[bool] = None,
    partners: Optional[Callable[[int, np.ndarray], np.ndarray]] = None,
) -> List[Dict]:
    """Train ``model`` with SPQ on unlabeled ``train_images`` for ``epochs`` epochs; return the history.

    eval_data: ``(query, database)``, each ``(images, labels)``; mAP@top_n is computed through
    ``spqindex.Index(metric="spq")`` every ``eval_every`` epochs and after the last one.
    checkpoint_dir: gets checkpoint.pt (resume state), model.pt (``SPQModel.load``) and log.jsonl every epoch.
    record_steps: keep every step's loss in each epoch's record ("step_losses").
    on_epoch_end: called as ``on_epoch_end(epoch, model)`` after each epoch's evaluation (on rank 0 only); a dict
    it returns is merged into that epoch's record (history, log.jsonl). The model is put back in train mode after.
    bf16: bfloat16 autocast of the forward pass; None: on CUDA, off on CPU (``model.autocast``).
    partners: mined positives (not in the paper): ``partners(epoch, idx)`` returns, for the batch's image ids
    ``idx``, the ids whose augmentation is each one's view B (``idx`` itself where it has no partner).
    resume: continue from checkpoint_dir/checkpoint.pt if it exists; training is deterministic on CPU, so a
    resumed run reproduces an uninterrupted one. Under ``torchrun`` each process trains on its shard with
    DistributedDataParallel; rank 0 evaluates and writes files.
    """
    _check_fit_arguments(model, train_images, epochs, eval_every, resume, checkpoint_dir, eval_data, partners)
    cfg = model.cfg
    rank, world, local_rank, own_group = _distributed()
    dev = _training_device(device, world, local_rank)
    precision = autocast(dev, bf16)
    channels_last = True if channels_last is None else channels_last  # faster on CUDA and on CPU (oneDNN) here
    torch.manual_seed(cfg.seed + rank)
    net = _prepare(model, dev, channels_last, world)
    criterion = CQCLoss(cfg.tau, world > 1, cfg.queue_size, cfg.class_prior)  # global batch
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    augment = make_augmentation(image_size(train_images), num_channels(train_images), cfg.crop_scale).to(dev)
    batches = _Batches(len(train_images), cfg, rank, world)
    files = _RunFiles(checkpoint_dir, rank)

    history: List[Dict] = []
    if resume:
        history = files.load_checkpoint(model, optimizer, criterion, dev)
    files.start_log(fresh=not history)

    def views(epoch, idx):
        images = to_tensor(train_images, idx, dev)
        if partners is None:
            return two_views(augment, images, channels_last)
        ids_b = _partner_ids(partners, epoch, idx, len(train_images))
        return two_views(augment, images, channels_last, to_tensor(train_images, ids_b, dev))

    for epoch in range(len(history), epochs):
        record = _train_epoch(
            net, criterion, optimizer, views, batches, epoch, epochs, precision, progress and rank == 0
        )
        if not record_steps:
            del record["step_losses"]
        if rank == 0:
            if eval_data is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
                record.update(_evaluate(model, eval_data, top_n))
            if on_epoch_end is not None:
                record.update(_epoch_hook(on_epoch_end, epoch + 1, model))
            net.train()
        if world > 1:
            dist.barrier()
        history.append(record)
        if rank == 0:
            if progress:
                print(json.dumps({k: v for k, v in record.items() if k != "step_losses"}), flush=True)
            files.save_epoch(model, optimizer, criterion, history, dev)
    if own_group:
        dist.destroy_process_group()
    return history


# --- the steps ---------------------------------------------------------------------------------------------
def two_views(augment, images: torch.Tensor, channels_last: bool, images_b: Optional[torch.Tensor] = None):
    """Two independent augmentations of the same batch (no gradient through the augmentation); view B from
    ``images_b`` (row i: image i's positive partner) when given."""
    with torch.no_grad():
        view_a, view_b = augment(images), augment(images if images_b is None else images_b)
    if channels_last:
        view_a = view_a.contiguous(memory_format=torch.channels_last)
        view_b = view_b.contiguous(memory_format=torch.channels_last)
    return view_a, view_b


def train_step(net, criterion, optimizer, view_a, view_b, precision) -> torch.Tensor:
    """Forward both views (under the ``precision`` autocast context), CQC loss, one optimizer step; returns the
    (detached) loss."""
    with precision:
        (xa, za), (xb, zb) = net(view_a, view_b)
    loss = criterion(xa.float(), xb.float(), za, zb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _train_epoch(net, criterion, optimizer, views, batches, epoch, epochs, precision, show_progress) -> Dict:
    """One pass over this process's shard; returns the epoch's record (loss, lr, speed, step losses).
    views(epoch, idx) -> the two augmented views of those training images on the device."""
    cfg = net_model(net).cfg
    t0, seen, step_losses, lr = time.perf_counter(), 0, [], cfg.lr
    bar = _progress(batches.steps, f"epoch {epoch + 1}/{epochs}", show_progress)
    net.train()
    for step, idx in enumerate(batches.epoch(epoch)):
        lr = _lr_at(cfg, epoch * batches.steps + step, epochs * batches.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        view_a, view_b = views(epoch, idx)
        value = float(train_step(net, criterion, optimizer, view_a, view_b, precision))
        if not math.isfinite(value):
            raise RuntimeError(f"loss became {value} at epoch {epoch + 1} step {step + 1}")
        step_losses.append(value)
        seen += len(idx) * batches.world
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "loss": sum(step_losses) / batches.steps,
        "lr": lr,
        "seconds": round(seconds, 3),
        "images_per_s": round(seen / seconds, 1),
        "step_losses": step_losses,
    }


def _partner_ids(partners, epoch: int, idx: np.ndarray, n: int) -> np.ndarray:
    ids = np.asarray(partners(epoch, idx))
    if ids.shape != idx.shape or ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= n:
        raise ValueError(f"partners(epoch, idx) must return {idx.shape} integer ids in [0, {n}), got {ids!r:.80}")
    return ids


def _evaluate(model: SPQModel, eval_data, top_n: int) -> Dict:
    """mAP@top_n (and P@100) through the native index, with the time it took."""
    t = time.perf_counter()
    scores = retrieval_scores(model, eval_data[0], eval_data[1], top_n)
    scores["eval_seconds"] = round(time.perf_counter() - t, 3)
    return scores


def _epoch_hook(on_epoch_end, epoch: int, model: SPQModel) -> Dict:
    extra = on_epoch_end(epoch, model)
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"on_epoch_end must return a dict or None, got {type(extra).__name__}")
    return extra


def training_throughput(
    cfg: SPQConfig, images, device="auto", steps: int = 3, backbone: str = "cnn28", bf16: Optional[bool] = None
) -> float:
    """Images per second that ``fit`` trains at with ``cfg`` here: a few steps (after one warm-up step) of a
    throwaway model on the first images, through the same view and step functions. Global RNG untouched."""
    check_images(images)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    dev = resolve_device(device)
    precision = autocast(dev, bf16)  # built (and checked) once, as in fit
    batch = min(cfg.batch_size, len(images))
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        model = SPQModel(cfg, backbone, in_channels=num_channels(images), pretrained=False)
        net = _prepare(model, dev, True, 1)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        augment = make_augmentation(image_size(images), num_channels(images), cfg.crop_scale).to(dev)
        criterion = CQCLoss(cfg.tau, queue_size=cfg.queue_size, class_prior=cfg.class_prior)
        for step in range(steps + 1):
            if step == 1:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
            view_a, view_b = two_views(augment, to_tensor(images, np.arange(batch), dev), True)
            train_step(net, criterion, optimizer, view_a, view_b, precision)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return steps * batch / (time.perf_counter() - t0)


# --- setup -------------------------------------------------------------------------------------------------
def _check_fit_arguments(model, train_images, epochs, eval_every, resume, checkpoint_dir, eval_data, partners) -> None:
    if not isinstance(model, SPQModel):
        raise TypeError(f"model must be an SPQModel, got {type(model).__name__}")
    check_images(train_images)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive int, got {eval_every!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")
    if partners is not None and not callable(partners):
        raise TypeError(f"partners must be callable as partners(epoch, idx) -> ids, got {type(partners).__name__}")
    if eval_data is not None and len(eval_data) != 2:
        raise ValueError("eval_data must be (query, database), each an (images, labels) pair")
    channels = num_channels(train_images)
    if model.in_channels is not None and channels != model.in_channels:
        raise ValueError(f"train_images have {channels} channels, the model takes {model.in_channels}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if min(model.cfg.batch_size // world, len(train_images) // world) < 2:
        raise ValueError(
            f"need at least 2 images per process per batch; have {len(train_images)} images for {world} processes"
        )


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


def _training_device(device, world: int, local_rank: int) -> torch.device:
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev


def _prepare(model: SPQModel, dev: torch.device, channels_last: bool, world: int) -> torch.nn.Module:
    """The model on its device, wrapped to run both views in one forward (and in DDP when world > 1)."""
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = _TwoViews(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    return net


def net_model(net) -> SPQModel:
    """The SPQModel inside a (possibly DDP-wrapped) _TwoViews."""
    return (net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net).model


class _TwoViews(torch.nn.Module):
    """Both views in one call (DDP expects one forward per backward); each view gets its own BatchNorm
    statistics, as in the reference."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, view_a, view_b):
        return self.model(view_a), self.model(view_b)


class _Batches:
    """Which image ids each step of an epoch takes on this process: a seeded permutation per epoch, sharded by
    rank, ``batch_size / world`` images per step, the remainder dropped."""

    def __init__(self, n: int, cfg: SPQConfig, rank: int, world: int):
        self.n, self.seed, self.rank, self.world = n, cfg.seed, rank, world
        self.batch = min(cfg.batch_size // world, n // world)
        self.steps = (n // world) // self.batch

    def epoch(self, epoch: int):
        order = np.random.default_rng(self.seed + epoch).permutation(self.n)[self.rank :: self.world]
        for step in range(self.steps):
            yield np.sort(order[step * self.batch : (step + 1) * self.batch])


def _lr_at(cfg, step: int, total: int) -> float:
    if cfg.lr_schedule == "constant" or total <= 1:
        return cfg.lr
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / total))


# --- files: checkpoint.pt, model.pt, log.jsonl (rank 0 writes) -----------------------------------------------
class _RunFiles:
    def __init__(self, checkpoint_dir, rank: int):
        self.dir, self.rank = checkpoint_dir, rank
        self.ckpt = os.path.join(checkpoint_dir, "checkpoint.pt") if checkpoint_dir is not None else None
        self.log = os.path.join(checkpoint_dir, "log.jsonl") if checkpoint_dir is not None else None
        if checkpoint_dir is not None and rank == 0:
            os.makedirs(checkpoint_dir, exist_ok=True)

    def load_checkpoint(self, model: SPQModel, optimizer, criterion, dev) -> List[Dict]:
        """Restore model, optimizer, loss (its queue) and RNG state; return the history so far ([] when there is
        no checkpoint)."""
        if not os.path.exists(self.ckpt):
            return []
        state = torch.load(self.ckpt, map_location=dev, weights_only=True)
        if state.get("format") != _CKPT_FORMAT:
            raise ValueError(f"{self.ckpt!r} is not a spqindex training checkpoint")
        if SPQConfig.from_dict(state["config"]).to_dict() != model.cfg.to_dict():  # later fields take defaults
            raise ValueError(
                f"{self.ckpt!r} was written with config {state['config']}, not this model's {model.cfg.to_dict()}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "criterion" in state:  # written since the queue of negatives (older checkpoints: no queue)
            criterion.load_state_dict(state["criterion"])
        torch.set_rng_state(state["rng_cpu"])
        if dev.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], dev)
        history = [dict(h) for h in state["history"]]
        if len(history) != int(state["epoch"]):
            raise ValueError(f"{self.ckpt!r}: epoch {state['epoch']} but {len(history)} history records")
        return history

    def start_log(self, fresh: bool) -> None:
        if self.log is not None and self.rank == 0 and fresh:
            open(self.log, "w").close()  # a fresh run starts a fresh log

    def save_epoch(self, model: SPQModel, optimizer, criterion, history: List[Dict], dev) -> None:
        if self.dir is None:
            return
        state = {
            "format": _CKPT_FORMAT,
            "epoch": len(history),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "criterion": criterion.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "history": history,
            "config": model.cfg.to_dict(),
        }
        if dev.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(dev)
        tmp = self.ckpt + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt)
        model.save(os.path.join(self.dir, "model.pt"))
        with open(self.log, "a") as f:
            f.write(json.dumps(history[-1]) + "\n")


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
