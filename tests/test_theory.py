"""Tests of the theory overlays (core/toy/theory.py) against independent computations and against the
checked numbers of theory.md §2–§4. Each test names the equation or claim it checks."""

import math

import numpy as np
import pytest
import torch

from core.sam import sam_perturbation
from core.toy import theory
from core.toy.simulate import cpu_threads


@pytest.fixture
def one_thread():
    """Small-tensor loops run far faster on one torch thread (see core/toy/simulate.py); restored after."""
    with cpu_threads(1):
        yield

# ---------------------------------------------------------------------------------------------
# §2 noise-free SAM on a quadratic
# ---------------------------------------------------------------------------------------------


def _iterate_sam(grad, w0, lr, rho, steps, adaptive=False):
    """Noise-free SAM with the project's one SAM step (core.sam.sam_perturbation), float64."""
    w = torch.tensor([[w0]], dtype=torch.float64)
    history = []
    for _ in range(steps):
        (eps,) = sam_perturbation([grad(w)], rho, weights=[w], adaptive=adaptive, dim=-1)
        w = w - lr * grad(w + eps)
        history.append(float(w))
    return np.array(history)


@pytest.mark.parametrize("lam,lr,rho", [(10.0, 0.05, 0.1), (1.0, 0.3, 0.05), (50.0, 0.03, 0.02), (4.0, 0.45, 0.2)])
def test_sam_two_cycle_amplitude_matches_iterating_the_sam_map(lam, lr, rho):
    """§2: on L = λw²/2 noise-free SAM settles on a 2-cycle ±R with R = ηλρ/(2 − ηλ), to 1e-9."""
    history = _iterate_sam(lambda w: lam * w, 0.7, lr, rho, 3000)
    R = theory.sam_two_cycle_amplitude(lam, lr, rho)
    assert abs(abs(history[-1]) - R) < 1e-9 and abs(abs(history[-2]) - R) < 1e-9
    assert history[-1] == pytest.approx(-history[-2], abs=1e-9)  # it bounces across the minimum


def test_two_cycle_amplitude_undefined_where_gd_is_unstable():
    assert theory.sam_two_cycle_amplitude(10.0, 0.2, 0.1) is None  # ηλ = 2
    assert theory.sam_two_cycle_amplitude(10.0, 0.25, 0.1) is None


@pytest.mark.parametrize("lam", [1.0, 10.0, 40.0])
@pytest.mark.parametrize("factor", [0.9, 0.99, 1.01, 1.1])
def test_stability_conditions_match_iterating_the_maps(lam, factor):
    """§2: GD on λw²/2 is stable iff ηλ < 2; unnormalised SAM, w ← w − ηλ(w + ρλw), iff
    ηλ(1 + ρλ) < 2. Checked just inside (factor < 1) and just outside (> 1) each boundary."""
    rho = 0.05
    lr_gd = factor * 2.0 / lam
    w = 1.0
    for _ in range(5000):
        w -= lr_gd * lam * w
    assert theory.gd_stable(lam, lr_gd) == (abs(w) < 1.0)
    lr_sam = factor * 2.0 / (lam * (1.0 + rho * lam))
    w = 1.0
    for _ in range(5000):
        w -= lr_sam * lam * (w + rho * lam * w)
    assert theory.sam_stable(lam, lr_sam, rho) == (abs(w) < 1.0)


# ---------------------------------------------------------------------------------------------
# §3 escape
# ---------------------------------------------------------------------------------------------


def _checked_double_well(w):
    """theory.md §3's checked example: L = −0.5 exp(−(w−1)²/0.08) − 0.5 exp(−(w+1)²/0.72)."""
    return -0.5 * torch.exp(-((w - 1) ** 2) / 0.08) - 0.5 * torch.exp(-((w + 1) ** 2) / 0.72)


