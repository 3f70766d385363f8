"""CIFAR-10 networks: a tiny CNN for CPU demos, a fast VGG-style net, and the airbench94 net for the GPU
(core/cifar/airbench.py, trained with its own recipe, core/cifar/airbench_train.py).

Both use BatchNorm, so the SAM trainer must freeze its running statistics on the perturbed pass
(`core.sam.frozen_bn_stats`) and the loss profiles must recompute them at every point.
"""

from __future__ import annotations

import torch
from torch import nn

from core.cifar.airbench import AirbenchNet

MODELS = {
    "tiny": "tiny CNN (CPU demo, ~25k parameters)",
    "fast": "fast VGG-style net with BatchNorm (GPU, ~1.97M parameters)",
    "airbench": "airbench94 net: frozen patch whitening, Dirac init, Lookahead, TTA (GPU, ~1.97M parameters)",
}
# Defaults that train each model well in a few epochs (see core.cifar.train.TrainConfig).
DEFAULT_BATCH = {"tiny": 128, "fast": 500, "airbench": 1024}  # airbench94 trains at 1024
# The fast net's 0.1 comes from a CPU sweep on the 5,000-image subset at batch 500 (BENCHMARKS.md,
# "fast net learning rate"): lr 0.2 overshoots in the first epochs (train loss above ln 10) and ended
# 17 points behind at 120 steps; 0.1 beat 0.05 by 2 points at 300 steps.
DEFAULT_LR = {"tiny": 0.1, "fast": 0.1}


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    """3×3 convolution → BatchNorm → activation. The convolution has no bias: the BatchNorm
    right after it subtracts the mean anyway, and its own shift β plays the bias's role."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]


class TinyCNN(nn.Module):
    """Three conv-BN-GELU stages (16, 32, 64 channels), each halving the image with max-pooling,
    then global average pooling and a linear classifier. Small enough that 5 epochs of SAM on
    5,000 images take well under a minute on two CPU cores."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            *conv_bn(3, a), nn.MaxPool2d(2),   # 32 → 16
            *conv_bn(a, b), nn.MaxPool2d(2),   # 16 → 8
            *conv_bn(b, c), nn.MaxPool2d(2),   # 8 → 4
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvGroup(nn.Module):
    """airbench's block: conv → max-pool → BN → GELU → conv → BN → GELU.
    Pooling right after the first convolution (instead of at the end) makes the second
    convolution run on a 4× smaller image: most of the speed, little of the accuracy lost."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class FastNet(nn.Module):
    """A VGG-style net after Keller Jordan's airbench (94% on CIFAR-10 in seconds on one GPU).

    Tricks, each explained:
      * A cheap 2×2 stem convolution (24 channels, no padding → 31×31): a learned stand-in for
        airbench's patch-whitening layer, it mixes colours and neighbouring pixels first.
      * Three ConvGroups (64, 256, 256 channels) with the pool inside the group (see ConvGroup).
      * BatchNorm everywhere with a high update rate (PyTorch momentum 0.4, airbench's 0.6 counted
        the other way round) so the running statistics follow the weights within short runs.
      * GELU instead of ReLU: smoother, trains a little better at this size.
      * Global max-pool at the end and a bias-free linear head. (airbench also scales the logits by
        1/9, tuned together with its very large learning rate; with plain Nesterov SGD at lr 0.1 we
        leave that out, so the head learns at the usual speed.)
      * Trained (in core.cifar.train) with the whole data set on the GPU, augmentation on the GPU,
        bf16 autocast and channels_last memory (tensor-core friendly), Nesterov SGD, label
        smoothing 0.2 and batch 500: no data loader, no host-device copies per step.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256)):
        super().__init__()
        a, b, c = widths
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 2, bias=False), nn.BatchNorm2d(24), nn.GELU())
        self.groups = nn.Sequential(ConvGroup(24, a), ConvGroup(a, b), ConvGroup(b, c))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(c, num_classes, bias=False)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.groups(self.stem(x))).flatten(1)
        return self.head(x)


def make_model(name: str, num_classes: int = 10) -> nn.Module:
    """A fresh model by name (see MODELS). Seed torch before calling for reproducible weights."""
    if name == "tiny":
        return TinyCNN(num_classes)
    if name == "fast":
        return FastNet(num_classes)
    if name == "airbench":
        return AirbenchNet(num_classes)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
