"""Tests of the measurements (core/toy/measure.py): survival, escape statistics and their intervals on
synthetic data with a known truth, stationary means, one-step efficiency against theory.md §3,
compute cost, and one small ρ sweep through the real simulator."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from core import stats
from core.schedules import Schedule
from core.toy import measure, theory
from core.toy.simulate import SimConfig, simulate

# ---------------------------------------------------------------------------------------------
# Survival curve
# ---------------------------------------------------------------------------------------------


def test_survival_curve_counts_particles_still_inside_after_each_step():
    """S(t) = fraction with first passage > t (never = −1 counts as inside), checked by brute force."""
    rng = np.random.default_rng(0)
    fp = rng.integers(1, 60, size=500)
    fp[rng.random(500) < 0.3] = -1
    t, S = measure.survival_curve(fp, 50)
    assert t.tolist() == list(range(51))
    brute = [int(np.sum((fp == -1) | (fp > step))) for step in range(51)]
    # S(t) is a count over N = 500 computed in float64: at most a few roundings of a number ≤ 1 (≤ ~1e-16 each),
    # so S·N is within 1e-12 of an integer and rounds to the exact count: checked exactly, no tolerance.
    assert np.abs(S * 500 - np.rint(S * 500)).max() < 1e-12
    assert np.rint(S * 500).astype(int).tolist() == brute
    assert S[0] == 1.0 and np.all(np.diff(S) <= 0)


def test_survival_curve_of_nothing_is_nan():
    t, S = measure.survival_curve([], 3)
    assert t.tolist() == [0, 1, 2, 3] and np.isnan(S).all()


# ---------------------------------------------------------------------------------------------
# Escape statistics: edge cases
# ---------------------------------------------------------------------------------------------


def test_escape_stats_when_nobody_escaped():
    s = measure.escape_stats(np.full(40, -1), 100)
    assert s.n == 40 and s.escaped == 0 and s.escaped_fraction == 0.0
    assert s.escaped_fraction_ci[0] == 0.0 and 0 < s.escaped_fraction_ci[1] < 0.1
    assert s.median_escape_step is None and s.median_escape_step_ci == (None, None)
    assert s.mean_escape_step is None and s.mean_escape_step_ci == (None, None)
    json.dumps(s.to_dict())


def test_escape_stats_when_all_escaped_at_the_same_step():
    s = measure.escape_stats(np.full(25, 7), 100)
    assert s.escaped_fraction == 1.0 and s.escaped_fraction_ci[1] == 1.0
    assert s.median_escape_step == 7 and s.median_escape_step_ci == (7.0, 7.0)
    assert s.mean_escape_step == 7 and s.mean_escape_step_ci == (7.0, 7.0)


def test_escape_stats_of_an_empty_run():
    s = measure.escape_stats(np.array([], dtype=int), 100)
    assert s.n == 0 and math.isnan(s.escaped_fraction) and s.median_escape_step is None
    assert s.to_dict()["escaped_fraction"] is None  # JSON null, not NaN


def test_median_is_defined_exactly_when_at_least_half_escaped():
    """The median first passage is the first t with S(t) ≤ ½: None when under half escaped."""
    assert measure.escape_stats([5, 9, -1, -1, -1], 20).median_escape_step is None
    s = measure.escape_stats([5, 9, 3, -1, -1, -1], 20)  # exactly half
    assert s.median_escape_step == 9
    t, S = measure.survival_curve([5, 9, 3, -1, -1, -1], 20)
    assert t[np.argmax(S <= 0.5)] == 9
    assert s.median_escape_step_ci[1] is None  # many resamples have under half escaped


def test_wilson_interval_matches_published_values():
    """Wilson (1927) 95% intervals; reference values from Newcombe (1998), Table I:
    0/10 → (0, 0.2775), 15/148 → (0.0624, 0.1605), 81/263 → (0.2553, 0.3662)."""
    for (k, n), (lo, hi) in {(0, 10): (0.0, 0.2775), (15, 148): (0.0624, 0.1605), (81, 263): (0.2553, 0.3662)}.items():
        got = stats.wilson_interval(k, n)
        assert got[0] == pytest.approx(lo, abs=1e-4) and got[1] == pytest.approx(hi, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Escape statistics: the intervals cover the truth at about the nominal rate
# ---------------------------------------------------------------------------------------------


def test_bootstrap_intervals_cover_the_truth_on_exponential_data_at_about_95_percent():
    """Synthetic first passages ~ Exponential(mean 100), censored at 150 steps (then about 22%
    never escape), n = 200 particles, 400 independent repetitions. Truths:
      median = 100·ln 2 = 69.3;  fraction escaped = 1 − e^−1.5 = 0.777;
      mean conditional on escape by s = 150: E[T | T ≤ s] = 100 − s·e^(−s/100)/(1 − e^(−s/100)) = 56.96.
    Each 95% interval should contain its truth in about 95% of repetitions. With 400 repetitions
    the coverage estimate has s.d. √(0.95·0.05/400) = 1.1%; we accept [0.90, 0.99], i.e. −4.6 to
    +3.6 s.d. around 95%, which leaves room for the small known under-coverage of percentile
    bootstrap intervals at n = 200 (fixed seeds, so the outcome is reproducible)."""
    scale, steps, n, reps = 100.0, 150, 200, 400
    true_median = scale * math.log(2)
    true_fraction = 1 - math.exp(-steps / scale)
    true_conditional_mean = scale - steps * math.exp(-steps / scale) / (1 - math.exp(-steps / scale))
    rng = np.random.default_rng(2024)
    hits = {"median": 0, "fraction": 0, "mean": 0}
    for rep in range(reps):
        t = rng.exponential(scale, n)
        fp = np.where(t <= steps, t, -1)
        s = measure.escape_stats(fp, steps, n_boot=500, seed=rep)
        hits["median"] += s.median_escape_step_ci[0] <= true_median <= s.median_escape_step_ci[1]
        hits["fraction"] += s.escaped_fraction_ci[0] <= true_fraction <= s.escaped_fraction_ci[1]
        hits["mean"] += s.mean_escape_step_ci[0] <= true_conditional_mean <= s.mean_escape_step_ci[1]
    for name, k in hits.items():
        assert 0.90 <= k / reps <= 0.99, (name, k / reps)


def test_escape_stats_are_reproducible_for_a_seed():
    fp = np.random.default_rng(3).integers(1, 500, size=300)
    a = measure.escape_stats(fp, 500, seed=11).to_dict()
    b = measure.escape_stats(fp, 500, seed=11).to_dict()
    assert a == b


# ---------------------------------------------------------------------------------------------
# Stationary mean
# ---------------------------------------------------------------------------------------------


def test_stationary_mean_leaves_out_diverged_particles_and_gives_a_normal_interval():
    rng = np.random.default_rng(5)
    time_avg = rng.normal(0.1, 0.03, size=(2, 1000, 1))
    time_avg[1] += 0.05
    diverged = np.zeros((2, 1000), dtype=bool)
    diverged[1, :10] = True
    time_avg[1, :10, 0] = 1e9  # garbage in the diverged particles must not matter
    result = SimpleNamespace(rhos=np.array([0.0, 0.1]), time_avg=time_avg, diverged=diverged)
    s = measure.stationary_mean(result)
    assert s.n.tolist() == [1000, 990] and s.n_diverged.tolist() == [0, 10]
    kept = time_avg[1, 10:, 0]
    assert s.mean[1] == pytest.approx(kept.mean(), rel=1e-12)
    half = 1.959964 * kept.std(ddof=1) / math.sqrt(kept.size)
    assert s.ci_high[1] - s.mean[1] == pytest.approx(half, rel=1e-6)
    assert s.ci_low[0] < 0.1 < s.ci_high[0] and s.ci_low[1] < 0.15 < s.ci_high[1]
    json.dumps(s.to_dict())


# ---------------------------------------------------------------------------------------------
# One-step efficiency (theory.md §3)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam,rho", [(10.0, 0.0), (10.0, 0.05), (10.0, 0.2), (40.0, 0.1)])
def test_one_step_efficiency_monte_carlo_agrees_with_the_closed_form(lam, rho):
    """E[L₁] = (λ/2)η²(σ² + 2√(2/π)λρσ + λ²ρ²), simulated with core.sam's real perturbation
    (200,000 particles). Margin: 4 Monte Carlo standard errors, false-failure probability about 6e-5 per case
    with the fixed seed. The standard error is derived here, not taken from the code: L₁ = c(|ξ| + a)² with
    c = λη²/2, a = λρ, and the half-normal moments E|ξ| = σ√(2/π), Eξ² = σ², E|ξ|³ = 2σ³√(2/π), Eξ⁴ = 3σ⁴
    give Var L₁ = c²(E(|ξ| + a)⁴ − (E(|ξ| + a)²)²). The reported 95% interval must match it too."""
    n, lr, sigma = 200_000, 0.05, 1.0
    r = measure.one_step_efficiency(lam, lr, sigma, rho, n=n, seed=1)
    c, a, m1 = lam * lr * lr / 2, lam * rho, sigma * math.sqrt(2 / math.pi)
    m2 = sigma**2 + 2 * a * m1 + a * a
    m4 = 3 * sigma**4 + 4 * a * 2 * sigma**2 * m1 + 6 * a * a * sigma**2 + 4 * a**3 * m1 + a**4
    se = c * math.sqrt((m4 - m2 * m2) / n)
    assert c * m2 == pytest.approx(r.theory, rel=1e-12)
    assert abs(r.monte_carlo - r.theory) < 4 * se
    assert (r.ci[1] - r.ci[0]) / 2 == pytest.approx(1.959964 * se, rel=0.05)  # sample sd of 200,000: ~0.5%


def test_one_step_efficiency_grows_with_rho_and_sharpness():
    """Claim 1 (§3): SAM's first step from a minimum goes further uphill than SGD's, more so for
    larger ρ and sharper minima: the Monte Carlo ratio SAM/SGD increases in both."""
    ratio = {(lam, rho): measure.one_step_efficiency(lam, 0.02, 1.0, rho, n=50_000, seed=2).ratio_monte_carlo
             for lam in (5.0, 20.0) for rho in (0.05, 0.1)}
    assert 1 < ratio[(5.0, 0.05)] < ratio[(5.0, 0.1)] < ratio[(20.0, 0.1)]
    assert ratio[(5.0, 0.05)] < ratio[(20.0, 0.05)]


# ---------------------------------------------------------------------------------------------
# Compute cost
# ---------------------------------------------------------------------------------------------


def test_compute_cost_psam_is_65_percent_of_sam():
    """Thesis claim: PSAM with f = 0.6, k = 2 costs (1 + f/k)/2 = 65% of SAM."""
    cost = measure.compute_cost(SimConfig(optimizer="psam", f=0.6, k=2, steps=1000, particles=10))
    assert cost.relative_to_sam == pytest.approx(0.65)
    assert cost.grad_evals == 1300 and cost.total_grad_evals == 13_000
    assert measure.compute_cost(SimConfig(optimizer="sgd", steps=100)).relative_to_sam == 0.5
    assert measure.compute_cost(SimConfig(optimizer="sam", steps=100)).relative_to_sgd == 2.0


def test_compute_cost_agrees_with_the_simulator_and_the_schedule():
    cfg = SimConfig(landscape="valley_1d", optimizer="random_sam", p=0.3, steps=200, particles=20,
                    seed=4, rhos=(0.05, 0.1))
    cost = measure.compute_cost(cfg)
    assert cost.grad_evals == simulate(cfg).grad_evals
    assert cost.sam_steps == int(Schedule("random", p=0.3, seed=4).mask(200).sum())
    assert cost.total_grad_evals == cost.grad_evals * 20 * 2


def test_compute_cost_uses_every_schedule_parameter_of_the_config():
    """SS-SAM's p(t) and AE-SAM's decisions reach the cost: a linear p(t) from 0 to 1 costs (1 + 1/2)/2 of
    SAM, not the constant p's; AE-SAM's cost is the run's own count (it decides as it goes), refused without it."""
    lin = SimConfig(landscape="valley_1d", optimizer="ss_sam", p=0.0, p_shape="linear", p_end=1.0, steps=400,
                    particles=5, seed=1)
    cost = measure.compute_cost(lin)
    assert cost.grad_evals == simulate(lin).grad_evals
    assert abs(cost.relative_to_sam - 0.75) < 0.06   # 400 Bernoulli draws: sd of the mean p ≈ 0.014, 4 sd
    ae = SimConfig(landscape="valley_1d", optimizer="ae_sam", steps=200, particles=20, seed=2)
    with pytest.raises(ValueError, match="decisions"):
        measure.compute_cost(ae)
    run = simulate(ae)
    assert measure.compute_cost(ae, run).grad_evals == run.grad_evals


