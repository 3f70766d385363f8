"""The lab's claims, checked on the engine with fixed seeds (issue 2, "What must be shown").

Each statistical test states its standard error (SE) and the margin in units of it. The theory
numbers come from core/toy/theory.py (formulas of theory.md), never from earlier runs of this code.
"""

import numpy as np
import pytest
import torch

from core.toy import measure, theory
from core.toy.landscapes import make_landscape
from core.toy.presets import ESCAPE, PSAM, SAM_BOUNCE, VALLEY, ZHU_BREAKS
from core.toy.simulate import simulate


def test_noise_free_sam_settles_on_the_two_cycle():
    """theory.md §2: on L = λw²/2 without noise SAM bounces between ±ηλρ/(2 − ηλ) (to 1e-6)."""
    cfg = SAM_BOUNCE.config.replace(record_points=SAM_BOUNCE.config.steps + 1)
    lam = dict(cfg.landscape_params)["a_left"]
    assert dict(cfg.landscape_params)["a_right"] == lam  # a symmetric valley is the quadratic
    r = simulate(cfg)
    for i, rho in enumerate(r.rhos):
        amplitude = theory.sam_two_cycle_amplitude(lam, cfg.lr, rho)
        last, before = r.paths[i, 0, -1, 0], r.paths[i, 0, -2, 0]
        assert abs(abs(last) - amplitude) < 1e-6
        assert abs(last + before) < 1e-6  # a 2-cycle: w_T = −w_{T−1}
    # and the amplitude grows with ρ (the root of both claims, theory.md §2)
    assert np.all(np.diff(np.abs(r.final[:, 0, 0])) > 0)


# The asymmetric valley (theory.md §4): a_L = 10, a_R = 1, η = 0.05, σ = 1.
# 2,000 particles, time averages over 2,000 steps after 500 of burn-in (20M particle-steps, the
# core.limits cap). Per-particle time averages have sd ≈ 0.011, so the mean over 2,000 particles has
# SE ≈ 0.00025: 0.28% of E[w] ≈ 0.09 at ρ = 0 and 0.13% at ρ = 0.2. The 2% (chain) margin is 7 SE,
# the 3% margin ≥ 10 SE, and the ρ steps (≥ 0.02) are ≥ 80 SE. The closed form is a continuous-time
# approximation that theory.md reports 4% low (0.0863 vs 0.0901), which leaves ~1% = 3.5 SE of the
# 5% margin. The exact chain (1000 cells) is accurate to < 0.1%.
VALLEY_RHOS = (0.0, 0.05, 0.1, 0.2)


@pytest.fixture(scope="module")
def valley_run():
    cfg = VALLEY.config.replace(rhos=VALLEY_RHOS, particles=2000, steps=2500, burn_in=500, seed=11)
    return cfg, simulate(cfg)  # ρ = 0 … 0.2 in one run, the same noise for every ρ


def test_sgd_valley_mean_matches_exact_chain_and_closed_form(valley_run):
    """SGD's stationary mean: exact grid chain within 2%, closed form √(ησ²/π)(a_R^−½ − a_L^−½) within 5%."""
    cfg, r = valley_run
    p = dict(cfg.landscape_params)
    sm = measure.stationary_mean(r)
    assert r.rhos[0] == 0.0  # SAM with ρ = 0 is SGD exactly (tests/test_simulate.py)
    sgd = sm.mean[0]
    chain = theory.exact_chain_valley(p["a_left"], p["a_right"], cfg.lr, cfg.sigma, rho=0.0).mean
    closed = theory.valley_mean_sgd_closed_form(p["a_left"], p["a_right"], cfg.lr, cfg.sigma)
    assert sgd > 0  # towards the flat side
    assert abs(sgd / chain - 1) < 0.02
    assert abs(sgd / closed - 1) < 0.05
    assert sm.ci_high[0] - sm.ci_low[0] < 0.002  # the 95% interval: SE ≤ 0.0005 as assumed above


def test_sam_valley_mean_grows_with_rho_and_matches_exact_chain(valley_run):
    """Claim 2: SAM ends further on the flat side the larger ρ is; the exact chain predicts it (3%)."""
    cfg, r = valley_run
    p = dict(cfg.landscape_params)
    means = measure.stationary_mean(r).mean
    assert np.all(np.diff(means) > 0), means
    for rho, m in zip(r.rhos[1:], means[1:]):
        chain = theory.exact_chain_valley(p["a_left"], p["a_right"], cfg.lr, cfg.sigma, rho=rho).mean
        assert abs(m / chain - 1) < 0.03, (rho, m, chain)


