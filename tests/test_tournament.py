"""Tests of the budget tournament's methods on the particles (core/toy/simulate.py) and of the toy tournament
(core/toy/tournament.py) and its CLI (`python -m core tournament`), issue 13.

The simulator's versions of LookSAM and Momentum-SAM are checked against the optimizers in core/sam.py on a
noise-free particle (the same rule, written for a network and for N particles at once), AE-SAM's per-particle
decisions against a plain re-implementation, and each method's gradient count against the schedule module.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.__main__ import main
from core.sam import LookSAM, MomentumSAM
from core.schedules import Schedule
from core.stats import wilson_interval
from core.toy.landscapes import make_landscape
from core.toy.presets import ESCAPE
from core.toy.simulate import SimConfig, simulate
from core.toy.tournament import TournamentConfig, method_params, pareto_front, run_tournament

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _escape(**kw) -> SimConfig:
    base = dict(rhos=(0.1,), particles=200, steps=150, keep_paths=0, record_points=2, device="cpu")
    base.update(kw)
    return ESCAPE.config.replace(**base)


# --- limits of the methods, on the particles ----------------------------------------------------------------

def test_ae_sam_minus_infinity_is_sam_and_plus_infinity_is_sgd_on_the_particles():
    """With c = −∞ every particle takes every SAM step, with +∞ none: the runs must be SAM's and SGD's (same
    noise draws). Float64 so that SAM's g + (g_s − g)·1 matches g_s to rounding."""
    sam = simulate(_escape(optimizer="sam", dtype="float64"))
    sgd = simulate(_escape(optimizer="sgd", dtype="float64"))
    lo = simulate(_escape(optimizer="ae_sam", lam1=-math.inf, lam2=-math.inf, dtype="float64"))
    hi = simulate(_escape(optimizer="ae_sam", lam1=math.inf, lam2=math.inf, dtype="float64"))
    np.testing.assert_allclose(lo.final, sam.final, atol=1e-9)
    np.testing.assert_array_equal(hi.final, sgd.final)
    assert (lo.sam_taken == 150).all() and (hi.sam_taken == 0).all()
    assert lo.grad_evals == 300 and hi.grad_evals == 150
    assert np.abs(sam.final - sgd.final).max() > 0.1  # SAM and SGD really differ here


def test_looksam_k_1_is_sam_and_in_1d_looksam_is_sam_every_k():
    """k = 1: every step a SAM step. In 1-D nothing is orthogonal to g, so g_v = 0 and LookSAM (any α) is SAM
    every k; on the 2-D well it is not (α ≠ 0 reuses g_v)."""
    sam = simulate(_escape(optimizer="sam", dtype="float64"))
    look1 = simulate(_escape(optimizer="looksam", k=1, alpha=0.7, dtype="float64"))
    np.testing.assert_array_equal(look1.final, sam.final)
    valley = dict(landscape="valley_1d", landscape_params=(("a_left", 10.0), ("a_right", 1.0)), sigma=1.0,
                  start=None, lr=0.05)
    look = simulate(_escape(optimizer="looksam", k=3, alpha=0.7, **valley))
    every = simulate(_escape(optimizer="every_k", k=3, **valley))
    np.testing.assert_array_equal(look.final, every.final)
    look2d = simulate(_escape(optimizer="looksam", k=3, alpha=0.7))
    every2d = simulate(_escape(optimizer="every_k", k=3))
    assert np.abs(look2d.final - every2d.final).max() > 0.1


def _particle_vs_optimizer(make_opt, optimizer, steps=40, **kw):
    """One noise-free particle on the 2-D double well, in the simulator and as a 2-parameter 'model' driven by
    an optimizer from core.sam with autograd on the landscape's loss."""
    land = make_landscape("double_well_2d")
    start = (-0.6, 0.4)
    cfg = SimConfig(landscape="double_well_2d", optimizer=optimizer, rhos=(0.2,), lr=0.05, noise="none",
                    particles=1, steps=steps, start=start, dtype="float64", keep_paths=0, record_points=2,
                    device="cpu", **kw)
    sim = simulate(cfg).final[0, 0]
    w = torch.nn.Parameter(torch.tensor([start], dtype=torch.float64))
    opt = make_opt([w])

    def closure():
        opt.zero_grad()
        loss = land.loss(w).sum()
        loss.backward()
        return loss
    for _ in range(steps):
        opt.step(closure)
    return sim, w.detach().numpy()[0], opt


def test_simulated_looksam_is_core_sam_looksam():
    sim, net, opt = _particle_vs_optimizer(
        lambda p: LookSAM(p, torch.optim.SGD, rho=0.2, k=3, alpha=0.7, lr=0.05), "looksam", k=3, alpha=0.7)
    np.testing.assert_allclose(sim, net, atol=1e-9)
    assert opt.grad_evals == 40 + 14


