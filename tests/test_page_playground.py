"""pages/playground.py: several optimizers side by side on any landscape, animated in the browser.

Claims:
1. Runs without exceptions; the main chart is a contour with one path per optimizer and animation
   frames (play / pause buttons, a step slider), at most charts.MAX_FRAMES of them.
2. Moving ρ changes the plotted paths of the SAM variants (SGD's path is unaffected: ρ is not used).
3. Query parameters restore the view (optimizers, landscape, ρ, start point).
4. Bad input gets a message, never a traceback: a bad formula (inline st.error, the text stays),
   NaN / huge URL values, an oversized particle count and divergence (st.warning).
5. 1-D landscapes and the 3-D surface view draw too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.charts import MAX_FRAMES
from tests.pagetest import chart, run_page

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "playground.py")


def _run(**params) -> AppTest:
    return run_page("pages/playground.py", **params)


def _main(at) -> dict:
    return chart(at, "main_chart")


def _paths(spec) -> dict:
    """Path traces by legend name (the lines; the moving heads have showlegend False)."""
    return {t["name"]: t for t in spec["data"] if t.get("mode") == "lines" and t.get("showlegend", True)}


@pytest.fixture(scope="module")
def default_page():
    return _run()


def test_animated_contour_with_frames(default_page):
    spec = _main(default_page)
    assert any(t["type"] == "heatmap" for t in spec["data"])  # the landscape map (charts.contour_trace)
    assert set(_paths(spec)) == {"SGD", "SAM (ρ = 0.2)", "PSAM (ρ = 0.2)"}
    frames = spec.get("frames", [])
    assert 2 <= len(frames) <= MAX_FRAMES
    assert spec["layout"]["updatemenus"][0]["buttons"][0]["method"] == "animate"
    assert len(spec["layout"]["sliders"][0]["steps"]) == len(frames)
    # frames grow: the last frame's first path holds more points than the first frame's
    first, last = frames[0]["data"][0]["x"], frames[-1]["data"][0]["x"]
    assert len(str(last)) > len(str(first))
    assert default_page.get("plotly_chart")[1].proto.id.endswith("-loss_chart")


def test_rho_changes_sam_paths_not_sgd(default_page):
    at = default_page
    before = _paths(_main(at))
    at.slider(key="rho").set_value(0.6).run()
    assert not at.exception
    after = _paths(_main(at))
    assert after["SGD"]["x"] == before["SGD"]["x"]  # ρ does not enter SGD
    assert after["SAM (ρ = 0.6)"]["x"] != before["SAM (ρ = 0.2)"]["x"]
    at.slider(key="rho").set_value(0.2).run()


def test_url_restores_view():
    at = _run(opts="sgd,asam,late_sam", landscape="himmelblau", rho="0.15", x="1.5", y="-2", lr="0.005")
    assert set(_paths(_main(at))) == {"SGD", "ASAM (ρ = 0.15)", "late SAM (ρ = 0.15)"}
    assert at.selectbox(key="landscape").value == "himmelblau"
    assert (at.session_state["x"], at.session_state["y"]) == (pytest.approx(1.5), pytest.approx(-2.0))
    start = next(t for t in _main(at)["data"] if t.get("name") == "start")
    assert start["x"] == [1.5] and start["y"] == [-2.0]
    assert not at.warning, [w.value for w in at.warning]


def test_bad_formula_inline_error_and_text_kept():
    at = _run(landscape="formula")
    assert not at.error
    for bad in ("x^^2", "__import__('os').system('ls')", "open('/etc/passwd')", "x" * 400):
        at.text_input(key="formula").set_value(bad).run()
        assert not at.exception, bad
        assert at.error and at.error[0].value.startswith("Formula:"), bad
        assert at.text_input(key="formula").value == bad[:300]  # the user's text stays in the box
        _main(at)  # the last good formula is still drawn
    at.text_input(key="formula").set_value("x^2 + (y-1)^2").run()
    assert not at.error and not at.exception


@pytest.mark.parametrize("params, expect", [
    ({"rho": "nan"}, "ρ"), ({"lr": "inf"}, "lr"), ({"particles": "1e12"}, "particles"),
    ({"steps": "99999999"}, "steps"), ({"opts": "bogus"}, "optimizers"), ({"landscape": "nope"}, "unknown"),
])
def test_bad_url_values_get_a_notice(params, expect):
    at = _run(**params)
    assert any(expect in w.value for w in at.warning), [w.value for w in at.warning]
    _main(at)


def test_divergence_gets_a_message():
    """Himmelblau's quartic walls at η = 0.5: every particle leaves the finite range."""
    at = _run(landscape="himmelblau", lr="0.5", x="4.5", y="4.5")
    assert any("Diverged" in w.value for w in at.warning), [w.value for w in at.warning]
    _main(at)


