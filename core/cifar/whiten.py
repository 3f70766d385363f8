"""Patch whitening: the frozen first layer of the airbench net (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds
on a single GPU", arXiv:2404.00498; whitening image patches before learning features goes back to
Coates, Lee & Ng, AISTATS 2011).

The first convolution of the net looks at 2×2 patches of the (normalised) image: 2·2·3 = 12 numbers per patch.
Neighbouring pixels and colour channels are strongly correlated, so those 12 numbers vary mostly along a few
directions. Whitening turns them into 12 uncorrelated numbers of unit variance, which the next layers learn
from much faster (the loss surface of the rest of the net is better conditioned).

With p ∈ R¹² a patch and Σ = E[p pᵀ] (the second moment over every 2×2 patch of the training images; the
images are normalised per channel, so this is close to their covariance), the eigendecomposition
Σ = V diag(λ) Vᵀ gives the whitening filters

    W = diag(λ + eps)^(−1/2) Vᵀ              (one filter per eigenvector, row i = v_iᵀ / √(λ_i + eps))

so that the whitened patches z = W p have second moment  W Σ Wᵀ = diag(λ / (λ + eps)).  With eps = 0 that is
the identity; eps (5e-4 in airbench) keeps the filters of the tiniest eigenvalues (pixel noise, JPEG
artefacts) from being blown up by 1/√λ, at the price of shrinking those channels' variance to λ/(λ + eps).

The layer uses both signs, [W; −W] (24 filters): the GELU after it keeps only one side of each, and with both
signs no information is lost. The filters are frozen (requires_grad False): they are a fixed change of
coordinates, not something to learn, and SAM does not perturb them (core.sam skips parameters without a
gradient). Only the layer's bias learns, during the first epochs (see core.cifar.airbench_train).
"""

from __future__ import annotations

import torch

EPS = 5e-4  # airbench94's eps: small beside the typical eigenvalue of normalised CIFAR patches


def patches(images: torch.Tensor, size: int = 2) -> torch.Tensor:
    """Every size×size patch (stride 1, no padding) of images (N, C, H, W), flattened: (N·(H−size+1)², C·size²),
    in the order a Conv2d weight (C, size, size) is flattened, so that `patches @ w.flatten()` is the conv."""
    n, c = images.shape[:2]
    p = images.unfold(2, size, 1).unfold(3, size, 1)       # (N, C, H', W', size, size)
    return p.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * size * size)


def whitening_filters(images: torch.Tensor, size: int = 2, eps: float = EPS) -> torch.Tensor:
    """The filters W = diag(λ + eps)^(−1/2) Vᵀ of the module docstring, as conv weights (C·size², C, size, size),
    largest eigenvalue first. Computed in float64 (the eigenvalues span several orders of magnitude)."""
    c = images.shape[1]
    p = patches(images.double(), size)
    sigma = p.T @ p / len(p)                                  # Σ = E[p pᵀ] over all patches
    eigvals, eigvecs = torch.linalg.eigh(sigma)               # ascending λ, columns v_i
    eigvals, eigvecs = eigvals.flip(0).clamp_min(0.0), eigvecs.flip(1)   # largest first; clamp rounding below 0
    w = eigvecs.T / torch.sqrt(eigvals + eps).unsqueeze(1)    # row i = v_iᵀ / √(λ_i + eps)
    return w.reshape(c * size * size, c, size, size).to(images.dtype)


@torch.no_grad()
def init_whitening(conv: torch.nn.Conv2d, images: torch.Tensor, eps: float = EPS) -> None:
    """Set conv's weight to [W; −W] (both signs), computed from `images` (normalised, N × C × H × W), and
    zero its bias. conv must have 2·C·size² output channels and a size×size kernel."""
    size = conv.kernel_size[0]
    w = whitening_filters(images.to(conv.weight.device).float(), size, eps)
    if conv.weight.shape != (2 * len(w), *w.shape[1:]):
        raise ValueError(f"a whitening layer needs weight shape {(2 * len(w), *w.shape[1:])}, "
                         f"got {tuple(conv.weight.shape)}")
    conv.weight.copy_(torch.cat((w, -w)).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.zero_()