def test_simulated_momentum_sam_is_core_sam_momentumsam():
    sim, net, opt = _particle_vs_optimizer(
        lambda p: MomentumSAM(p, torch.optim.SGD, rho=0.2, lr=0.05, momentum=0.9), "msam", momentum=0.9)
    np.testing.assert_allclose(sim, net, atol=1e-9)
    plain, _, _ = _particle_vs_optimizer(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), "sgd", momentum=0.9)
    assert np.abs(sim - plain).max() > 1e-3  # the perturbation matters
    assert opt.grad_evals == 40


def test_momentum_sam_needs_momentum_in_the_simulator():
    with pytest.raises(ValueError, match="momentum"):
        _escape(optimizer="msam")


def test_ae_sam_decisions_and_counts_per_particle_match_a_plain_reimplementation():
    """Noise-free valley (a_L = 10, a_R = 1), 6 particles spread around 0, float64: each particle's ‖g‖²
    statistics, decisions and SAM-step count recomputed in numpy (μ from the first sample, σ² from 0)."""
    a_l, a_r, lr, rho, T, delta, lam1, lam2 = 10.0, 1.0, 0.05, 0.1, 60, 0.9, -0.5, 1.0
    cfg = SimConfig(landscape="valley_1d", landscape_params=(("a_left", a_l), ("a_right", a_r)), optimizer="ae_sam",
                    rhos=(rho,), lr=lr, noise="none", particles=6, steps=T, start=(0.0,), start_spread=0.8,
                    seed=3, lam1=lam1, lam2=lam2, delta=delta, dtype="float64", keep_paths=6, record_points=2,
                    device="cpu")
    res = simulate(cfg)
    w = res.paths[0, :, 0, 0].copy()  # the starting points

    def grad(x):
        return np.where(x < 0, a_l * x, a_r * x)

    mu = var = None
    taken = np.zeros_like(w, dtype=int)
    for t in range(T):
        g = grad(w)
        s = g * g
        if mu is None:
            mu, var = s.copy(), np.zeros_like(s)
        else:
            mu = delta * mu + (1 - delta) * s
            var = delta * var + (1 - delta) * (s - mu) ** 2
        c = (t / T) * lam1 + (1 - t / T) * lam2
        take = s >= mu + c * np.sqrt(var)
        g_s = grad(w + rho * g / (np.abs(g) + 1e-12))
        w = w - lr * np.where(take, g_s, g)
        taken += take
    np.testing.assert_array_equal(res.sam_taken[0], taken)
    np.testing.assert_allclose(res.final[0, :, 0], w, atol=1e-10)
    assert 0 < taken.sum() < 6 * T and len(set(taken.tolist())) > 1  # decisions differ between particles
    assert res.grad_evals == round(T + taken.mean())


@pytest.mark.parametrize("optimizer,extra", [("psam", dict(k=2, f=0.6)), ("late_sam", dict(late_f=0.3)),
                                             ("composer", dict(k=4)), ("looksam", dict(k=3)),
                                             ("ss_sam", dict(p=0.1, p_end=0.7, p_shape="linear")),
                                             ("msam", dict(momentum=0.9)), ("random_sam", dict(p=0.4))])
def test_every_schedule_methods_gradient_count_is_its_schedules(optimizer, extra):
    res = simulate(_escape(optimizer=optimizer, **extra))
    schedule, _ = res.config.schedule()
    assert res.grad_evals == schedule.grad_evals(150) == 150 + int(schedule.mask(150).sum())
    assert (res.sam_taken == schedule.sam_steps(150)).all()
    np.testing.assert_array_equal(res.sam_mask, schedule.mask(150))


def test_composer_uses_rho_times_k():
    """Composer with k = 1 at ρ is SAM at ρ; with k = 4 its SAM steps use 4ρ: the same as SAM-every-4 on the
    same steps with 4ρ (shifted: Composer's steps are 3, 7, …, so compare with its own mask's positions)."""
    sam = simulate(_escape(optimizer="sam"))
    comp1 = simulate(_escape(optimizer="composer", k=1))
    np.testing.assert_array_equal(comp1.final, sam.final)
    comp4 = simulate(_escape(optimizer="composer", k=4, rhos=(0.05,)))
    every4 = simulate(_escape(optimizer="every_k", k=4, rhos=(0.05,)))
    assert np.abs(comp4.final - every4.final).max() > 0.01


