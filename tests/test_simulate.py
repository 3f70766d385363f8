"""Tests of core/toy/simulate.py and core/toy/noise.py: the vectorised particle run and its bookkeeping."""

import json

import numpy as np
import pytest
import torch

from core.methods import for_optimizer
from core.toy.landscapes import make_landscape
from core.toy.noise import Noise
from core.toy.simulate import SimConfig, simulate

SMALL = dict(landscape="double_well_2d", lr=0.05, sigma=2.5, particles=200, steps=150, seed=3)


def test_same_seed_same_run_other_seed_other_run():
    cfg = SimConfig(optimizer="sam", rhos=(0.0, 0.1), **SMALL)
    a, b = simulate(cfg), simulate(cfg)
    for field in ("final", "first_passage", "paths", "time_avg", "occupancy", "mean_loss"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = simulate(cfg.replace(seed=4))
    assert not np.array_equal(a.final, c.final)


def test_sam_with_rho_zero_is_exactly_sgd():
    """ε = 0 when ρ = 0, and both passes share the noise draw, so SAM(ρ=0) retraces SGD step by step."""
    sgd = simulate(SimConfig(optimizer="sgd", rhos=(0.0,), **SMALL))
    sam = simulate(SimConfig(optimizer="sam", rhos=(0.0,), **SMALL))
    np.testing.assert_array_equal(sgd.final, sam.final)
    np.testing.assert_array_equal(sgd.first_passage, sam.first_passage)
    assert sgd.grad_evals == 150 and sam.grad_evals == 300


def test_rhos_share_noise_and_starting_points():
    """Common random numbers: the ρ = 0 column of a multi-ρ run equals a run with ρ = 0 alone."""
    alone = simulate(SimConfig(optimizer="sam", rhos=(0.0,), **SMALL))
    many = simulate(SimConfig(optimizer="sam", rhos=(0.0, 0.05, 0.2), **SMALL))
    np.testing.assert_allclose(many.final[0], alone.final[0], rtol=0, atol=1e-6)
    assert not np.allclose(many.final[2], many.final[0])


def test_shapes_and_recording():
    cfg = SimConfig(optimizer="sam", rhos=(0.05, 0.1, 0.2), keep_paths=7, record_points=11, burn_in=50, **SMALL)
    r = simulate(cfg)
    R, N, d = 3, 200, 2
    assert r.steps_recorded[0] == 0 and r.steps_recorded[-1] == 150 and len(r.steps_recorded) == 11
    assert r.paths.shape == (R, 7, 11, d)
    start = np.broadcast_to(make_landscape("double_well_2d").default_start, (R, 7, d))
    # float32 run: the first recorded point is the start rounded once to float32, exactly
    np.testing.assert_array_equal(r.paths[:, :, 0], start.astype(np.float32))
    np.testing.assert_allclose(r.paths[:, :, -1], r.final[:, :7], rtol=0, atol=0)
    assert r.mean_loss.shape == (R, 11)
    assert r.first_passage.shape == (R, N) and r.escape_position.shape == (R, N, d)
    assert r.final.shape == (R, N, d) and r.final_loss.shape == (R, N) and r.time_avg.shape == (R, N, d)
    assert r.occupancy.shape == (R, len(r.occupancy_edges) - 1)
    assert r.sam_mask.shape == (150,) and r.diverged.shape == (R, N)
    # occupancy: one count per particle per recorded step after burn-in (all inside the window here)
    after = int((r.steps_recorded > 50).sum())
    assert r.occupancy.sum(axis=1).tolist() == [after * N] * R


def test_first_passage_and_escape_position_agree():
    """An escaped particle's escape position lies in another basin; before that step it was home."""
    cfg = SimConfig(optimizer="sam", rhos=(0.1,), keep_paths=200, record_points=151, **SMALL)
    r = simulate(cfg)
    land = make_landscape("double_well_2d")
    fp = r.first_passage[0]
    escaped = fp >= 0
    assert 0.1 < escaped.mean() < 0.9  # both kinds are present, so the checks below bite
    pos = torch.tensor(r.escape_position[0][escaped])
    assert land.basin(pos).eq(1).all()
    assert np.isnan(r.escape_position[0][~escaped]).all()
    # with every step recorded: the path is at the escape position at step fp, and not in basin 1 before
    for i in np.flatnonzero(escaped)[:20]:
        np.testing.assert_allclose(r.paths[0, i, fp[i]], r.escape_position[0, i], rtol=1e-6)
        before = torch.tensor(r.paths[0, i, : fp[i]])
        assert not land.basin(before).eq(1).any()


def test_time_average_is_the_mean_over_steps_after_burn_in():
    cfg = SimConfig(optimizer="sam", rhos=(0.1,), keep_paths=5, record_points=151, burn_in=40, **SMALL)
    r = simulate(cfg)
    np.testing.assert_allclose(r.time_avg[0, :5], r.paths[0, :, 41:].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_diverging_particles_are_marked_frozen_and_left_out():
    """Rosenbrock with a large step and a wide start: the far particles blow up, the near ones don't."""
    cfg = SimConfig(landscape="rosenbrock", optimizer="sam", rhos=(0.01,), lr=0.002, sigma=0.1,
                    particles=300, steps=200, start=(1.0, 1.0), start_spread=1.5, seed=0)
    r = simulate(cfg)
    div = r.diverged[0]
    assert div.any() and not div.all()
    assert np.isfinite(r.final).all() and np.abs(r.final).max() <= 1e6  # frozen at the last good point
    assert np.isnan(r.final_loss[0][div]).all() and np.isfinite(r.final_loss[0][~div]).all()
    assert np.isfinite(r.mean_loss).all() and np.isfinite(r.time_avg).all()
    json.dumps(r.to_dict(), allow_nan=False)


def test_all_particles_diverging_does_not_crash():
    cfg = SimConfig(landscape="valley_1d", landscape_params=(("a_left", 50.0), ("a_right", 50.0)),
                    optimizer="sgd", rhos=(0.0,), lr=0.1, noise="none", particles=5, steps=100,
                    start=(0.5,))
    r = simulate(cfg)  # ηλ = 5 > 2: |w| grows 4× per step
    assert r.diverged.all() and np.isfinite(r.final).all()
    # the mean loss over live particles: finite while any lives, NaN after the last one diverged (0 would plot
    # as the lowest loss of all)
    assert np.isfinite(r.mean_loss[0][0]) and np.isnan(r.mean_loss[0][-1])


def test_to_dict_is_json_and_echoes_the_config():
    cfg = SimConfig(optimizer="psam", rhos=(0.1,), **SMALL)
    r = simulate(cfg)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["config"]["optimizer"] == "psam" and d["config"]["rhos"] == [0.1]
    assert d["grad_evals"] == 150 + int(np.sum(for_optimizer("psam")[0].mask(150)))
    assert len(d["first_passage"][0]) == 200


def test_schedule_mask_and_grad_evals_come_from_core_schedules():
    cfg = SimConfig(optimizer="psam", k=3, f=0.5, rhos=(0.1,), **SMALL)
    r = simulate(cfg)
    schedule, _ = for_optimizer("psam", k=3, f=0.5, seed=cfg.seed)
    np.testing.assert_array_equal(r.sam_mask, schedule.mask(150))
    assert r.grad_evals == schedule.grad_evals(150)


@pytest.mark.parametrize("changes", [
    dict(landscape="nope"), dict(optimizer="adam"), dict(noise="pink"), dict(particles=20_001),
    dict(steps=0), dict(rhos=(3.0,)), dict(rhos=tuple(0.01 * i for i in range(13))), dict(rhos=()),
    dict(lr=float("nan")), dict(particles=20_000, steps=5_000), dict(burn_in=500), dict(dtype="float16"),
    dict(landscape_params=(("depth", [1, 2]),)), dict(landscape_params=(("depth", float("inf")),)),
])
def test_bad_configs_are_one_line_value_errors(changes):
    with pytest.raises(ValueError) as e:
        SimConfig(**{**SMALL, **changes})
    assert "\n" not in str(e.value) and str(e.value)


def test_minibatch_noise_needs_data_and_bad_start_is_refused():
    with pytest.raises(ValueError, match="minibatch"):
        simulate(SimConfig(noise="minibatch", **SMALL))
    with pytest.raises(ValueError, match="coordinates"):
        simulate(SimConfig(start=(0.0,), **SMALL))


def test_torch_threads_are_restored():
    before = torch.get_num_threads()
    simulate(SimConfig(optimizer="sam", rhos=(0.1,), **SMALL))
    assert torch.get_num_threads() == before


def test_hessian_noise_has_covariance_proportional_to_the_hessian():
    """noise.py: Σ = σ² · d · H₀ / Tr H₀ at the starting minimum (double well: H₀ = diag(λ, 1))."""
    land = make_landscape("double_well_2d")
    lam = land.minima[0].hessian_eigs[1]
    n = 50_000
    noise = Noise("hessian", land, (1, n), 2.0, 10, torch.Generator().manual_seed(0), torch.float64,
                  torch.device("cpu"))
    z = noise.draw(0)[0]
    cov = np.cov(z.numpy().T)
    expected = 4.0 * 2 * np.diag([lam, 1.0]) / (lam + 1.0)
    # the sample variance of n normals has relative SE √(2/n) = 0.6%; 3% is 5 SE
    np.testing.assert_allclose(np.diag(cov), np.diag(expected), rtol=0.03)
    assert abs(cov[0, 1]) < 0.03 * np.sqrt(cov[0, 0] * cov[1, 1])


def test_minibatch_gradient_is_unbiased():
    """Minibatch noise (Zhu toy): averaged over many draws, the minibatch gradient is the full one."""
    land = make_landscape("zhu")
    n = 40_000
    noise = Noise("minibatch", land, (1, n), 0.0, 10, torch.Generator().manual_seed(0), torch.float64,
                  torch.device("cpu"))
    w = torch.tensor([0.9, 1.05], dtype=torch.float64).expand(1, n, 2)
    g = noise.grad(w, noise.draw(0))
    full = land.grad(w[0, :1])[0]
    se = g[0].std(0) / n**0.5
    assert ((g[0].mean(0) - full).abs() < 4 * se).all()  # 4 SE: a false alarm has odds ~1e-4
    assert (g[0].std(0) > 0.1).all()  # and it is really noisy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_auto_device_uses_the_gpu():
    r = simulate(SimConfig(optimizer="sam", rhos=(0.1,), **SMALL))
    assert r.device.startswith("cuda")


def test_progress_is_reported_from_0_to_1():
    seen = []
    simulate(SimConfig(optimizer="sam", rhos=(0.1,), **SMALL), progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 10


@pytest.mark.parametrize("name", ["valley_2d", "many_wells", "himmelblau", "rastrigin", "saddle", "zhu"])
def test_every_family_runs_with_every_noise_it_supports(name):
    noises = ["none", "isotropic", "hessian"] + (["minibatch"] if name == "zhu" else [])
    for noise in noises:
        r = simulate(SimConfig(landscape=name, optimizer="asam", rhos=(0.5,), lr=0.001, noise=noise, sigma=0.5,
                               particles=20, steps=20, record_points=5))
        assert np.isfinite(r.final).all() and not r.diverged.any()


def test_user_formula_runs_and_its_nan_region_marks_divergence():
    """A formula is differentiated by autograd; where its gradient is not finite (√x for x < 0)
    particles are marked diverged instead of poisoning the run."""
    ok = simulate(SimConfig(landscape="formula", formula="(x^2 - 1)^2 + y^2", optimizer="sam", rhos=(0.1,),
                            lr=0.01, sigma=1.0, particles=50, steps=50, start=(1.0, 0.0)))
    assert not ok.diverged.any() and np.abs(ok.final[0, :, 0]).mean() > 0.5  # near the minima x = ±1
    bad = simulate(SimConfig(landscape="formula", formula="sqrt(x) + y^2", optimizer="sgd", rhos=(0.0,), lr=0.1,
                             sigma=5.0, particles=200, steps=30, start=(0.3, 0.0)))
    assert bad.diverged.any() and not bad.diverged.all()
    assert np.isfinite(bad.final).all() and np.isfinite(bad.time_avg).all()


@pytest.mark.parametrize("kind", ["isotropic", "minibatch"])
def test_noise_drawn_ahead_in_a_thread_is_the_same_noise(kind):
    """core.toy.noise draws the next chunk in a background thread when it knows the number of steps
    (chunks of ≥ 2¹⁶ numbers on the CPU); the draws must be exactly those drawn in turn."""
    land = make_landscape("zhu")
    shape = (1, 20_000)  # 20k particles × 2 coordinates (or × 10 indices) per step: big chunks

    def draws(steps):
        noise = Noise(kind, land, shape, 1.0, 10, torch.Generator().manual_seed(5), torch.float32,
                      torch.device("cpu"), steps=steps)
        out = [noise.draw(t).clone() for t in range(2 * noise.chunk + 3)]  # three chunks
        return noise, out

    ahead, a = draws(steps=10_000)
    in_turn, b = draws(steps=None)
    assert ahead._chunks_left is not None and in_turn._chunks_left is None  # the two paths differ
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_zhu_minibatch_gradient_with_every_point_once_is_the_full_gradient():
    """The fast minibatch formula (Zhu.minibatch_grad) against the per-sample one (Zhu.grad):
    a minibatch holding each data point once has the full gradient, up to float64 rounding."""
    land = make_landscape("zhu")
    w = torch.tensor([[0.9, 1.05], [-0.2, 0.3], [-1.0, -0.9]], dtype=torch.float64)  # sharp, ridge, flat
    idx = torch.arange(len(land.data)).expand(3, -1)
    np.testing.assert_allclose(land.minibatch_grad(w, idx).numpy(), land.grad(w).numpy(), rtol=1e-12, atol=1e-12)


def test_a_diverging_particle_is_frozen_at_its_last_position_within_range():
    """Divergence is checked a block of steps at a time, then replayed step by step: here
    w ← w − η·a·w = −4w from 0.5, so |w| = 0.5·4¹⁰ = 524288 after step 10 (≤ 1e6), 2.1e6 after
    step 11 (diverged): the particle must stay at step 10's position, and be recorded there."""
    cfg = SimConfig(landscape="valley_1d", landscape_params=(("a_left", 100.0), ("a_right", 100.0)),
                    optimizer="sgd", rhos=(0.0,), lr=0.05, noise="none", particles=3, steps=40,
                    start=(0.5,), record_points=41)
    r = simulate(cfg)
    assert r.diverged.all()
    np.testing.assert_array_equal(r.final[0, :, 0], [0.5 * 4.0**10] * 3)
    np.testing.assert_array_equal(r.paths[0, 0, 10:, 0], 0.5 * 4.0**10)
    np.testing.assert_array_equal(r.paths[0, 0, :11, 0], 0.5 * (-4.0) ** np.arange(11))
