"""Statistics shared by both engines (toy simulator and CIFAR trainer): intervals and tests.

    wilson_interval   a 95% interval for a proportion (e.g. the escaped fraction of particles)
    t_critical_95     Student's t quantile for a two-sided 5% test, any (fractional) df
    welch_difference  two groups of seeds (e.g. SAM's and SGD's test accuracies): the difference of their
                      means, Welch's t, and whether it is clear of the seed noise at the 5% level
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
