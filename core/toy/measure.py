"""Measurements on simulation results, each with an uncertainty, ready to sit next to theory.

    survival_curve       S(t): fraction of particles still in their starting basin after step t
    escape_stats         escaped fraction (Wilson interval), median and mean first-passage step
                         (bootstrap intervals)
    stationary_mean      asymmetric valley: per-ρ mean of each particle's time-averaged position
    one_step_efficiency  Monte Carlo E[L₁] from a quadratic minimum, next to theory.one_step_loss
    rho_sweep            one simulate() call with several ρ, then the statistics per ρ
    compute_cost         gradient evaluations of a config, relative to SAM and to SGD
    final_outcomes       Zhu toy: fraction of particles that end in the target basin, stayed, or are trapped
    minimum_outcome      PSAM page: fraction ending in a minimum of a given label ("flat"), with its interval

All intervals are 95% intervals. Particles are independent (each has its own noise draws), so
the usual i.i.d. statistics apply across particles. Every result is a plain dataclass with
``to_dict()`` (JSON-able: NaN/inf become None).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from core.sam import sam_perturbation
from core.stats import Z95, _ToDict, wilson_interval
from core.toy import theory
from core.toy.simulate import simulate

# ---------------------------------------------------------------------------------------------
# Escape
# ---------------------------------------------------------------------------------------------


def _escape_times(first_passage) -> np.ndarray:
    """First-passage steps as floats, +inf for particles that never left (first_passage = −1)."""
    fp = np.asarray(first_passage).reshape(-1)
    return np.where(fp >= 0, fp.astype(np.float64), np.inf)


def survival_curve(first_passage, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """S(t) for t = 0 … steps: the fraction of particles still inside their starting basin after
    step t (theory.md §3, "operational escape"). A particle with first passage s counts as inside
    for t < s; −1 means it never left. Empty input gives S = NaN."""
    times = np.sort(_escape_times(first_passage))
    t = np.arange(steps + 1)
    if times.size == 0:
        return t, np.full(t.shape, np.nan)
    left = np.searchsorted(times, t, side="right")  # particles with first passage ≤ t
    return t, 1.0 - left / times.size


def _lower_median(times: np.ndarray) -> float:
    """The ⌈n/2⌉-th smallest value: the first t where the survival S(t) ≤ ½.
    It is finite exactly when at least half of the particles escaped."""
    return float(np.sort(times)[math.ceil(times.size / 2) - 1])


def _percentile_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """2.5% and 97.5% percentiles of bootstrap replicates; None where a bound is infinite
    (that many resamples had fewer than half escaped: no upper bound from the data)."""
    lo, hi = np.quantile(values, [0.025, 0.975], method="inverted_cdf")
    return (float(lo) if np.isfinite(lo) else None), (float(hi) if np.isfinite(hi) else None)


def _bootstrap_median(times: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates (Efron 1979) of the lower median, the r-th smallest value with
    r = ⌈n/2⌉, without drawing n values per resample.

    A resample draws n values with replacement, i.e. sorted[⌊U·n⌋] for n uniforms U. Because
    that map is monotone, the r-th smallest resampled value is sorted[⌊U_(r)·n⌋], where U_(r) is
    the r-th smallest of n uniforms, which has the Beta(r, n + 1 − r) distribution. So one Beta
    draw per replicate gives exactly the bootstrap distribution (20,000 particles: microseconds).
    """
    ordered = np.sort(times)
    n = ordered.size
    rank = math.ceil(n / 2)
    u = rng.beta(rank, n + 1 - rank, size=n_boot)
    return ordered[np.minimum((u * n).astype(np.int64), n - 1)]


