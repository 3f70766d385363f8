"""Theory overlays: the predictions drawn next to the simulations.

Every function names its equation and where it comes from (``docs/theory.md`` §2–§4 of the shared
docs, and the papers cited there). Functions return ``None`` where a prediction is undefined
(for example zero noise, or a map outside its stable range), so that a page or the CLI can show
"no prediction" (JSON null) instead of a misleading number.

Contents
    §2  sam_two_cycle_amplitude, gd_stable, sam_stable          noise-free SAM on a quadratic
    §3  kramers_escape_steps, sam_speedup_heuristic             escape from a sharp minimum
        one_step_loss, one_step_ratio                           one-step escaping efficiency E[L₁]
    §4  valley_mean_sgd_closed_form, valley_two_cycle_mean_sam   asymmetric valley
        closed_form_density                                     SGD's Gibbs density p ∝ exp(−2L/(ησ²))
        exact_chain_1d, exact_chain_valley                      exact grid Markov chain (any optimizer)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.jsonable import to_jsonable
from core.toy.simulate import cpu_threads

# ---------------------------------------------------------------------------------------------
# §2 Noise-free SAM on a 1-D quadratic L = λw²/2
# ---------------------------------------------------------------------------------------------


def gd_stable(lam: float, lr: float) -> bool:
    """Gradient descent on L = λw²/2 is stable iff ηλ < 2 (theory.md §2)."""
    return 0.0 < lr * lam < 2.0


def sam_stable(lam: float, lr: float, rho: float) -> bool:
    """Unnormalised SAM, w ← w − ηλ(w + ρλw), is stable iff ηλ(1 + ρλ) < 2 (theory.md §2)."""
    return 0.0 < lr * lam * (1.0 + rho * lam) < 2.0


def sam_two_cycle_amplitude(lam: float, lr: float, rho: float) -> float | None:
    """Amplitude R = ηλρ / (2 − ηλ) of the 2-cycle of noise-free SAM on L = λw²/2 (theory.md §2, derived).

    SAM's step there is w ← w − ηλ(w + ρ sign w): it never settles at 0 but bounces between ±R.
    (From w = R: the next point is R − ηλ(R + ρ) = −R  ⟺  R(2 − ηλ) = ηλρ.)
    None when ηλ ≥ 2 (gradient descent itself is unstable) or ηλ ≤ 0.
    """
    if not 0.0 < lr * lam < 2.0:
        return None
    return lr * lam * rho / (2.0 - lr * lam)


# ---------------------------------------------------------------------------------------------
# §3 Escape from a sharp minimum
# ---------------------------------------------------------------------------------------------


def temperature(lr: float, sigma: float) -> float:
    """Effective temperature of SGD with isotropic gradient noise σ: T = ησ²/2 (theory.md §3)."""
    return lr * sigma * sigma / 2.0


def kramers_escape_steps(lam_min: float, lam_saddle: float, barrier: float, lr: float,
                         sigma: float) -> float | None:
    """Kramers' mean escape time of SGD, in steps (theory.md §3; Kramers 1940, as used for SGD by
    Xie, Sato & Sugiyama, ICLR 2021):

        τ ≈ (2π / √(λ_min · |λ_saddle|)) · exp(ΔL / T) / η,     T = ησ²/2

    λ_min, λ_saddle: curvatures at the minimum and at the saddle along the escape direction,
    ΔL = barrier: loss at the saddle minus loss at the minimum. Valid when ΔL ≫ T.
    None where undefined (σ = 0, η ≤ 0, λ_min ≤ 0, λ_saddle = 0, ΔL < 0); inf if it overflows.
    """
    values = (lam_min, lam_saddle, barrier, lr, sigma)
    if not all(math.isfinite(v) for v in values):
        return None
    t = temperature(lr, sigma)
    if t <= 0.0 or lr <= 0.0 or lam_min <= 0.0 or lam_saddle == 0.0 or barrier < 0.0:
        return None
    prefactor = 2.0 * math.pi / math.sqrt(lam_min * abs(lam_saddle))
    exponent = barrier / t
    if exponent > 700.0:  # exp would overflow a float
        return math.inf
    return prefactor * math.exp(exponent) / lr


def sam_speedup_heuristic(lam_min: float, rho: float, lr: float, sigma: float) -> float | None:
    """Heuristic speed-up of SAM's escape over SGD's: exp((λ_min ρ²/2) / T), T = ησ²/2
    (theory.md §3, derived: SAM's perturbation lifts the effective loss in the minimum by about
    λ_min ρ²/2, lowering the barrier by that much). Right direction, overshoots at large ρ.
    None when T = 0.
    """
    t = temperature(lr, sigma)
    if not t > 0.0 or not math.isfinite(lam_min * rho):
        return None
    exponent = lam_min * rho * rho / 2.0 / t
    return math.inf if exponent > 700.0 else math.exp(exponent)


def one_step_loss(lam: float, lr: float, sigma: float, rho: float = 0.0) -> float:
    """One-step escaping efficiency from the minimum of L = λw²/2 (theory.md §3, derived, exact;
    escaping efficiency as defined by Zhu et al., ICML 2019):

        E[L₁] = (λ/2) η² (σ² + 2√(2/π) λρσ + λ²ρ²)

    with Gaussian gradient noise ξ ~ N(0, σ²) shared by both SAM passes. ρ = 0 gives SGD's
    (λ/2) η² σ². (From w₀ = 0: ε = ρ sign ξ, w₁ = −η(ξ + λρ sign ξ), and E|ξ| = σ√(2/π).)
    """
    return 0.5 * lam * lr * lr * (sigma * sigma + 2.0 * math.sqrt(2.0 / math.pi) * lam * rho * sigma
                                  + (lam * rho) ** 2)


def one_step_ratio(lam: float, sigma: float, rho: float) -> float | None:
    """E[L₁]_SAM / E[L₁]_SGD = 1 + 2√(2/π)(λρ/σ) + (λρ/σ)² ≈ 1 + 1.6 (λρ/σ) + (λρ/σ)² (theory.md §3).
    Grows with sharpness λ and with ρ. None when σ = 0 (SGD does not move)."""
    if not sigma > 0.0:
        return None
    r = lam * rho / sigma
    return 1.0 + 2.0 * math.sqrt(2.0 / math.pi) * r + r * r


# ---------------------------------------------------------------------------------------------
# §4 Asymmetric valley L = a_L w²/2 (w < 0), a_R w²/2 (w ≥ 0)
# ---------------------------------------------------------------------------------------------


def valley_mean_sgd_closed_form(a_left: float, a_right: float, lr: float, sigma: float) -> float | None:
    """SGD's stationary mean position in the asymmetric valley (theory.md §4, derived; He, Huang &
    Yuan, NeurIPS 2019, for the asymmetric-valley picture):

        E[w] = √(ησ²/π) · (a_R^(−1/2) − a_L^(−1/2))

    from the continuous-time stationary density ∝ exp(−2L/(ησ²)). It is an approximation: for
    a_L = 10, a_R = 1, η = 0.05, σ = 1 it gives 0.0863, about 4% below the exact chain's 0.090.
    None unless a_L, a_R > 0.
    """
    if not (a_left > 0.0 and a_right > 0.0) or lr < 0.0:
        return None
    return math.sqrt(lr * sigma * sigma / math.pi) * (a_right ** -0.5 - a_left ** -0.5)


def valley_two_cycle_mean_sam(a_left: float, a_right: float, lr: float, rho: float) -> float | None:
    """Mean of noise-free SAM's 2-cycle across the valley floor (theory.md §4, derived):

        (w₊ + w₋)/2 = ρ(a_L − a_R) / (a_L + a_R − η a_L a_R)

    where the cycle is w₊ > 0 → w₋ < 0 → w₊. It exists when (1 − η a_R) a_L < a_R (otherwise a
    step from the flat side does not reach the sharp side); None outside that range.
    """
    if not (a_left > 0.0 and a_right > 0.0 and lr > 0.0):
        return None
    if not (1.0 - lr * a_right) * a_left < a_right:
        return None
    denominator = a_left + a_right - lr * a_left * a_right
    if denominator <= 0.0:
        return None
    return rho * (a_left - a_right) / denominator


def closed_form_density(w: np.ndarray, loss: np.ndarray, lr: float, sigma: float) -> np.ndarray | None:
    """SGD's stationary density in the small-step (Langevin) limit, p(w) ∝ exp(−2L(w)/(ησ²))
    (theory.md §4; the Gibbs density at temperature T = ησ²/2), normalised on the grid w by the
    trapezoid rule. On the 1-D valley its mean is `valley_mean_sgd_closed_form`. None when σ = 0
    or η = 0 (no noise: no stationary density) or when the grid holds no mass."""
    temp = lr * sigma * sigma / 2.0
    if not temp > 0:
        return None
    log_p = -np.asarray(loss, float) / temp
    p = np.exp(log_p - np.nanmax(log_p))  # shift by the max: no overflow, same density after normalising
    area = np.trapezoid(p, w)
    return p / area if area > 0 else None


def valley_grad(a_left: float, a_right: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """L'(w) of the 1-D asymmetric valley: a_L w for w < 0, a_R w for w ≥ 0."""
    return lambda w: torch.where(w < 0, a_left * w, a_right * w)


