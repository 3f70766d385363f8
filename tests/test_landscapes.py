"""Tests of core/toy/landscapes.py: losses, gradients, critical points, curvatures, basins (theory.md §5)."""

import math

import numpy as np
import pytest
import torch

from core.toy.landscapes import LANDSCAPES, make_landscape

FORMULA = "(x^2 - 1)^2 + y^2 + 0.2*x"  # two minima near x = ±1 (the left one deeper), a saddle near 0


def build(name):
    return make_landscape(name, formula=FORMULA) if name == "formula" else make_landscape(name)


@pytest.mark.parametrize("name", list(LANDSCAPES))
def test_hand_written_gradient_matches_autograd(name):
    """grad(w) is ∇loss(w) for a batch of points (the simulator relies on the hand-written forms)."""
    land = build(name)
    gen = torch.Generator().manual_seed(1)
    lo = torch.tensor([b[0] for b in land.bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in land.bounds], dtype=torch.float64)
    w = lo + (hi - lo) * torch.rand(3, 40, land.dim, generator=gen, dtype=torch.float64)
    if name == "valley_1d":
        w = w[w[..., 0].abs() > 1e-6].view(-1, 1)  # the kink at 0 has no derivative
    wr = w.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(land.loss(wr).sum(), wr)
    torch.testing.assert_close(land.grad(w), auto, rtol=1e-9, atol=1e-9)
    assert land.loss(w).shape == w.shape[:-1]
    assert land.basin(w).shape == w.shape[:-1]


@pytest.mark.parametrize("name", [n for n in LANDSCAPES if n != "valley_1d"])
def test_critical_points_are_critical_and_of_the_right_kind(name):
    """∇L = 0 at every listed minimum and saddle; minima have H ⪰ 0, saddles a negative curvature."""
    land = build(name)
    assert land.minima, "every family here has at least one minimum"
    for c in land.minima + land.saddles:
        g = land.grad(torch.tensor(c.position, dtype=torch.float64))
        assert float(g.abs().max()) < 1e-6, (c, g)
        assert len(c.position) == land.dim and len(c.hessian_eigs) == land.dim
    for m in land.minima:
        assert min(m.hessian_eigs) > 0, m
    for s in land.saddles:
        assert min(s.hessian_eigs) < 0, s


def test_double_well_matches_theory_checked_example():
    """theory.md §3: sharp minimum λ ≈ 12.45, saddle at 0.426 with λ ≈ −1.86, ΔL ≈ 0.464."""
    land = make_landscape("double_well_1d")
    sharp, flat = land.minima
    assert (sharp.label, flat.label) == ("sharp", "flat")
    assert sharp.hessian_eigs[0] == pytest.approx(12.45, abs=0.01)
    assert sharp.position[0] == pytest.approx(1.0, abs=0.01)
    assert land.saddles[0].position[0] == pytest.approx(0.426, abs=0.001)
    assert land.saddles[0].hessian_eigs[0] == pytest.approx(-1.86, abs=0.01)
    assert land.barrier() == pytest.approx(0.464, abs=0.001)
    # the walls beyond |w| = 1.5 change nothing in between: same minima with the walls switched off
    open_ = make_landscape("double_well_1d", wall=0.0)
    assert open_.minima[0].position == pytest.approx(sharp.position, abs=1e-9)
    # the 2-D extension adds (b/2) y²: same geometry along x, curvature b along y
    two = make_landscape("double_well_2d", y_curvature=3.0)
    assert two.minima[0].hessian_eigs == pytest.approx((3.0, sharp.hessian_eigs[0]), abs=1e-4)
    assert two.escape_geometry() == pytest.approx(land.escape_geometry(), rel=1e-6)


def test_double_well_basins_and_ridge():
    land = make_landscape("double_well_2d")
    w = torch.tensor([[1.0, 0.3], [0.5, -1.0], [0.0, 0.0], [-1.0, 0.5]], dtype=torch.float64)
    # sharp right of the saddle, the ridge (-1) between the saddle and the midpoint to the flat
    # minimum, flat left of that
    assert land.basin(w).tolist() == [0, 0, -1, 1]
    assert land.escaped(w, 0).tolist() == [False, False, False, True]


