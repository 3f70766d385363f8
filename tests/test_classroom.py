"""The class experiment's rules and statistics (serve/classroom.py), on a real SQLite store.

Claims checked:
- room codes: 8 symbols of a 32-symbol alphabet without 0/O/1/I (40 bits), drawn afresh each time; typed codes
  are normalised (case, spaces, dashes) and anything else is refused;
- only the lecturer's secret closes, reopens, resets, changes limits and exports; the room code or a wrong secret
  gets a clear refusal; the secret itself is never stored;
- every refusal has its own one-line message: unknown room, closed, expired, cap reached, too fast, bad student id,
  a setting not in the room;
- a run is computed on the server from the room's settings and a seed derived from (room, student, run index): a
  repeat of the same run index stores nothing and answers with the stored run;
- assignment is round robin over the grid, so N·|grid| students fill every setting N times;
- pooling: the pooled fraction is Σ successes / Σ particles with its Wilson interval; the pooled mean and interval
  from per-run (n, mean, sd) equal those of all particles concatenated; intervals narrow as runs arrive;
- the class's pooled curve agrees with the theory beside it (valley: exact chain) and shows the labs' claims
  (escape: the escaped fraction grows with ρ), at fixed seeds;
- the export has one row per run with its full config, and JSON with the experiment and the pooled points;
- make_experiment clamps a page's settings into the class limits and refuses an empty grid.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from core import stats
from core.toy import theory
from core.toy.landscapes import make_landscape
from serve import classroom as cl
from serve.roomstore import Run, SqliteStore


@pytest.fixture
def store(tmp_path):
    return SqliteStore(tmp_path / "class.sqlite")


@pytest.fixture
def room(store):
    # small runs: 40 particles, 100 steps (milliseconds each)
    exp = cl.make_experiment("escape", (0.0, 0.1, 0.2), particles=40, steps=100)
    return cl.open_room(store, exp, cap=3, now=1000.0)


def test_codes_are_unguessable_and_readable():
    codes = {cl.new_code() for _ in range(2000)}
    assert len(codes) == 2000  # 2000 draws from 2⁴⁰ codes: a clash would have probability ~2·10⁻⁶
    assert len(cl.ALPHABET) == 32 and not set("0O1I") & set(cl.ALPHABET)
    assert all(len(c) == 8 and set(c) <= set(cl.ALPHABET) for c in codes)
    assert math.log2(len(cl.ALPHABET)) * cl.CODE_LEN >= 40
    assert cl.clean_code(" abcd-efgh ") == "ABCDEFGH"
    for bad in ("ABCDEFG", "ABCDEFGHJ", "ABCDEF0H", "ABCDEFIH", "", None, "ABCD'; --"):
        assert cl.clean_code(bad) is None


def test_only_the_secret_controls_the_room(store, room):
    stored = store.get_room(room.code)
    assert room.secret not in stored.to_json()  # only its hash is kept
    for wrong in (room.code, "", None, room.secret + "x"):
        with pytest.raises(cl.Refused, match="Only the lecturer"):
            cl.set_state(store, room.code, wrong, "closed")
        with pytest.raises(cl.Refused, match="Only the lecturer"):
            cl.reset_room(store, room.code, wrong)
        with pytest.raises(cl.Refused, match="Only the lecturer"):
            cl.export(store, room.code, wrong)
        with pytest.raises(cl.Refused, match="Only the lecturer"):
            cl.set_limits(store, room.code, wrong, cap=10)
    assert store.get_room(room.code).state == "open"
    assert cl.set_state(store, room.code, room.secret, "closed").state == "closed"


def test_refusals_each_have_their_message(store, room):
    with pytest.raises(cl.Refused, match="There is no room"):
        cl.submit_run(store, "ZZZZZZZZ", "student01", 0, now=1001.0)
    with pytest.raises(cl.Refused, match="no valid student id"):
        cl.submit_run(store, room.code, "x", 0, now=1001.0)
    for bad in ("../../etc/passwd", "-cmd|calc", "=1+1abcdef", None, 12345678):
        with pytest.raises(cl.Refused, match="no valid student id"):
            cl.submit_run(store, room.code, bad, 0, now=1001.0)
    assert all(cl.STUDENT_ID.match(cl.new_student_id()) for _ in range(500))
    with pytest.raises(cl.Refused, match="expired"):
        cl.submit_run(store, room.code, "student01", 0, now=1000.0 + 91 * 60)
    # the cap: 3 runs, then a refusal (spaced out so the rate limit does not bite)
    for i in range(3):
        assert cl.submit_run(store, room.code, "student01", i, now=1001.0 + 10 * i).stored
    with pytest.raises(cl.Refused, match="done your 3 runs"):
        cl.submit_run(store, room.code, "student01", 3, now=1100.0)
    # too fast: the bucket holds 2 runs, refilled at one per 4 s
    cl.submit_run(store, room.code, "student02", 0, now=2000.0)
    cl.submit_run(store, room.code, "student02", 1, now=2000.1)
    with pytest.raises(cl.Refused, match=r"Too fast: wait [34] s"):
        cl.submit_run(store, room.code, "student02", 2, now=2000.2)
    cl.set_state(store, room.code, room.secret, "closed")
    with pytest.raises(cl.Refused, match="closed"):
        cl.submit_run(store, room.code, "student03", 0, now=2001.0)
    assert len(cl.room_runs(store, store.get_room(room.code))) == 5  # 3 + 2: nothing was stored by a refusal


def test_a_full_room_refuses(store, room, monkeypatch):
    monkeypatch.setattr(cl, "ROOM_MAX_RUNS", 2)
    for i in range(2):
        cl.submit_run(store, room.code, f"student{i:02d}", 0, now=1001.0)
    with pytest.raises(cl.Refused, match=r"room is full \(2 runs\)"):
        cl.submit_run(store, room.code, "student99", 0, now=1001.0)
    assert len(store.runs(room.code, 0)) == 2


def test_choice_rooms_check_the_setting(store):
    exp = cl.make_experiment("escape", (0.0, 0.2), assign="choice", particles=20, steps=50)
    room = cl.open_room(store, exp, now=0.0)
    with pytest.raises(cl.Refused, match="not one of this room"):
        cl.submit_run(store, room.code, "student01", 0, choice=5, now=1.0)
    run = cl.submit_run(store, room.code, "student01", 0, choice=1, now=1.0).run
    assert run.slot == 1 and run.config["rhos"] == [0.2]


def test_a_repeat_stores_nothing_and_answers_with_the_stored_run(store, room):
    first = cl.submit_run(store, room.code, "student01", 0, now=1001.0)
    again = cl.submit_run(store, room.code, "student01", 0, now=1001.1)  # double click / reconnect
    assert first.stored and not again.stored
    assert again.run.result == first.run.result and again.run.config == first.run.config
    assert len(store.runs(room.code, 0)) == 1
    # the server computed it: the config is the room's, the seed is derived from who ran it
    assert first.run.config["particles"] == 40 and first.run.config["steps"] == 100
    assert first.run.config["seed"] == cl.run_seed(room.code, 0, "student01", 0)
    assert cl.run_seed(room.code, 0, "student01", 1) != first.run.config["seed"]


def test_round_robin_fills_the_grid_evenly(store, room):
    slots = [cl.join(store, room.code, f"student{i:02d}").slot for i in range(9)]
    assert sorted(slots) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert cl.join(store, room.code, "student04").slot == slots[4]  # a re-join keeps the setting


def test_reset_empties_the_room(store, room):
    cl.submit_run(store, room.code, "student01", 0, now=1001.0)
    cl.reset_room(store, room.code, room.secret)
    r = store.get_room(room.code)
    assert cl.room_runs(store, r) == []
    assert cl.submit_run(store, room.code, "student01", 0, now=1100.0).stored  # run 0 again, in the new epoch


def _fake(slot, **result) -> Run:
    return Run(student=f"s{slot}{len(result)}{id(result)}", run_index=0, slot=slot, config={}, result=result,
               created=0.0)


def test_pooled_fraction_is_wilson_over_all_particles():
    exp = cl.make_experiment("escape", (0.0, 0.1))
    runs = [_fake(0, successes=3, n=10, value=0.3), _fake(0, successes=7, n=20, value=0.35),
            _fake(1, successes=9, n=10, value=0.9)]
    p = cl.pool(exp, runs, with_theory=False)
    assert (p.points[0].runs, p.points[0].n) == (2, 30)
    assert p.points[0].estimate == pytest.approx(10 / 30)
    assert (p.points[0].lo, p.points[0].hi) == pytest.approx(stats.wilson_interval(10, 30))
    assert p.points[1].estimate == pytest.approx(0.9) and p.runs == 3


def test_pooled_mean_equals_the_mean_over_all_particles():
    """From per-run (n, mean, sd) the pool must give exactly what all particles concatenated give."""
    rng = np.random.default_rng(0)
    parts = [rng.normal(loc, 1.0, size=n) for loc, n in ((0.1, 50), (0.3, 80), (-0.2, 30))]
    runs = [_fake(0, n=x.size, mean=float(x.mean()), sd=float(x.std(ddof=1)), value=float(x.mean())) for x in parts]
    p = cl.pool(cl.make_experiment("valley", (0.1,)), runs, with_theory=False).points[0]
    allx = np.concatenate(parts)
    half = stats.t_critical_95(allx.size - 1) * allx.std(ddof=1) / math.sqrt(allx.size)
    assert p.n == allx.size
    assert p.estimate == pytest.approx(allx.mean(), abs=1e-12)
    assert (p.lo, p.hi) == pytest.approx((allx.mean() - half, allx.mean() + half), abs=1e-12)


def test_intervals_narrow_as_runs_arrive():
    exp = cl.make_experiment("valley", (0.1,), particles=50, steps=200)
    runs = []
    widths = []
    for i in range(4):
        cfg, res = cl.run_one(exp, 0.1, seed=i)
        runs.append(Run(f"student{i}", 0, 0, cfg, res, 0.0))
        p = cl.pool(exp, runs, with_theory=False).points[0]
        widths.append(p.hi - p.lo)
    # 50 → 200 particles: the half-width goes as 1/√n, so it should halve; 1.5 leaves room for the sd's noise
    assert all(b < a for a, b in zip(widths, widths[1:])) and widths[3] < widths[0] / 1.5, widths


def test_class_valley_curve_agrees_with_the_exact_chain():
    """Four students per ρ at the valley's checked example (200 particles × 600 steps each). Margin: the pooled
    95% interval itself (≈ ±1.96 standard errors over 800 particles) plus 0.005 for the time average's bias (it
    starts at w = 0 and the first 20% of steps are dropped; the chain is the stationary law). At ρ = 0 the page's
    checked value is 0.090 against the chain's 0.090."""
    exp = cl.make_experiment("valley", (0.0, 0.2))
    runs = [Run(f"st{i}{s}", 0, s, *cl.run_one(exp, exp.values[s], seed=100 * s + i), 0.0)
            for s in range(2) for i in range(4)]
    p = cl.pool(exp, runs)
    for point, th in zip(p.points, p.theory):
        assert th == pytest.approx(theory.exact_chain_valley(10.0, 1.0, 0.05, 1.0, float(point.value), n=500).mean)
        assert point.lo - 0.005 <= th <= point.hi + 0.005, (point, th)
    assert p.points[1].lo > p.points[0].hi  # the claim: SAM (ρ = 0.2) sits further on the flat side than SGD


