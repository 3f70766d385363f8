"""Sharpness of a trained network: the top Hessian eigenvalue λ_max and the trace Tr(H).

Both use only Hessian-vector products, H v = ∇_w (∇_w L(w) · v) (Pearlmutter 1994), computed by
double backward, never the Hessian itself. L is the mean cross-entropy (no label smoothing) on a
fixed evaluation batch, with the model in eval mode (BatchNorm uses its running statistics, so L is a
fixed function of w), in fp32.

    λ_max:  power iteration  v ← H v / ‖H v‖,  λ = vᵀ H v  (Rayleigh quotient).
            Power iteration finds the eigenvalue of largest |λ|. If that one is negative (away from a
            minimum), we iterate once more on the shifted matrix H − λ₁ I, whose dominant eigenvalue
            is λ_top − λ₁ ≥ 0, and add λ₁ back.
    Tr(H):  Hutchinson,  Tr(H) = E[vᵀ H v]  for Rademacher v (entries ±1), averaged over samples.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


def _loss_and_grads(model, x, y, loss_fn=None):
    params = [p for p in model.parameters() if p.requires_grad]
    loss_fn = loss_fn or (lambda out, target: F.cross_entropy(out.float(), target))
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return params, grads


def _hvp(params, grads, v):
    """H v by double backward: the gradient of (∇L · v) with respect to w."""
    dot = sum((g * vi).sum() for g, vi in zip(grads, v))
    return torch.autograd.grad(dot, params, retain_graph=True)


def _dot(a, b) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _normalize(v):
    n = torch.sqrt(_dot(v, v))
    return [x / n for x in v]


def _power(params, grads, iters, tol, gen, shift=0.0):
    v = _normalize([torch.randn(p.shape, device=p.device, generator=gen) for p in params])
    lam = 0.0
    for _ in range(iters):
        hv = _hvp(params, grads, v)
        if shift:
            hv = [h - shift * x for h, x in zip(hv, v)]
        new = _dot(v, hv).item()
        v = _normalize(hv)
        if abs(new - lam) <= tol * max(abs(new), 1e-12):
            lam = new
            break
        lam = new
    return lam


def _generator(params, seed):
    return torch.Generator(device=params[0].device).manual_seed(seed)


@contextmanager
def _fixed_loss(model, x, y, seed: int, loss_fn):
    """Eval mode and fp32 for the duration (L a fixed function of w); yields the parameters, the
    gradients kept for double backward, and a seeded generator for the random vectors. "fp32" means
    no autocast and no TF32 either: cuDNN runs fp32 convolutions in TF32 (10-bit mantissa) by default
    on recent GPUs, which would bias H v a little and make GPU and CPU values disagree."""
    was = model.training
    model.eval()
    cudnn = torch.backends.cudnn
    try:
        with torch.autocast(x.device.type, enabled=False), \
                cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                            allow_tf32=False):  # (flags() also resets benchmark_limit; all restored on exit)
            params, grads = _loss_and_grads(model, x, y, loss_fn)
            yield params, grads, _generator(params, seed)
    finally:
        model.train(was)


def lambda_max(model, x, y, iters: int = 20, tol: float = 1e-4, seed: int = 0, loss_fn=None) -> float:
    """Largest eigenvalue of the Hessian of the loss on the batch (x, y), by power iteration."""
    with _fixed_loss(model, x, y, seed, loss_fn) as (params, grads, gen):
        lam = _power(params, grads, iters, tol, gen)
        if lam < 0:  # the dominant eigenvalue is negative: find the top one by shifting
            lam = lam + _power(params, grads, iters, tol, gen, shift=lam)
    return float(lam)


def hutchinson_trace(model, x, y, samples: int = 10, seed: int = 0, loss_fn=None) -> float:
    """Tr(H) ≈ (1/m) Σ_i v_iᵀ H v_i with Rademacher v_i (Hutchinson 1989)."""
    total = 0.0
    with _fixed_loss(model, x, y, seed, loss_fn) as (params, grads, gen):
        for _ in range(samples):
            v = [torch.randint(0, 2, p.shape, device=p.device, generator=gen).to(p.dtype) * 2 - 1
                 for p in params]
            total += _dot(v, _hvp(params, grads, v)).item()
    return total / max(1, samples)