def _critical_point(w0):
    """Newton's method on L' with autograd derivatives; returns (w, L(w), L''(w))."""
    w = torch.tensor(w0, dtype=torch.float64)
    for _ in range(50):
        w = w.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_checked_double_well(w), w, create_graph=True)
        (h,) = torch.autograd.grad(g, w)
        w = w - g / h
    w = w.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(_checked_double_well(w), w, create_graph=True)
    (h,) = torch.autograd.grad(g, w)
    return float(w.detach()), float(_checked_double_well(w.detach())), float(h)


def test_kramers_on_theory_md_checked_example_gives_43k_steps():
    """§3: τ ≈ (2π/√(λ_min|λ_saddle|))·exp(ΔL/T)/η with T = ησ²/2. The curvatures and the barrier
    are computed here from the loss by Newton's method; theory.md quotes λ ≈ 12.45, saddle at
    0.426 with λ ≈ −1.86, ΔL ≈ 0.464, and 43k steps for η = 0.01, σ = 4 (rounded: ±500)."""
    w_min, l_min, lam_min = _critical_point(1.0)
    w_sad, l_sad, lam_sad = _critical_point(0.43)
    assert w_sad == pytest.approx(0.426, abs=1e-3) and lam_sad == pytest.approx(-1.86, abs=0.01)
    assert lam_min == pytest.approx(12.45, abs=0.01)
    barrier = l_sad - l_min
    assert barrier == pytest.approx(0.464, abs=1e-3)
    tau = theory.kramers_escape_steps(lam_min, lam_sad, barrier, lr=0.01, sigma=4.0)
    assert 42_500 <= tau < 43_500
    # the same by hand: T = 0.08, prefactor 2π/√(λ|λs|)
    by_hand = 2 * math.pi / math.sqrt(lam_min * abs(lam_sad)) * math.exp(barrier / 0.08) / 0.01
    assert tau == pytest.approx(by_hand, rel=1e-12)


def test_kramers_is_none_where_undefined_and_inf_on_overflow():
    assert theory.kramers_escape_steps(12.45, -1.86, 0.464, 0.01, 0.0) is None  # no noise
    assert theory.kramers_escape_steps(0.0, -1.86, 0.464, 0.01, 4.0) is None  # no curvature
    assert theory.kramers_escape_steps(12.45, 0.0, 0.464, 0.01, 4.0) is None
    assert theory.kramers_escape_steps(12.45, -1.86, 0.464, 0.0, 4.0) is None
    assert theory.kramers_escape_steps(12.45, -1.86, math.nan, 0.01, 4.0) is None
    assert theory.kramers_escape_steps(12.45, -1.86, 50.0, 0.01, 0.1) == math.inf


def test_sam_speedup_heuristic_direction_and_overshoot_match_theory_md():
    """§3: speed-up ≈ exp((λ_min ρ²/2)/T). theory.md's simulated medians on the checked example
    (SGD 36k; SAM 27k / 18k / 10k / 7.2k for ρ = 0.05 / 0.1 / 0.15 / 0.2) give observed speed-ups
    1.33 / 2.0 / 3.6 / 5.0. The heuristic must be > 1 and increasing in ρ, within 25% of the
    observed value for ρ ≤ 0.1, and overshoot for larger ρ ("right direction, overshoots")."""
    lam, lr, sigma = 12.45, 0.01, 4.0
    observed = {0.05: 36 / 27, 0.1: 36 / 18, 0.15: 36 / 10, 0.2: 36 / 7.2}
    predicted = {rho: theory.sam_speedup_heuristic(lam, rho, lr, sigma) for rho in observed}
    values = [predicted[r] for r in sorted(predicted)]
    assert values[0] > 1 and all(b > a for a, b in zip(values, values[1:]))
    for rho in (0.05, 0.1):
        assert predicted[rho] == pytest.approx(observed[rho], rel=0.25)
    for rho in (0.15, 0.2):
        assert predicted[rho] > observed[rho]
    assert theory.sam_speedup_heuristic(lam, 0.0, lr, sigma) == 1.0
    assert theory.sam_speedup_heuristic(lam, 0.1, lr, 0.0) is None


