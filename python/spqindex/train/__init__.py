"""SPQ training (PyTorch): self-supervised product quantization for unsupervised image retrieval."""

from .config import SPQConfig
from .model import SPQModel
from .trainer import fit

__all__ = ["SPQConfig", "SPQModel", "fit"]
