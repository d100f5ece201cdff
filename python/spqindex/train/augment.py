"""SimCLR-style view augmentations run batched on the training device (kornia)."""

from __future__ import annotations

from typing import Tuple

import kornia.augmentation as K
from torch import nn


def blur_kernel_size(size: int) -> int:
    """An odd kernel about 10% of the image side, at least 3 (3 for 28x28 and 32x32 inputs)."""
    k = max(3, int(0.1 * size))
    return k if k % 2 else k + 1


def make_augmentation(size: Tuple[int, int], channels: int, crop_scale=(0.08, 1.0)) -> nn.Module:
    """RandomResizedCrop, flip 0.5, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, Gaussian blur p 0.5.

    For single-channel input the saturation/hue jitter and the grayscale step are dropped (they are no-ops
    on gray images); only brightness and contrast are jittered.
    """
    h, w = size
    k = blur_kernel_size(min(h, w))
    ops = [K.RandomResizedCrop((h, w), scale=tuple(crop_scale)), K.RandomHorizontalFlip(p=0.5)]
    if channels == 3:
        ops += [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
    else:
        ops += [K.ColorJitter(brightness=0.4, contrast=0.4, p=0.8)]
    ops += [K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5)]
    return nn.Sequential(*ops)
