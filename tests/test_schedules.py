"""Tests of core/schedules.py: which steps are SAM steps, and what they cost."""

import numpy as np
import pytest

from core.schedules import KINDS, Schedule, for_optimizer


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