@pytest.mark.parametrize("lam,lr,sigma,rho", [(10.0, 0.05, 1.0, 0.0), (10.0, 0.05, 1.0, 0.1), (2.0, 0.1, 0.5, 0.3)])
def test_one_step_loss_matches_a_large_monte_carlo(lam, lr, sigma, rho):
    """§3: E[L₁] = (λ/2)η²(σ² + 2√(2/π)λρσ + λ²ρ²), checked against 2,000,000 simulated steps
    written out by hand in numpy (first pass g = ξ at w₀ = 0, ε = ρ g/|g|, second pass at ε with
    the same ξ). Margin: 4 standard errors of the Monte Carlo mean (estimated from the sample):
    a false failure has probability about 6e-5 per case with this fixed seed."""
    rng = np.random.default_rng(12345)
    xi = rng.normal(0.0, sigma, size=2_000_000)
    eps = rho * xi / np.abs(xi)
    w1 = -lr * (lam * eps + xi)
    loss = 0.5 * lam * w1**2
    se = loss.std() / math.sqrt(loss.size)
    assert abs(loss.mean() - theory.one_step_loss(lam, lr, sigma, rho)) < 4 * se


def test_one_step_ratio_is_the_ratio_of_one_step_losses():
    """§3: E[L₁]_SAM/E[L₁]_SGD = 1 + 2√(2/π)(λρ/σ) + (λρ/σ)² ≈ 1 + 1.6(λρ/σ) + (λρ/σ)²."""
    for lam, sigma, rho in [(10.0, 1.0, 0.1), (1.0, 2.0, 0.5), (30.0, 0.3, 0.01)]:
        ratio = theory.one_step_ratio(lam, sigma, rho)
        assert ratio == pytest.approx(theory.one_step_loss(lam, 0.1, sigma, rho)
                                      / theory.one_step_loss(lam, 0.1, sigma, 0.0), rel=1e-12)
        r = lam * rho / sigma
        assert ratio == pytest.approx(1 + 1.6 * r + r * r, rel=0.01)
    assert theory.one_step_ratio(10.0, 0.0, 0.1) is None


# ---------------------------------------------------------------------------------------------
# §4 asymmetric valley
# ---------------------------------------------------------------------------------------------

A_L, A_R, LR, SIGMA = 10.0, 1.0, 0.05, 1.0
# theory.md §4: time averages of 100,000 simulated particles
CHECKED_MEANS = {0.0: 0.0901, 0.05: 0.1120, 0.1: 0.1385, 0.2: 0.1962}


def test_closed_form_sgd_mean_is_the_mean_of_the_continuous_density():
    """§4: E[w] = √(ησ²/π)(a_R^−½ − a_L^−½) is the mean of the density ∝ exp(−2L/(ησ²)); here the
    density is integrated numerically (trapezoid rule on a fine grid). theory.md: 0.0863."""
    closed = theory.valley_mean_sgd_closed_form(A_L, A_R, LR, SIGMA)
    w = np.linspace(-4.0, 4.0, 400_001)
    loss = np.where(w < 0, A_L, A_R) * w**2 / 2
    density = np.exp(-2 * loss / (LR * SIGMA**2))
    assert closed == pytest.approx(np.trapezoid(w * density, w) / np.trapezoid(density, w), rel=1e-6)
    assert closed == pytest.approx(0.0863, abs=5e-5)
    assert theory.valley_mean_sgd_closed_form(0.0, 1.0, LR, SIGMA) is None


@pytest.mark.parametrize("rho", sorted(CHECKED_MEANS))
def test_exact_chain_matches_theory_md_checked_numbers_within_1_percent(rho):
    """§4: exact grid chain vs the simulated means 0.0901 / 0.1120 / 0.1385 / 0.1962 (brief: ≤ 1%)."""
    chain = theory.exact_chain_valley(A_L, A_R, LR, SIGMA, rho)
    assert chain.mean == pytest.approx(CHECKED_MEANS[rho], rel=0.01)
    assert chain.edge_mass < 1e-9
    # and it is stationary: one more step of the chain, π ← πP, leaves π where it is
    h = chain.grid[1] - chain.grid[0]
    lo, hi = theory.valley_grid(A_L, A_R, LR, SIGMA, rho)
    _, P, _ = theory._transition_matrix(theory.valley_grad(A_L, A_R), LR, SIGMA, rho, False, lo, hi, len(chain.grid))
    pi = torch.as_tensor(chain.density * h)
    assert (pi @ P - pi).abs().sum().item() < 1e-9


