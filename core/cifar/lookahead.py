"""Lookahead with an exponential moving average of the weights, as airbench94 uses it.

Lookahead (Zhang, Lucas, Hinton & Ba, NeurIPS 2019) keeps a second, slow copy of the weights φ beside the
fast weights w that the optimizer moves. Every k steps the slow copy moves a fraction towards the fast one and
the fast weights restart from there:

    φ ← β·φ + (1 − β)·w        (an exponential moving average, EMA, of the fast weights)
    w ← φ                       (the "lookahead" reset: the optimizer continues from the average)

airbench94 does this every k = 5 steps with a decay that grows during training,

    β(t) = 0.95⁵ · (t / T)³,

so early on β ≈ 0 (φ simply follows w: no averaging while the net is far from a solution) and near the end
β → 0.95⁵ ≈ 0.77 (the average over the last few dozen steps, which cancels much of the noise of the last
high-learning-rate steps). At the end of training the net takes the average (`finish`): if the last step was
not an update step, one more update with β(T) brings the last steps in (airbench's T = 476 leaves its last
step out, a negligible difference); a run shorter than k steps has no average and keeps its weights. The
average covers every
floating-point entry of the state dict, the BatchNorm running statistics included, so they match the averaged
weights. Used by airbench94 (Jordan 2024, arXiv:2404.00498); its gain on our runs is not measured here.
"""

from __future__ import annotations

import torch

EVERY = 5                      # k: steps between two updates
DECAY_BASE = 0.95 ** 5         # β at the end of training (0.95 per step, over k = 5 steps)


def decay(t: int, total: int, base: float = DECAY_BASE) -> float:
    """β(t) = base · (t / T)³ of the module docstring, for step t (1 … T) of T."""
    return base * (min(t, total) / max(1, total)) ** 3


class Lookahead:
    """The slow weights φ of a model. `update(model, β)` does φ ← β·φ + (1 − β)·w, then w ← φ;
    `maybe_update` applies the airbench rule after each step, `finish` ends the run on the average."""

    def __init__(self, model: torch.nn.Module):
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module, beta: float) -> None:
        state = model.state_dict()
        for k, slow in self.slow.items():
            fast = state[k]
            slow.lerp_(fast.to(slow.dtype), 1.0 - beta)   # φ + (1 − β)(w − φ) = β·φ + (1 − β)·w
            fast.copy_(slow)
        self.updates += 1

    def finish(self, model: torch.nn.Module, t: int, total: int, every: int = EVERY) -> None:
        """After the last step t: the weights become the average, with the steps since the last update in it."""
        if self.updates and t % every:
            self.update(model, decay(t, total))

    def maybe_update(self, model: torch.nn.Module, t: int, total: int, every: int = EVERY) -> bool:
        """The airbench rule: after step t (1 … T), update with β(t) every `every` steps; True if it did."""
        if t % every:
            return False
        self.update(model, decay(t, total))
        return True