def test_one_dimensional_and_surface_views():
    at = _run(landscape="double_well_1d")
    spec = _main(at)
    assert spec["layout"]["xaxis"]["title"]["text"] == "w (parameter units)" and spec.get("frames")
    at = _run(view="surface")
    assert any(t["type"] == "surface" for t in _main(at)["data"])


def test_new_landscape_starts_at_its_default_start():
    at = _run()
    at.selectbox(key="landscape").set_value("himmelblau").run()
    assert not at.exception
    start = next(t for t in _main(at)["data"] if t.get("name") == "start")
    from core.toy.landscapes import make_landscape

    assert (start["x"][0], start["y"][0]) == pytest.approx(make_landscape("himmelblau").default_start)


def test_landscape_sets_a_learning_rate_that_settles():
    """A link to a sharp landscape with no lr gets a stable default (Himmelblau: 2/λ_max ≈ 0.015, so
    0.01), no particle diverges, and the default stays out of the URL."""
    at = _run(landscape="himmelblau")
    assert at.select_slider(key="lr").value == pytest.approx(0.01)
    assert not any("Diverged" in w.value for w in at.warning), [w.value for w in at.warning]
    assert "lr" not in at.query_params


def test_switching_to_a_sharper_landscape_lowers_a_too_large_lr_with_a_notice():
    at = _run()
    assert at.select_slider(key="lr").value == pytest.approx(0.05)
    at.selectbox(key="landscape").set_value("rosenbrock").run()
    assert not at.exception
    assert at.select_slider(key="lr").value == pytest.approx(0.001)  # 0.7 · 2/λ_max ≈ 0.0014 → 0.001
    assert any("lowered to 0.001" in w.value and "2/λ" in w.value for w in at.warning), [w.value for w in at.warning]
    at.selectbox(key="landscape").set_value("double_well_2d").run()
    assert at.select_slider(key="lr").value == pytest.approx(0.001)  # a small lr is left alone


def test_divergence_message_names_the_stability_limit():
    at = _run(landscape="himmelblau", lr="0.5", x="4.5", y="4.5")
    warning = next(w.value for w in at.warning if "Diverged" in w.value)
    assert "2/λ_max = 0.0149" in warning


def test_lr_is_left_alone_where_the_landscape_allows_it_or_has_no_known_limit():
    """Saddle (2/λ_max = 1): lr 0.5 stays. A formula without a minimum (x + y) has no limit: nothing is
    lowered and nothing crashes (the notice needs a limit to quote)."""
    at = _run(landscape="formula", formula="x + y")
    at.selectbox(key="landscape").set_value("saddle").run()
    at.select_slider(key="lr").set_value(0.5).run()
    at.selectbox(key="landscape").set_value("formula").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.select_slider(key="lr").value == pytest.approx(0.5)
    assert not any("lowered" in w.value for w in at.warning)
    at.selectbox(key="landscape").set_value("saddle").run()
    assert at.select_slider(key="lr").value == pytest.approx(0.5) and not at.exception


def test_a_learning_rate_past_the_stability_limit_is_flagged_and_1d_has_no_surface_view():
    """A shared link may carry an η the landscape cannot take (Rastrigin's limit 2/λ_max is 0.005): the page
    says so whether or not particles diverge. A 1-D landscape is drawn as a curve and offers no 3-D view."""
    from core.toy.landscapes import make_landscape

    limit = make_landscape("rastrigin").stable_lr()
    at = run_page("pages/playground.py", landscape="rastrigin", lr="0.5")
    assert any(f"stability limit 2/λ_max = {limit:.3g}" in w.value for w in at.warning), [w.value for w in at.warning]
    ok = run_page("pages/playground.py", landscape="rastrigin", lr=f"{0.5 * limit:g}")
    assert not any("stability limit" in w.value for w in ok.warning)
    one_d = run_page("pages/playground.py", landscape="double_well_1d")
    assert not [r for r in one_d.radio if r.key == "view"]


def test_caption_says_how_many_particles_are_drawn_and_how_many_left_the_start():
    """The chart draws a few paths per optimizer; the caption says how many of all, and counts, over all
    particles, those that left the starting basin (read here from the same simulation's first passages)."""
    from core.toy.presets import MANY_WELLS
    from core.toy.simulate import simulate

    at = run_page("pages/playground.py", landscape="many_wells", opts="sgd,sam", rho="0.1", lr="0.01", sigma="6",
                  particles="30", steps="300", seed="0")
    text = " ".join(c.value for c in at.caption)
    assert "draws 3 of the 30 particles" in text, text
    sgd = simulate(MANY_WELLS.config.replace(optimizer="sgd", rhos=(0.0,), particles=30, keep_paths=3,
                                             start=tuple(at.session_state[k] for k in ("x",))))
    assert f"SGD {int((sgd.first_passage[0] >= 0).sum())}/30" in text, text