def test_exact_chain_on_the_brief_default_grid_also_agrees():
    """The same with the generic exact_chain_1d on its default grid [−3, 3] (n = 1000)."""
    for rho in (0.0, 0.2):
        chain = theory.exact_chain_1d(theory.valley_grad(A_L, A_R), LR, SIGMA, rho)
        assert chain.mean == pytest.approx(CHECKED_MEANS[rho], rel=0.01)


def test_closed_form_is_about_4_percent_below_the_exact_chain_for_sgd():
    """§4: the closed form is the continuous-time approximation, "4% low" against the exact chain
    (which agrees with simulation). Checked as 2–6% low."""
    closed = theory.valley_mean_sgd_closed_form(A_L, A_R, LR, SIGMA)
    chain = theory.exact_chain_valley(A_L, A_R, LR, SIGMA, 0.0).mean
    assert 0.02 < 1 - closed / chain < 0.06


def test_exact_chain_mean_increases_with_rho():
    """Claim 2 (§4): SAM ends on the flatter side, more so for larger ρ."""
    means = [theory.exact_chain_valley(A_L, A_R, LR, SIGMA, rho).mean for rho in (0.0, 0.05, 0.1, 0.2, 0.3)]
    assert all(b > a for a, b in zip(means, means[1:]))


@pytest.mark.parametrize("a,centre", [(1.0, 0.3), (10.0, -0.2)])
def test_exact_chain_reproduces_the_exact_gaussian_of_sgd_on_a_quadratic(a, centre):
    """For SGD on L = a(w − c)²/2 the chain is the AR(1) process w' − c = (1 − ηa)(w − c) − ηξ,
    whose stationary law is exactly N(c, η²σ²/(1 − (1 − ηa)²)). The grid chain must give that
    mean and variance (discretisation error of the grid only: checked to 0.5% of the s.d.)."""
    chain = theory.exact_chain_1d(lambda w: a * (w - centre), LR, SIGMA, 0.0, lo=-2.0, hi=2.0, n=1000)
    variance = LR**2 * SIGMA**2 / (1 - (1 - LR * a) ** 2)
    h = chain.grid[1] - chain.grid[0]
    p = chain.density * h
    sd = math.sqrt(variance)
    assert abs(chain.mean - centre) < 0.005 * sd
    chain_var = float((p * (chain.grid - chain.mean) ** 2).sum())
    assert math.sqrt(chain_var) == pytest.approx(sd, rel=0.005)


def test_exact_chain_matches_a_direct_simulation_for_sam_and_asam(one_thread):
    """The chain for SAM (ρ = 0.1) and ASAM (ρ = 1, ε = ρ|w| sign g in 1-D; its mean is 9% above
    SGD's, so a chain that ignored `adaptive` would fail) against a direct simulation with the
    project's SAM step (core.sam.sam_perturbation, noise shared by both passes): 2,000 particles, 200
    burn-in steps, then 1,000 steps of time average each.
    Margin: 4 standard errors of the mean of the particles' time averages (independent particles;
    the s.e. is estimated from them) plus 0.5% for the grid, so a false failure is very unlikely."""
    gen = torch.Generator().manual_seed(7)
    grad = theory.valley_grad(A_L, A_R)
    for rho, adaptive in ((0.1, False), (1.0, True)):
        w = torch.zeros(2000, 1, dtype=torch.float64)
        total = torch.zeros_like(w)
        for step in range(1200):
            xi = SIGMA * torch.randn(w.shape, generator=gen, dtype=torch.float64)
            g = grad(w) + xi
            (eps,) = sam_perturbation([g], rho, weights=[w], adaptive=adaptive, dim=-1)
            w = w - LR * (grad(w + eps) + xi)
            if step >= 200:
                total += w
        averages = (total / 1000).reshape(-1).numpy()
        se = averages.std(ddof=1) / math.sqrt(averages.size)
        chain = theory.exact_chain_valley(A_L, A_R, LR, SIGMA, rho, adaptive=adaptive)
        assert abs(averages.mean() - chain.mean) < 4 * se + 0.005 * abs(chain.mean), (rho, adaptive)


