"""Conversion of user image arrays to the float (n, C, H, W) tensors the models take."""

from __future__ import annotations

import numpy as np
import torch


def check_images(images) -> None:
    """Raise if ``images`` is not uint8 (N, H, W) / (N, H, W, C) or a float (N, C, H, W) tensor."""
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point() or images.dim() != 4:
            raise TypeError(
                f"image tensors must be float (N, C, H, W) in [0, 1], got {images.dtype} {tuple(images.shape)}"
            )
        return
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy uint8 array or a float torch tensor, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (N, H, W) or (N, H, W, C), got dtype {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C) with N > 0, got shape {images.shape}")


def num_channels(images) -> int:
    check_images(images)
    if isinstance(images, torch.Tensor):
        return int(images.shape[1])
    return 1 if images.ndim == 3 else int(images.shape[3])


def image_size(images):
    """(H, W) of an image array or tensor."""
    if isinstance(images, torch.Tensor):
        return int(images.shape[2]), int(images.shape[3])
    return int(images.shape[1]), int(images.shape[2])


def to_tensor(images, index=None, device="cpu") -> torch.Tensor:
    """Select ``images[index]`` and return it as float32 (n, C, H, W) in [0, 1] on ``device``."""
    batch = images if index is None else images[index]
    if isinstance(batch, torch.Tensor):
        return batch.to(device=device, dtype=torch.float32)
    t = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    t = t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(255.0)