def test_a_start_at_zero_is_not_shown_as_minus_zero():
    """many_wells' default start is −0.0 (a computed midpoint); the start slider must show 0.000, not −0.000."""
    import math

    at = run_page("pages/playground.py", landscape="many_wells")
    assert math.copysign(1.0, at.slider(key="x").value) == 1.0


def test_the_valley_takes_its_curvatures_from_the_url_and_the_bounce_scene_is_symmetric():
    """valley_1d's a_L, a_R are controls (the valley lab's URL keys). The 'noise-free SAM bounces' scene asks for
    a symmetric valley (a_L = a_R = 10); its claim is SAM's 2-cycle of amplitude ηλρ/(2 − ηλ) (theory.md §3),
    which the default asymmetric valley (10, 1) would not give. Scenes dropped the curvatures before."""
    import numpy as np

    from app.presets import scenes
    from tests.pagetest import trace_array

    scene = scenes()["sam_bounce"]
    assert (scene.params["a_left"], scene.params["a_right"]) == ("10", "10")
    at = _run(**scene.params)
    assert (at.slider(key="a_left").value, at.slider(key="a_right").value) == (10.0, 10.0)
    data = {t["name"]: t for t in _main(at)["data"]}
    curve_x, curve_y = trace_array(data["loss L(w)"]["x"]), trace_array(data["loss L(w)"]["y"])
    assert np.interp(-0.5, curve_x, curve_y) == pytest.approx(np.interp(0.5, curve_x, curve_y), rel=1e-3)
    eta, lam, rho = float(scene.params["lr"]), 10.0, float(scene.params["rho"])
    sam_end = trace_array(next(t for n, t in data.items() if n.startswith("SAM"))["x"])[-1]
    assert abs(sam_end) == pytest.approx(eta * lam * rho / (2 - eta * lam), rel=1e-4)
    # out of range: clamped with a notice, and other landscapes have no curvature controls
    steep = _run(landscape="valley_1d", a_right="500")
    assert steep.slider(key="a_right").value == 50.0
    assert any("a_R" in w.value for w in steep.warning), [w.value for w in steep.warning]
    assert not [s for s in _run(landscape="double_well_2d").slider if s.key in ("a_left", "a_right")]


def test_minimum_labels_sit_above_the_paths(default_page):
    """The minima's names are layout annotations, drawn over every trace: as trace text they sat under the paths,
    which end in a minimum, so 'sharp' was hidden exactly where the particles were."""
    spec = _main(default_page)
    labels = {a["text"] for a in spec["layout"].get("annotations", [])}
    assert {"sharp", "flat"} <= labels
    assert not [t for t in spec["data"] if t.get("text") in (["sharp"], ["flat"])]


def test_a_sharper_valley_curvature_lowers_a_too_large_lr_but_keeps_the_start():
    """Raising a_L is a new landscape for gradient descent (2/λ_max shrinks) though its name stays: η is checked
    again, as on a landscape switch. The start point is the user's and stays."""
    at = _run(landscape="valley_1d", x="0.3")
    assert at.select_slider(key="lr").value == pytest.approx(0.05)
    at.slider(key="a_left").set_value(50.0).run()
    assert not at.exception
    lr = at.select_slider(key="lr").value
    assert lr <= 0.7 * 2 / 50 and any("lowered to" in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.slider(key="x").value == pytest.approx(0.3)


def test_the_bounce_scene_draws_the_loss_on_a_log_scale_where_the_claim_shows():
    """Its claim (SAM's loss stays above the minimum's while SGD's goes to it) is invisible on a linear axis
    (0.02 against 0 on 0–1.25): the scene turns the log scale on, and small losses keep their digits there. A
    landscape with negative losses (the double wells) offers no log scale."""
    import numpy as np

    from app.presets import scenes

    at = _run(**scenes()["sam_bounce"].params)
    assert at.toggle(key="loss_log").value is True
    spec = chart(at, "loss_chart")
    assert spec["layout"]["yaxis"]["type"] == "log"
    y = {t["name"]: np.asarray(t["y"], float) for t in spec["data"]}
    sam = next(v for k, v in y.items() if k.startswith("SAM"))
    small = y["SGD"][(y["SGD"] > 0) & (y["SGD"] < 1e-9)]     # before float32 underflows it to 0 at the minimum
    assert small.size and sam[-1] > 1e-3                       # six significant digits survive, not six decimals
    assert not [t for t in _run().toggle if t.key == "loss_log"]
