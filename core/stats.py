"""Statistics shared by both engines (toy simulator and CIFAR trainer): intervals and tests.

    wilson_interval   a 95% interval for a proportion (e.g. the escaped fraction of particles)
    t_critical_95     Student's t quantile for a two-sided 5% test, any (fractional) df
    welch_difference  two groups of seeds (e.g. SAM's and SGD's test accuracies): the difference of their
                      means, Welch's t, and whether it is clear of the seed noise at the 5% level
    paired_difference the same seeds on both sides (same initialisation, data order, label noise): the mean
                      per-seed difference, the paired t, its p value (t_two_sided_p) and 95% interval
    holm              Holm's step-down correction of several p values (one per method compared)
    fieller_ratio     a ratio of two paired means with Fieller's interval (the share of SAM's gain kept)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from core.jsonable import to_jsonable

Z95 = 1.959963984540054  # standard normal quantile for a two-sided 95% interval


class _ToDict:
    def to_dict(self) -> dict:
        """JSON-able dict: arrays become lists, NaN and inf become None."""
        return to_jsonable(self)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927). Unlike p ± z√(p(1−p)/n) it
    stays inside [0, 1] and is not empty at p = 0 or 1. (NaN, NaN) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # at p = 0 (or 1) the bound is exactly 0 (or 1); say so rather than keep a rounding error
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)


def _t_density(x: np.ndarray, df: float) -> np.ndarray:
    """Student's t density with `df` degrees of freedom."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    return c * (1 + x * x / df) ** (-(df + 1) / 2)


@functools.lru_cache(maxsize=256)  # a page asks again for the same df on every rerun
def t_critical_95(df: float) -> float:
    """The t beyond which a two-sided test rejects at 5%: the t with P(|T| ≤ t) = 2 ∫₀ᵗ f_df(x) dx = 0.95 for
    Student's t with `df` degrees of freedom (any df ≥ 1; Welch's is rarely whole). The integral by Simpson's
    rule on 2000 intervals, the t by bisection between the normal's 1.96 and the Cauchy's 12.71 (df = 1)."""
    df = max(1.0, float(df))
    if math.isinf(df):
        return Z95

    def inside(t: float) -> float:  # P(|T| ≤ t)
        y = _t_density(np.linspace(0.0, t, 2001), df)
        return 2 * (t / 6000) * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum())

    lo, hi = Z95, 13.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if inside(mid) < 0.95 else (lo, mid)
    return (lo + hi) / 2


@dataclass
class Difference(_ToDict):
    """`welch_difference`: the difference of two means, with Welch's t and its degrees of freedom."""

    diff: float    # mean(a) − mean(b)
    t: float       # diff / standard error
    df: float      # Welch–Satterthwaite degrees of freedom
    n_a: int
    n_b: int
    clear: bool    # |t| above the two-sided 5% critical value: more than the seeds' noise explains