def test_sam_escapes_the_sharp_well_more_the_larger_rho():
    """Claim 1 on the ESCAPE preset (double well, η = 0.05, σ = 2.5, 300 steps): the escaped
    fraction by step T exceeds SGD's (ρ = 0) and increases with ρ.
    4,000 particles, the same noise draws for every ρ: the difference of two fractions has
    SE = √(discordant fraction / N) ≈ √(0.06/4000) ≈ 0.004 (about 6% of particles change outcome
    between neighbouring ρ); the differences are ≈ 0.04, about 10 SE."""
    cfg = ESCAPE.config.replace(particles=4000, seed=5)
    assert cfg.rhos[0] == 0.0 and len(cfg.rhos) >= 4
    r = simulate(cfg)
    frac = (r.first_passage >= 0).mean(axis=1)
    assert np.all(frac[1:] > frac[0])
    assert np.all(np.diff(frac) > 0), frac
    assert 0.2 < frac[0] < 0.6  # the preset is tuned so escapes take hundreds of steps


def test_sgd_mean_escape_time_matches_the_exact_chain_and_kramers_is_low():
    """theory.md §3 on the ESCAPE preset (η = 0.05, σ = 2.5, T = ησ²/2): 2,000 SGD particles for 4,000 steps.

    Exact: the x-coordinate of the 2-D double well is a 1-D chain of its own, so its mean first-passage time
    into the flat basin is theory.double_well_escape_steps (grid chain, m = (I − Q)⁻¹1, ≈ 589 steps). The
    simulated mean over the escaped particles must lie within 4 standard errors of it (SE from the particles'
    own spread, ≈ 2%), plus the bias of counting only those that escaped by step N: at most
    P(not escaped)·(N + τ), since a particle still in the well at N needs another τ on average.

    Kramers, τ ≈ (2π/√(λ_min|λ_s|))·exp(ΔL/T)/η ≈ 509, is an asymptotic formula for ΔL ≫ T; here ΔL/T ≈ 3 and
    it comes out below the exact value by 10–20% (its first correction is of order T/ΔL)."""
    cfg = ESCAPE.config.replace(optimizer="sgd", rhos=(0.0,), particles=2000, steps=4000, seed=2,
                                record_points=2, keep_paths=0)
    r = simulate(cfg)
    fp = r.first_passage[0]
    stats = measure.escape_stats(fp, cfg.steps, n_boot=0)
    assert stats.escaped_fraction > 0.99
    land = make_landscape(cfg.landscape)
    exact = theory.double_well_escape_steps(land, cfg.lr, cfg.sigma)
    escaped = fp[fp >= 0]
    se = escaped.std(ddof=1) / np.sqrt(escaped.size)
    truncation = (1 - stats.escaped_fraction) * (cfg.steps + exact)
    assert abs(stats.mean_escape_step - exact) < 4 * se + truncation, (stats.mean_escape_step, exact, se)
    tau = theory.kramers_escape_steps(*land.escape_geometry(), cfg.lr, cfg.sigma)
    assert 0.8 < tau / exact < 0.9, (tau, exact)


def test_zhu_toy_success_peaks_at_an_intermediate_rho():
    """theory.md §3, where the claim stops holding: on Zhu et al.'s toy with real minibatch noise,
    SGD never leaves the sharp basin, a small ρ carries SAM to the flat one, and a larger ρ traps
    it near the ridge. 300 particles: a success fraction has SE ≤ 0.03; the peak must beat both
    ends by 0.5 (> 15 SE)."""
    cfg = ZHU_BREAKS.config.replace(particles=300, seed=1)
    r = simulate(cfg)
    land = make_landscape("zhu")
    success = land.basin(torch.tensor(r.final)).eq(1).double().mean(dim=1).numpy()
    peak = int(np.argmax(success))
    assert 0 < peak < len(cfg.rhos) - 1, success
    assert success[peak] - success[0] > 0.5 and success[peak] - success[-1] > 0.5, success


def test_one_step_escaping_efficiency_with_shared_noise():
    """theory.md §3 (exact): one step from the minimum of λw²/2, both SAM passes sharing ξ:
    E[L₁] = (λ/2)η²(σ² + 2√(2/π)λρσ + λ²ρ²). With independent draws per pass the cross term would
    vanish (2.0 instead of 3.6 in units of (λ/2)η²σ² here). 20,000 particles: L₁ has relative
    sd ≈ √2, so SE ≈ 1%; margin 5%."""
    lam, lr, sigma = 10.0, 0.05, 1.0
    base = SAM_BOUNCE.config.replace(noise="isotropic", sigma=sigma, rhos=(0.0, 0.1), particles=20_000, steps=1,
                                     start=(0.0,), record_points=2, keep_paths=0, seed=4)
    r = simulate(base)
    for i, rho in enumerate(r.rhos):
        mc = r.final_loss[i].mean()
        assert mc == pytest.approx(theory.one_step_loss(lam, lr, sigma, rho), rel=0.05)


def test_psam_costs_65_percent_of_sam():
    """The thesis: PSAM with f = 0.6, k = 2 costs 65% of SAM's gradient evaluations."""
    r = simulate(PSAM.config.replace(particles=10))
    T = PSAM.config.steps
    assert r.grad_evals / (2 * T) == pytest.approx(0.65, abs=1 / T)