def test_trigger_map_counts_every_step_and_every_sam_step_in_the_window():
    res = simulate(_escape(optimizer="ae_sam", trigger_map=True))
    assert res.trigger_sam.shape == res.trigger_all.shape == (1, 40, 40)
    inside = res.trigger_all.sum()
    assert 0.99 * 200 * 150 <= inside <= 200 * 150  # the walls keep (nearly) every particle in the window
    assert 0.99 * res.sam_taken.sum() <= res.trigger_sam.sum() <= res.sam_taken.sum()
    assert (res.trigger_sam <= res.trigger_all).all()
    psam = simulate(_escape(optimizer="psam", trigger_map=True))
    assert psam.trigger_sam.sum() == pytest.approx(psam.trigger_all.sum() * psam.sam_mask.mean(), rel=0.01)


# --- the tournament -----------------------------------------------------------------------------------------

def test_pareto_front():
    costs = [0.5, 1.0, 0.65, 0.65, 0.6, 0.5]
    outs = [0.3, 0.5, 0.45, 0.40, 0.45, float("nan")]
    # (0.65, 0.40) is beaten by (0.6, 0.45); (0.65, 0.45) by (0.6, 0.45) (cheaper, as good); NaN never counts
    assert pareto_front(costs, outs) == [0, 1, 4]


@pytest.mark.parametrize("budget", [0.55, 0.65, 0.75])
def test_method_params_spend_the_budget(budget):
    """Every mask-based method's chosen parameters cost the budget within what a whole-number period allows
    (the share of SAM steps 2b − 1 against 1/round(1/(2b − 1))), the others within 0.02 (random draws, f·T
    rounding)."""
    T = 1000
    share = 2 * budget - 1
    for name, kind in (("psam", "psam"), ("late_sam", "late"), ("every_k", "every_k"), ("composer", "composer"),
                       ("looksam", "looksam"), ("random_sam", "random"), ("ss_sam", "ss")):
        params = dict(method_params(name, budget, T))
        if "late_f" in params:
            params["f"] = params.pop("late_f")
        s = Schedule(kind, **params)
        # a period k = round(1/share) spends ⌈T/k⌉ second passes: off by |1/k − share| + 1/T at most, halved
        tol = (abs(1 / round(1 / share) - share) + 1 / T) / 2 if name in ("every_k", "composer", "looksam") else 0.02
        assert s.relative_cost(T) == pytest.approx(budget, abs=tol), name


@pytest.mark.parametrize("budget", [0.55, 0.6, 0.65, 0.7, 0.75])
@pytest.mark.parametrize("T", [20, 300, 1000])
def test_psam_and_late_sam_spend_exactly_the_budget_when_it_is_a_whole_number_of_steps(budget, T):
    """(2b − 1)·T second passes, not one more: 2·0.65 − 1 is 0.30000000000000004 in floating point, and PSAM's
    rule t < f·T with f = 0.6000000000000001 took the step t = 0.6 T too (65.2% of SAM at T = 300)."""
    share_steps = round((2 * budget - 1) * T)
    for name, kind in (("psam", "psam"), ("late_sam", "late")):
        params = dict(method_params(name, budget, T))
        if "late_f" in params:
            params["f"] = params.pop("late_f")
        assert Schedule(kind, **params).sam_steps(T) == share_steps, (name, params)


def test_escape_tournament_spends_equal_budgets_and_reports_wilson_intervals():
    cfg = TournamentConfig(landscape="double_well_2d", budget=0.65, particles=150, steps=200, seeds=2)
    res = run_tournament(cfg)
    rows = {m.name: m for m in res.methods}
    assert set(rows) == set(cfg.methods)
    assert rows["sgd"].budget_ratio == 0.5 and rows["sam"].budget_ratio == 1.0 and rows["msam"].budget_ratio == 0.5
    for name in ("psam", "late_sam", "random_sam", "ss_sam"):
        assert rows[name].budget_ratio == pytest.approx(0.65, abs=0.02), name
    # AE-SAM is calibrated on a pilot run with other noise: its real spending lands near the target
    assert rows["ae_sam"].budget_ratio == pytest.approx(0.65, abs=0.03)
    assert rows["every_k"].budget_ratio == rows["looksam"].budget_ratio == (200 + 67) / 400
    for m in res.methods:
        assert m.n == 300 and m.source == "simulation" and len(m.per_seed) == 2
        k = round(m.outcome * m.n)
        assert m.ci == pytest.approx(wilson_interval(k, m.n))
        assert m.outcome == pytest.approx(np.mean(m.per_seed))
        lo, hi = m.extra["in_flat_at_T_ci"]
        assert lo <= m.extra["in_flat_at_T"] <= hi and m.extra["in_flat_at_T"] <= m.outcome + 1e-12  # in the flat
        # basin at T means it left the sharp one (every particle starts in the sharp basin)
    assert set(res.trigger_maps) == {"ae_sam", "psam"}
    assert res.pareto and all(name in rows for name in res.pareto)
    assert "heavy_ball" in res.references
    json.dumps(res.to_dict(), allow_nan=False)


