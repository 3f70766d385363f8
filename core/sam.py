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

Two cheaper relatives live here too, with the same closure API (`opt.step(closure)`, `opt.grad_evals`
counts the closure's forward-backward passes), so they drop into any training loop:

    LookSAM       (Liu et al., CVPR 2022)      a SAM step every k-th step; between them the stored direction
                                               g_v (the part of ∇L(w + ε) orthogonal to g) is reused
    MomentumSAM   (Becker et al., 2024)        one pass a step: the gradient is taken at w − ρ v/‖v‖, with v
                                               the base optimizer's momentum

Both take their perturbation from `sam_perturbation`, the one SAM step. Pass `model=` to `step` to keep
BatchNorm's running statistics frozen on a perturbed pass (`frozen_bn_stats`).

ONE `step(closure, model)` (SAM.step) serves every optimizer here and every schedule: a first pass at the
point the optimizer chooses (`_first_point`: w, or Momentum-SAM's w̃), then either SAM's second pass at w + ε
or a one-pass update (`_one_pass_step`: the base step; LookSAM's reuse step; Momentum-SAM's return to w).
Which it is, `_takes_second_pass` says: always for SAM; a fixed mask (PSAM, late SAM, every-k, random, SS-SAM,
Composer); AE-SAM's rule on ‖g‖² after the first pass; LookSAM's period; never for Momentum-SAM. The trainers
call only `step`; `last_was_sam` and `grad_evals` say what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext

import torch

NORM_GUARD = 1e-12


def squared_norm(tensors: Sequence[torch.Tensor], dim: int | None = None) -> torch.Tensor:
    """‖x‖² summed tensor by tensor: over every element (dim None), or along `dim` kept for broadcasting.
    (No `sum()` builtin: its start value 0 costs one more operation, which matters in the particle simulator,
    where this runs every step on small tensors.)"""
    squared = None
    for s in tensors:
        sq = (s * s).sum() if dim is None else (s * s).sum(dim=dim, keepdim=True)
        squared = sq if squared is None else squared + sq
    return squared


def _t_scaled(grads, weights, adaptive: bool) -> list[torch.Tensor]:
    """T g: |w| g for ASAM, g for SAM."""
    return [w.abs() * g for g, w in zip(grads, weights)] if adaptive else list(grads)


def sam_perturbation(
    grads: Sequence[torch.Tensor],
    rho: float | torch.Tensor,
    weights: Sequence[torch.Tensor] | None = None,
    adaptive: bool = False,
    dim: int | None = None,
    squared: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Equation (2): ε = ρ · T² g / (‖T g‖ + 1e-12), with T = |w| for ASAM, else identity.

    grads:    the gradients g, one tensor per parameter.
    rho:      the radius ρ; a tensor broadcasts (one ρ per particle group in the simulator).
    weights:  the parameters w (only needed for ASAM).
    dim:      None -> one global norm over every element of every tensor (a network's parameters);
              an int -> a separate norm along that axis, kept for broadcasting (each particle
              in a (..., N, d) batch is its own model, so each gets its own ‖g‖).
    squared:  ‖T g‖² when the norm covers more tensors than `grads` (SAM with several parameter groups:
              one global norm over all of them, as davda54/sam's _grad_norm), else computed from `grads`.
    """
    if adaptive and weights is None:
        raise ValueError("ASAM needs the weights w to scale the ball (T = |w|)")
    if squared is None:  # ‖T g‖² of these tensors alone (else given: a norm over more tensors, e.g. all groups)
        squared = squared_norm(_t_scaled(grads, weights, adaptive), dim)
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
    Where it was checked: davda54/sam's sam.py (first_step, second_step, the global norm, ASAM's T = |w|),
    matched to 7.8e-13 when the budget tournament was built; tests/test_sam.py pins it against the two-pass
    update written out by hand over 20 steps (with momentum, weight decay, ASAM).

    Which steps are SAM steps (`step` decides; step t counts from 0 in `steps_taken`):
      mask  a boolean array, SAM where mask[t] (a fixed schedule: core.schedules.Schedule.mask); none after
      rule  an object with `decide(s, t)`, asked after the first pass with s = ‖g‖² (AE-SAM,
            core.schedules.AESAMRule)
      neither: every step (SAM, ASAM).
    """

    def __init__(
        self,
        params: Iterable,
        base_optimizer_class: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        mask=None,
        rule=None,
        **base_kwargs,
    ):
        if not rho >= 0.0:  # also refuses NaN
            raise ValueError(f"rho must be a non-negative number, got {rho!r}")
        defaults = dict(rho=rho, adaptive=adaptive, **base_kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer_class(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.mask, self.rule = mask, rule
        self.grad_evals = 0  # forward-backward passes taken by `step` (closure calls)
        self.steps_taken = 0  # updates made (second_step, sgd_step, LookSAM's reuse_step): the step index t
        self.last_was_sam = False  # whether the last `step` took the second pass

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every parameter to w + ε (equation 2), remembering w. The norm ‖T g‖ is one global norm over
        every parameter of every group (davda54/sam's _grad_norm); each group scales by its own ρ."""
        groups = [(group, [p for p in group["params"] if p.grad is not None]) for group in self.param_groups]
        groups = [(group, params) for group, params in groups if params]
        squared = squared_norm([x for group, params in groups
                                for x in _t_scaled([p.grad for p in params], params, group["adaptive"])])
        for group, params in groups:
            eps = sam_perturbation(
                [p.grad for p in params],
                group["rho"],
                weights=params,
                adaptive=group["adaptive"],
                squared=squared,
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
        self.steps_taken += 1
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def sgd_step(self, zero_grad: bool = False) -> None:
        """A plain base-optimizer step with the gradient already at w (no ascent)."""
        self.base_optimizer.step()
        self.steps_taken += 1
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None,
             model: torch.nn.Module | None = None) -> torch.Tensor:
        """One step of any optimizer of this module. The closure must zero the gradients, run forward and
        backward on the same minibatch, and return the loss; it is called once, or twice on a SAM step (each
        call a gradient evaluation, counted in `grad_evals`). With `model`, its BatchNorm running statistics
        stay frozen on the pass at w + ε. Returns the first pass's loss (at w; Momentum-SAM: at w̃)."""
        closure = self._counted(closure)
        self._first_point()
        loss = closure()  # pass 1
        take = self._takes_second_pass()
        if take:
            self.first_step()
            self._perturbed_pass(closure, model)  # pass 2 at w + ε
            self.second_step()
        else:
            self._one_pass_step()
        self.last_was_sam = take
        return loss

    def _first_point(self) -> None:
        """Where pass 1 runs: at w (Momentum-SAM moves to w̃ first)."""

    def _takes_second_pass(self) -> bool:
        """Whether step `steps_taken` is a SAM step: the rule (asked with ‖g‖² of pass 1), the mask, or
        always."""
        t = self.steps_taken
        if self.rule is not None:
            return bool(self.rule.decide(grad_sq_norm(self.param_groups), t))
        if self.mask is not None:
            return bool(self.mask[t]) if t < len(self.mask) else False
        return True

    def _one_pass_step(self) -> None:
        """The update of a step without a second pass: the base step with the gradient at w."""
        self.sgd_step()

    def _counted(self, closure):
        """The closure with gradients enabled, counting each call in `grad_evals`."""
        if closure is None:
            raise ValueError(f"{type(self).__name__} needs a closure that recomputes the loss on the same batch")
        closure = torch.enable_grad()(closure)

        def counted():
            self.grad_evals += 1
            return closure()
        return counted

    def _perturbed_pass(self, closure, model) -> None:
        """The pass at w + ε: gradients zeroed, BatchNorm statistics frozen when the model is known."""
        self.zero_grad()
        with frozen_bn_stats(model) if model is not None else nullcontext():
            closure()

    # SAM's own state (the saved w) lives only between first_step and second_step; what must survive a
    # save and a resume is the base optimizer's state (momentum buffers …), so that is what is saved.
    def state_dict(self) -> dict:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


def _inner(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], dim: int | None = None) -> torch.Tensor:
    """⟨a, b⟩ over every element of every tensor (dim None), or along `dim` kept for broadcasting."""
    total = None
    for x, y in zip(a, b):
        d = (x * y).sum() if dim is None else (x * y).sum(dim=dim, keepdim=True)
        total = d if total is None else total + d
    return total


# LookSAM's orthogonal part is a difference of two nearly equal vectors when g_s ∥ g (always so in 1-D):
# what is left is rounding (~1e-7 of ‖g_s‖ in float32), and normalising it would add α‖g‖ in a random
# direction. An orthogonal part below this fraction of ‖g_s‖ counts as none.
ORTHOGONAL_TOL = 1e-5


def orthogonal_part(g: Sequence[torch.Tensor], g_s: Sequence[torch.Tensor],
                    dim: int | None = None) -> list[torch.Tensor]:
    """LookSAM's stored direction g_v = g_s − (⟨g, g_s⟩ / ‖g‖²) g: the part of SAM's gradient g_s
    orthogonal to g (global inner products, or one per particle along `dim`); 0 where it is below
    ORTHOGONAL_TOL · ‖g_s‖."""
    coef = _inner(g, g_s, dim) / (_inner(g, g, dim) + NORM_GUARD)
    g_v = [s - coef * x for x, s in zip(g, g_s)]
    keep = _inner(g_v, g_v, dim) > ORTHOGONAL_TOL**2 * _inner(g_s, g_s, dim)
    return [v * keep for v in g_v]


def looksam_gradient(g: Sequence[torch.Tensor], g_v: Sequence[torch.Tensor], alpha: float,
                     dim: int | None = None) -> list[torch.Tensor]:
    """LookSAM's one-pass gradient g + α (‖g‖ / ‖g_v‖) g_v (g unchanged where g_v = 0)."""
    scale = alpha * torch.sqrt(_inner(g, g, dim)) / (torch.sqrt(_inner(g_v, g_v, dim)) + NORM_GUARD)
    return [x + v * scale for x, v in zip(g, g_v)]


class LookSAM(SAM):
    """LookSAM (Liu, Mai, Chen, Hsieh, You, "Towards Efficient and Scalable Sharpness-Aware Minimization",
    CVPR 2022, arXiv 2203.02714, Algorithm 1): SAM's second pass only every k-th step, and in between a
    one-pass step that adds back the part of SAM's gradient that plain SGD misses.

    On a SAM step (steps 0, k, 2k, …; two passes):
        g   = ∇L_B(w),   ε = ρ g/‖g‖ (sam_perturbation),   g_s = ∇L_B(w + ε)
        g_v = g_s − (⟨g, g_s⟩ / ‖g‖²) g          the component of g_s orthogonal to g, stored
        step(g_s)
    On the other steps (one pass):
        g   = ∇L_B(w)
        step(g + α (‖g‖ / ‖g_v‖) g_v)            the stored direction, rescaled to this gradient's size

    Where this was checked: the rule as theory.md §7 states it, and in code in MarlonBecker/MSAM's
    optimizer/looksam.py (the authors of Momentum-SAM compare with it): the SAM pass on the first step and
    every k-th after it, g_v from the global inner product ⟨g, g_s⟩ and ‖g‖², stored normalised, and the
    reuse g + α‖g‖ ĝ_v, all norms over all parameters stacked (global, not per tensor; some public versions
    work per tensor, which theory.md §7 says is not the paper's rule). The paper's own text could not be
    read here. α is an argument: 0.7 here (theory.md §7's community default), 0.2 in MSAM's repository.
    Limits (tests/test_sam.py): k = 1 is SAM step for step; α = 0 is SAM every k steps with plain steps
    between. In one dimension g_v = 0 (nothing is orthogonal to g), so there LookSAM is SAM every k
    (`orthogonal_part` drops the rounding left when g_s ∥ g). `state_dict` saves the base optimizer's
    state, as SAM's does; g_v and the step counter start afresh after a resume.
    Gradient evaluations: 1 + 1/k a step (the SAM step every k-th).

    Loops that call the halves themselves: `next_is_sam` says which kind of step comes next; a SAM step is
    `first_step()`, the pass at w + ε (inside `frozen_bn_stats`), `second_step()`; a one-pass step is
    `reuse_step()`. `step(closure, model=None)` does all of this.
    """

    def __init__(self, params: Iterable, base_optimizer_class: type[torch.optim.Optimizer], rho: float = 0.05,
                 k: int = 5, alpha: float = 0.7, **base_kwargs):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"LookSAM's period k must be a whole number ≥ 1, got {k!r}")
        if not alpha >= 0.0:
            raise ValueError(f"LookSAM's alpha must be a non-negative number, got {alpha!r}")
        super().__init__(params, base_optimizer_class, rho=rho, adaptive=False, **base_kwargs)
        self.k, self.alpha = k, float(alpha)

    @property
    def next_is_sam(self) -> bool:
        """True when the next step is a SAM step (t mod k = 0, counting from 0)."""
        return self.steps_taken % self.k == 0

    def _with_grad(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Remember g = ∇L_B(w), then move to w + ε as SAM does."""
        for p in self._with_grad():
            self.state[p]["g"] = p.grad.detach().clone()
        super().first_step(zero_grad)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """With p.grad = g_s = ∇L_B(w + ε): store g_v = g_s − (⟨g, g_s⟩/‖g‖²) g, then SAM's second step."""
        params = [p for p in self._with_grad() if "g" in self.state[p]]
        if params:
            g = [self.state[p].pop("g") for p in params]
            for p, g_v in zip(params, orthogonal_part(g, [p.grad for p in params])):
                self.state[p]["g_v"] = g_v
        super().second_step(zero_grad)

    @torch.no_grad()
    def reuse_step(self, zero_grad: bool = False) -> None:
        """One-pass step: p.grad = g becomes g + α (‖g‖/‖g_v‖) g_v, then the base optimizer's step.
        Before the first SAM step there is no g_v: a plain step."""
        params = [p for p in self._with_grad() if "g_v" in self.state[p]]
        if params and self.alpha > 0:
            g = [p.grad for p in params]
            for p, new in zip(params, looksam_gradient(g, [self.state[p]["g_v"] for p in params], self.alpha)):
                p.grad.copy_(new)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()
        self.steps_taken += 1

    def _takes_second_pass(self) -> bool:
        return self.next_is_sam

    def _one_pass_step(self) -> None:
        self.reuse_step()


class MomentumSAM(SAM):
    """Momentum-SAM (Becker, Altrock, Risse, "Momentum-SAM: Sharpness Aware Minimization without
    Computational Overhead", 2024, arXiv 2401.12033): SAM's ascent direction replaced by the momentum,
    which costs no extra pass. With v the base optimizer's momentum buffer (SGD: v ← μ v + g, w ← w − η v):

        w̃ = w + ε,  ε = ρ (−v) / ‖v‖               along −v, the direction of travel (sam_perturbation on −v)
        g = ∇L_B(w̃)                                the one pass, at the perturbed point
        back to w, then step(g)                     the base optimizer updates the unperturbed w

    No perturbation while v = 0 or before the base optimizer has a buffer (the first step). The sign is
    opposite to SAM's (+g): checked in MarlonBecker/MSAM, optimizer/msam.py, which keeps the weights at
    w − ρ v/‖v‖ between steps (a "move up to momentum ascent" by subtracting ρ v/‖v‖); matched to 1e-16 at
    weight decay 0, and tests/test_sam.py pins the gradient point w − ρ v/‖v‖ and the ρ = 0 limit. That code
    applies weight decay at w̃; here the
    base optimizer sees w, the same as SAM. The paper's ρ is much larger than SAM's (ρ = 3 against SAM's 0.2
    on CIFAR-100, theory.md §7).

    The base: heavy ball, v ← μ v + g, w ← w − η v, as the paper's Algorithm 1 and MSAM's optimizer (its
    `nesterov` argument defaults to False). Nesterov is an option, named: torch.optim.SGD with nesterov=True
    here (the CIFAR trainer's TrainConfig.msam_nesterov); the perturbation is along the same buffer v.

    BatchNorm: the one pass happens at w̃, so the running statistics are gathered there; freezing them would
    stop them updating at all. MSAM's main.py re-estimates them with one forward-only epoch over the training
    set after training; the CIFAR trainer does the same and counts it (core.cifar.loop: TrainResult.bn_images,
    cost_evals). One gradient evaluation a step. Limit: ρ = 0 is the base optimizer exactly.

    The base optimizer must keep momentum: torch.optim.SGD with momentum > 0 (buffer "momentum_buffer") or
    Adam/AdamW with β₁ > 0 (buffer "exp_avg"); otherwise a ValueError says so.
    """

    BUFFERS = ("momentum_buffer", "exp_avg")

    def __init__(self, params: Iterable, base_optimizer_class: type[torch.optim.Optimizer], rho: float = 0.3,
                 **base_kwargs):
        super().__init__(params, base_optimizer_class, rho=rho, adaptive=False, **base_kwargs)
        for group in self.param_groups:
            momentum = group.get("momentum", 0.0) or 0.0
            beta1 = (group.get("betas") or (0.0,))[0]
            if not (momentum > 0 or beta1 > 0):
                raise ValueError(f"Momentum-SAM perturbs along the momentum, but {base_optimizer_class.__name__} "
                                 "has none here: give it momentum > 0 (e.g. torch.optim.SGD with momentum=0.9)")

    def _buffer(self, p) -> torch.Tensor | None:
        state = self.base_optimizer.state.get(p, {})
        for name in self.BUFFERS:
            if name in state:
                return state[name]
        return None

    @torch.no_grad()
    def perturb(self) -> None:
        """Move every parameter to w̃ = w − ρ v/‖v‖ (‖v‖ one global norm over every group's buffers, as MSAM's
        single-group code computes it over all parameters), remembering w."""
        groups = [(group, [p for p in group["params"] if self._buffer(p) is not None]) for group in self.param_groups]
        groups = [(group, params) for group, params in groups if params]
        squared = squared_norm([-self._buffer(p) for _, params in groups for p in params])
        for group, params in groups:
            if group["rho"] == 0:
                continue
            eps = sam_perturbation([-self._buffer(p) for p in params], group["rho"], squared=squared)
            for p, e in zip(params, eps):
                self.state[p]["w"] = p.detach().clone()
                p.add_(e)

    # One step (SAM.step): perturb to w̃, the one pass there (BatchNorm not frozen: see the class docstring),
    # back to w and the base step with ∇L_B(w̃). Its loss is the one at w̃, not at w.
    def _first_point(self) -> None:
        self.perturb()

    def _takes_second_pass(self) -> bool:
        return False

    def _one_pass_step(self) -> None:
        self.second_step()


@torch.no_grad()
def grad_sq_norm(param_groups) -> float:
    """‖g‖² over every parameter with a gradient (one global norm: AE-SAM's statistic). One device sync."""
    grads = [p.grad for group in param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return 0.0
    return float(sum(g.detach().float().pow(2).sum() for g in grads))


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
