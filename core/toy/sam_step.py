"""One SAM step at a point of a toy landscape, every intermediate quantity shown (the "How a SAM step works" page).

SAM (Foret et al., ICLR 2021):
    (1) g = ∇L(w)    (2) ε = ρ·g/‖g‖    (3) w ← w − η·∇L(w + ε)
SGD takes  w ← w − η·∇L(w).
"""

from __future__ import annotations

import torch

from core.sam import sam_perturbation


def sam_step_numbers(land, w, rho: float, lr: float) -> dict:
    """Equations (1)–(3) at the point w of a landscape, with the one SAM perturbation of core.sam (never
    re-implemented): the gradient g, ε = ρ·g/‖g‖, the adversarial point w + ε and its gradient, and where
    an SGD step and a SAM step of size η land, with the loss at each point. Plain lists and floats."""
    wt = torch.tensor(w, dtype=torch.float64)
    g = land.grad(wt)
    (eps,) = sam_perturbation([g], rho)
    g_adv = land.grad(wt + eps)
    w_sgd = wt - lr * g
    w_sam = wt - lr * g_adv
    loss = lambda v: float(land.loss(v))
    return {
        "w": wt.tolist(), "grad_w": g.tolist(), "eps": eps.tolist(), "w_adv": (wt + eps).tolist(),
        "grad_adv": g_adv.tolist(), "w_sgd": w_sgd.tolist(), "w_sam": w_sam.tolist(),
        "loss_w": loss(wt), "loss_adv": loss(wt + eps), "loss_sgd": loss(w_sgd), "loss_sam": loss(w_sam),
    }