def welch_difference(a, b) -> Difference | None:
    """Welch's two-sample comparison, for groups of seeds whose spreads may differ:

        t  = (ā − b̄) / √(s_a²/n_a + s_b²/n_b)
        df = (s_a²/n_a + s_b²/n_b)² / ( (s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1) )

    with s² the sample variances (ddof 1). Non-finite values are dropped; None when a group has fewer than
    two values left (no spread to compare with)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    if va + vb == 0.0:  # every seed gave the same number on both sides
        return Difference(diff, math.copysign(math.inf, diff) if diff else 0.0, math.inf, len(a), len(b), diff != 0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return Difference(diff, t, df, len(a), len(b), abs(t) > t_critical_95(df))


# --- paired comparisons (every method ran on the same seeds) ----------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (Lentz's method; Numerical Recipes
    §6.4, eq. 6.4.5)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for aa in (even, odd):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, by its continued fraction (on the side where it
    converges fast: I_x(a, b) = 1 − I_{1−x}(b, a))."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_{df/(df + t²)}(df/2, 1/2)."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2.0))
    return min(1.0, incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))


@dataclass
class PairedDifference(_ToDict):
    """`paired_difference`: the mean of per-seed differences a_s − b_s, its paired t, p and 95% interval."""

    diff: float                  # mean over the seeds of a_s − b_s
    sd: float                    # standard deviation of the differences (ddof 1)
    n: int                       # seeds in both groups
    t: float                     # diff / (sd / √n)
    df: int                      # n − 1
    p: float                     # two-sided
    ci: tuple[float, float]      # diff ± t_{0.975, n−1} · sd/√n
    clear: bool                  # p < 0.05 (before any correction for several comparisons)
    seeds: list = None           # the seeds paired (None: by position)


def paired_difference(a, b, seeds_a=None, seeds_b=None) -> PairedDifference | None:
    """The paired t test (Student 1908): two methods run on the same seeds (the same initialisation, data
    and label noise), so the seed's luck cancels in d_s = a_s − b_s, and

        d̄ = mean(d),  s_d = std(d, ddof 1),  t = d̄ / (s_d/√n),  df = n − 1,  CI = d̄ ± t_{0.975,n−1} s_d/√n

    (a one-sample t test on the differences). With `seeds_a`/`seeds_b` the values are paired by seed id (a
    seed missing on either side, or non-finite, is dropped); without, by position. None with fewer than two
    pairs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    seeds = None
    if seeds_a is not None and seeds_b is not None:
        ib = {s: i for i, s in enumerate(seeds_b)}
        seeds = [s for s in seeds_a if s in ib]
        ia = {s: i for i, s in enumerate(seeds_a)}
        a, b = np.array([a[ia[s]] for s in seeds]), np.array([b[ib[s]] for s in seeds])
    else:
        m = min(len(a), len(b))
        a, b = a[:m], b[:m]
    ok = np.isfinite(a) & np.isfinite(b)
    d = (a - b)[ok]
    if seeds is not None:
        seeds = [s for s, k in zip(seeds, ok) if k]
    n = int(d.size)
    if n < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half_unit = t_critical_95(n - 1) / math.sqrt(n)
    if sd == 0.0:  # every seed moved by exactly the same amount
        t = math.copysign(math.inf, mean) if mean else 0.0
        return PairedDifference(mean, 0.0, n, t, n - 1, 0.0 if mean else 1.0, (mean, mean), mean != 0.0,
                                seeds)
    t = mean / (sd / math.sqrt(n))
    p = t_two_sided_p(t, n - 1)
    ci = (mean - half_unit * sd, mean + half_unit * sd)
    return PairedDifference(mean, sd, n, t, n - 1, p, ci, p < 0.05,
                            seeds)


def holm(pvalues, alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction (Holm 1979) for m tests at family-wise level `alpha`: sort the p values,
    p_(1) ≤ … ≤ p_(m); the adjusted p_(i) is max_{j ≤ i} min(1, (m − j + 1) p_(j)); a hypothesis is rejected
    where its adjusted p is below `alpha` (which stops at the first sorted p_(i) > alpha/(m − i + 1)).
    NaN p values (no test) are left out of m and come back NaN and not rejected. Returns (adjusted, rejected)
    in the input's order."""
    p = [float(x) if x is not None else math.nan for x in pvalues]
    idx = sorted((i for i, x in enumerate(p) if math.isfinite(x)), key=lambda i: p[i])
    m = len(idx)
    adjusted = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted, [math.isfinite(x) and x < alpha for x in adjusted]


def fieller_ratio(num, den, level_t: float | None = None) -> tuple[float, float, float]:
    """The ratio of two paired means, θ = mean(num)/mean(den), with Fieller's 95% interval (Fieller 1954):
    the θ for which the paired t of num_s − θ·den_s stays inside ±t_{0.975,n−1}, i.e. the roots of

        θ² (d̄² − t² v_dd) − 2θ (n̄ d̄ − t² v_nd) + (n̄² − t² v_nn) = 0,   v = (co)variances of the means.

    Used for the share of SAM's gain a method keeps: num_s = method_s − SGD_s, den_s = SAM_s − SGD_s. Returns
    (θ, low, high); low/high are ∓inf when the denominator is not clear of zero (d̄² ≤ t² v_dd: the set is
    then unbounded), NaN with fewer than two pairs."""
    x, y = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = x.size
    if n < 2 or y.mean() == 0.0:
        return math.nan, math.nan, math.nan
    t = t_critical_95(n - 1) if level_t is None else level_t
    xm, ym = float(x.mean()), float(y.mean())
    vxx, vyy = float(x.var(ddof=1)) / n, float(y.var(ddof=1)) / n
    vxy = float(np.cov(x, y, ddof=1)[0, 1]) / n
    theta = xm / ym
    a = ym * ym - t * t * vyy
    b = xm * ym - t * t * vxy
    c = xm * xm - t * t * vxx
    if a <= 0.0:
        return theta, -math.inf, math.inf
    disc = b * b - a * c
    root = math.sqrt(max(0.0, disc))
    return theta, (b - root) / a, (b + root) / a
