"""Sharpness-Aware Minimization (SAM) and its adaptive variant ASAM.

This module is the one place where the SAM step is written. The toy particle simulator
(`core.toy.simulate`) and the CIFAR trainer (`core.cifar.train`) both call `sam_perturbation`.

SAM (Foret et al., ICLR 2021) minimises the loss in the worst case over a ball of radius ρ:

    min_w  max_{‖ε‖ ≤ ρ}  L(w + ε)

One SAM step approximates the inner maximum to first order and then descends from there:

    (1)  g  = ∇L_B(w)                         first pass, minibatch B
    (2)  ε  = ρ · T² g / (‖T g‖ + 1e-12)       ascent to the edge of the ball
    (3)  w ← w − η · ∇L_B(w + ε)               second pass, the SAME minibatch B

T is the identity for SAM; for ASAM (Kwon et al., ICML 2021) T = |w| elementwise, which makes the
ball scale with the weights (ASAM needs ρ about 10× larger than SAM). The 1e-12 guards ‖g‖ = 0.
The norm in (2) is the global L2 norm over *all* parameters, not a per-tensor norm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager

import torch

NORM_GUARD = 1e-12


def sam_perturbation(
    grads: Sequence[torch.Tensor],
    rho: float | torch.Tensor,
    weights: Sequence[torch.Tensor] | None = None,
    adaptive: bool = False,
    dim: int | None = None,
) -> list[torch.Tensor]:
    """Equation (2): ε = ρ · T² g / (‖T g‖ + 1e-12), with T = |w| for ASAM, else identity.

    grads:    the gradients g, one tensor per parameter.
    rho:      the radius ρ; a tensor broadcasts (one ρ per particle group in the simulator).
    weights:  the parameters w (only needed for ASAM).
    dim:      None -> one global norm over every element of every tensor (a network's parameters);
              an int -> a separate norm along that axis, kept for broadcasting (each particle
              in a (..., N, d) batch is its own model, so each gets its own ‖g‖).
    """
    if adaptive and weights is None:
        raise ValueError("ASAM needs the weights w to scale the ball (T = |w|)")
    scaled = [w.abs() * g for g, w in zip(grads, weights)] if adaptive else list(grads)
    # ‖T g‖² summed tensor by tensor (no `sum()` builtin: its start value 0 costs one more operation,
    # which matters in the particle simulator, where this runs every step on small tensors)
    squared = None
    for s in scaled:
        sq = (s * s).sum() if dim is None else (s * s).sum(dim=dim, keepdim=True)
        squared = sq if squared is None else squared + sq
    scale = rho / (torch.sqrt(squared) + NORM_GUARD)
    if adaptive:
        return [w * w * g * scale for g, w in zip(grads, weights)]
    return [g * scale for g in grads]


class SAM(torch.optim.Optimizer):
    """SAM / ASAM around any base optimizer, with the familiar closure API.

    Use it like any optimizer, giving a closure that re-evaluates the loss on the *same* batch:

        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        loss = opt.step(closure)

    or call the two halves yourself: `first_step()` (w → w + ε) and `second_step()` (back to w,
    then the base optimizer's update with the gradient taken at w + ε).
    `sgd_step()` skips the ascent, for schedules that use SAM only on some steps.
    """

    def __init__(
        self,
        params: Iterable,
        base_optimizer_class: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs,
    ):
        if not rho >= 0.0:  # also refuses NaN
            raise ValueError(f"rho must be a non-negative number, got {rho!r}")
        defaults = dict(rho=rho, adaptive=adaptive, **base_kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer_class(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every parameter to w + ε (equation 2), remembering w."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            eps = sam_perturbation(
                [p.grad for p in params],
                group["rho"],
                weights=params,
                adaptive=group["adaptive"],
            )
            for p, e in zip(params, eps):
                self.state[p]["w"] = p.detach().clone()
                p.add_(e)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and take the base optimizer's step with ∇L(w + ε) (equation 3)."""
        for group in self.param_groups:
            for p in group["params"]:
                if "w" in self.state[p]:
                    p.copy_(self.state[p].pop("w"))
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def sgd_step(self, zero_grad: bool = False) -> None:
        """A plain base-optimizer step with the gradient already at w (no ascent)."""
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """One full SAM step. The closure must zero the gradients, run forward and backward on
        the same minibatch, and return the loss; it is called twice (two gradient evaluations)."""
        if closure is None:
            raise ValueError("SAM needs a closure that recomputes the loss on the same batch")
        closure = torch.enable_grad()(closure)
        loss = closure()  # pass 1 at w
        self.first_step()
        with torch.enable_grad():
            self.zero_grad()
            closure()  # pass 2 at w + ε
        self.second_step()
        return loss

    # SAM's own state (the saved w) lives only between first_step and second_step; what must survive a
    # save and a resume is the base optimizer's state (momentum buffers …), so that is what is saved.
    def state_dict(self) -> dict:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


_BN_TYPES = (torch.nn.modules.batchnorm._BatchNorm,)


@contextmanager
def frozen_bn_stats(model: torch.nn.Module):
    """Keep BatchNorm running statistics unchanged during the perturbed (second) pass.

    The running mean and variance should describe the network at w, not at w + ε, so for the
    second pass we set each BatchNorm layer's momentum to 0 (the running update becomes a no-op)
    and restore it afterwards. Batch statistics are still used for the forward pass itself.
    """
    saved = []
    for module in model.modules():
        if isinstance(module, _BN_TYPES):
            saved.append((module, module.momentum))
            module.momentum = 0.0
    try:
        yield model
    finally:
        for module, momentum in saved:
            module.momentum = momentum