def test_exact_chain_refuses_bad_or_oversized_requests_with_a_message():
    """No noise (deterministic chain), and grids whose n² matrix would exhaust memory."""
    with pytest.raises(ValueError, match="σ > 0"):
        theory.exact_chain_valley(A_L, A_R, LR, 0.0)
    with pytest.raises(ValueError, match="grid points"):
        theory.exact_chain_valley(A_L, A_R, LR, SIGMA, n=100_000)
    with pytest.raises(ValueError, match="finite grid"):
        theory.exact_chain_1d(theory.valley_grad(A_L, A_R), LR, SIGMA, lo=-math.inf)


@pytest.mark.parametrize("a_left,a_right,lr,rho", [(2.0, 1.0, 0.6, 0.1), (3.0, 1.0, 0.8, 0.05), (1.5, 1.0, 0.5, 0.2)])
def test_two_cycle_mean_matches_iterating_noise_free_sam_on_the_valley(a_left, a_right, lr, rho):
    """§4: noise-free SAM's 2-cycle mean ρ(a_L − a_R)/(a_L + a_R − η a_L a_R), when
    (1 − η a_R) a_L < a_R, against iterating the SAM map (core.sam) on the piecewise valley."""
    assert (1 - lr * a_right) * a_left < a_right
    history = _iterate_sam(theory.valley_grad(a_left, a_right), 0.3, lr, rho, 2000)
    assert (history[-1] > 0) != (history[-2] > 0)  # it alternates sides
    assert (history[-1] + history[-2]) / 2 == pytest.approx(
        theory.valley_two_cycle_mean_sam(a_left, a_right, lr, rho), abs=1e-9)


def test_two_cycle_mean_is_none_outside_its_range():
    """theory.md's checked example does not satisfy (1 − η a_R) a_L < a_R: no prediction."""
    assert theory.valley_two_cycle_mean_sam(A_L, A_R, LR, 0.1) is None


# ---------------------------------------------------------------------------------------------
# Schedules: the exact finite-T chain (π_{t+1} = π_t P_SAM or π_t P_SGD, step by step)
# ---------------------------------------------------------------------------------------------


def test_schedule_chain_with_all_or_no_sam_steps_tends_to_the_stationary_chain():
    """A mask of all SAM (or all SGD) steps is the fixed chain: after a long burn-in its time average is the
    stationary mean of exact_chain_1d (same grid), to 1e-3 relative (the burn-in leaves e^{-aηB} of the start)."""
    grad = theory.valley_grad(A_L, A_R)
    for rho, sam in ((0.2, True), (0.0, False)):
        stationary = theory.exact_chain_1d(grad, LR, SIGMA, rho, lo=-1.5, hi=2.0, n=500).mean
        run = theory.exact_schedule_chain(grad, LR, SIGMA, rho, np.full(1500, sam), start=0.0, burn_in=500,
                                          lo=-1.5, hi=2.0, n=500)
        assert run.time_avg_mean == pytest.approx(stationary, rel=1e-3)
        assert run.edge_mass < 1e-9


