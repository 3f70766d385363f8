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
shape, so a seed gives the same numbers on every run. Drawing normal numbers costs ~3.5 ns each
on the CPU (the Mersenne Twister behind them), a third of the benchmark run; so on the CPU, when
the number of steps is known, the next chunk is drawn in a background thread while the simulator
uses the current one (torch releases Python's lock while it fills a tensor, so with two cores
both run at once). Only that one thread uses the generator, in chunk order, so the numbers are
exactly those of drawing the chunks one after another.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from core.toy.landscapes import Landscape

KINDS = ("none", "isotropic", "hessian", "minibatch")
CHUNK_ELEMENTS = 1 << 21  # random numbers generated per call, at most (8 MB in float32)
PREFETCH_ELEMENTS = 1 << 16  # chunks at least this big are drawn ahead in a background thread


class Noise:
    """Draws the noise for each step and turns it into noisy gradients.

    draw(t)           the noise of step t, shape (R, N, dim) — or (R, N, B) indices for minibatch —
                      or None for no noise; call once per step, in order t = 0, 1, …
    grad(w, draw)     the noisy gradient at w with that draw (call it for both SAM passes)
    """

    def __init__(self, kind: str, landscape: Landscape, shape: tuple[int, int], sigma: float,
                 batch_size: int, generator: torch.Generator, dtype: torch.dtype,
                 device: torch.device, start=None, steps: int | None = None):
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
        # background drawing: only on the CPU, for big chunks, and when we know how many chunks
        # the run needs (`steps`), so that no thread draws numbers nobody will use
        self._chunks_left = None
        if steps is not None and device.type == "cpu" and self.chunk * per_step >= PREFETCH_ELEMENTS:
            self._chunks_left = -(-int(steps) // self.chunk)  # ceil(steps / chunk)
        self._pending: tuple[threading.Thread, dict] | None = None
        self._raw: list[torch.Tensor | None] = [None, None]  # the two chunk buffers (_generate)
        self._chunks_drawn = 0
        self.transform = None
        if kind == "hessian" and dim > 1:
            self.transform = hessian_noise_matrix(landscape, start).to(dtype=dtype, device=device)

    def _refill(self) -> None:
        if self._pending is not None:  # drawn in the background: wait for it (usually done)
            thread, box = self._pending
            thread.join()
            self._pending = None
            if "error" in box:
                raise box["error"]
            self._buffer = box["chunk"]
        else:
            self._buffer = self._generate()
        self._offset = 0
        if self._chunks_left is not None:
            self._chunks_left -= 1
            if self._chunks_left > 0:  # start drawing the next chunk now
                box: dict = {}
                thread = threading.Thread(target=self._generate_into, args=(box,), daemon=True)
                thread.start()
                self._pending = (thread, box)

    def _generate_into(self, box: dict) -> None:
        try:
            box["chunk"] = self._generate()
        except BaseException as e:  # handed to the simulator's thread by _refill
            box["error"] = e

    def _generate(self) -> torch.Tensor:
        # Drawn as (chunk, last axis, R, N) and viewed as (chunk, R, N, last axis): the last axis
        # (coordinates, or minibatch members) outermost in memory, like w in the simulator (see
        # core.toy.landscapes.stack_coords for why).
        # Speed: two buffers, allocated once and filled in turn (one is read while the other is
        # drawn ahead), instead of a new tensor per chunk: the first write to freshly allocated
        # memory costs a page fault per 4 KB, which made drawing 2.5× slower (measured).
        # `x.normal_()` / `x.random_(0, n)` draw the same numbers as torch.randn / torch.randint.
        *lead, last = self.shape
        shape = (self.chunk, last, *lead)
        minibatch = self.kind == "minibatch"
        slot = self._chunks_drawn % 2
        self._chunks_drawn += 1
        if self._raw[slot] is None:
            self._raw[slot] = torch.empty(shape, dtype=torch.long if minibatch else self.dtype, device=self.device)
        raw = self._raw[slot]
        if minibatch:
            return raw.random_(0, len(self.landscape.data), generator=self.gen).movedim(1, -1)
        z = raw.normal_(generator=self.gen)
        if self.transform is not None:  # z ~ N(0, I) → A z ~ N(0, A Aᵀ), A acting on axis 1
            z = torch.einsum("ij,cj...->ci...", self.transform, z)
        return z.mul_(self.sigma).movedim(1, -1)

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
