"""The airbench94 network: our own write-up of Keller Jordan's CIFAR-10 speed-run net.

Evidence (theirs, not ours): airbench94 reaches 94.01% mean test accuracy over n = 1000 runs of 9.9 epochs
with TTA, in 3.83 s on an A100 (github.com/KellerJordan/cifar10-airbench, legacy/airbench94.py; Jordan 2024,
"94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv:2404.00498).
Not yet measured here: no GPU run of this net has been made, so its accuracy on our JPEG copy
of CIFAR-10, its speed on our H100, and SAM/PSAM on it are open (BENCHMARKS.md, "airbench net"; the device
script bench/gpu_session.sh measures them). On the CPU we only check that each piece does what it says
(tests/test_airbench.py).

The tricks in the net itself (the training recipe is in core/cifar/airbench_train.py):

  * A frozen patch-whitening first layer (core/cifar/whiten.py): a 2×2 convolution whose 24 filters are
    ± the whitening filters of the training set's 2×2 patches, with a learned bias. No padding: 32 → 31.
  * Identity (Dirac) initialisation: in every 3×3 convolution, the first c_in output channels start as the
    identity (a 1 in the centre of the kernel on their own input channel), the others keep PyTorch's random
    init. Each block then starts close to passing its input through, so the signal and the gradient cross
    the untrained net unchanged (the idea of Fixup / ReZero / SkipInit, without the skip connections).
  * Three ConvGroups (64, 256, 256 channels): conv → max-pool → BN → GELU → conv → BN → GELU. Pooling right
    after the first convolution makes the second one run on a 4× smaller image.
  * BatchNorm with a frozen weight γ = 1 and a learned bias β (airbench: the scale is redundant with the next
    convolution's weights, and leaving it out removes a direction along which weight decay and the learning
    rate fight). Its learning rate is 64× the others' (the "scaled BatchNorm biases" of the recipe; see
    airbench_train.param_groups). eps = 1e-12 (the batch variance is never near zero here) and a fast running
    average (PyTorch momentum 0.4 = airbench's 0.6 counted the other way round), so the running statistics
    follow the weights within short runs.
  * GELU activations; a global max-pool (the 3×3 map of the last group → 1×1); a linear head without bias whose
    logits are multiplied by 1/9: with the recipe's very large learning rate, the small scale keeps the
    softmax from saturating early (a temperature, tuned together with the learning rate).

Everything else the recipe needs (the data to initialise the whitening, the bias's frozen epochs) is in
airbench_train; this module only builds the net.
"""

from __future__ import annotations

import torch
from torch import nn

from core.cifar import whiten

WIDTHS = (64, 256, 256)
BN_MOMENTUM = 0.4            # PyTorch's convention: running ← (1 − m)·running + m·batch
BN_EPS = 1e-12
LOGIT_SCALE = 1 / 9
WHITEN_SIZE = 2              # 2×2 patches
WHITEN_WIDTH = 2 * 3 * WHITEN_SIZE ** 2   # 12 filters, both signs: 24 channels


def dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3×3 same-padding convolution without bias whose first min(c_in, c_out) output channels start as the
    identity (torch.nn.init.dirac_); the remaining ones keep the default random (Kaiming-uniform) init."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with γ frozen at 1 (requires_grad False) and a learned β; see the module docstring."""
    bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Module):
    """conv → max-pool → BN → GELU → conv → BN → GELU (both convolutions Dirac-initialised)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = dirac_conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = batch_norm(c_out)
        self.conv2 = dirac_conv(c_out, c_out)
        self.norm2 = batch_norm(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """The airbench94 net (~1.97M trainable parameters at the default widths). Call `init_whitening(images)`
    with normalised training images before training; until then the whitening filters are random."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] | None = None):
        super().__init__()
        a, b, c = widths or WIDTHS   # looked up at call time: bench/airbench_session.py's dry run narrows it
        self.whiten = nn.Conv2d(3, WHITEN_WIDTH, WHITEN_SIZE, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)   # frozen: not trained, not perturbed by SAM
        with torch.no_grad():
            self.whiten.bias.zero_()
        self.act = nn.GELU()
        self.groups = nn.Sequential(ConvGroup(WHITEN_WIDTH, a), ConvGroup(a, b), ConvGroup(b, c))
        self.pool = nn.AdaptiveMaxPool2d(1)          # 31 → 15 → 7 → 3, then the max over the 3×3 map
        self.head = nn.Linear(c, num_classes, bias=False)
        self.logit_scale = LOGIT_SCALE

    def init_whitening(self, images: torch.Tensor, eps: float = whiten.EPS) -> None:
        """Whitening filters from normalised training images (N, 3, 32, 32); see core/cifar/whiten.py."""
        whiten.init_whitening(self.whiten, images, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))
        x = self.pool(self.groups(x)).flatten(1)
        return self.head(x) * self.logit_scale


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should see: those with requires_grad (not the whitening filters, not γ)."""
    return [p for p in model.parameters() if p.requires_grad]
