"""core.stats' paired comparisons: the paired t (and its p value), Holm's correction, Fieller's ratio
interval.

Each is checked against an independent computation (a one-sample t written out by hand, closed forms of
Student's t for df 1 and 2) or a textbook value (Student's sleep data, R's `t.test(extra ~ group, paired =
TRUE)`)."""

from __future__ import annotations

import math

import pytest

from core.stats import (
    fieller_ratio,
    holm,
    incomplete_beta,
    paired_difference,
    t_critical_95,
    t_two_sided_p,
)

# Student (1908) / Cushny & Peebles: extra hours of sleep of 10 patients under two drugs (R's `sleep` data
# set)
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def _one_sample_t(d: list[float]) -> tuple[float, float, float]:
    """mean, sd (n − 1), t = mean / (sd/√n), written out without numpy."""
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return mean, sd, mean / (sd / math.sqrt(n))


def test_paired_t_on_students_sleep_data():
    """R: t = −4.0621, df = 9, p-value = 0.002833, 95% CI (−2.4598858, −0.7001142), mean difference −1.58."""
    d = paired_difference(DRUG1, DRUG2)
    assert d.n == 10 and d.df == 9
    assert d.diff == pytest.approx(-1.58, abs=1e-12)
    assert d.t == pytest.approx(-4.0621, abs=5e-5)
    assert d.p == pytest.approx(0.002833, abs=5e-7)
    assert d.ci[0] == pytest.approx(-2.4598858, abs=1e-6) and d.ci[1] == pytest.approx(-0.7001142, abs=1e-6)
    assert d.clear


def test_paired_t_is_a_one_sample_t_on_the_differences():
    a = [41.2, 39.8, 44.0, 38.5, 40.1, 42.7]
    b = [38.0, 37.9, 40.2, 37.7, 36.0, 40.1]
    mean, sd, t = _one_sample_t([x - y for x, y in zip(a, b)])
    d = paired_difference(a, b)
    assert d.diff == pytest.approx(mean, rel=1e-12)
    assert d.sd == pytest.approx(sd, rel=1e-12)
    assert d.t == pytest.approx(t, rel=1e-12)
    # and the pairing matters: unpaired (Welch) the same numbers give t 2.6, paired 5.4 (seed luck is shared)
    assert abs(d.t) > 2 * abs((sum(a) / 6 - sum(b) / 6) / math.sqrt(_var(a) / 6 + _var(b) / 6))


def _var(x):
    m = sum(x) / len(x)
    return sum((v - m) ** 2 for v in x) / (len(x) - 1)


def test_paired_by_seed_ids_not_by_position():
    """Seeds listed in another order, one seed missing on one side: pairs are made by seed id."""
    a, seeds_a = [0.50, 0.40, 0.45], [3, 1, 2]
    b, seeds_b = [0.30, 0.41, 0.20], [1, 2, 0]     # seed 3 ran only in a, seed 0 only in b
    d = paired_difference(a, b, seeds_a, seeds_b)
    assert d.n == 2 and d.seeds == [1, 2]
    assert d.diff == pytest.approx(((0.40 - 0.30) + (0.45 - 0.41)) / 2)
    assert paired_difference([1.0], [2.0]) is None             # one pair: no spread
    assert paired_difference([1.0, float("nan"), 2.0], [0.5, 1.0, 1.0]).n == 2


def test_identical_differences_are_clear_without_dividing_by_zero():
    d = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert d.sd == 0.0 and math.isinf(d.t) and d.p == 0.0 and d.clear
    same = paired_difference([1.0, 2.0], [1.0, 2.0])
    assert same.t == 0.0 and same.p == 1.0 and not same.clear


def test_t_p_value_against_closed_forms():
    for t in (0.3, 1.0, 2.5, 12.7):
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-10)    # Cauchy
        assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)
        assert t_two_sided_p(-t, 2) == t_two_sided_p(t, 2)
    for df in (1, 3, 4, 9, 29):  # the critical value (another method: Simpson + bisection) gives 5%
        assert t_two_sided_p(t_critical_95(df), df) == pytest.approx(0.05, abs=1e-6)
    assert t_two_sided_p(1.959963984540054, math.inf) == pytest.approx(0.05, abs=1e-12)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)


def test_incomplete_beta_identities():
    for x in (0.05, 0.3, 0.7, 0.99):
        assert incomplete_beta(1.0, 1.0, x) == pytest.approx(x, rel=1e-12)
        assert incomplete_beta(3.0, 1.0, x) == pytest.approx(x ** 3, rel=1e-10)
        assert incomplete_beta(2.5, 4.0, x) == pytest.approx(1 - incomplete_beta(4.0, 2.5, 1 - x), abs=1e-12)


def test_holm_on_a_worked_example():
    """m = 4, p = (0.01, 0.04, 0.03, 0.005). Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06,
    0.04·1 = 0.04 → max(0.06, 0.04) = 0.06. At 5%: the first two sorted are rejected, then Holm stops."""
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]


def test_holm_rejects_more_than_bonferroni():
    """p = (0.01, 0.02, 0.03): Bonferroni (0.05/3 = 0.0167) rejects only the first; Holm compares them with
    0.05/3, 0.05/2, 0.05/1 in turn and rejects all three (adjusted 0.03, 0.04, 0.04)."""
    adjusted, rejected = holm([0.03, 0.01, 0.02])
    assert adjusted == pytest.approx([0.04, 0.03, 0.04])
    assert rejected == [True, True, True]
    assert sum(p * 3 < 0.05 for p in (0.03, 0.01, 0.02)) == 1
    adjusted, rejected = holm([0.2, float("nan"), 0.001])     # no test: left out of m, not rejected
    assert adjusted[2] == pytest.approx(0.002) and adjusted[0] == pytest.approx(0.2)
    assert math.isnan(adjusted[1])
    assert rejected == [False, False, True]


def test_fieller_interval_ends_where_the_paired_test_does():
    """At each end θ of Fieller's interval, the one-sample t of num_s − θ·den_s is ±t_{0.975, n−1}."""
    num = [2.1, 1.4, 3.0, 2.2, 1.9]     # e.g. a method's points over SGD, per seed
    den = [4.0, 3.1, 5.2, 4.4, 3.9]     # SAM's points over SGD on the same seeds
    theta, lo, hi = fieller_ratio(num, den)
    assert theta == pytest.approx(sum(num) / sum(den))
    assert lo < theta < hi
    tc = t_critical_95(4)
    for end in (lo, hi):
        _, _, t = _one_sample_t([x - end * y for x, y in zip(num, den)])
        assert abs(t) == pytest.approx(tc, rel=1e-8)


def test_fieller_with_an_exact_denominator_is_the_scaled_t_interval():
    num = [0.8, 1.3, 0.2, 1.1]
    theta, lo, hi = fieller_ratio(num, [2.0] * 4)
    mean, sd, _ = _one_sample_t(num)
    half = t_critical_95(3) * sd / 2.0
    assert (lo, hi) == pytest.approx(((mean - half) / 2.0, (mean + half) / 2.0), rel=1e-10)


def test_fieller_is_unbounded_when_sams_gain_is_noise():
    theta, lo, hi = fieller_ratio([0.5, -0.2, 0.3], [1.0, -1.5, 0.8])
    assert math.isfinite(theta) and lo == -math.inf and hi == math.inf
    assert all(math.isnan(x) for x in fieller_ratio([1.0], [2.0]))