def test_class_escape_fraction_grows_with_rho_and_agrees_with_the_chain():
    """Two students at ρ = 0 and two at ρ = 0.3 (100 particles × 300 steps each, the escape lab's scene). At these
    seeds 34.5% against 63.5% escape (theory 0.399 and 0.654); the Wilson intervals over 200 particles are ±0.07,
    so non-overlap is a margin of about 2 half-widths. Theory: 1 − exp(−T/m) with the exact chain's mean escape
    step m; margin: the pooled interval plus 0.03 for the exponential law, which leaves out the first steps'
    relaxation (measured within 0.025 against 800 particles per ρ on both wells)."""
    exp = cl.make_experiment("escape", (0.0, 0.3))
    runs = [Run(f"st{i}{s}", 0, s, *cl.run_one(exp, exp.values[s], seed=10 + i), 0.0)
            for s in range(2) for i in range(2)]
    p = cl.pool(exp, runs)
    assert p.points[1].lo > p.points[0].hi, p.points
    assert p.theory_label.startswith("theory: exact chain")
    m_sgd = theory.double_well_escape_steps(make_landscape("double_well_2d"), 0.05, 2.5)  # 589: the lab's checked value
    assert p.theory[0] == pytest.approx(1 - math.exp(-300 / m_sgd), rel=1e-3)
    for point, th in zip(p.points, p.theory):
        assert point.lo - 0.03 <= th <= point.hi + 0.03, (point, th)