# ---------------------------------------------------------------------------------------------
# ρ sweep through the real simulator (integration)
# ---------------------------------------------------------------------------------------------


def test_rho_sweep_on_the_valley_agrees_with_the_exact_chain():
    """Claim 2 (§4) end to end: one simulate() call with ρ ∈ {0, 0.1}, a_L = 10, a_R = 1, η = 0.05,
    σ = 1. Each ρ's stationary mean must lie within 4 standard errors (+1% for float32 and the
    finite run) of the exact chain, and ρ = 0.1 must be further right than SGD."""
    cfg = SimConfig(landscape="valley_1d", landscape_params=(("a_left", 10.0), ("a_right", 1.0)),
                    optimizer="sam", lr=0.05, sigma=1.0, noise="isotropic", particles=2000, steps=1200,
                    burn_in=200, seed=0, keep_paths=5, record_points=20)
    sweep = measure.rho_sweep(cfg, [0.0, 0.1], n_boot=100)
    st = sweep.stationary
    assert st.rhos.tolist() == [0.0, 0.1] and st.n_diverged.tolist() == [0, 0]
    for i, rho in enumerate((0.0, 0.1)):
        chain = theory.exact_chain_valley(10.0, 1.0, 0.05, 1.0, rho).mean
        se = (st.ci_high[i] - st.mean[i]) / 1.959964
        assert abs(st.mean[i] - chain) < 4 * se + 0.01 * chain, (rho, st.mean[i], chain)
    assert st.mean[1] > st.mean[0]
    assert len(sweep.escape) == 2 and sweep.escape[0].n == 2000
    assert sweep.cost.relative_to_sam == 1.0
    out = json.loads(json.dumps(sweep.to_dict()))
    assert out["config"]["rhos"] == [0.0, 0.1]