def test_zhu_toy_curvatures_and_success_region():
    """Zhu et al. (2019): the sharp minimum has Hessian eigenvalues 20 and 200 (10u² + 100v²), the
    flat one 2 and 2 (‖·‖²); success means both coordinates below −0.5."""
    land = make_landscape("zhu")
    sharp, flat = land.minima
    assert sharp.hessian_eigs == pytest.approx((20.0, 200.0), rel=1e-6)
    assert flat.hessian_eigs == pytest.approx((2.0, 2.0), rel=1e-6)
    assert sharp.position == pytest.approx((1.0, 1.0), abs=0.02)  # data are 1e-2-scale
    w = torch.tensor([[-0.6, -0.6], [-0.6, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert land.basin(w).tolist() == [1, 0, 0]
    # the minibatch gradient over ALL data points is the full gradient
    idx = torch.arange(len(land.data)).expand(3, -1)
    torch.testing.assert_close(land.minibatch_grad(w, idx), land.grad(w))
    # the data set is seeded: same seed, same data; another seed, other data
    assert torch.equal(make_landscape("zhu").data, land.data)
    assert not torch.equal(make_landscape("zhu", data_seed=1).data, land.data)


def test_valleys_have_the_asked_curvatures():
    """theory.md §4: a_L on the left, a_R on the right (1-D exactly, 2-D asymptotically)."""
    v1 = make_landscape("valley_1d", a_left=8.0, a_right=2.0)
    w = torch.tensor([[-0.5], [0.5]], dtype=torch.float64)
    assert v1.grad(w)[:, 0].tolist() == [-4.0, 1.0]
    v2 = make_landscape("valley_2d", a_left=8.0, a_right=2.0, softness=0.05)
    h_left = v2.hessian((-1.0, 0.0))
    h_right = v2.hessian((1.0, 0.0))
    assert h_left[0, 0] == pytest.approx(8.0, rel=1e-3)
    assert h_right[0, 0] == pytest.approx(2.0, rel=1e-3)
    assert v2.minima[0].position[0] > 0  # the smooth valley's bottom sits on the flat side


def test_many_wells_alternate_sharp_and_flat():
    land = make_landscape("many_wells")
    assert len(land.minima) == 9 and len(land.saddles) == 8
    labels = [m.label for m in sorted(land.minima, key=lambda m: m.position[0])]
    assert labels == ["sharp", "flat"] * 4 + ["sharp"]
    # each minimum lies in its own basin
    pos = torch.tensor([m.position for m in land.minima], dtype=torch.float64)
    assert land.basin(pos).tolist() == list(range(9))


@pytest.mark.parametrize("name", ["double_well_1d", "zhu", "many_wells", "himmelblau", "rastrigin",
                                  "saddle", "formula"])
def test_each_minimum_is_in_its_own_basin_and_the_start_in_one(name):
    land = build(name)
    pos = torch.tensor([m.position for m in land.minima], dtype=torch.float64)
    assert land.basin(pos).tolist() == list(range(len(land.minima)))
    assert 0 <= land.start_basin() < len(land.minima)


def test_formula_landscape_finds_minima_and_saddle():
    """Grid search + Newton: (x²−1)² + y² + 0.2x has minima near (±1, 0) and a saddle near (0, 0)."""
    land = make_landscape("formula", formula=FORMULA)
    xs = sorted(m.position[0] for m in land.minima)
    assert len(xs) == 2 and xs[0] == pytest.approx(-1.02, abs=0.02) and xs[1] == pytest.approx(0.97, abs=0.02)
    assert len(land.saddles) == 1 and land.saddles[0].position == pytest.approx((0.05, 0.0), abs=0.01)
    # the Hessian at the saddle: L_xx = 12x² − 4, L_yy = 2
    x = land.saddles[0].position[0]
    assert sorted(land.saddles[0].hessian_eigs) == pytest.approx(sorted((12 * x * x - 4, 2.0)), rel=1e-4)


@pytest.mark.parametrize("text", ["__import__('os')", "x.__class__", "lambda: 1", "9**9**9", "x" * 5000, ""])
def test_bad_formula_is_a_one_line_value_error(text):
    with pytest.raises(ValueError) as e:
        make_landscape("formula", formula=text)
    assert "\n" not in str(e.value) and str(e.value)


def test_unknown_names_and_parameters_are_one_line_value_errors():
    for call in (lambda: make_landscape("nope"), lambda: make_landscape("valley_1d", a_left=-1.0),
                 lambda: make_landscape("double_well_1d", bogus=1.0),
                 lambda: make_landscape("double_well_1d", sharp_width=5.0, flat_width=5.0)):
        with pytest.raises(ValueError) as e:
            call()
        assert "\n" not in str(e.value)


def test_rastrigin_minima_near_integers_and_global_at_zero():
    land = make_landscape("rastrigin")
    assert len(land.minima) == 121
    best = min(land.minima, key=lambda m: float(land.loss(torch.tensor(m.position, dtype=torch.float64))))
    assert best.position == pytest.approx((0.0, 0.0), abs=1e-12) and best.label == "global"
    # curvature at 0: 2 + 40π² per axis
    assert best.hessian_eigs == pytest.approx((2 + 40 * math.pi**2,) * 2, rel=1e-6)
    assert land.basin(torch.tensor([[7.0, 0.0]])).item() == -1


def test_hessian_by_differences_is_accurate():
    """Himmelblau's Hessian in closed form at a point vs landscape.hessian (central differences)."""
    land = make_landscape("himmelblau")
    x, y = 1.3, -0.7
    exact = np.array([[12 * x * x + 4 * y - 42, 4 * (x + y)], [4 * (x + y), 12 * y * y + 4 * x - 26]])
    np.testing.assert_allclose(land.hessian((x, y)), exact, rtol=1e-7, atol=1e-7)


def test_stable_lr_is_two_over_the_largest_curvature_at_a_minimum():
    """On L = x² + 5y² the Hessian is diag(2, 10): gradient descent diverges for η > 2/10."""
    land = make_landscape("formula", formula="x^2 + 5*y^2")
    assert land.stable_lr() == pytest.approx(0.2, rel=1e-6)
    # and the limit is real: just above it the iterates grow, just below they shrink
    w = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    for eta, grows in ((0.21, True), (0.19, False)):
        v = w.clone()
        for _ in range(50):
            v = v - eta * land.grad(v)
        assert (v.abs().max().item() > 1.0) == grows


def test_lr_default_for_stays_below_the_limit():
    from app.controls import LR_OPTIONS, lr_default_for

    assert lr_default_for(None) == 0.05 and lr_default_for(1.0) == 0.05
    for limit in (0.3, 0.0149, 0.002, 1e-5):
        lr = lr_default_for(limit)
        assert lr in LR_OPTIONS and (lr <= 0.7 * limit or lr == min(LR_OPTIONS))
        assert all(o > 0.7 * limit or o <= lr for o in LR_OPTIONS if o <= 0.05)  # the largest such value