def test_psam_runs_at_equal_budget_and_agrees_with_the_exact_schedule_chain():
    """SGD and full SAM on the 1-D double well at full SAM's budget (2 × 100 gradient evaluations), three students
    each (3 × 400 particles). The theory is the exact schedule chain's mass in the flat basin at step T; margin: the
    pooled 95% Wilson interval (±0.028 at 1200 particles) plus 0.01 for the chain's grid (800 cells). Measured at
    these seeds: SGD 0.389 against 0.393, SAM 0.307 against 0.308."""
    exp = cl.make_experiment("psam", ("sgd", "sam"), particles=400)
    cfg_sgd, _ = cl.run_one(exp, "sgd", seed=1)
    cfg_sam, _ = cl.run_one(exp, "sam", seed=1)
    assert cfg_sgd["steps"] == 200 and cfg_sam["steps"] == 100  # the same 200 gradient evaluations
    runs = [Run(f"st{i}{s}", 0, s, *cl.run_one(exp, exp.values[s], seed=i), 0.0) for s in range(2) for i in range(3)]
    p = cl.pool(exp, runs)
    assert p.theory_label.startswith("theory: exact Markov chain")
    for point, th in zip(p.points, p.theory):
        assert point.n == 1200 and 0 <= point.estimate <= 1
        assert point.lo - 0.01 <= th <= point.hi + 0.01, (point, th)
    other = cl.pool(cl.make_experiment("psam", ("sgd",), landscape="many_wells"), [])
    assert other.theory is None and "no closed form" in other.theory_label


