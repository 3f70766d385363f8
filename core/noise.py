"""Gradient noise for the particle simulator: what makes a toy gradient "stochastic".

A noisy gradient is g = ∇L(w) + ξ, except for minibatch noise, where g is the gradient of the loss
on a random minibatch of real data points (only the Zhu et al. toy has data). For SAM the noise
draw is taken once per step and used by BOTH passes (g at w and at w + ε), exactly as a network
sees the same minibatch twice (theory.md §1, §2: SAM's effective noise ξ + ρHξ/‖ξ‖).

    none        ξ = 0                                     (gradient descent)
    isotropic   ξ = σ z,  z ~ N(0, I)                     (Langevin-style, theory.md §3 Kramers)
    hessian     ξ = σ A z, A = (d · H₀ / Tr H₀)^{1/2}     (anisotropic, shaped like the curvature)
    minibatch   g = mean over B data points drawn per particle and per step (with replacement)

Hessian-shaped noise: the covariance is Σ = σ² · d · H₀ / Tr(H₀), with H₀ the Hessian at the
starting minimum (negative eigenvalues clipped to 0), kept fixed during the run. Zhu et al. (2019)
show that SGD's noise near a minimum is aligned with H like this; the trace normalisation keeps the
total noise power Tr Σ = d σ² the same as isotropic noise with the same σ, so the two differ only
in shape. In 1-D both are the same.

Minibatch draws are with replacement (independent indices), which vectorises to one `randint`
per step; without replacement the variance would be smaller by (n − B)/(n − 1), 0.91 for B = 10
of 100. σ is not used for minibatch noise: the data set itself sets the noise.

Speed: random numbers are generated for `chunk` steps at once (one call instead of `chunk`),
which saves the per-call overhead of torch on small tensors. The chunk size depends only on the
shape, so a seed gives the same numbers on every run.
"""

from __future__ import annotations

import numpy as np
import torch

from core.landscapes import Landscape

KINDS = ("none", "isotropic", "hessian", "minibatch")
CHUNK_ELEMENTS = 1 << 21  # random numbers generated per call, at most (8 MB in float32)


class Noise:
    """Draws the noise for each step and turns it into noisy gradients.

    draw(t)           the noise of step t, shape (R, N, dim) — or (R, N, B) indices for minibatch —
                      or None for no noise; call once per step, in order t = 0, 1, …
    grad(w, draw)     the noisy gradient at w with that draw (call it for both SAM passes)
    """

    def __init__(self, kind: str, landscape: Landscape, shape: tuple[int, int], sigma: float,
                 batch_size: int, generator: torch.Generator, dtype: torch.dtype,
                 device: torch.device, start=None):
        if kind not in KINDS:
            raise ValueError(f"unknown noise {kind!r}; choose one of {', '.join(KINDS)}")
        if kind == "minibatch" and landscape.data is None:
            raise ValueError(f"minibatch noise needs a landscape with data (zhu), not {landscape.name!r}")
        self.kind, self.landscape = kind, landscape
        self.sigma, self.batch_size = float(sigma), int(batch_size)
        self.gen, self.dtype, self.device = generator, dtype, device
        dim = landscape.dim
        per_step = shape[0] * shape[1] * (self.batch_size if kind == "minibatch" else dim)
        self.chunk = max(1, min(64, CHUNK_ELEMENTS // max(per_step, 1)))
        self.shape = (*shape, self.batch_size if kind == "minibatch" else dim)
        self._buffer: torch.Tensor | None = None
        self._offset = 0
        self.transform = None
        if kind == "hessian" and dim > 1:
            self.transform = hessian_noise_matrix(landscape, start).to(dtype=dtype, device=device)

    def _refill(self) -> None:
        # Drawn as (chunk, last axis, R, N) and viewed as (chunk, R, N, last axis): the last axis
        # (coordinates, or minibatch members) outermost in memory, like w in the simulator (see
        # core.landscapes.stack_coords for why).
        *lead, last = self.shape
        shape = (self.chunk, last, *lead)
        if self.kind == "minibatch":
            n = len(self.landscape.data)
            idx = torch.randint(0, n, shape, generator=self.gen, device=self.device)
            self._buffer = idx.movedim(1, -1)
        else:
            z = torch.randn(shape, generator=self.gen, dtype=self.dtype, device=self.device)
            if self.transform is not None:  # z ~ N(0, I) → A z ~ N(0, A Aᵀ), A acting on axis 1
                z = torch.einsum("ij,cj...->ci...", self.transform, z)
            self._buffer = z.mul_(self.sigma).movedim(1, -1)
        self._offset = 0

    def draw(self, t: int):
        if self.kind == "none" or (self.kind != "minibatch" and self.sigma == 0.0):
            return None
        if self._buffer is None or self._offset == self.chunk:
            self._refill()
        out = self._buffer[self._offset]
        self._offset += 1
        return out

    def grad(self, w: torch.Tensor, draw) -> torch.Tensor:
        if draw is None:
            return self.landscape.grad(w)
        if self.kind == "minibatch":
            return self.landscape.minibatch_grad(w, draw)
        return self.landscape.grad_plus(w, draw)


def hessian_noise_matrix(landscape: Landscape, point=None) -> torch.Tensor:
    """A = (d · H₀ / Tr H₀)^{1/2}, H₀ the Hessian at `point` (default: the minimum of the starting
    basin, else the start), eigenvalues clipped at 0. If H₀ has no positive curvature, A = I."""
    if point is None:
        b = landscape.start_basin()
        point = landscape.minima[b].position if 0 <= b < len(landscape.minima) else landscape.default_start
    h = landscape.hessian(point)
    eigs, vecs = np.linalg.eigh(0.5 * (h + h.T))
    eigs = np.clip(eigs, 0.0, None)
    if not np.isfinite(eigs).all() or eigs.sum() <= 0:
        return torch.eye(landscape.dim, dtype=torch.float64)
    eigs = eigs * landscape.dim / eigs.sum()
    return torch.tensor(vecs @ np.diag(np.sqrt(eigs)) @ vecs.T, dtype=torch.float64)
