"""Tests of core/schedules.py: which steps are SAM steps, and what they cost."""

import numpy as np
import pytest

from core.methods import for_optimizer
from core.schedules import KINDS, Schedule


def test_psam_f06_k2_costs_65_percent_of_sam():
    """Thesis: PSAM at f/k = 0.3 costs (1 + f/k)/2 = 0.65 of SAM."""
    s = Schedule("psam", k=2, f=0.6)
    assert s.sam_steps(1000) == 300
    assert s.grad_evals(1000) == 1300
    assert s.relative_cost(1000) == pytest.approx(0.65)


@pytest.mark.parametrize("f,k", [(0.5, 3), (0.2, 1), (1.0, 4), (0.6, 5)])
def test_psam_cost_formula(f, k):
    s = Schedule("psam", k=k, f=f)
    assert s.relative_cost(6000) == pytest.approx((1 + f / k) / 2, abs=1e-3)


def test_psam_steps_are_early_and_periodic():
    m = Schedule("psam", k=3, f=0.5).mask(20)
    assert list(np.flatnonzero(m)) == [0, 3, 6, 9]


def test_late_sam_uses_only_the_last_fraction():
    m = Schedule("late", f=0.3).mask(10)
    assert list(np.flatnonzero(m)) == [7, 8, 9]


def test_never_always_every_k():
    assert Schedule("never").grad_evals(50) == 50
    assert Schedule("always").grad_evals(50) == 100
    assert Schedule("always").relative_cost(50) == 1.0
    assert Schedule("every_k", k=4).sam_steps(20) == 5


def test_random_is_seeded_and_is_sam_step_agrees_with_mask():
    a, b = Schedule("random", p=0.4, seed=3), Schedule("random", p=0.4, seed=4)
    ma = a.mask(500)
    assert np.array_equal(ma, a.mask(500))
    assert not np.array_equal(ma, b.mask(500))
    assert abs(ma.mean() - 0.4) < 0.07  # 500 Bernoulli(0.4): sd 0.022, so 3 sd
    assert [a.is_sam_step(t, 500) for t in range(40)] == list(ma[:40])


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "ae"])  # AE-SAM has no mask: see below
def test_is_sam_step_matches_mask(kind):
    s = Schedule(kind, k=3, f=0.4, p=0.5)
    assert [s.is_sam_step(t, 30) for t in range(30)] == list(s.mask(30))
    assert not s.is_sam_step(-1, 30) and not s.is_sam_step(30, 30)  # outside the run: no SAM step


def test_every_k_and_always_masks_step_by_step():
    """SAM-k: steps 0, k, 2k, … (the first step is a SAM step, as in PSAM's early phase); always/never."""
    assert list(np.flatnonzero(Schedule("every_k", k=4).mask(10))) == [0, 4, 8]
    assert list(np.flatnonzero(Schedule("every_k", k=1).mask(3))) == [0, 1, 2]
    assert Schedule("always").mask(4).all() and not Schedule("never").mask(4).any()


@pytest.mark.parametrize("bad", [dict(kind="nope"), dict(k=0), dict(f=1.5), dict(p=-0.1), dict(f=float("nan"))])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        Schedule(**bad)


def test_for_optimizer():
    assert for_optimizer("asam") == (Schedule("always"), True)
    s, ad = for_optimizer("late_sam", late_f=0.25)
    assert s.kind == "late" and s.f == 0.25 and not ad
    with pytest.raises(ValueError):
        for_optimizer("adam")


