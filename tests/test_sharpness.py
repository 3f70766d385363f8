"""λ_max by power iteration on Hessian-vector products and Tr(H) by Hutchinson, against the exact
Hessian of a model small enough to form it (torch.autograd.functional.hessian)."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from core.cifar.sharpness import hutchinson_trace, lambda_max

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_model_and_hessian(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))  # 43 parameters
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss_of(w):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = w[i : i + s.numel()].view(s)
            i += s.numel()
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    return model, x, y, torch.autograd.functional.hessian(loss_of, flat)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lambda_max_matches_exact_top_eigenvalue(seed):
    """Power iteration v ← Hv/‖Hv‖ converges to the top eigenvalue of H, eigvalsh(H)[-1]. It stops when the
    Rayleigh quotient changes by < 1e-7 (relative) and works in float32 (round-off ~1e-6 on H v), so 1e-4 is
    a margin of round-off, not of method: the measured error was ≤ 5e-7 for these seeds. (The issue asks 1%.)"""
    model, x, y, h = _small_model_and_hessian(seed)
    exact = torch.linalg.eigvalsh(h.double())[-1].item()
    est = lambda_max(model, x, y, iters=500, tol=1e-7, seed=seed)
    assert est == pytest.approx(exact, rel=1e-4)


def test_lambda_max_finds_top_when_dominant_eigenvalue_is_negative():
    """If the largest-|λ| eigenvalue is negative, the shifted iteration still returns the top one."""
    model = nn.Linear(3, 1, bias=False)
    x = torch.eye(3)

    def loss_fn(out, _):  # L(w) = ½ Σ_i c_i w_i², Hessian diag(c)
        return 0.5 * (torch.tensor([[-5.0], [1.0], [2.0]]) * out**2).sum()

    est = lambda_max(model, x, None, iters=500, tol=1e-9, loss_fn=loss_fn)
    assert est == pytest.approx(2.0, rel=0.01)


def test_hutchinson_trace_within_its_standard_error():
    """E[vᵀHv] = Tr(H) for Rademacher v; Var = 2(‖H‖_F² − Σ H_ii²). With m samples the estimate lies
    within 4 standard errors of the exact trace (fails with probability < 1e-4 for a fixed seed anyway)."""
    model, x, y, h = _small_model_and_hessian(0)
    m = 200
    est = hutchinson_trace(model, x, y, samples=m, seed=0)
    var = 2 * ((h**2).sum() - (torch.diagonal(h) ** 2).sum()).item()
    assert abs(est - torch.trace(h).item()) < 4 * math.sqrt(var / m)


def test_measured_in_eval_mode_and_model_left_in_its_mode():
    """The measurement runs the model in eval mode (BatchNorm uses its running statistics, so L is a fixed
    function of w), checked from inside the loss, and restores the caller's train mode afterwards; the
    running statistics are not moved by the measurement."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model.train()
    modes = []

    def loss_fn(out, target):
        modes.append(model.training)
        return nn.functional.cross_entropy(out, target)

    stats = model[1].running_mean.clone()
    lambda_max(model, x, y, iters=3, loss_fn=loss_fn)
    hutchinson_trace(model, x, y, samples=2, loss_fn=loss_fn)
    assert modes and not any(modes) and model.training
    assert torch.equal(model[1].running_mean, stats)


def test_hessian_vector_products_run_without_autocast_or_tf32():
    """λ_max is measured in true fp32: no autocast, and no TF32 in cuDNN's convolutions (on by default on
    GPUs, where it would bias H v). The flags are restored afterwards. Checked from inside the loss."""
    model, x, y, _ = _small_model_and_hessian(0)
    seen = []

    def loss_fn(out, target):
        seen.append((torch.backends.cudnn.allow_tf32, torch.is_autocast_enabled(x.device.type), out.dtype))
        return nn.functional.cross_entropy(out, target)

    before = torch.backends.cudnn.allow_tf32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller inside autocast must not leak into it
        lambda_max(model, x, y, iters=2, loss_fn=loss_fn)
    assert seen and all(s == (False, False, torch.float32) for s in seen), seen
    assert torch.backends.cudnn.allow_tf32 == before