def _bootstrap_mean(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean: resample the values with replacement n_boot times, in
    chunks so that memory stays bounded for large samples."""
    n = values.size
    chunk = max(1, 2_000_000 // n)
    out = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        out.append(values[idx].mean(axis=1))
    return np.concatenate(out)


@dataclass
class EscapeStats(_ToDict):
    """Escape statistics of one group of particles over `steps` steps.

    escaped_fraction: fraction that left the starting basin by the last step, with a 95% Wilson
        interval.
    median_escape_step: the first step at which the survival S(t) ≤ ½ (None when fewer than half
        escaped), with a 95% percentile-bootstrap interval (upper bound None when more than 2.5% of
        the resamples had under half escaped).
    mean_escape_step: mean first-passage step OF THE PARTICLES THAT ESCAPED (conditional on escape
        by the last step, so it is biased low when many have not escaped yet), with a 95%
        percentile-bootstrap interval over the escaped particles. None if nobody escaped.
    """

    n: int
    steps: int
    escaped: int
    escaped_fraction: float
    escaped_fraction_ci: tuple[float, float]
    median_escape_step: float | None
    median_escape_step_ci: tuple[float | None, float | None]
    mean_escape_step: float | None
    mean_escape_step_ci: tuple[float | None, float | None]
    mean_is_conditional_on_escape: bool = True


def escape_stats(first_passage, steps: int, n_boot: int = 1000, seed: int = 0) -> EscapeStats:
    """Escape statistics from first-passage steps (−1 = never left), see `EscapeStats`."""
    times = _escape_times(first_passage)
    n = int(times.size)
    escaped_times = times[np.isfinite(times)]
    k = int(escaped_times.size)
    if n == 0:
        return EscapeStats(0, steps, 0, math.nan, (math.nan, math.nan), None, (None, None),
                           None, (None, None))
    rng = np.random.default_rng(seed)

    median = _lower_median(times) if 2 * k >= n else None
    median_ci: tuple[float | None, float | None] = (None, None)
    if median is not None and n_boot > 0:
        median_ci = _percentile_interval(_bootstrap_median(times, n_boot, rng))

    mean = float(escaped_times.mean()) if k else None
    mean_ci: tuple[float | None, float | None] = (None, None)
    if k and n_boot > 0:
        mean_ci = _percentile_interval(_bootstrap_mean(escaped_times, n_boot, rng))

    return EscapeStats(
        n=n, steps=steps, escaped=k, escaped_fraction=k / n, escaped_fraction_ci=wilson_interval(k, n),
        median_escape_step=median, median_escape_step_ci=median_ci,
        mean_escape_step=mean, mean_escape_step_ci=mean_ci,
    )


# ---------------------------------------------------------------------------------------------
# Asymmetric valley
# ---------------------------------------------------------------------------------------------


@dataclass
class StationaryMean(_ToDict):
    """Per ρ: the mean over particles of each particle's time-averaged position (axis 0, steps
    ≥ burn-in), with a 95% interval mean ± 1.96·sd/√n (particles are independent; each time
    average is itself an average of many steps, so the normal approximation is good).
    Diverged particles are left out and counted in `n_diverged`."""

    rhos: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray
    n_diverged: np.ndarray


def stationary_mean(result) -> StationaryMean:
    """theory.md §4: the stationary mean position E[w], measured as a time average after burn-in.
    `result` is a core.toy.simulate.SimResult (uses rhos, time_avg, diverged)."""
    x = np.asarray(result.time_avg)[..., 0]  # (R, N)
    ok = ~np.asarray(result.diverged, dtype=bool) & np.isfinite(x)
    means, lows, highs, ns = [], [], [], []
    for row, good in zip(x, ok):
        values = row[good]
        m = float(values.mean()) if values.size else math.nan
        half = Z95 * float(values.std(ddof=1)) / math.sqrt(values.size) if values.size > 1 else math.nan
        means.append(m)
        lows.append(m - half)
        highs.append(m + half)
        ns.append(values.size)
    return StationaryMean(rhos=np.asarray(result.rhos, dtype=float), mean=np.array(means),
                          ci_low=np.array(lows), ci_high=np.array(highs), n=np.array(ns),
                          n_diverged=(~ok).sum(axis=1))


# ---------------------------------------------------------------------------------------------
# One-step escaping efficiency
# ---------------------------------------------------------------------------------------------


@dataclass
class OneStepResult(_ToDict):
    """Monte Carlo E[L₁] (with a 95% interval) one step from the minimum of L = λw²/2, next to
    theory.one_step_loss; ratio_* are SAM/SGD (theory: 1 + 1.6 λρ/σ + (λρ/σ)²)."""

    lam: float
    lr: float
    sigma: float
    rho: float
    n: int
    monte_carlo: float
    ci: tuple[float, float]
    theory: float
    sgd_theory: float
    ratio_monte_carlo: float | None
    ratio_theory: float | None


def one_step_efficiency(lam: float, lr: float, sigma: float, rho: float, n: int = 100_000,
                        seed: int = 0) -> OneStepResult:
    """Zhu et al.'s escaping efficiency after one step (theory.md §3): start n particles at the
    minimum w = 0 of L = λw²/2, take one SAM step with the real SAM perturbation
    (core.sam.sam_perturbation) and noise ξ ~ N(0, σ²) shared by both passes, and average L(w₁).
    ρ = 0 is one SGD step."""
    gen = torch.Generator().manual_seed(int(seed))
    dt = torch.float64
    w0 = torch.zeros(n, 1, dtype=dt)
    xi = sigma * torch.randn(n, 1, generator=gen, dtype=dt)
    g = lam * w0 + xi  # first pass at w₀: ∇L(w₀) + ξ
    (eps,) = sam_perturbation([g], rho, dim=-1)  # ε = ρ g/‖g‖ per particle
    g2 = lam * (w0 + eps) + xi  # second pass at w₀ + ε, the same ξ
    w1 = w0 - lr * g2
    loss = (0.5 * lam * w1 * w1).reshape(-1).numpy()
    mc = float(loss.mean())
    half = Z95 * float(loss.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    sgd = theory.one_step_loss(lam, lr, sigma, 0.0)
    return OneStepResult(
        lam=lam, lr=lr, sigma=sigma, rho=rho, n=n, monte_carlo=mc, ci=(mc - half, mc + half),
        theory=theory.one_step_loss(lam, lr, sigma, rho), sgd_theory=sgd,
        ratio_monte_carlo=mc / sgd if sgd > 0 else None, ratio_theory=theory.one_step_ratio(lam, sigma, rho),
    )


# ---------------------------------------------------------------------------------------------
# ρ sweeps and compute cost
# ---------------------------------------------------------------------------------------------


@dataclass
class CostResult(_ToDict):
    """Gradient evaluations per particle for cfg's optimizer over cfg.steps steps (an SGD step
    costs 1, a SAM step 2), and relative to full SAM (2T) and to SGD (T)."""

    optimizer: str
    steps: int
    sam_steps: int
    grad_evals: int
    relative_to_sam: float
    relative_to_sgd: float
    total_grad_evals: int  # over all particles and ρ values


def compute_cost(cfg, result=None) -> CostResult:
    """Cost of a core.toy.simulate.SimConfig, from the one schedule module (core.schedules): the very
    schedule simulate() uses (`cfg.schedule()`, with every schedule parameter and the seed). A
    state-dependent rule (AE-SAM) decides as it goes, so its cost can only be counted from a run: pass
    that run's `result` (its grad_evals, the mean over particles); without one it is refused (ValueError)."""
    schedule, _ = cfg.schedule()
    T = int(cfg.steps)
    if schedule.state_dependent:
        if result is None:
            raise ValueError(f"{cfg.optimizer}'s cost is counted from the decisions it took: pass the run's result")
        evals = int(result.grad_evals)
    else:
        evals = schedule.grad_evals(T)
    return CostResult(
        optimizer=cfg.optimizer, steps=T, sam_steps=evals - T, grad_evals=evals,
        relative_to_sam=evals / (2.0 * T) if T else math.nan, relative_to_sgd=evals / T if T else math.nan,
        total_grad_evals=evals * int(cfg.particles) * len(cfg.rhos),
    )


