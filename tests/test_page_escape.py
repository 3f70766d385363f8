"""Escape lab page (issue 3, page 4) in Streamlit's AppTest, plus the figure builders it uses.

Claims checked:
- the page runs without exceptions and draws its main chart: with ρ in the browser (issue 18) the ρ chart
  (app/components/rhochart, key "main_chart") carries every step of the ρ slider, chart 0 the survival curves and
  chart 1 the particles; with ?animate=1 they are server charts ("main_chart", "escape_animation");
- the main chart carries the theory overlays: Kramers for SGD and the SAM speed-up heuristic
  (theory.md §3), found by trace name;
- moving ρ changes the plotted data (the chart JSON differs, and the SAM traces carry the new ρ);
- URL query parameters restore a view (ρ and the scene);
- bad URL values (NaN, 10¹² particles) give a notice, never a traceback;
- diverging particles are reported with a notice, not a crash;
- the escape animation marks exactly the particles whose first passage is ≤ the frame's step;
- the lecture-hall layout: a ρ change reruns only the ρ fragment, the histogram and the ρ sweep are
  computed only in their own tab (?view=hist|sweep), and the animation only with ?animate=1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import stats_charts as sc
from tests.gridtest import assert_snapped, block, figure, rho_shown, shipped
from tests.pagetest import chart, run_page, trace_array

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "escape.py")
TIMEOUT = 180  # the first run imports torch and simulates on a shared 2-core machine


def _run(**params) -> AppTest:
    return run_page("pages/escape.py", **params)


def _chart(at: AppTest, key: str) -> dict:
    """A chart by its server key, or its place in the ρ chart when ρ moves in the browser."""
    grid_charts = {"main_chart": 0, "escape_animation": 1}
    if key in grid_charts and at.get("bidi_component"):  # the ρ chart (key "main_chart") holds both
        return figure(at, grid_charts[key])
    return chart(at, key)


_array = trace_array


def _names(spec: dict) -> list[str]:
    return [d.get("name") or "" for d in spec["data"]]


@pytest.fixture(scope="module")
def default_page() -> AppTest:
    return _run()


def test_runs_and_main_chart_has_theory_overlays(default_page):
    names = _names(_chart(default_page, "main_chart"))
    assert "SGD" in names
    assert any(n.startswith("SAM ρ=") for n in names), names
    assert any("Kramers" in n for n in names), f"no Kramers overlay: {names}"
    assert any("heuristic" in n for n in names), f"no SAM heuristic overlay: {names}"
    # the particles and the Zhu section are there too; the histogram and the sweep wait for their tab
    for key in ("escape_animation", "zhu_chart"):
        _chart(default_page, key)
    keys = [c.proto.id.rsplit("-", 1)[-1] for c in default_page.get("plotly_chart")]
    assert "escape_histogram" not in keys and "rho_sweep" not in keys, keys
    assert not _chart(default_page, "escape_animation").get("frames")  # a still picture until animate=1


@pytest.mark.parametrize("view, key", [("hist", "escape_histogram"), ("sweep", "rho_sweep")])
def test_each_tab_draws_its_chart_from_the_url(view, key):
    at = _run(view=view)
    _chart(at, key)
    assert not [w.value for w in at.warning if "view" in w.value]
    other = {"hist": "rho_sweep", "sweep": "escape_histogram"}[view]
    assert other not in [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")]


def test_unknown_tab_in_the_url_is_a_notice():
    at = _run(view="nosuchtab")
    assert any("view" in w.value and "nosuchtab" in w.value for w in at.warning), [w.value for w in at.warning]
    _chart(at, "main_chart")


def test_where_it_breaks_peaks_at_an_intermediate_rho(default_page):
    # theory.md §3 "where the claim stops holding": on the Zhu toy (core.toy.presets.ZHU_BREAKS, fixed seed)
    # final success is highest at neither end of the ρ grid; the page must draw that, peak marked.
    data = _chart(default_page, "zhu_chart")["data"]
    success = next(d for d in data if d.get("name", "").startswith("success"))
    y = _array(success["y"])
    assert 0 < int(np.argmax(y)) < len(y) - 1, y
    assert any(d.get("name") == "peak of success" for d in data)
    # the text quotes the peak it draws (ρ and share), not a claim written before the run
    x = _array(success["x"])
    text = " ".join(m.value for m in default_page.markdown)
    assert f"At ρ = {x[np.argmax(y)]:g} the bounce" in text and f"**{y.max():.0%}** of" in text, text


def test_animation_has_frames_and_escape_markers():
    spec = _chart(_run(animate="1"), "escape_animation")
    assert len(spec.get("frames", [])) >= 10
    assert spec["data"][0]["type"] == "heatmap"  # the default scene is the 2-D double well: shaded loss
    assert all(f["data"][0]["type"] == "heatmap" for f in spec["frames"])  # kept while playing
    assert any("escapes" in n for n in _names(spec))


def test_every_rho_step_is_shipped_and_they_differ(default_page):
    """The ρ chart carries all 61 steps of the slider (0 … 0.3 by 0.005), the step shown first is the page's ρ
    (0.2), and the survival chart at ρ = 0.3 differs from the one at 0.2 and names SAM ρ=0.3."""
    head, payload = shipped(default_page)
    rhos = payload["slider"]["rhos"]
    assert len(rhos) == 61 and rhos[0] == 0.0 and rhos[-1] == pytest.approx(0.3)
    assert all(len(c["steps"]) == 61 for c in payload["charts"]) and len(payload["charts"]) == 2
    assert rho_shown(default_page) == pytest.approx(0.2)
    at_02, at_03 = figure(default_page, 0, step=40)["data"], figure(default_page, 0, step=60)
    assert at_03["data"] != at_02 and "SAM ρ=0.3" in _names(at_03)
    assert "SAM ρ=0.2" in _names(figure(default_page, 0))


def test_a_released_rho_is_the_pages_rho_on_the_next_run():
    """A release stores the ρ in the session (the component's callback does it in the browser); the next run
    shows that step first, puts it in the URL and computes the statistics at it."""
    at = _run()
    at.session_state["rho"] = 0.1
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert rho_shown(at) == pytest.approx(0.1) and at.query_params["rho"] in ("0.1", ["0.1"])
    runs = re.findall(r"<td>(SGD|SAM ρ=[0-9.]+)</td>", block(at))  # the statistics at the step shown first
    assert runs == ["SGD", "SAM ρ=0.025", "SAM ρ=0.05", "SAM ρ=0.1"], runs


def test_the_statistics_at_every_step_travel_with_the_chart(default_page):
    """A release reruns no table (issue 18: ≤ 10 ms of server CPU per release): the statistics table and its
    caption at every step are the ρ chart's block, each naming the runs of its own step."""
    for step, rho in ((0, 0.0), (40, 0.2), (60, 0.3)):
        html = block(default_page, 0, step=step)
        assert f"<td>SAM ρ={rho:g}</td>" in html and "<td>SGD</td>" in html, html[:300]
        assert "Kramers for SGD" in html and "particles per run" in html
    assert not default_page.table  # no server table: the release would leave it behind


def test_query_params_restore_the_view():
    at = _run(rho="0.15", landscape="double_well_1d")
    assert rho_shown(at) == pytest.approx(0.15)
    assert at.selectbox(key="landscape").value == "double_well_1d"
    assert "SAM ρ=0.15" in _names(_chart(at, "main_chart"))
    # 1-D scene: the animation background is the loss curve, not the 2-D default's contour
    assert _chart(at, "escape_animation")["data"][0]["type"] == "scatter"
    assert not [w.value for w in at.warning if "rho" in w.value.lower() or "ρ" in w.value]


@pytest.mark.parametrize("raw, shown, words", [
    ("nan", 0.2, "finite"), ("0.137", 0.135, "between"), ("1e9", 0.3, "outside"), ("-1", 0.0, "outside"),
    ("abc", 0.2, "finite")])
def test_hostile_rho_in_the_url_gets_a_notice_and_the_nearest_step(raw, shown, words):
    assert_snapped(_run(rho=raw), shown, words)


def test_bad_url_values_get_notices_not_tracebacks():
    at = _run(rho="nan", particles="1e12")
    warnings = " | ".join(w.value for w in at.warning)
    assert "ρ" in warnings and "finite" in warnings, warnings
    assert "particles" in warnings, warnings
    # 20,000 particles × 300 steps × 61 ρ is too large for one grid run: ρ is the server slider then
    assert not at.get("bidi_component") and at.slider(key="rho").value == pytest.approx(0.2)  # the page default


def test_animated_particles_keep_the_server_slider():
    """With ?animate=1 the particles play in time (Plotly frames), so ρ is the server slider, as before."""
    at = _run(animate="1", rho="0.15")
    assert at.slider(key="rho").value == pytest.approx(0.15) and not at.get("bidi_component")
    at.slider(key="rho").set_value(0.3).run()
    assert not at.exception and "SAM ρ=0.3" in _names(chart(at, "main_chart"))


def test_zhu_scene_runs_without_kramers():
    # The Zhu toy has a ridge, not a saddle, and minibatch noise: no Kramers curve, but no crash either.
    at = _run(landscape="zhu")
    names = _names(_chart(at, "main_chart"))
    assert "SGD" in names and not any("Kramers" in n for n in names)


def test_divergence_is_a_notice_not_a_crash():
    # η = 1 on the double well's walls (curvature 20): ηλ = 20 > 2, so gradient descent diverges
    # (theory.md §2 stability condition); the page must say so and keep drawing.
    at = _run(lr="1.0", steps="100")
    assert any("diverged" in w.value for w in at.warning), [w.value for w in at.warning]
    _chart(at, "main_chart")


# ---- the figure builders, on synthetic arrays --------------------------------------------------

def test_escape_markers_appear_at_their_first_passage_step():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 101, 5)  # recorded steps 0, 5, …, 100
    fp = rng.integers(-1, 101, size=80)  # first passages (−1 = never)
    pos = rng.normal(size=(80, 2))
    run = sc.AnimatedRun("SAM", "red", steps, rng.normal(size=(10, steps.size, 2)), fp, pos)
    bg = sc.landscape_background(lambda w: (w ** 2).sum(-1), ((-2, 2), (-2, 2)), 2, n=20)
    fig = sc.escape_animation(bg, 2, [run], n_frames=steps.size, max_markers=80)
    assert sc.frame_count(fig) == steps.size
    for frame in fig.to_dict()["frames"]:
        step = int(frame["name"])
        markers = frame["data"][2]  # traces: background (kept), particles, escapes
        expected = (fp >= 0) & (fp <= step)
        assert len(_array(markers["x"])) == expected.sum()
        assert np.allclose(sorted(_array(markers["x"])), sorted(pos[expected, 0]))
        # the legend counts what is drawn: escapes among the marked particles (all 80 here, cap 80)
        assert f"{int(expected.sum())} escapes (80 marked)" in markers["name"]


