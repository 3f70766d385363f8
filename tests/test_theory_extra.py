"""Tests for the calculations that moved from app/stats_charts.py into core/:

- theory.closed_form_density: SGD's stationary (Gibbs) density p ∝ exp(−2L/(ησ²)) (theory.md §4).
- measure.final_outcomes: where each particle ends on Zhu et al.'s toy (success / stayed / trapped).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from core.toy import measure, theory
from core.toy.landscapes import make_landscape


def test_closed_form_density_mean_matches_theory():
    # theory.md §4: p ∝ exp(−2L/(ησ²)) has mean √(ησ²/π)(a_R^(−1/2) − a_L^(−1/2)); on a fine grid the
    # numerical mean must agree to 1e-3 relative (grid step 1e-4 over ±1, tails below e^−100).
    a_l, a_r, lr, sigma = 10.0, 1.0, 0.05, 1.0
    w = np.linspace(-1.0, 1.0, 20001)
    loss = np.where(w < 0, a_l, a_r) * w * w / 2
    p = theory.closed_form_density(w, loss, lr, sigma)
    mean = np.trapezoid(p * w, w)
    assert math.isclose(mean, theory.valley_mean_sgd_closed_form(a_l, a_r, lr, sigma), rel_tol=1e-3)
    assert theory.closed_form_density(w, loss, lr, 0.0) is None  # no noise: no stationary density


def test_closed_form_density_of_a_quadratic_is_the_gaussian():
    # On L = a w²/2 the density exp(−a w²/(ησ²)) is Gaussian with variance ησ²/(2a), integrates to 1.
    # Grid ±2 holds > 1 − 1e-30 of the mass (σ_w ≈ 0.11); trapezoid on 40 001 points: error < 1e-6.
    a, lr, sigma = 4.0, 0.1, 1.0
    w = np.linspace(-2.0, 2.0, 40001)
    p = theory.closed_form_density(w, a * w * w / 2, lr, sigma)
    assert math.isclose(np.trapezoid(p, w), 1.0, rel_tol=1e-6)
    assert math.isclose(np.trapezoid(p * w * w, w), lr * sigma**2 / (2 * a), rel_tol=1e-4)


def test_final_outcomes_classifies_each_particle():
    # Zhu's toy: minima[0] is the sharp start, basin 1 the flat minimum near (−1, −1).
    land = make_landscape("zhu")
    start = np.asarray(land.minima[0].position)
    flat = np.asarray(land.minima[1].position)
    final = np.array([flat, flat + 0.05, flat - 0.05,     # 3 in the target basin: success
                      start, start + 0.01,                 # 2 within 0.1 of the start: stayed
                      [0.5, 0.5], [np.nan, np.nan]])       # 1 in between, 1 diverged: trapped
    diverged = np.array([False] * 6 + [True])
    result = SimpleNamespace(rhos=(0.0, 0.1), final=np.stack([final, final[::-1]]),
                             diverged=np.stack([diverged, diverged[::-1]]))
    out = measure.final_outcomes(result, land, target=1, near=0.1)
    for i in range(2):  # the same particles in another order give the same fractions
        assert out["success"][i] == 3 / 7 and out["stayed"][i] == 2 / 7 and out["trapped"][i] == 2 / 7
        for key in ("success", "stayed", "trapped"):
            lo, hi = out[key + "_ci"]
            assert lo[i] < out[key][i] < hi[i]  # the Wilson interval holds its own estimate
    assert list(out["diverged"]) == [1, 1]
    assert np.allclose(out["rhos"], [0.0, 0.1])
