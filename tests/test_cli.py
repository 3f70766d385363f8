"""Tests of the command line `python -m core ...` (core/__main__.py): stable JSON fields, exit codes.

Two real subprocess runs check the entry point end to end (each pays torch's import time); the
rest call `core.__main__.main(argv)` in-process, which is what `python -m core` runs.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from core.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_escape_json_has_the_stable_fields():
    p = run_cli("escape", "--optimizer", "sgd", "--rho", "0", "--particles", "200", "--steps", "200",
                "--seed", "1", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("escaped_fraction", "median_escape_step", "mean_escape_step", "grad_evals", "wall_s", "config"):
        assert key in out
    assert 0.0 <= out["escaped_fraction"] <= 1.0
    assert out["grad_evals"] == 200  # SGD: one gradient evaluation per step
    # fewer than half escape in 200 steps (Kramers ≈ 510), so the median is null, the mean is not
    assert out["escaped_fraction"] < 0.5 and out["median_escape_step"] is None
    assert out["mean_escape_step"] is not None and 0 < out["mean_escape_step"] <= 200
    # Kramers by hand for the default η = 0.05, σ = 2.5 (T = ησ²/2 = 0.15625) on double_well_2d, whose sharp
    # minimum has curvature 12.45 along the escape, the saddle −1.86 and the barrier 0.464 (test_landscapes):
    # τ = 2π/√(12.45 · 1.86) · e^(0.464/0.15625) / 0.05 = 1.305 · 19.50 / 0.05 ≈ 509
    assert out["theory"]["kramers_mean_escape_steps"] == pytest.approx(509, rel=0.01)
    assert out["config"]["optimizer"] == "sgd" and out["config"]["particles"] == 200


def test_bad_argument_is_one_line_and_exit_code_2():
    p = run_cli("escape", "--particles", "999999", "--json")
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and "particles" in p.stderr


def test_toy_commands_never_import_the_cifar_code():
    code = ("import io, contextlib, sys; from core.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['escape', '--particles', '20', '--steps', '20', '--json'])\n"
            "print(rc, any(m.startswith('core.cifar') for m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.stdout.split() == ["0", "False"], p.stderr


def test_valley_json_has_theory_next_to_the_simulation(capsys):
    code = main(["valley", "--rho", "0", "--optimizer", "sgd", "--particles", "300", "--steps", "1500",
                 "--burn-in", "300", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("mean_position", "wall_s", "config"):
        assert key in out
    closed, chain = out["theory"]["closed_form_sgd"], out["theory"]["exact_chain"]
    # the closed form of theory.md §4 for a_L = 10, a_R = 1, η = 0.05, σ = 1
    assert closed == pytest.approx(math.sqrt(0.05 / math.pi) * (1 - 10**-0.5), rel=1e-9)
    # 300 particles × 1200 averaged steps: SE ≈ 0.011/√300 ≈ 0.0006, 0.7%; margin 5% (7 SE)
    assert out["mean_position"] == pytest.approx(chain, rel=0.05)
    assert out["config"]["landscape_params"] == [["a_left", 10.0], ["a_right", 1.0]]


def test_valley_exact_chain_for_a_schedule_is_the_runs_expected_time_average(capsys):
    """PSAM switches rules, so there is no stationary state; the CLI gives the exact expectation of this
    run's time average instead (theory.exact_schedule_chain). 2000 particles × 390 averaged steps:
    SE ≈ 0.0006 (measured by the run's own interval); margin 3 SE."""
    assert main(["valley", "--optimizer", "psam", "--rho", "0.2", "--particles", "2000", "--steps", "400",
                 "--burn-in", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    th = out["theory"]
    assert th["exact_chain_is"].startswith("expected time average")
    se = (out["mean_position_ci"][1] - out["mean_position"]) / 1.959964
    assert abs(out["mean_position"] - th["exact_chain"]) < 3 * se


@pytest.mark.parametrize("argv", [
    ["escape", "--landscape", "nope"],
    ["escape", "--rho", "5"],
    ["escape", "--lr", "abc"],
    ["escape", "--optimizer", "adam"],
    ["escape", "--landscape", "formula", "--formula", "__import__('os').system('ls')"],
    ["valley", "--particles", "20000", "--steps", "5000"],
    ["sweep", "--rhos", "0,x"],
    [],
    ["frobnicate"],
])
def test_user_errors_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")


def test_sweep_and_human_output(capsys):
    assert main(["sweep", "--rhos", "0,0.1", "--particles", "50", "--steps", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rhos"] == [0.0, 0.1] and len(out["escape"]) == 2
    assert main(["escape", "--particles", "50", "--steps", "50"]) == 0
    text = capsys.readouterr().out
    assert "escaped fraction" in text and not text.lstrip().startswith("{")


def test_bench_reports_its_figures(capsys):
    """bench/toy.py (the engine's speed benchmark; the engine's CLI does not reach into bench/)."""
    from bench.toy import main as bench_main

    bench_main(["--particles", "200", "--steps", "20", "--repeat", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    for key in ("wall_s", "numpy_wall_s", "speedup_vs_numpy", "particle_steps_per_s", "device", "dtype"):
        assert key in out
    assert out["particles"] == 200 and out["steps"] == 20 and out["wall_s"] > 0