@dataclass
class SweepResult(_ToDict):
    """A ρ sweep: escape statistics and the stationary mean for each ρ, from one simulate() run
    (common random numbers across ρ: the same noise draws for every ρ)."""

    config: object
    rhos: np.ndarray
    escape: list[EscapeStats]
    stationary: StationaryMean
    diverged_fraction: np.ndarray
    cost: CostResult
    wall_s: float


def rho_sweep(cfg, rhos, n_boot: int = 1000) -> SweepResult:
    """Run cfg once with all `rhos` (core.toy.simulate.simulate) and measure each ρ."""
    run_cfg = dataclasses.replace(cfg, rhos=tuple(float(r) for r in rhos))
    result = simulate(run_cfg)
    escape = [escape_stats(fp, run_cfg.steps, n_boot=n_boot, seed=run_cfg.seed) for fp in result.first_passage]
    return SweepResult(
        config=run_cfg, rhos=np.asarray(result.rhos, dtype=float), escape=escape,
        stationary=stationary_mean(result), diverged_fraction=np.asarray(result.diverged).mean(axis=1),
        cost=compute_cost(run_cfg, result), wall_s=result.wall_s,
    )




def _final_basins(result, land, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ρ index i of a SimResult: final positions, which particles are alive (not diverged, finite),
    and the basin each ended in (land.basin; diverged ones get a far-away point, so basin never sees NaN)."""
    final = np.asarray(result.final[i], float)
    alive = ~np.asarray(result.diverged[i], bool) & np.isfinite(final).all(-1)
    safe = torch.as_tensor(np.where(alive[:, None], final, 1e9), dtype=torch.float64)
    return final, alive, land.basin(safe).numpy()


def final_outcomes(result, land, target: int = 1, near: float = 0.1) -> dict:
    """Where each particle ends at step T, per ρ of a SimResult (Zhu et al.'s toy, theory.md §3:
    too large a ρ traps SAM). Outcomes: 'success' = in basin `target` (land.basin); 'stayed' =
    within `near` of the starting minimum land.minima[0]; 'trapped' = neither, diverged particles
    included. Each fraction k/n comes with its 95% Wilson interval (`wilson_interval`).

    Returns a dict: 'rhos'; 'success', 'stayed', 'trapped' (fractions per ρ) and the same names with
    '_ci' ((lo, hi) arrays); 'diverged' (count per ρ)."""
    start = np.asarray(land.minima[0].position, float)
    out = {"rhos": np.asarray(result.rhos, float)}
    fracs = {k: ([], [], []) for k in ("success", "stayed", "trapped")}
    for i in range(len(result.rhos)):
        final, alive, basin = _final_basins(result, land, i)
        success = alive & (basin == target)
        stayed = alive & ~success & (np.linalg.norm(final - start, axis=-1) < near)
        trapped = ~success & ~stayed
        n = final.shape[0]
        for key, mask in (("success", success), ("stayed", stayed), ("trapped", trapped)):
            k = int(mask.sum())
            lo, hi = wilson_interval(k, n)
            fracs[key][0].append(k / n if n else math.nan)
            fracs[key][1].append(lo)
            fracs[key][2].append(hi)
    for key, (v, lo, hi) in fracs.items():
        out[key] = np.array(v)
        out[key + "_ci"] = (np.array(lo), np.array(hi))
    out["diverged"] = np.asarray(result.diverged).sum(axis=1)
    return out


@dataclass
class MinimumOutcome(_ToDict):
    """Where the particles of one ρ ended (see `minimum_outcome`)."""

    n: int                                   # particles that did not diverge
    fraction: float                          # of those, the fraction ending in a minimum with the label
    fraction_ci: tuple[float, float]         # 95% Wilson interval of `fraction`
    left_start: float                        # fraction (of all particles) that ever left the starting basin
    mean_final_loss: float                   # over the particles that did not diverge (NaN if none)
    diverged: int


def minimum_outcome(result, land, label: str = "flat", i: int = 0) -> MinimumOutcome:
    """The outcome the PSAM page compares schedules by: of the particles of ρ index `i` that did not
    diverge, the fraction whose final point lies in the basin (land.basin) of a minimum labelled
    `label`, with its 95% Wilson interval (`wilson_interval`: unlike p ± 1.96·√(p(1−p)/n) it does not
    collapse to zero width when every particle, or none, got there). Also the fraction that ever left
    the starting basin (first_passage ≥ 0) and the mean final loss."""
    targets = [j for j, m in enumerate(land.minima) if m.label == label]
    if not targets:
        raise ValueError(f"{land.title} has no minimum labelled {label!r}")
    _, ok, basin = _final_basins(result, land, i)
    inside = ok & np.isin(basin, targets)
    n, k = int(ok.sum()), int(inside.sum())
    loss = np.asarray(result.final_loss[i], float)
    return MinimumOutcome(
        n=n, fraction=k / n if n else math.nan, fraction_ci=wilson_interval(k, n),
        left_start=float((np.asarray(result.first_passage[i]) >= 0).mean()),
        mean_final_loss=float(loss[ok].mean()) if n else math.nan,
        diverged=int((~ok).sum()))


__all__ = [
    "CostResult", "EscapeStats", "OneStepResult", "StationaryMean", "SweepResult", "compute_cost",
    "escape_stats", "one_step_efficiency", "rho_sweep", "stationary_mean", "survival_curve",
    "MinimumOutcome", "final_outcomes", "minimum_outcome", "wilson_interval",
]