@pytest.mark.parametrize("name", ["psam", "late_sam", "every_k", "random_sam", "asam"])
def test_simulator_agrees_with_the_exact_schedule_chain(name):
    """For every schedule, the simulated time-averaged position on the valley (4000 particles, fixed seed)
    lies within 3 standard errors of the exact expectation. The grid's own error is far smaller: the exact
    value moves by < 0.1 SE from n = 700 to n = 1400 cells (measured), so the margin is sampling noise.
    ASAM (ρ = 1, ε = ρ|w| sign g) is checked against the adaptive chain, and the plain-SAM chain at the same ρ
    lies far outside the margin, so a simulator that dropped ASAM's scaling would fail."""
    from core.toy.measure import stationary_mean
    from core.toy.simulate import SimConfig, simulate

    adaptive = name == "asam"
    rho = 1.0 if adaptive else 0.2
    cfg = SimConfig(landscape="valley_1d", landscape_params=(("a_left", A_L), ("a_right", A_R)), optimizer=name,
                    rhos=(rho,), lr=LR, sigma=SIGMA, particles=4000, steps=300, burn_in=50, seed=3, start=(0.0,),
                    k=3, f=0.5, p=0.4, late_f=0.3, keep_paths=0, record_points=2, dtype="float64")
    res = simulate(cfg)
    sim = stationary_mean(res)

    def chain(mask, rho=rho, adaptive=adaptive):
        return theory.exact_schedule_chain(theory.valley_grad(A_L, A_R), LR, SIGMA, rho, mask, start=0.0,
                                           burn_in=50, adaptive=adaptive, lo=-1.5, hi=2.0, n=700).time_avg_mean

    exact = chain(res.sam_mask)
    se = (sim.ci_high[0] - sim.mean[0]) / 1.959964
    assert abs(sim.mean[0] - exact) < 3 * se, (sim.mean[0], exact, se)
    if adaptive:
        assert abs(chain(res.sam_mask, adaptive=False) - exact) > 10 * se
    else:  # and the schedule matters: the exact value lies between pure SGD's and pure SAM's
        sgd, sam = (chain(np.full(300, m)) for m in (False, True))
        assert sgd < exact < sam


def test_exact_escape_time_of_a_nearly_deterministic_walk_counts_its_steps():
    """With a constant gradient 2 and η = 0.05 each step moves 0.1 to the left; with (almost) no noise a start at
    1.0005 (the cell [1.000, 1.002], centre 1.001) crosses 0 on step 11 (1.001 → 0.901 → … → 0.001 → −0.099), so the
    mean first-passage time is 11. Had the start landed one cell lower (centre 0.999) it would be 10."""
    m = theory.exact_escape_steps_1d(lambda x: torch.full_like(x, 2.0), 0.05, 1e-6, 1.0005, 0.0, 2.0, n=1000)
    assert m == pytest.approx(11.0, abs=1e-6)
    with pytest.raises(ValueError, match="boundary < start"):
        theory.exact_escape_steps_1d(lambda x: x, 0.05, 1.0, -1.0, 0.0, 2.0)


def test_exact_escape_time_on_the_double_well_is_converged_in_the_grid():
    """The double wells' exact SGD escape time moves by < 0.1% from n = 500 to n = 2000 cells; other landscapes,
    or no noise, have none."""
    from core.toy.landscapes import make_landscape

    land = make_landscape("double_well_2d")
    coarse, fine = (theory.double_well_escape_steps(land, 0.05, 2.5, n=n) for n in (500, 2000))
    assert fine == pytest.approx(coarse, rel=1e-3)
    assert theory.double_well_escape_steps(make_landscape("double_well_1d"), 0.05, 2.5) == pytest.approx(fine, rel=1e-3)
    assert theory.double_well_escape_steps(make_landscape("valley_1d"), 0.05, 2.5) is None
    assert theory.double_well_escape_steps(land, 0.05, 0.0) is None
    # colder, escapes are rarer than float64 can resolve per step: "practically never", not a made-up number
    assert theory.double_well_escape_steps(land, 0.05, 0.5) == math.inf


def test_a_chain_the_grid_cannot_resolve_is_refused_with_a_message():
    """One step's noise far below a grid cell (η = 1e-4, σ = 0.05 on the valley): the stationary solve is singular;
    the chain says so in one line instead of raising torch's LinAlgError."""
    with pytest.raises(ValueError, match="cannot resolve"):
        theory.exact_chain_valley(A_L, A_R, 1e-4, 0.05, 0.1)
