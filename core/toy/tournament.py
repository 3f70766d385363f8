"""The budget tournament on the toys: every way to spend a SAM budget, side by side, at equal cost.

A budget b is a share of full SAM's gradient evaluations over the same T steps (SAM: 2T, SGD: T, so
b ∈ [0.5, 1]). A method that spends b takes S = (2b − 1)·T second passes. Each method's parameters are
chosen to hit that (`method_params`), and the table reports what each really spent:

    psam        k = 2, f = 2(2b − 1)  (k = 1, f = 2b − 1 once f would pass 1)     the thesis' rule
    late_sam    the last 2b − 1 of the steps                                       Zhou et al., ICLR 2025
    every_k     the whole k nearest 1/(2b − 1) throughout (an integer, so near b: 66.7% at b = 65%)
    composer    the same k, SAM on the last step of each block, ρ·k                mosaicml/composer
    random_sam  p = 2b − 1 each step                                               RST
    ss_sam      p(t) rising linearly with mean 2b − 1                              SS-SAM, Zhao et al. 2022
    looksam     the same k, α = 0.7                                                Liu et al., CVPR 2022
    ae_sam      thresholds (λ₁, λ₂) = (c − 1, c + 1), c calibrated on a pilot run   Jiang et al., ICLR 2023
    msam        one pass a step whatever b: placed at its own cost 50%              Becker et al., 2024
    sgd, sam    the two ends (50% and 100%)

Outcomes, each with a 95% interval (core.stats):
- double_well_2d (the escape preset, core.toy.presets.ESCAPE): the fraction of particles that left the
  sharp well by step T, with Wilson's interval over all particles of all seeds. Simulated for every method.
- valley (the VALLEY preset): the mean position after burn-in (larger = further on the flat side). Where the
  rule does not depend on the state (every schedule; LookSAM too, which in 1-D is SAM every k, since
  nothing is orthogonal to g), the exact expectation from the grid chain
  (core.toy.theory.exact_schedule_chain_valley, with the run's own mask), so its interval is that one
  number; AE-SAM and Momentum-SAM (state-dependent) are simulated, with Student's t interval over
  particles. Every method's simulated value is reported too (`simulated`), a check on the chain.

Momentum-SAM runs with heavy-ball momentum μ = 0.9 and η(1 − μ) (the same speed and about the same
stationary spread as SGD with η); its own base, heavy ball at ρ = 0, is reported in `references`, since
part of any difference from SGD is the momentum, not the perturbation.

What the toys reward: on the double well, any extra kick helps a particle over the saddle. Composer's ρ·k
(ρ = 1 at k = 10) and LookSAM's reuse step (it adds α‖g‖ along the stored g_v, and on the toy ‖g‖ is mostly
the gradient noise, so for k − 1 steps the particle is pushed by about α times the noise in one direction)
both heat the particles: they leave the sharp well more often, and their mean loss at T is higher (at
ρ = 0.1, budget 65%: LookSAM k = 3 escapes 77% against SAM's 49%, with a mean final loss of −0.19 against
−0.26; 15% of its particles end outside both basins, against SAM's 8%). Read the escape column next to
`extra` (`in_flat_at_T`, `mean_final_loss`).

The trigger map: for AE-SAM and PSAM, the share of steps taken in each cell of w that were SAM steps
(`trigger_maps`): AE-SAM decides where ‖g‖² is large for the particle's recent history; PSAM's windows are
fixed in time, so its map only says where the particles were early on. On the escape toy AE-SAM's map is
nearly flat once the threshold is held constant (λ₁ = λ₂ = 0.45, 1200 particles: a SAM rate of 0.249 on the
flat side, 0.244 at the saddle, 0.263 in the sharp well): ‖g‖² there is mostly noise, and the running mean
adapts to the local level within ~1/(1 − δ) = 10 steps, so the rule reacts to changes, not to the sharpness
of where a particle sits. With the falling threshold (the calibrated (−0.57, 1.43) at 65%) the rate is
0.38 / 0.31 / 0.28: higher on the flat side only because particles get there late, when c_t is low.

`run_tournament(TournamentConfig) -> TournamentResult` (with `to_dict()`), used by the CLI
(`python -m core tournament`), bench/tournament.py and the Budget tournament page.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.jsonable import to_jsonable
from core.methods import tournament_methods
from core.stats import t_critical_95, wilson_interval
from core.toy import theory
from core.toy.presets import ESCAPE, VALLEY
from core.toy.simulate import SimConfig, landscape_for, simulate

LANDSCAPES = ("double_well_2d", "valley")
METHODS = tournament_methods("toy")  # the registry's methods for this tournament (core.methods), live
MSAM_MOMENTUM = 0.9
PILOT_SEED_OFFSET = 10_000  # AE-SAM's calibration runs on other noise than the tournament's
MAX_SEEDS = 20


@dataclass(frozen=True)
class TournamentConfig:
    """One tournament: a landscape, a budget (share of SAM's gradient evaluations), a ρ and seeds.
    `particles`/`steps` None take the preset's (400 × 300 for the escape, 500 × 1000 for the valley)."""

    landscape: str = "double_well_2d"
    budget: float = 0.65
    rho: float = 0.1
    seeds: int = 1
    particles: int | None = None
    steps: int | None = None
    methods: tuple[str, ...] = METHODS
    alpha: float = 0.7          # LookSAM's α
    trigger_map: bool = True    # AE-SAM's and PSAM's trigger maps
    device: str = "cpu"

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        if self.landscape not in LANDSCAPES:
            raise ValueError(f"the toy tournament runs on {' or '.join(LANDSCAPES)}, not {self.landscape!r}")
        if not (isinstance(self.budget, (int, float)) and 0.5 < self.budget < 1.0):
            raise ValueError(f"the budget is a share of SAM's cost strictly between 0.5 (SGD) and 1 (SAM), "
                             f"got {self.budget!r}")
        if not (isinstance(self.seeds, int) and 1 <= self.seeds <= MAX_SEEDS):
            raise ValueError(f"seeds must be a whole number in [1, {MAX_SEEDS}], got {self.seeds!r}")
        if not (math.isfinite(self.rho) and 0 < self.rho <= 1.0):
            raise ValueError(f"rho must lie in (0, 1], got {self.rho!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown tournament method {', '.join(unknown) or '(none given)'}; choose from "
                             f"{', '.join(METHODS)}")
        self.base_config()  # particles, steps: core.limits via SimConfig's validation

    def base_config(self) -> SimConfig:
        """The preset's SimConfig with this tournament's ρ, size and device (one ρ, no kept paths)."""
        base = (ESCAPE if self.landscape == "double_well_2d" else VALLEY).config
        return base.replace(rhos=(self.rho,), particles=self.particles or base.particles,
                            steps=self.steps or base.steps, keep_paths=0, record_points=2, device=self.device)


@dataclass
class MethodResult:
    """One row of the table. `grad_evals` per particle (AE-SAM: the mean of each particle's count of the
    steps it really took); `budget_ratio` = grad_evals / SAM's (2T). `outcome` with its 95% interval
    `ci`, from `source` ("simulation" or "exact chain"); `simulated`/`simulated_ci` the simulation's
    value in either case; `per_seed` the simulation's outcome per seed (for Welch's test across seeds).
    `extra` (double well): `in_flat_at_T` (fraction of particles in the flat minimum's basin at T, Wilson
    interval `in_flat_at_T_ci`) and `mean_final_loss`: an escape can also come from heat (a method that
    kicks particles about leaves the sharp well more often but sits higher on the landscape)."""

    name: str
    label: str
    params: dict
    grad_evals: float
    budget_ratio: float
    sam_fraction: float
    outcome: float
    ci: tuple[float, float]
    source: str
    simulated: float
    simulated_ci: tuple[float, float]
    per_seed: list[float]
    n: int
    diverged_fraction: float
    wall_s: float
    extra: dict = field(default_factory=dict)


@dataclass
class TournamentResult:
    """`metric` is "escaped_fraction" (double well) or "mean_position" (valley); larger is better for both
    (escaped the sharp well; further on the flat side). `pareto` names the methods on the front of
    (cost lower, outcome higher). `trigger_maps[name]` = dict(sam, all, rate, edges) per cell of w."""

    config: TournamentConfig
    landscape: str
    metric: str
    budget: float
    steps: int
    particles: int
    methods: list[MethodResult]
    references: dict
    pareto: list[str]
    trigger_maps: dict
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        """JSON-able: arrays become lists, NaN becomes None, the config is echoed."""
        return to_jsonable(self)


def method_params(name: str, budget: float, steps: int) -> dict:
    """SimConfig fields that make `name` spend about `budget` of SAM's gradient evaluations over T steps
    (AE-SAM's thresholds are calibrated later, on a pilot run: `calibrate_ae_sam`)."""
    # the share of steps that take a second pass; rounded, since 2·0.65 − 1 is 0.30000000000000004 in floating
    # point, and PSAM's rule t < f·T with f = 0.6000000000000001 takes one SAM step more (t = 0.6 T itself)
    share = round(2.0 * budget - 1.0, 9)
    # the whole-number period whose share 1/k is nearest; on a tie the cheaper one (never the extra budget)
    k = min((max(1, math.floor(1.0 / share)), math.ceil(1.0 / share)), key=lambda k: (abs(1.0 / k - share), -k))
    if name == "psam":
        return dict(k=2, f=min(1.0, round(2.0 * share, 9))) if share <= 0.5 else dict(k=1, f=share)
    if name == "late_sam":
        return dict(late_f=share)
    if name in ("every_k", "composer", "looksam"):
        return dict(k=k)
    if name == "random_sam":
        return dict(p=share)
    if name == "ss_sam":  # linear p(t) with mean `share`: from 0 up to 2·share, or from 2·share − 1 up to 1
        return dict(p=0.0, p_end=round(2.0 * share, 9), p_shape="linear") if share <= 0.5 else \
            dict(p=round(2.0 * share - 1.0, 9), p_end=1.0, p_shape="linear")
    if name == "msam":
        return dict(momentum=MSAM_MOMENTUM)
    return {}


def _sim_config(base: SimConfig, name: str, params: dict, seed: int, alpha: float) -> SimConfig:
    cfg = base.replace(optimizer=name, seed=seed, alpha=alpha, **params)
    if name == "msam":  # heavy ball at η(1 − μ): the speed of SGD at η
        cfg = cfg.replace(lr=base.lr * (1.0 - cfg.momentum))
    return cfg


def calibrate_ae_sam(base: SimConfig, budget: float, iters: int = 12) -> tuple[dict, float]:
    """AE-SAM's thresholds (λ₁, λ₂) = (c − 1, c + 1) (the spread of theory.md §7's (−1, 1)), with the shift
    c found by bisection so that a pilot run (other seed, at most 200 particles) takes SAM on a share
    2b − 1 of its steps. Returns (params, the pilot's share). The SAM share falls as c grows."""
    target = 2.0 * budget - 1.0
    pilot = base.replace(optimizer="ae_sam", seed=base.seed + PILOT_SEED_OFFSET,
                         particles=min(200, base.particles))
    lo, hi = -4.0, 4.0
    share = math.nan
    for _ in range(iters):
        c = 0.5 * (lo + hi)
        res = simulate(pilot.replace(lam1=c - 1.0, lam2=c + 1.0))
        share = float(res.sam_taken.mean()) / pilot.steps
        if share > target:
            lo = c
        else:
            hi = c
    c = 0.5 * (lo + hi)
    return dict(lam1=c - 1.0, lam2=c + 1.0), share


def _escape_outcome(results) -> tuple[float, tuple[float, float], list[float], int]:
    escaped = np.concatenate([(r.first_passage[0] >= 0) for r in results])
    n = int(escaped.size)
    lo, hi = wilson_interval(int(escaped.sum()), n)
    return float(escaped.mean()), (lo, hi), [float((r.first_passage[0] >= 0).mean()) for r in results], n


def _mean_with_t_interval(values: np.ndarray) -> tuple[float, tuple[float, float]]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, (math.nan, math.nan)
    m = float(values.mean())
    if values.size < 2:
        return m, (math.nan, math.nan)
    half = t_critical_95(values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return m, (m - half, m + half)


def _escape_extra(results, land) -> dict:
    """Where the particles are at T: the flat minimum's basin (Wilson interval), and their mean loss."""
    flat = [i for i, m in enumerate(land.minima) if m.label == "flat"]
    out = {"mean_final_loss": float(np.nanmean(np.concatenate([r.final_loss[0] for r in results])))}
    if flat:
        import torch

        in_flat = np.concatenate([land.basin(torch.from_numpy(r.final[0])).numpy() == flat[0] for r in results])
        out["in_flat_at_T"] = float(in_flat.mean())
        out["in_flat_at_T_ci"] = wilson_interval(int(in_flat.sum()), int(in_flat.size))
    return out


def _valley_outcome(results) -> tuple[float, tuple[float, float], list[float], int]:
    per_particle = np.concatenate([np.where(r.diverged[0], np.nan, r.time_avg[0, :, 0]) for r in results])
    m, ci = _mean_with_t_interval(per_particle)
    per_seed = [float(np.nanmean(np.where(r.diverged[0], np.nan, r.time_avg[0, :, 0]))) for r in results]
    return m, ci, per_seed, int(np.isfinite(per_particle).sum())


def _exact_valley(cfg: SimConfig, mask: np.ndarray, rho: float) -> float:
    params = dict(cfg.landscape_params)
    start = cfg.start[0] if cfg.start else 0.0
    return theory.exact_schedule_chain_valley(params["a_left"], params["a_right"], cfg.lr, cfg.sigma, rho, mask,
                                              start, cfg.burn_in).time_avg_mean


def pareto_front(costs, outcomes) -> list[int]:
    """Indices of the points no other point beats: none has a cost ≤ and an outcome ≥ with one of
    them strictly better. NaN outcomes are never on the front."""
    pts = [(float(c), float(o)) for c, o in zip(costs, outcomes)]
    front = []
    for i, (c, o) in enumerate(pts):
        if not math.isfinite(o):
            continue
        beaten = any(math.isfinite(o2) and c2 <= c and o2 >= o and (c2 < c or o2 > o)
                     for j, (c2, o2) in enumerate(pts) if j != i)
        if not beaten:
            front.append(i)
    return front


def _trigger_map(results) -> dict:
    sam = sum(r.trigger_sam[0] for r in results)
    total = sum(r.trigger_all[0] for r in results)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, sam / np.maximum(total, 1), np.nan)
    return dict(sam=sam, all=total, rate=rate, edges=results[0].trigger_edges)


def run_tournament(cfg: TournamentConfig, progress: Callable[[float], None] | None = None) -> TournamentResult:
    """Run every method of `cfg` on its toy at the budget; see the module docstring."""
    t_start = time.perf_counter()
    base = cfg.base_config()
    T, two_T = base.steps, 2.0 * base.steps
    escape = cfg.landscape == "double_well_2d"
    rows: list[MethodResult] = []
    maps: dict = {}
    notes: list[str] = []
    jobs = list(cfg.methods)
    want_maps = cfg.trigger_map

    def report(i: float):
        if progress is not None:
            progress(min(1.0, i / (len(jobs) + 1)))

    def run(name: str, params: dict, trigger: bool):
        return [simulate(_sim_config(base, name, params, base.seed + s, cfg.alpha).replace(trigger_map=trigger))
                for s in range(cfg.seeds)]

    for i, name in enumerate(jobs):
        report(i)
        t0 = time.perf_counter()
        params = method_params(name, cfg.budget, T)
        if name == "ae_sam":
            ae, pilot_share = calibrate_ae_sam(base, cfg.budget)
            params.update(ae)
            notes.append(f"AE-SAM: thresholds (λ₁, λ₂) = ({ae['lam1']:.3f}, {ae['lam2']:.3f}) calibrated on a pilot "
                         f"run (seed +{PILOT_SEED_OFFSET}), which took SAM on {pilot_share:.1%} of its steps")
        trigger = want_maps and name in ("ae_sam", "psam")
        results = run(name, params, trigger)
        taken = np.concatenate([r.sam_taken[0] for r in results])
        grad_evals = T + float(taken.mean())
        outcome_fn = _escape_outcome if escape else _valley_outcome
        sim, sim_ci, per_seed, n = outcome_fn(results)
        outcome, ci, source = sim, sim_ci, "simulation"
        if not escape and name not in ("ae_sam", "msam"):  # the rule does not depend on the state: exact
            schedule, _ = results[0].config.schedule()
            rho = cfg.rho * schedule.rho_scale
            chains: dict[bytes, float] = {}  # seeds share a fixed schedule's mask: one chain per distinct mask
            for r in results:
                key = r.sam_mask.tobytes()
                if key not in chains:
                    chains[key] = _exact_valley(r.config, r.sam_mask, rho)
            exact = [chains[r.sam_mask.tobytes()] for r in results]
            outcome, source = float(np.mean(exact)), "exact chain"
            ci = (min(exact), max(exact))  # one value per seed's mask; exact for each of them
        if trigger:
            maps[name] = _trigger_map(results)
        extra = _escape_extra(results, landscape_for(base.landscape, base.formula, base.landscape_params)) \
            if escape else {}
        label = results[0].config.schedule()[0].label()
        rows.append(MethodResult(
            name=name, label=label, params=params, grad_evals=grad_evals, budget_ratio=grad_evals / two_T,
            sam_fraction=float(taken.mean()) / T, outcome=outcome, ci=ci, source=source, simulated=sim,
            simulated_ci=sim_ci, per_seed=per_seed, n=n,
            diverged_fraction=float(np.mean([r.diverged.mean() for r in results])),
            wall_s=time.perf_counter() - t0, extra=extra))

    references = {}
    if "msam" in jobs:  # Momentum-SAM's own base: heavy ball, ρ = 0
        t0 = time.perf_counter()
        results = [simulate(_sim_config(base, "sgd", dict(momentum=MSAM_MOMENTUM), base.seed + s, cfg.alpha)
                            .replace(lr=base.lr * (1 - MSAM_MOMENTUM))) for s in range(cfg.seeds)]
        sim, sim_ci, per_seed, n = (_escape_outcome if escape else _valley_outcome)(results)
        references["heavy_ball"] = dict(label=f"heavy ball μ = {MSAM_MOMENTUM} (MSAM at ρ = 0)",
                                        outcome=sim, ci=sim_ci, per_seed=per_seed, n=n, grad_evals=float(T),
                                        budget_ratio=0.5, wall_s=time.perf_counter() - t0)
    report(len(jobs) + 1)
    front = pareto_front([r.budget_ratio for r in rows], [r.outcome for r in rows])
    return TournamentResult(
        config=cfg, landscape=cfg.landscape, metric="escaped_fraction" if escape else "mean_position",
        budget=cfg.budget, steps=T, particles=base.particles * cfg.seeds, methods=rows, references=references,
        pareto=[rows[i].name for i in front], trigger_maps=maps, notes=notes,
        wall_s=time.perf_counter() - t_start)


def run_budgets(cfg: TournamentConfig, budgets=(0.55, 0.65, 0.75),
                progress: Callable[[float], None] | None = None) -> list[TournamentResult]:
    """The same tournament at several budgets (the BENCHMARKS table and the page's slider stops)."""
    out = []
    for i, b in enumerate(budgets):
        sub = None if progress is None else (lambda f, i=i: progress((i + f) / len(budgets)))
        out.append(run_tournament(dataclasses.replace(cfg, budget=b), sub))
    return out


__all__ = ["LANDSCAPES", "METHODS", "TournamentConfig", "TournamentResult", "MethodResult",
           "run_tournament", "run_budgets", "method_params", "calibrate_ae_sam", "pareto_front"]
