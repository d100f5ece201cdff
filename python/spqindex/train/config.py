"""Hyper-parameters of SPQ training; the defaults are the paper's (CIFAR-10, 32 bits)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Tuple


@dataclasses.dataclass
class SPQConfig:
    """SPQ settings. ``bits = M * log2(K)``; ``M`` is derived from ``bits`` and ``K``.

    Deviations from the reference code (documented in docs/training.md):
    ``lr_schedule="cosine"`` anneals over the whole run, not over one epoch's batches.
    """

    bits: int = 32
    K: int = 16  # codewords per codebook
    dsub: int = 16  # dimension of one sub-space (the paper's L_word)
    tau_q: float = 5.0  # soft-quantization scale: softmax(-tau_q * ||x - c||^2)
    tau: float = 0.5  # NT-Xent temperature of the CQC loss
    lr: float = 3e-4
    weight_decay: float = 1e-5
    batch_size: int = 256
    lr_schedule: str = "cosine"  # "cosine" (whole run) or "constant"
    crop_scale: Tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range
    seed: int = 0
    # Not in the paper: soft-quantize unit-norm sub-vectors with unit-norm codewords, and export features
    # and codebooks normalised per sub-space (docs/training.md, "Normalised sub-spaces").
    normalize_subspaces: bool = False
    # Not in the paper: past steps' soft-quantized outputs as extra negatives of the CQC loss, up to this many
    # (loss.CQCLoss; docs/training.md, "A queue of negatives"). 0: off, the paper's loss.
    queue_size: int = 0
    # Not in the paper: debiased contrastive negatives (Chuang et al. 2020), the share of a sample's negatives
    # expected to be of its own class (0.1 for 10 balanced classes; loss.nt_xent). 0: off, the paper's loss.
    class_prior: float = 0.0

    def __post_init__(self) -> None:
        self.crop_scale = (float(self.crop_scale[0]), float(self.crop_scale[1]))
        if not isinstance(self.K, int) or self.K < 2 or self.K > 256 or self.K & (self.K - 1):
            raise ValueError(f"K must be a power of two in [2, 256], got {self.K!r}")
        nbits = self.nbits
        if not isinstance(self.bits, int) or self.bits <= 0 or self.bits % nbits:
            raise ValueError(f"bits must be a positive multiple of log2(K)={nbits}, got {self.bits!r}")
        if not isinstance(self.dsub, int) or self.dsub < 1:
            raise ValueError(f"dsub must be a positive int, got {self.dsub!r}")
        for name in ("tau_q", "tau", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2, got {self.batch_size!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if not isinstance(self.normalize_subspaces, bool):
            raise ValueError(f"normalize_subspaces must be a bool, got {self.normalize_subspaces!r}")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 0:
            raise ValueError(f"queue_size must be an int >= 0, got {self.queue_size!r}")
        if isinstance(self.class_prior, bool) or not 0 <= self.class_prior < 1:
            raise ValueError(f"class_prior must be a float in [0, 1), got {self.class_prior!r}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale!r}")

    @property
    def nbits(self) -> int:
        """Bits per sub-space code, log2(K)."""
        return int(math.log2(self.K))

    @property
    def M(self) -> int:
        """Number of codebooks (sub-spaces)."""
        return self.bits // self.nbits

    @property
    def dim(self) -> int:
        """Feature dimension D = M * dsub."""
        return self.M * self.dsub

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SPQConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SPQConfig fields: {sorted(unknown)}")
        return cls(**d)