def test_survival_overlays_follow_kramers_and_heuristic():
    # Kramers overlay S(t) = exp(−t/τ); heuristic SAM S(t) = exp(−t·speed-up/τ) (theory.md §3)
    t = np.arange(0, 101)
    s = sc.EscapeSeries("sgd", 0.0, t, np.exp(-t / 50.0), np.full(10, -1))
    fig = sc.survival_figure([s], kramers_tau=50.0, sam_speedups={0.1: 2.0})
    data = json.loads(fig.to_json())["data"]
    kr = next(d for d in data if d["name"].startswith("Kramers"))
    he = next(d for d in data if d["name"].startswith("heuristic"))
    assert np.allclose(_array(kr["y"]), np.exp(-_array(kr["x"]) / 50.0))
    assert np.allclose(_array(he["y"]), np.exp(-_array(he["x"]) * 2.0 / 50.0))


def test_statistics_give_the_exact_sgd_escape_time_beside_kramers(default_page):
    """The default scene (the ESCAPE preset's double well, η = 0.05, σ = 2.5) states SGD's exact mean escape step
    from the grid chain and how far Kramers' formula is below it."""
    from core.toy import theory
    from core.toy.landscapes import make_landscape
    from core.toy.presets import ESCAPE

    c = ESCAPE.config
    exact = theory.double_well_escape_steps(make_landscape(c.landscape), c.lr, c.sigma)
    tau = theory.kramers_escape_steps(*make_landscape(c.landscape).escape_geometry(), c.lr, c.sigma)
    text = block(default_page)  # the statistics caption travels with the ρ chart
    assert f"mean escape {exact:,.0f} steps; Kramers is {1 - tau / exact:.0%} low" in text, text


