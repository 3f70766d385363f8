"""When is a step a SAM step? One schedule module for the simulator, the trainer and the CLI.

A schedule answers, for step t of T (t = 0 … T−1), "SAM or plain SGD?". A SAM step costs two
gradient evaluations (two forward-backward passes), an SGD step one.

    never     SGD:                 no step is a SAM step
    always    SAM:                 every step
    psam      Parsimonious SAM:    t < f·T  and  t mod k = 0        (the thesis)
    late      late SAM:            t ≥ (1 − f)·T                     (Zhou et al., ICLR 2025)
    every_k   SAM-k throughout:    t mod k = 0
    random    random SAM:          u_t < p, u_t ~ U(0,1) seeded      (RST, Zhao et al. 2022)
    ss        SS-SAM:              u_t < p(t): constant, linear, a step or a half cosine  (Zhao et al. 2022)
    composer  Composer's SAM:      t mod k = k − 1, with ρ scaled by k            (mosaicml/composer)
    looksam   LookSAM:             t mod k = 0 is a SAM step; the others reuse its direction
                                   (core.sam.LookSAM)
    msam      Momentum-SAM:        no second pass ever; the one pass is perturbed along the momentum
                                   (core.sam.MomentumSAM)
    ae        AE-SAM:              decided each step from ‖g‖² (AESAMRule): not known in advance

Cost relative to full SAM (all steps SAM): (T + S) / (2T), with S the number of SAM steps.
For PSAM, S ≈ f·T/k, so the cost is (1 + f/k)/2; f = 0.6, k = 2 gives 0.65, the thesis' 65%.
For AE-SAM S is counted from the decisions the run took (AESAMRule.taken); `mask`, `sam_steps` and
`grad_evals` refuse it with a one-line message, since no schedule can know them before the run.
The update rules and what was confirmed where: docs/theory.md §7 and the docstrings below.
Which optimizer name runs which schedule, and with which update rule: core/methods.py (the registry).
The schedule's parameters (`ScheduleParams`) are the one set that Schedule, the toy's SimConfig and the CIFAR
trainer's TrainConfig all inherit, so each is written once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("never", "always", "psam", "late", "every_k", "random", "ss", "composer", "looksam", "msam", "ae")
P_SHAPES = ("constant", "linear", "step", "trig")  # SS-SAM's p(t)


@dataclass(frozen=True, kw_only=True)
class ScheduleParams:
    """The parameters of every schedule, declared once. Keyword-only, so that a dataclass inheriting them
    (Schedule, core.methods.MethodParams → SimConfig, TrainConfig) keeps its own positional fields first and
    its JSON stays flat (dataclasses.asdict: one key per field, as before)."""

    k: int = 2                       # period: PSAM, every_k, Composer's interval, LookSAM
    f: float = 0.6                   # PSAM's early fraction (late SAM's fraction in a Schedule of kind "late")
    p: float = 0.3                   # random SAM's probability; SS-SAM's p at the start
    p_shape: str = "constant"        # SS-SAM's p(t): constant | linear | step | trig
    p_end: float | None = None       # SS-SAM's p at the end (linear, trig) or after the switch (step)
    switch: float = 0.5              # SS-SAM "step": where p changes, as a fraction of the steps
    lam1: float = -1.0               # AE-SAM's threshold at the end (t = T)
    lam2: float = 1.0                # AE-SAM's threshold at the start
    delta: float = 0.9               # AE-SAM's averaging factor for the mean and variance of ‖g‖²
    scale_rho: bool = True           # Composer: ρ·k (its README's advice); False keeps ρ


@dataclass(frozen=True)
class Schedule(ScheduleParams):
    """Which steps use SAM. `k` is the period (PSAM, every_k, Composer's interval, LookSAM), `f` the
    fraction of steps (early for PSAM, late for late SAM), `p` the per-step probability for random SAM
    (SS-SAM: p at the start), `seed` its seed.

    SS-SAM (Zhao, Zhang, Hu, "SS-SAM: Stochastic Scheduled Sharpness-Aware Minimization", arXiv 2203.09962):
    each step a Bernoulli(p(t)) draw decides. `p_shape` "constant" (p), "linear" (p + (p_end − p)·t/T),
    "step" (p before `switch`·T, p_end from there) or "trig" (a half cosine from p to p_end,
    p_end + (p − p_end)·(1 + cos(π t/T))/2: flat at both ends, the same mean (p + p_end)/2 as the linear one).
    The paper (and its ICLR 2023 version, "Randomized Sharpness-Aware Training", RST) lists constant,
    piecewise, linear and trigonometric scheduling functions; their exact formulas were not available to
    check (theory.md §7 marks them unconfirmed), so these are the plain forms of the four families.
    Confirmed (AE-SAM's paper, introduction):
    "SS-SAM selects SAM or ERM according to a Bernoulli trial" each step. The draws u_t are the same as random
    SAM's for the same seed, so SS-SAM with a constant p is random SAM exactly.

    AE-SAM's thresholds `lam1` (at t = T), `lam2` (at t = 0) and its averaging factor `delta`: see
    AESAMRule."""

    kind: str = "always"
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not (isinstance(self.k, (int, np.integer)) and not isinstance(self.k, bool) and self.k >= 1):
            raise ValueError(f"the SAM period k must be a whole number ≥ 1, got {self.k!r}")
        if not 0.0 <= self.f <= 1.0:
            raise ValueError(f"the fraction f must lie in [0, 1], got {self.f!r}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"the probability p must lie in [0, 1], got {self.p!r}")
        if self.p_shape not in P_SHAPES:
            raise ValueError(f"unknown p(t) shape {self.p_shape!r}; choose one of {', '.join(P_SHAPES)}")
        if self.p_end is not None and not 0.0 <= self.p_end <= 1.0:
            raise ValueError(f"the final probability p_end must lie in [0, 1], got {self.p_end!r}")
        if not 0.0 <= self.switch <= 1.0:
            raise ValueError(f"the switch point must lie in [0, 1], got {self.switch!r}")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"AE-SAM's averaging factor delta must lie in [0, 1), got {self.delta!r}")
        for name in ("lam1", "lam2"):
            if math.isnan(getattr(self, name)):
                raise ValueError(f"AE-SAM's threshold {name} must be a number (±inf allowed), got nan")
        if math.isinf(self.lam1) and math.isinf(self.lam2) and self.lam1 != self.lam2:
            raise ValueError("AE-SAM's thresholds cannot be −inf and +inf at once")

    @property
    def state_dependent(self) -> bool:
        """True for AE-SAM: its SAM steps depend on the gradients the run meets."""
        return self.kind == "ae"

    @property
    def rho_scale(self) -> float:
        """Factor on ρ: Composer's SAM scales ρ in proportion to its interval (mosaicml/composer,
        algorithms/sam/README.md: "when adjusting interval, it is best to adjust rho proportionally";
        interval 10 with ρ 0.5 where ρ = 0.05 at interval 1). 1 for every other kind."""
        return float(self.k) if self.kind == "composer" and self.scale_rho else 1.0

    def p_at(self, t: np.ndarray | int, total_steps: int) -> np.ndarray:
        """SS-SAM's probability p(t) for steps t of T (random SAM: the constant p)."""
        t = np.asarray(t, dtype=float)
        p_end = self.p if self.p_end is None else self.p_end
        if self.kind == "random" or self.p_shape == "constant":
            return np.full(t.shape, self.p)
        if self.p_shape == "linear":
            return self.p + (p_end - self.p) * t / max(1, total_steps)
        if self.p_shape == "trig":
            return p_end + (self.p - p_end) * 0.5 * (1.0 + np.cos(np.pi * t / max(1, total_steps)))
        return np.where(t < self.switch * total_steps, self.p, p_end)

    def _refuse_if_state_dependent(self) -> None:
        if self.state_dependent:
            raise ValueError("AE-SAM decides each step from the gradient norm, so its SAM steps are not known "
                             "before the run; count them from the run (core.schedules.AESAMRule.taken)")

    def mask(self, total_steps: int) -> np.ndarray:
        """Boolean array of length T: True where step t takes a second pass (a SAM step)."""
        self._refuse_if_state_dependent()
        t = np.arange(total_steps)
        if self.kind in ("never", "msam"):  # Momentum-SAM: one pass every step
            return np.zeros(total_steps, dtype=bool)
        if self.kind == "always":
            return np.ones(total_steps, dtype=bool)
        if self.kind == "psam":
            return (t < self.f * total_steps) & (t % self.k == 0)
        if self.kind == "late":
            return t >= (1.0 - self.f) * total_steps
        if self.kind in ("every_k", "looksam"):
            return t % self.k == 0
        if self.kind == "composer":  # composer: SAM when (global_step + 1) % interval == 0
            return t % self.k == self.k - 1
        # random / ss: one seeded uniform draw per step, so the same seed gives the same steps
        return np.random.default_rng(self.seed).random(total_steps) < self.p_at(t, total_steps)

    def is_sam_step(self, t: int, total_steps: int) -> bool:
        """True if step t (0-based) of `total_steps` is a SAM step."""
        self._refuse_if_state_dependent()
        if not 0 <= t < total_steps:
            return False
        return bool(self.mask(total_steps)[t])

    def sam_steps(self, total_steps: int) -> int:
        """SAM steps (second passes) in T steps. LookSAM: ⌈T/k⌉; Momentum-SAM: 0."""
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
        shape = ("" if self.p_shape == "constant"
                 else f" → {self.p if self.p_end is None else self.p_end:g} ({self.p_shape})")
        return {
            "never": "SGD",
            "always": "SAM",
            "psam": f"PSAM (k={self.k}, f={self.f:g})",
            "late": f"late SAM (last {self.f:.0%})",
            "every_k": f"SAM every {self.k}",
            "random": f"random SAM (p={self.p:g})",
            "ss": f"SS-SAM (p={self.p:g}{shape})",
            "composer": f"Composer SAM (every {self.k}" + (f", ρ×{self.k})" if self.scale_rho else ")"),
            "looksam": f"LookSAM (k={self.k})",
            "msam": "Momentum-SAM",
            "ae": f"AE-SAM (λ₁={self.lam1:.3g}, λ₂={self.lam2:.3g})",
        }[self.kind]

    def expected_sam_fraction(self, total_steps: int) -> float:
        """The expected share of SAM steps. Exact for every kind with a mask (LookSAM counts its SAM
        steps, Momentum-SAM 0); for AE-SAM the Gaussian guess of theory.md §7: if ‖g‖² were normal with
        the running mean and deviation, P(SAM at t) = 1 − Φ(c_t), averaged over t. Only a starting point:
        the tournament calibrates AE-SAM's thresholds on a pilot run and reports what the run spent."""
        if not self.state_dependent:
            return self.sam_steps(total_steps) / max(1, total_steps)
        rule = AESAMRule(self.lam1, self.lam2, self.delta, total_steps)
        c = [rule.threshold(t) for t in range(total_steps)]
        # 1 − Φ(c) = erfc(c/√2)/2, which is 1 at c = −∞ and 0 at +∞
        return float(np.mean([0.5 * math.erfc(x / math.sqrt(2)) for x in c]))


class AESAMRule:
    """AE-SAM's decision, step by step (Jiang, Yang, Zhang, Kwok, "An Adaptive Policy to Employ
    Sharpness-Aware Minimization", ICLR 2023, arXiv 2304.14647; theory.md §7).

    The statistic is s_t = ‖g_t‖², the squared norm of the minibatch gradient at w (pass 1, global over all
    parameters). Its running mean and variance include the current sample:

        μ_t  = δ μ_{t−1} + (1 − δ) s_t
        σ²_t = δ σ²_{t−1} + (1 − δ) (s_t − μ_t)²
        c_t  = (t/T) λ₁ + (1 − t/T) λ₂                the threshold moves from λ₂ (start) to λ₁ (end)
        SAM step (second pass) when  s_t ≥ μ_t + c_t σ_t,  else an SGD step with g_t

    A large ‖g‖² relative to its recent values marks a sharp region, where SAM pays off. With λ₁ < λ₂
    SAM fires more often late in training. The paper models ‖g‖² as Gaussian, so P(SAM) ≈ 1 − Φ(c_t).
    What could be checked here: the statistic, the running mean/variance with the current sample, the
    linear threshold schedule and the decision (from the abstract, the paper's introduction and published
    summaries of it). Not confirmed from the paper's text: δ = 0.9 and (λ₁, λ₂) = (−1, 1)
    (theory.md §7's guesses, the defaults here, marked as such in AE-SAM's registry entry, core.methods), and
    the initial μ, σ: here μ starts at the first sample and σ² at 0, so step 0 is always a SAM step for a
    finite threshold (s₀ ≥ s₀). The tournaments do not rely on these defaults: they calibrate the thresholds'
    shift on pilot runs to the budget and record the calibration with the result
    (core.toy.tournament, core.cifar.tournament).
    Limits (tests): λ₁ = λ₂ = −∞ is SAM, +∞ is SGD.

    `decide(s, t)` works on a float (one network) or on a tensor of one s per model (the particle
    simulator: every particle keeps its own μ and σ²); it returns a bool or a bool tensor, and counts the
    SAM steps taken in `taken` (an int, or a tensor of counts per model).
    """

    def __init__(self, lam1: float = -1.0, lam2: float = 1.0, delta: float = 0.9, total_steps: int = 1):
        Schedule("ae", lam1=lam1, lam2=lam2, delta=delta)  # validates the numbers
        self.lam1, self.lam2, self.delta = float(lam1), float(lam2), float(delta)
        self.total_steps = max(1, int(total_steps))
        self.mu = None
        self.var = None
        self.taken = 0
        self.steps = 0

    def threshold(self, t: int) -> float:
        """c_t = (t/T) λ₁ + (1 − t/T) λ₂ (equal thresholds, infinite ones included, give that value)."""
        if self.lam1 == self.lam2:
            return self.lam1
        frac = min(max(t / self.total_steps, 0.0), 1.0)
        return frac * self.lam1 + (1.0 - frac) * self.lam2

    def decide(self, s, t: int):
        """Update μ, σ² with s = ‖g_t‖² and say whether step t is a SAM step."""
        if self.mu is None:
            self.mu, self.var = s * 1.0, s * 0.0
        else:
            self.mu = self.delta * self.mu + (1.0 - self.delta) * s
            diff = s - self.mu
            self.var = self.delta * self.var + (1.0 - self.delta) * diff * diff
        c = self.threshold(t)
        if math.isinf(c):
            take = (s == s) if c < 0 else (s != s)  # all True / all False (NaN statistics never take a step)
        else:
            take = s >= self.mu + c * self.var ** 0.5
        self.taken = self.taken + (int(take) if isinstance(take, bool) else take.long())
        self.steps += 1
        return take