# ---------------------------------------------------------------------------------------------
# Outcome per minimum label (PSAM page)
# ---------------------------------------------------------------------------------------------


def test_minimum_outcome_counts_flat_endings_leaves_out_diverged_and_keeps_a_real_interval():
    from core.toy.landscapes import make_landscape

    land = make_landscape("double_well_1d")
    flat = next(m.position for m in land.minima if m.label == "flat")
    sharp = next(m.position for m in land.minima if m.label == "sharp")
    n = 40
    final = np.array([flat] * 30 + [sharp] * 6 + [(np.nan,)] * 4, dtype=float)[None]
    diverged = np.zeros((1, n), bool)
    diverged[0, 36:] = True
    first_passage = np.array([[5] * 30 + [-1] * 10])
    final_loss = np.concatenate([np.full(36, 0.5), np.full(4, np.nan)])[None]
    r = SimpleNamespace(final=final, diverged=diverged, first_passage=first_passage, final_loss=final_loss)
    out = measure.minimum_outcome(r, land, "flat")
    assert out.n == 36 and out.diverged == 4
    assert out.fraction == pytest.approx(30 / 36)
    assert out.fraction_ci == pytest.approx(stats.wilson_interval(30, 36))
    assert out.left_start == pytest.approx(30 / 40) and out.mean_final_loss == pytest.approx(0.5)
    # all in the flat minimum: p = 1, yet the interval keeps a width (Wald's p ± z√(p(1−p)/n) would not)
    r.final, r.diverged = np.array([[flat] * n], float), np.zeros((1, n), bool)
    r.final_loss = np.full((1, n), 0.5)
    out = measure.minimum_outcome(r, land, "flat")
    assert out.fraction == 1.0 and out.fraction_ci[0] < 0.95 and out.fraction_ci[1] == pytest.approx(1.0)
    # everything diverged: no fraction, no crash
    r.diverged = np.ones((1, n), bool)
    out = measure.minimum_outcome(r, land, "flat")
    assert out.n == 0 and math.isnan(out.fraction) and math.isnan(out.mean_final_loss)
    json.dumps(out.to_dict())
    with pytest.raises(ValueError, match="no minimum labelled"):  # a typo is an error, not a fraction of 0
        measure.minimum_outcome(r, land, "flatt")


