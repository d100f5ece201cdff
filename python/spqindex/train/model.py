"""SPQModel: a backbone, a quantization head, and the export to a native ``spqindex.Index``."""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from .backbones import GRAY28_BACKBONES, make_backbone
from .config import SPQConfig
from .images import check_images, num_channels, to_tensor
from .quantization import QuantizationHead, normalize_subspaces, soft_quantize

__all__ = ["SPQModel", "QuantizationHead", "soft_quantize"]

_FORMAT = "spqindex.SPQModel/1"


class SPQModel(nn.Module):
    """Backbone -> Linear(feat -> M*dsub) -> soft quantization with M codebooks of K codewords.

    ``backbone`` is 'cnn28', 'cnn28_deep', 'resnet18_cifar', 'efficientnet_lite0', or any ``nn.Module`` with ``out_dim``
    that maps (n, C, H, W) float images in [0, 1] to (n, out_dim).
    """

    def __init__(
        self,
        cfg: Optional[SPQConfig] = None,
        backbone: Union[str, nn.Module] = "cnn28",
        in_channels: Optional[int] = None,
        pretrained: bool = True,
    ):
        super().__init__()
        cfg = SPQConfig() if cfg is None else cfg
        if not isinstance(cfg, SPQConfig):
            raise TypeError(f"cfg must be an SPQConfig, got {type(cfg).__name__}")
        if isinstance(backbone, str):
            if in_channels is None:
                in_channels = 1 if backbone in GRAY28_BACKBONES else 3
            self.backbone_name = backbone
            with torch.random.fork_rng(devices=[]):  # the initial weights depend on cfg.seed only
                torch.manual_seed(cfg.seed)
                self.backbone = make_backbone(backbone, in_channels, pretrained=pretrained)
        elif isinstance(backbone, nn.Module):
            if not isinstance(getattr(backbone, "out_dim", None), int):
                raise ValueError("a custom backbone must have an int attribute out_dim (its feature size)")
            self.backbone_name = "custom"
            self.backbone = backbone
        else:
            raise TypeError(f"backbone must be a name or an nn.Module, got {type(backbone).__name__}")
        self.cfg = cfg
        self.in_channels = in_channels
        self.refine_iters = 0  # Lloyd rounds applied to the codebooks after training (refine_codebooks)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            self.head = QuantizationHead(
                self.backbone.out_dim, cfg.M, cfg.K, cfg.dsub, cfg.tau_q, cfg.normalize_subspaces
            )

    def forward(self, images: torch.Tensor):
        """images (n, C, H, W) float -> (x, z): features before quantization and soft-quantized features."""
        return self.head(self.backbone(images))

    # --- export -------------------------------------------------------------------------------------------
    def codebooks(self) -> np.ndarray:
        """(M, K, dsub) float32 codebooks (unit-norm codewords with ``cfg.normalize_subspaces``)."""
        c = self.head.codebooks.detach().float()
        if self.cfg.normalize_subspaces:
            c = torch.nn.functional.normalize(c, dim=-1)
        return c.cpu().numpy().copy()

    @torch.no_grad()
    def embed(self, images, batch_size: int = 512) -> np.ndarray:
        """(n, M*dsub) float32 features before quantization, computed in eval mode (train mode restored).

        With ``cfg.normalize_subspaces`` every sub-vector has unit norm, as the quantizer sees it."""
        check_images(images)
        if self.in_channels is not None and num_channels(images) != self.in_channels:
            raise ValueError(f"images have {num_channels(images)} channels, the model takes {self.in_channels}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = np.empty((len(images), self.cfg.dim), dtype=np.float32)
        try:
            for s in range(0, len(images), batch_size):
                x = to_tensor(images, slice(s, s + batch_size), device)
                with autocast(device):
                    feats = self.head.project(self.backbone(x))
                if self.cfg.normalize_subspaces:
                    feats = normalize_subspaces(feats, self.cfg.M)
                out[s : s + len(x)] = feats.cpu().numpy()
        finally:
            self.train(was_training)
        return out

    @torch.no_grad()
    def refine_codebooks(self, images, iters: int = 10, batch_size: int = 512) -> dict:
        """Lloyd's k-means on the codebooks, started from the learned ones, over the embeddings of ``images``.

        Not part of SPQ: a post-training step that fits the codebooks to the hard assignment the index
        encodes with (soft quantization can leave codewords far from the features they stand for; with few
        codebooks this costs retrieval quality). The codebooks are replaced in place; the backbone and the
        projection are unchanged. Returns the mean squared quantization error before and after.
        """
        from .._validate import positive_int
        from ..pq import refine_codebooks

        iters = positive_int(iters, "iters")  # before the (long) embedding pass
        feats = self.embed(images, batch_size)
        before = self.codebooks()
        after = refine_codebooks(feats, before, iters)
        self.head.codebooks.copy_(torch.from_numpy(after).to(self.head.codebooks))
        self.refine_iters += iters
        # With cfg.normalize_subspaces, codebooks() gives the refined codewords renormalised to unit norm.
        return {"mse_before": _quantization_mse(feats, before), "mse_after": _quantization_mse(feats, self.codebooks())}

    def build_index(self, images, batch_size: int = 512):
        """A ``spqindex.Index(self.codebooks(), metric="spq")`` holding the embeddings of ``images``."""
        import spqindex

        index = spqindex.Index(self.codebooks(), metric="spq")
        index.add(self.embed(images, batch_size))
        return index

    # --- persistence (tensors and plain values only; loads with weights_only=True) -------------------------
    def save(self, path: Union[str, os.PathLike]) -> None:
        payload = {
            "format": _FORMAT,
            "config": self.cfg.to_dict(),
            "backbone": self.backbone_name,
            "in_channels": self.in_channels,
            "refine_iters": self.refine_iters,
            "state_dict": self.state_dict(),
        }
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(
        cls, path: Union[str, os.PathLike], backbone: Optional[nn.Module] = None, map_location="cpu"
    ) -> "SPQModel":
        """Load a model saved with :meth:`save`. A model with a custom backbone needs that module passed in."""
        payload = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not an SPQModel file (missing format {_FORMAT!r})")
        cfg = SPQConfig.from_dict(payload["config"])
        name = payload["backbone"]
        if name == "custom":
            if backbone is None:
                raise ValueError("this model was trained with a custom backbone: pass backbone=<the nn.Module>")
            model = cls(cfg, backbone)
            model.in_channels = payload["in_channels"]
        else:
            model = cls(cfg, name, in_channels=payload["in_channels"], pretrained=False)
        model.load_state_dict(payload["state_dict"])
        model.refine_iters = int(payload.get("refine_iters", 0))
        return model


def _quantization_mse(x: np.ndarray, codebooks: np.ndarray) -> float:
    import spqindex

    index = spqindex.Index(codebooks, metric="l2")
    return float(((index.decode(index.encode(x)) - x) ** 2).sum(axis=1).mean())


def autocast(device: torch.device, bf16: Optional[bool] = None):
    """bfloat16 autocast of the forward pass; bf16=None: on CUDA, off on CPU (there it is opt-in: faster where
    the CPU has AVX512-BF16 or AMX, 1.4-1.6x on one Zen 4 thread, but not bit-identical to a float32 run)."""
    if bf16 is not None and not isinstance(bf16, bool):
        raise TypeError(f"bf16 must be None, True or False, got {bf16!r}")
    if bf16 is None:
        bf16 = device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(bf16))