MAX_CHAIN_POINTS = 3000


@dataclass
class ChainResult:
    """Stationary distribution of the exact grid chain: `density` on the cell centres `grid`
    (integrates to 1), its `mean`, and `edge_mass`, the probability in the two end cells (which
    also hold everything beyond the grid; it should be tiny, else widen [lo, hi])."""

    grid: np.ndarray
    density: np.ndarray
    mean: float
    edge_mass: float
    lr: float
    sigma: float
    rho: float
    adaptive: bool
    wall_s: float

    def to_dict(self) -> dict:
        return {
            "grid": self.grid.tolist(), "density": self.density.tolist(), "mean": self.mean,
            "edge_mass": self.edge_mass, "lr": self.lr, "sigma": self.sigma, "rho": self.rho,
            "adaptive": self.adaptive, "wall_s": self.wall_s,
        }


def _check_chain(lr: float, sigma: float, rho: float, lo: float, hi: float, n: int) -> None:
    """The arguments every grid chain needs (one-line ValueError otherwise)."""
    if not sigma > 0.0:
        raise ValueError("the exact chain needs gradient noise σ > 0")
    if not (lr > 0.0 and rho >= 0.0 and math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError("the exact chain needs η > 0, ρ ≥ 0 and a finite grid with hi > lo")
    if not 10 <= n <= MAX_CHAIN_POINTS:  # the matrix has n² entries: 3000² float64 = 72 MB
        raise ValueError(f"the exact chain needs 10 ≤ n ≤ {MAX_CHAIN_POINTS} grid points, got {n}")


def exact_chain_1d(grad_fn: Callable[[torch.Tensor], torch.Tensor], lr: float, sigma: float,
                   rho: float = 0.0, adaptive: bool = False, lo: float = -3.0, hi: float = 3.0,
                   n: int = 1000) -> ChainResult:
    """Stationary distribution of 1-D SGD / SAM / ASAM with Gaussian gradient noise, computed
    exactly on a grid (a transfer operator; theory.md §4, "exact Markov chains on a grid").

    One step from w, with one noise draw ξ ~ N(0, σ²) shared by both passes (as in core.sam):

        s  = sign(L'(w) + ξ)                       direction of the first-pass gradient
        ε  = ρ s            (SAM)    ε = ρ |w| s   (ASAM: core.sam's ρT²g/‖Tg‖ with T = |w|, in 1-D)
        w' = w − η (L'(w + ε) + ξ)                 second pass at w + ε, same ξ

    For fixed s, w' = a_s − ηξ is linear in ξ, so the probability that w' lands in a grid cell is
    a difference of normal CDFs, taken over the part of the ξ-axis where the sign is s: ξ > −L'(w)
    for s = +1, ξ < −L'(w) for s = −1. Summing both parts gives row i of the transition matrix P.
    The stationary π solves π P = π, Σπ = 1 (one linear solve). ρ = 0 is plain SGD.

    grad_fn: L' on a float64 tensor of positions. Cells are n equal intervals of [lo, hi]; the
    end cells also take the mass that would land beyond the grid. Needs σ > 0 (without noise the
    chain is deterministic and its stationary state depends on the start).
    """
    _check_chain(lr, sigma, rho, lo, hi, n)
    # One CPU thread: these are ~1M-element operations and a 1000×1000 solve; on a shared 2-core
    # machine two threads made this 10× slower (50 ms → 600 ms measured with other work running).
    with cpu_threads(1), torch.no_grad():
        return _exact_chain(grad_fn, lr, sigma, rho, adaptive, lo, hi, n)


def _transition_matrix(grad_fn, lr, sigma, rho, adaptive, lo, hi, n) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(cell centres w, transition matrix P, cell width h) of one SGD (ρ = 0) / SAM / ASAM step on the
    grid, as derived in `exact_chain_1d`'s docstring. Row i of P is the distribution of the next cell."""
    dt = torch.float64
    h = (hi - lo) / n
    w = lo + h * (torch.arange(n, dtype=dt) + 0.5)  # cell centres, (n,)
    edges = lo + h * torch.arange(1, n, dtype=dt)  # inner edges b_1 … b_{n−1}; b_0 = −∞, b_n = +∞
    g0 = grad_fn(w)  # first-pass gradient without noise
    radius = rho * w.abs() if adaptive else torch.full_like(w, rho)
    # Normal CDF Φ(ξ/σ) = erfc(−ξ/(σ√2))/2. We work with z = ξ/(σ√2) to call erfc directly.
    scale = 1.0 / (sigma * math.sqrt(2.0))
    zc = (-g0 * scale)[:, None]  # the sign of L'(w) + ξ flips at ξ = −L'(w)

    def cdf_below(s: int) -> torch.Tensor:
        """(n, n−1): P(w' ≤ b_j and sign = s) from each cell centre, for every inner edge b_j."""
        a = w - lr * grad_fn(w + s * radius)  # w' = a − ηξ
        z = (a[:, None] - edges[None, :]).mul_(scale / lr)  # w' ≤ b  ⟺  ξ ≥ (a − b)/η
        if s > 0:  # ξ ∈ [max(u, c), ∞):  1 − Φ = erfc(max(z, zc))/2
            return torch.erfc(torch.maximum(z, zc)).mul_(0.5)
        # ξ ∈ [u, c), empty when u ≥ c:  Φ(c) − Φ(min(u, c))
        return torch.erfc(torch.minimum(z, zc).neg_()).sub_(torch.erfc(-zc)).mul_(-0.5)

    below = cdf_below(+1).add_(cdf_below(-1))  # P(w' ≤ b_j) from each cell, both signs together
    ones = torch.ones(n, 1, dtype=dt)
    cumulative = torch.cat([torch.zeros(n, 1, dtype=dt), below, ones], dim=1)  # with b_0, b_n
    return w, cumulative[:, 1:] - cumulative[:, :-1], h


def _exact_chain(grad_fn, lr, sigma, rho, adaptive, lo, hi, n) -> ChainResult:
    start = time.perf_counter()
    dt = torch.float64
    w, P, h = _transition_matrix(grad_fn, lr, sigma, rho, adaptive, lo, hi, n)
    # π (P − I) = 0 with Σ π = 1: replace one (redundant) equation by the normalisation.
    A = (P - torch.eye(n, dtype=dt)).T.contiguous()
    A[-1, :] = 1.0
    rhs = torch.zeros(n, dtype=dt)
    rhs[-1] = 1.0
    try:
        pi = torch.linalg.solve(A, rhs).clamp(min=0.0)
    except torch.linalg.LinAlgError:  # e.g. η = 1e-4, σ = 0.05: the step noise is far below one grid cell
        pi = torch.full((n,), math.nan, dtype=dt)
    if not (torch.isfinite(pi).all() and pi.sum() > 0):
        raise ValueError(f"the exact chain cannot resolve these settings: one step's noise ησ = {lr * sigma:.2g} is "
                         f"small against its grid cell of {h:.2g}; raise η or σ (the simulation is unaffected)")
    pi = pi / pi.sum()
    mean = float((pi * w).sum())
    return ChainResult(
        grid=w.numpy(), density=(pi / h).numpy(), mean=mean, edge_mass=float(pi[0] + pi[-1]),
        lr=lr, sigma=sigma, rho=rho, adaptive=adaptive, wall_s=time.perf_counter() - start,
    )


MAX_ESCAPE_STEPS = 1e12  # beyond this the grid chain's escape rates are below float64's resolution


def exact_escape_steps_1d(grad_fn: Callable[[torch.Tensor], torch.Tensor], lr: float, sigma: float, start: float,
                          boundary: float, hi: float, rho: float = 0.0, adaptive: bool = False,
                          n: int = 1000) -> float:
    """Mean number of steps until the 1-D chain of `exact_chain_1d`, started at `start` > `boundary`, first
    lands below `boundary`: the exact mean first-passage time of the grid chain (the quantity Kramers'
    formula approximates, without its assumption ΔL ≫ T).

        m_i = 1 + Σ_j Q_ij m_j   for every cell i above the boundary,   i.e.   m = (I − Q)⁻¹ 1

    Q is the transition matrix P restricted to the n cells of [boundary, hi] (the last also holds everything
    above hi); whatever lands below the boundary has escaped and stops counting. For a separable landscape,
    such as double_well_2d under SGD with isotropic noise (the x-coordinate moves on its own), it is the
    simulator's mean escape step.

    Returns inf beyond MAX_ESCAPE_STEPS: the escape probability per step is then below ~1e-12, and 1 − (row
    sums of Q) loses its digits in float64 (at η = 0.05, σ = 0.75 on the double well the "solution" came out
    as 2.6e15 and moved with n), so "practically never" is the honest answer."""
    _check_chain(lr, sigma, rho, boundary, hi, n)
    if not boundary < start < hi:
        raise ValueError("the escape chain needs boundary < start < hi")
    h = (hi - boundary) / n
    # One CPU thread, as in exact_chain_1d (a 1000×1000 solve; two threads were slower on a shared 2-core box).
    with cpu_threads(1), torch.no_grad():
        # one cell more below the boundary: cell 0 gathers everything that lands below it (escaped)
        w, P, _ = _transition_matrix(grad_fn, lr, sigma, rho, adaptive, boundary - h, hi, n + 1)
        Q = P[1:, 1:]
        try:
            m = torch.linalg.solve(torch.eye(n, dtype=Q.dtype) - Q, torch.ones(n, dtype=Q.dtype))
        except torch.linalg.LinAlgError:  # no way out that float64 can see: practically never
            return math.inf
    i = min(n - 1, int((start - boundary) / h))  # the cell that holds the start
    value = float(m[i])
    return value if math.isfinite(value) and 0 < value <= MAX_ESCAPE_STEPS else math.inf


def double_well_escape_steps(land, lr: float, sigma: float, n: int = 1000) -> float | None:
    """SGD's exact mean escape step on the double wells (core.toy.landscapes.DoubleWell1D / 2D) with isotropic
    noise σ: from the sharp minimum until x first lands in the flat basin (x < flat_edge), as the simulator
    counts it. The y-coordinate of the 2-D well never enters x's update, so x is a 1-D chain and
    `exact_escape_steps_1d` is exact for it (grid error < 0.1% at n = 1000, measured against n = 2000).
    None for other landscapes. At the escape preset (η = 0.05, σ = 2.5) it is 589 steps, 16% above Kramers'
    509: ΔL/T ≈ 3 is not the ΔL ≫ T that Kramers assumes."""
    if not (hasattr(land, "flat_edge") and land.minima) or not (lr > 0 and sigma > 0):
        return None
    pad = [0.0] * (land.dim - 1)

    def grad_x(x: torch.Tensor) -> torch.Tensor:  # ∂L/∂x along the escape axis (y = 0; it does not matter)
        return land.grad(torch.stack([x] + [torch.full_like(x, v) for v in pad], dim=-1))[..., 0]

    return exact_escape_steps_1d(grad_x, lr, sigma, land.minima[0].position[0], land.flat_edge,
                                 land.bounds[0][1], n=n)


@dataclass
class ScheduleChainResult:
    """`exact_schedule_chain`: the exact expectation of what the simulator estimates for a schedule run.
    `time_avg_mean` = E[(1/(T−B)) Σ_{s=B+1…T} w_s] (the simulator's time average after burn-in B),
    `final_density` the distribution of w_T on the cell centres `grid`, `edge_mass` its mass in the end cells."""

    grid: np.ndarray
    final_density: np.ndarray
    final_mean: float
    time_avg_mean: float
    edge_mass: float
    wall_s: float

    def to_dict(self) -> dict:
        return to_jsonable(self)


MAX_CHAIN_STEPS = 20_000


def exact_schedule_chain(grad_fn: Callable[[torch.Tensor], torch.Tensor], lr: float, sigma: float, rho: float,
                         sam_mask: np.ndarray, start: float, burn_in: int = 0, adaptive: bool = False,
                         lo: float = -3.0, hi: float = 3.0, n: int = 600) -> ScheduleChainResult:
    """A schedule (PSAM, late SAM, SAM every k, random SAM) changes the update rule from step to step, so
    its chain has no single stationary state. But the distribution after each step is still exact:

        π_0 = the cell of `start`,   π_{t+1} = π_t P_SAM if sam_mask[t] else π_t P_SGD

    with P_SAM, P_SGD the one-step transition matrices of `exact_chain_1d` (ρ and ρ = 0). Returns
    E[w_T] and the expected time average over s = burn_in+1 … T, the quantity core.toy.simulate averages over
    particles, so the simulator can be checked against it for every schedule. Cost: T vector-matrix
    products with an n×n matrix."""
    sam_mask = np.asarray(sam_mask, bool)
    T = int(sam_mask.size)
    _check_chain(lr, sigma, rho, lo, hi, n)
    if not (lo <= start <= hi and 1 <= T <= MAX_CHAIN_STEPS and 0 <= burn_in < T):
        raise ValueError(f"the exact chain needs lo ≤ start ≤ hi, 1 ≤ T ≤ {MAX_CHAIN_STEPS} steps and 0 ≤ burn_in < T")
    t0 = time.perf_counter()
    with cpu_threads(1), torch.no_grad():
        w, P_sgd, h = _transition_matrix(grad_fn, lr, sigma, 0.0, False, lo, hi, n)
        P_sam = _transition_matrix(grad_fn, lr, sigma, rho, adaptive, lo, hi, n)[1] if sam_mask.any() else P_sgd
        pi = torch.zeros(n, dtype=torch.float64)
        pi[min(n - 1, int((start - lo) / h))] = 1.0
        avg = torch.zeros(n, dtype=torch.float64)
        for t in range(T):
            pi = pi @ (P_sam if sam_mask[t] else P_sgd)
            if t + 1 > burn_in:  # the position after step t+1 counts when t+1 > burn_in
                avg += pi
        avg /= T - burn_in
    return ScheduleChainResult(grid=w.numpy(), final_density=(pi / h).numpy(), final_mean=float((pi * w).sum()),
                               time_avg_mean=float((avg * w).sum()), edge_mass=float(pi[0] + pi[-1]),
                               wall_s=time.perf_counter() - t0)


def exact_chain_valley(a_left: float, a_right: float, lr: float, sigma: float, rho: float = 0.0,
                       adaptive: bool = False, lo: float | None = None, hi: float | None = None,
                       n: int = 1000) -> ChainResult:
    """`exact_chain_1d` on the asymmetric valley (theory.md §4), by default on `valley_grid`."""
    grid_lo, grid_hi = valley_grid(a_left, a_right, lr, sigma, rho)
    lo = grid_lo if lo is None else lo
    hi = grid_hi if hi is None else hi
    return exact_chain_1d(valley_grad(a_left, a_right), lr, sigma, rho, adaptive, lo, hi, n)


def valley_grid(a_left: float, a_right: float, lr: float, sigma: float, rho: float) -> tuple[float, float]:
    """A grid [lo, hi] for the valley's chains: about 12 stationary standard deviations √(ησ²/(2a)) on
    each side, plus room for the SAM shift, which leaves negligible mass beyond it."""
    spread_left = math.sqrt(lr * sigma * sigma / (2.0 * a_left)) if a_left > 0 else 1.0
    spread_right = math.sqrt(lr * sigma * sigma / (2.0 * a_right)) if a_right > 0 else 1.0
    pad = 2.0 * rho + lr * sigma * 6.0
    return -(12.0 * spread_left + pad), 12.0 * spread_right + pad


def exact_schedule_chain_valley(a_left: float, a_right: float, lr: float, sigma: float, rho: float,
                                sam_mask: np.ndarray, start: float = 0.0, burn_in: int = 0,
                                adaptive: bool = False, n: int = 800) -> ScheduleChainResult:
    """`exact_schedule_chain` on the asymmetric valley, on `valley_grid` (widened to hold the start)."""
    lo, hi = valley_grid(a_left, a_right, lr, sigma, rho)
    lo, hi = min(lo, start - 1e-6), max(hi, start + 1e-6)
    return exact_schedule_chain(valley_grad(a_left, a_right), lr, sigma, rho, sam_mask, start, burn_in, adaptive,
                                lo, hi, n)