def test_valley_tournament_uses_the_exact_chain_where_the_rule_ignores_the_state():
    """Schedules (and 1-D LookSAM) get the exact expected time average; AE-SAM and Momentum-SAM are simulated.
    The simulated means must agree with the exact ones: |sim − exact| ≤ 3.3 standard errors (two-sided
    p = 0.001 each, so < 1% that any of the 9 trips by chance; the seeds are fixed, so it is deterministic)."""
    cfg = TournamentConfig(landscape="valley", budget=0.65, particles=400, steps=400)
    res = run_tournament(cfg)
    rows = {m.name: m for m in res.methods}
    for name in ("ae_sam", "msam"):
        assert rows[name].source == "simulation"
    exact = [m for m in res.methods if m.source == "exact chain"]
    assert len(exact) == 9
    for m in exact:
        se = (m.simulated_ci[1] - m.simulated_ci[0]) / (2 * 1.966)  # t quantile at 399 df
        assert abs(m.simulated - m.outcome) <= 3.3 * se, m.name
    # the valley's claim at the ends: SAM sits further on the flat side than SGD (exact numbers, no noise)
    assert rows["sam"].outcome > rows["sgd"].outcome + 0.01
    assert rows["looksam"].outcome == rows["every_k"].outcome  # 1-D LookSAM is SAM every k


@pytest.mark.parametrize("bad", [dict(budget=0.5), dict(budget=1.0), dict(landscape="zhu"), dict(seeds=0),
                                 dict(methods=("sgd", "adam")), dict(rho=0.0), dict(particles=10**9)])
def test_bad_tournament_configs_are_refused(bad):
    with pytest.raises(ValueError):
        TournamentConfig(**bad)


# --- the CLI ------------------------------------------------------------------------------------------------

def test_cli_tournament_json(capsys):
    rc = main(["tournament", "--landscape", "valley", "--budget", "0.6", "--particles", "60", "--steps", "300",
               "--methods", "sgd,sam,psam,msam", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["command"] == "tournament" and out["metric"] == "mean_position" and out["budget"] == 0.6
    assert [m["name"] for m in out["methods"]] == ["sgd", "sam", "psam", "msam"]
    for m in out["methods"]:
        for key in ("name", "grad_evals", "budget_ratio", "outcome", "outcome_ci", "source", "wall_s"):
            assert key in m
        assert m["outcome_ci"][0] <= m["outcome"] <= m["outcome_ci"][1]
    by = {m["name"]: m for m in out["methods"]}
    assert by["sam"]["grad_evals"] == 600 and by["sam"]["budget_ratio"] == 1.0
    assert by["psam"]["budget_ratio"] == pytest.approx(0.6, abs=0.01)


def test_cli_tournament_errors_are_one_line_and_exit_2():
    p = subprocess.run([sys.executable, "-m", "core", "tournament", "--budget", "1.2", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1
    assert "budget" in p.stderr


def test_cli_tournament_cifar_runs_the_cifar_tournament_or_says_it_is_missing(capsys):
    try:
        import core.cifar.tournament  # noqa: F401
    except ImportError:
        assert main(["tournament", "--landscape", "cifar", "--json"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "core/cifar/tournament.py" in err
    else:  # the contract between the two: the CLI's fields come back from the CIFAR tournament too, with the
        # tuning record and the paired verdicts (issue 21)
        argv = ["tournament", "--landscape", "cifar", "--budget", "0.65", "--seeds", "2", "--epochs", "1",
                "--train-size", "200", "--methods", "sgd,sam,looksam"]
        assert main(argv + ["--json"]) == 0  # a few one-step runs
        out = json.loads(capsys.readouterr().out)
        assert out["command"] == "tournament" and [m["name"] for m in out["methods"]] == ["sgd", "sam", "looksam"]
        for m in out["methods"]:
            for key in ("name", "grad_evals", "budget_ratio", "outcome", "outcome_ci", "wall_s", "seed_ids"):
                assert key in m
            assert m["seed_ids"] == [20, 21]
        assert out["methods"][0]["budget_ratio"] == 0.5 and out["config"]["epochs"] == 1
        look = out["tuning"]["looksam"]
        assert look["runs"] == 4 and {p["seed"] for p in look["pilots"]} <= {1000, 1001}
        assert out["tuning"]["sgd"]["runs"] == 0 and "chosen" in look
        vs_sam = out["verdicts"]["vs_sam"]
        assert set(vs_sam) == {"sgd", "looksam"}
        for v in vs_sam.values():
            assert v is None or {"diff", "ci", "t", "p", "p_holm", "clear_holm"} <= set(v)
        assert main(argv) == 0  # the human-readable form says the same
        text = capsys.readouterr().out
        assert "tuned looksam" in text and "Pareto front" in text