def test_t_critical_95_matches_the_standard_table():
    """Two-sided 5% critical values of Student's t from printed tables (independent of the integration)."""
    from core.stats import t_critical_95

    for df, table in ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (10, 2.228), (30, 2.042),
                      (120, 1.980)):
        assert t_critical_95(df) == pytest.approx(table, abs=1e-3)
    assert t_critical_95(float("inf")) == pytest.approx(1.959964, abs=1e-6)
    assert t_critical_95(0.3) == t_critical_95(1)                       # below 1 counts as 1
    assert t_critical_95(2) > t_critical_95(2.5) > t_critical_95(3)     # Welch's df is rarely whole


def test_welch_difference_by_hand():
    from core.stats import welch_difference

    # a = 1,2,3 and b = 4,5,6: s² = 1 each, se = √(1/3 + 1/3), t = −3/0.8165 = −3.674, df = 4 > critical 2.776
    d = welch_difference([1, 2, 3], [4, 5, 6])
    assert (d.diff, d.n_a, d.n_b) == (-3.0, 3, 3)
    assert d.t == pytest.approx(-3.0 / math.sqrt(2 / 3)) and d.df == pytest.approx(4.0) and d.clear
    # unequal spreads: s_a² = 1 (n 3), s_b² = 25 (n 3) → df = (1/3 + 25/3)² / ((1/3)²/2 + (25/3)²/2) = 2.15
    d = welch_difference([1, 2, 3], [0, 5, 10])
    assert d.df == pytest.approx((26 / 3) ** 2 / ((1 / 9 + 625 / 9) / 2)) and not d.clear
    assert welch_difference([1.0], [2.0, 3.0]) is None                 # no spread to compare with
    assert welch_difference([1, float("nan"), 2], [3, 4]).n_a == 2     # non-finite values are dropped
    same = welch_difference([2, 2], [1, 1])
    assert same.clear and same.t == math.inf and welch_difference([1, 1], [1, 1]).clear is False