def test_cifar_runs_are_short_real_trainings(one_torch_thread):
    """The CIFAR kind trains the tiny CNN for real (1 epoch on 500 images here): SAM spends twice SGD's gradient
    evaluations, accuracies are fractions, and two seeds pool into a mean with a Student's t interval."""
    exp = cl.make_experiment("cifar", ("sgd", "sam"), train_size=500, epochs=1)
    c_sgd, r_sgd = cl.run_one(exp, "sgd", seed=1)
    c_sam, r_sam = cl.run_one(exp, "sam", seed=1)
    assert c_sgd["model"] == "tiny" and c_sgd["train_size"] == 500 and c_sgd["device"] == "cpu"
    assert r_sam["grad_evals"] == 2 * r_sgd["grad_evals"]
    assert 0.0 <= r_sgd["value"] <= 1.0 and 0.0 <= r_sam["value"] <= 1.0
    _, r2 = cl.run_one(exp, "sgd", seed=2)
    p = cl.pool(exp, [Run("a", 0, 0, c_sgd, r_sgd, 0.0), Run("b", 0, 0, c_sgd, r2, 0.0)]).points[0]
    values = np.array([r_sgd["value"], r2["value"]])
    half = stats.t_critical_95(1) * values.std(ddof=1) / math.sqrt(2)
    assert (p.estimate, p.lo, p.hi) == pytest.approx((values.mean(), values.mean() - half, values.mean() + half))


def test_export_has_every_config(store, room):
    for i in range(3):
        cl.submit_run(store, room.code, f"student{i:02d}", 0, now=1001.0)
    csv_text, json_text = cl.export(store, room.code, room.secret)
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) == 3
    assert {json.loads(r["config"])["seed"] for r in rows} == {cl.run_seed(room.code, 0, f"student{i:02d}", 0)
                                                               for i in range(3)}
    data = json.loads(json_text)
    assert data["experiment"]["kind"] == "escape" and len(data["runs"]) == 3
    assert sum(p["runs"] for p in data["pooled"]["points"]) == 3


def test_make_experiment_clamps_and_refuses():
    exp = cl.make_experiment("escape", particles=10**9, steps="nan", lr="abc", landscape="../../x", sigma=-5)
    s = exp.settings
    assert s["particles"] == 400 and s["steps"] == 300 and s["lr"] == 0.05 and s["landscape"] == "double_well_2d"
    assert s["sigma"] == 0.0
    with pytest.raises(ValueError, match="ρ grid"):
        cl.make_experiment("valley", ())
    with pytest.raises(ValueError, match="ρ grid"):
        cl.make_experiment("valley", (0.1, 5.0))
    with pytest.raises(ValueError, match="at least one"):
        cl.make_experiment("cifar", ("adamw",))
    with pytest.raises(ValueError, match="unknown experiment"):
        cl.make_experiment("poker")
    assert cl.Experiment.from_dict(exp.to_dict()) == exp