def test_switching_the_scene_starts_it_at_its_own_learning_rate_and_steps():
    """The double well runs at η = 0.05 for 300 steps, the Zhu toy at ZHU_BREAKS' η = 0.009 and steps. Choosing the
    Zhu toy in the menu after moving η on the double well must give the Zhu toy's own η and T (at η = 0.05 every
    SGD particle leaves its sharp minimum within a few steps, against what the scene explains), and back."""
    from core.toy.presets import ZHU_BREAKS

    at = _run(lr="0.1")
    at.selectbox(key="landscape").set_value("zhu").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.select_slider(key="lr").value == pytest.approx(ZHU_BREAKS.config.lr)  # 0.009, as in "Where it breaks"
    assert at.slider(key="steps").value == ZHU_BREAKS.config.steps
    assert "lr" not in at.query_params and "steps" not in at.query_params
    at.selectbox(key="landscape").set_value("double_well_2d").run()
    assert at.select_slider(key="lr").value == pytest.approx(0.05) and at.slider(key="steps").value == 300
    # the two double wells share their defaults: a chosen η stays when switching between them
    at.select_slider(key="lr").set_value(0.1).run()
    at.selectbox(key="landscape").set_value("double_well_1d").run()
    assert at.select_slider(key="lr").value == pytest.approx(0.1)


def test_zhu_scene_at_its_own_settings_shows_what_its_text_says():
    """At ZHU_BREAKS' η = 0.009 the Zhu scene's escape table agrees with "Where it breaks": SGD never leaves, a
    middle ρ (0.05) carries most particles over, and the scene's largest ρ (0.2) traps them. (At the old η = 0.01,
    the edge of stability, ρ = 0.2 escaped 76% and ρ = 0.1 only 49%.) 400 particles: a fraction's SE ≤ 2.5%."""
    at = _run(landscape="zhu", rho="0.2")
    rows = re.findall(r"<tr>\s*<td>(SGD|SAM ρ=[0-9.]+)</td>\s*<td>([0-9.]+)%", block(at))  # the table at ρ = 0.2
    frac = {run: float(share) for run, share in rows}
    assert frac["SGD"] == 0.0 and frac["SAM ρ=0.05"] > 50 and frac["SAM ρ=0.2"] < frac["SAM ρ=0.05"] - 40, frac