@pytest.mark.parametrize("name", ["sgd", "sam", "psam", "late_sam", "every_k", "random_sam"])
@pytest.mark.parametrize("budget", [1, 2, 7, 200, 1001])
def test_steps_within_budget_is_the_largest_that_fits(name, budget):
    s, _ = for_optimizer(name, k=3, f=0.5, p=0.4, seed=1)
    t = s.steps_within_budget(budget)
    assert t >= 1
    assert s.grad_evals(t) <= budget or t == 1
    assert s.grad_evals(t + 1) > budget
    if name == "sgd":
        assert t == budget
    if name == "sam":
        assert t == max(1, budget // 2)


# --- the budget tournament's schedules (issue 13) -----------------------------------------------------------

import math  # noqa: E402

import torch  # noqa: E402

from core.methods import OPTIMIZERS  # noqa: E402
from core.schedules import AESAMRule  # noqa: E402


def test_composer_takes_the_last_step_of_each_interval_and_scales_rho():
    """mosaicml/composer's SAMOptimizer: SAM when (global_step + 1) % interval == 0; ρ proportional to it."""
    s = Schedule("composer", k=4)
    assert list(np.flatnonzero(s.mask(10))) == [3, 7]
    assert s.rho_scale == 4.0 and Schedule("every_k", k=4).rho_scale == 1.0
    assert Schedule("composer", k=1).mask(5).all()  # interval 1 is SAM


def test_ss_sam_constant_is_random_sam_and_linear_and_step_follow_p_of_t():
    assert np.array_equal(Schedule("ss", p=0.3, seed=7).mask(400), Schedule("random", p=0.3, seed=7).mask(400))
    lin = Schedule("ss", p=0.0, p_end=0.8, p_shape="linear", seed=2)
    m = lin.mask(4000)
    # p(t) = 0.8 t/T: mean 0.4; first quarter mean 0.1, last quarter 0.7 (1000 Bernoulli each: sd ≤ 0.016,
    # so 0.05 is more than 3 sd)
    assert abs(m.mean() - 0.4) < 0.03 and abs(m[:1000].mean() - 0.1) < 0.05 and abs(m[3000:].mean() - 0.7) < 0.05
    step = Schedule("ss", p=0.1, p_end=0.9, p_shape="step", switch=0.25, seed=3).mask(4000)
    assert abs(step[:1000].mean() - 0.1) < 0.05 and abs(step[1000:].mean() - 0.9) < 0.05
    assert Schedule("ss", p=1.0).mask(50).all() and not Schedule("ss", p=0.0).mask(50).any()  # p ≡ 1 is SAM, 0 SGD


def test_looksam_and_momentum_sam_costs():
    assert Schedule("looksam", k=5).grad_evals(100) == 120  # 1 + 1/k a step
    assert Schedule("looksam", k=3).grad_evals(10) == 14  # steps 0, 3, 6, 9
    assert Schedule("msam").grad_evals(100) == 100 and Schedule("msam").relative_cost(100) == 0.5


def test_ae_sam_has_no_mask_and_says_so():
    s = Schedule("ae")
    assert s.state_dependent
    for call in (lambda: s.mask(10), lambda: s.grad_evals(10), lambda: s.is_sam_step(0, 10)):
        with pytest.raises(ValueError, match="gradient norm"):
            call()


def test_ae_sam_rule_by_hand():
    """μ_t = δμ + (1−δ)s_t, σ²_t = δσ² + (1−δ)(s_t − μ_t)², c_t = (t/T)λ₁ + (1−t/T)λ₂, SAM iff s_t ≥ μ_t + c_t σ_t;
    μ starts at the first sample, σ² at 0. Recomputed here in plain floats."""
    s = [4.0, 1.0, 9.0, 2.0, 2.5, 30.0, 1.0, 3.0]
    rule = AESAMRule(lam1=-0.5, lam2=1.5, delta=0.8, total_steps=len(s))
    mu, var, expected = s[0], 0.0, []
    for t, x in enumerate(s):
        if t:
            mu = 0.8 * mu + 0.2 * x
            var = 0.8 * var + 0.2 * (x - mu) ** 2
        c = (t / len(s)) * -0.5 + (1 - t / len(s)) * 1.5
        expected.append(x >= mu + c * math.sqrt(var))
    got = [rule.decide(x, t) for t, x in enumerate(s)]
    assert got == expected and rule.taken == sum(expected)
    assert 0 < sum(expected) < len(s)  # the sequence exercises both branches
    # the tensor form (one statistic per particle) decides the same, element by element
    trule = AESAMRule(lam1=-0.5, lam2=1.5, delta=0.8, total_steps=len(s))
    both = [trule.decide(torch.tensor([x, x]), t) for t, x in enumerate(s)]
    assert [bool(b[0]) for b in both] == expected and trule.taken.tolist() == [sum(expected)] * 2


def test_ae_sam_infinite_thresholds_are_sam_and_sgd():
    always = AESAMRule(-math.inf, -math.inf, 0.9, 10)
    never = AESAMRule(math.inf, math.inf, 0.9, 10)
    s = [1.0, 100.0, 0.0, 5.0, 1e-9]
    assert all(always.decide(x, t) for t, x in enumerate(s)) and always.taken == len(s)
    assert not any(never.decide(x, t) for t, x in enumerate(s)) and never.taken == 0
    with pytest.raises(ValueError):
        AESAMRule(-math.inf, math.inf)


def test_ae_sam_expected_fraction_under_the_gaussian_guess():
    """1 − Φ(c) averaged over the linear threshold: (−1, 1) is symmetric about 0, so about one half."""
    assert Schedule("ae", lam1=-1, lam2=1).expected_sam_fraction(1000) == pytest.approx(0.5, abs=0.01)
    assert Schedule("ae", lam1=2, lam2=2).expected_sam_fraction(10) == pytest.approx(0.02275, abs=1e-4)
    assert Schedule("psam", k=2, f=0.6).expected_sam_fraction(1000) == 0.3


@pytest.mark.parametrize("bad", [dict(p_shape="cosine"), dict(p_end=1.2), dict(switch=-0.1), dict(delta=1.0),
                                 dict(lam1=float("nan"))])
def test_bad_new_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        Schedule("ss", **bad)


def test_every_tournament_method_has_a_name():
    for name in ("ae_sam", "looksam", "msam", "ss_sam", "composer"):
        s, adaptive = for_optimizer(name, k=5, p=0.2, p_end=0.6, p_shape="linear", lam1=-2, lam2=0)
        assert s.kind == OPTIMIZERS[name][0] and not adaptive
    assert for_optimizer("ae_sam", lam1=-2, lam2=0)[0].lam1 == -2
