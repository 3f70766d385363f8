"""When is a step a SAM step? One schedule module for the simulator, the trainer and the CLI.

A schedule answers, for step t of T (t = 0 … T−1), "SAM or plain SGD?". A SAM step costs two
gradient evaluations (two forward-backward passes), an SGD step one.

    never     SGD:                 no step is a SAM step
    always    SAM:                 every step
    psam      Parsimonious SAM:    t < f·T  and  t mod k = 0        (the thesis)
    late      late SAM:            t ≥ (1 − f)·T                     (Zhou et al., ICLR 2025)
    every_k   SAM-k throughout:    t mod k = 0                       (LookSAM-style)
    random    random SAM:          u_t < p, u_t ~ U(0,1) seeded      (RST, Zhao et al. 2022)

Cost relative to full SAM (all steps SAM): (T + S) / (2T), with S the number of SAM steps.
For PSAM, S ≈ f·T/k, so the cost is (1 + f/k)/2; f = 0.6, k = 2 gives 0.65, the thesis' 65%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("never", "always", "psam", "late", "every_k", "random")


@dataclass(frozen=True)
class Schedule:
    """Which steps use SAM. `k` is the period, `f` the fraction of steps (early for PSAM,
    late for late SAM), `p` the per-step probability for random SAM, `seed` its seed."""

    kind: str = "always"
    k: int = 2
    f: float = 0.6
    p: float = 0.3
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not (isinstance(self.k, (int, np.integer)) and self.k >= 1):
            raise ValueError(f"the SAM period k must be a whole number ≥ 1, got {self.k!r}")
        if not 0.0 <= self.f <= 1.0:
            raise ValueError(f"the fraction f must lie in [0, 1], got {self.f!r}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"the probability p must lie in [0, 1], got {self.p!r}")

    def mask(self, total_steps: int) -> np.ndarray:
        """Boolean array of length T: True where step t is a SAM step."""
        t = np.arange(total_steps)
        if self.kind == "never":
            return np.zeros(total_steps, dtype=bool)
        if self.kind == "always":
            return np.ones(total_steps, dtype=bool)
        if self.kind == "psam":
            return (t < self.f * total_steps) & (t % self.k == 0)
        if self.kind == "late":
            return t >= (1.0 - self.f) * total_steps
        if self.kind == "every_k":
            return t % self.k == 0
        # random: one seeded uniform draw per step, so the same seed gives the same steps
        return np.random.default_rng(self.seed).random(total_steps) < self.p

    def is_sam_step(self, t: int, total_steps: int) -> bool:
        """True if step t (0-based) of `total_steps` is a SAM step."""
        if not 0 <= t < total_steps:
            return False
        if self.kind == "random":
            return bool(self.mask(t + 1)[t])  # the draw for step t does not depend on T
        return bool(self.mask(total_steps)[t])

    def sam_steps(self, total_steps: int) -> int:
        return int(self.mask(total_steps).sum())

    def grad_evals(self, total_steps: int) -> int:
        """Gradient evaluations for T steps: one per step plus one more per SAM step."""
        return total_steps + self.sam_steps(total_steps)

    def relative_cost(self, total_steps: int) -> float:
        """Cost relative to full SAM over the same T steps: (T + S) / (2T)."""
        if total_steps <= 0:
            return math.nan
        return self.grad_evals(total_steps) / (2.0 * total_steps)

    def steps_within_budget(self, budget: int) -> int:
        """The most steps T' whose gradient evaluations T' + S(T') fit in `budget` (for comparisons at
        equal compute: full SAM gets budget/2 steps, SGD gets `budget`). Binary search, since the
        evaluations grow with T'. At least 1."""
        lo, hi = 1, max(1, int(budget))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.grad_evals(mid) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def label(self) -> str:
        return {
            "never": "SGD",
            "always": "SAM",
            "psam": f"PSAM (k={self.k}, f={self.f:g})",
            "late": f"late SAM (last {self.f:.0%})",
            "every_k": f"SAM every {self.k}",
            "random": f"random SAM (p={self.p:g})",
        }[self.kind]


# The optimizers users pick by name, each a (schedule kind, adaptive) pair. ASAM is SAM with T = |w|.
OPTIMIZERS = {
    "sgd": ("never", False),
    "sam": ("always", False),
    "asam": ("always", True),
    "psam": ("psam", False),
    "late_sam": ("late", False),
    "every_k": ("every_k", False),
    "random_sam": ("random", False),
}


def for_optimizer(name: str, k: int = 2, f: float = 0.6, p: float = 0.3, seed: int = 0,
                  late_f: float = 0.3) -> tuple[Schedule, bool]:
    """The schedule and the ASAM flag for an optimizer name from OPTIMIZERS.
    PSAM uses the early fraction f; late SAM its own fraction `late_f` (last 30% by default)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    kind, adaptive = OPTIMIZERS[name]
    return Schedule(kind=kind, k=k, f=late_f if kind == "late" else f, p=p, seed=seed), adaptive
