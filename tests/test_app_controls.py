"""app/controls.py: URL values are parsed, clamped (core.limits) and reported, never raised.

Claims:
1. parse_number: in-range values pass unchanged; out-of-range values are clamped to the widget's
   range with a notice; NaN, Inf, 1e308-overflow and text fall back to the default with a notice.
2. parse_choice / parse_multi / parse_bool: unknown values fall back (or are dropped) with a notice.
3. Widgets seed their value from the URL once, write non-default values back to the URL, and show
   each URL notice as a visible st.warning (AppTest).
4. cap_request caps particles × steps × #ρ at LIMITS["particle_steps"] with a notice.
5. theme: every optimizer of core.schedules.OPTIMIZERS has its own colour; rho_color orders shades.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app import controls, theme
from core.limits import LIMITS
from core.methods import OPTIMIZERS


def test_parse_number_in_range_unchanged():
    assert controls.parse_number("rho", "0.3") == (0.3, None)
    assert controls.parse_number("steps", ["10", "250"]) == (250, None)  # repeated parameter: last wins


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "abc", "", "1e999", "0x10", "--1"])
def test_parse_number_not_finite_gives_default_and_notice(raw):
    value, msg = controls.parse_number("rho", raw, default=0.07)
    assert value == 0.07
    assert msg and "rho" in msg


def test_parse_number_clamps_to_widget_range_and_global_cap():
    value, msg = controls.parse_number("rho", "0.9", lo=0.0, hi=0.5)
    assert value == 0.5 and "outside" in msg
    value, msg = controls.parse_number("particles", "1e12")
    assert value == LIMITS["particles"].hi and "particles" in msg
    value, msg = controls.parse_number("steps", "-5")
    assert value == LIMITS["steps"].lo and msg
    assert isinstance(controls.parse_number("seed", "3.7")[0], int)  # integer controls stay integers


def test_numeric_choice_round_trips_through_the_url():
    # The URL holds _fmt(value) (20.0 is written "20"); reading it back must give the same option,
    # for every option of a float menu, and other spellings of the same number must match too.
    options = (-0.3, 0.0, 0.5, 2.0, 20.0, 1e-4)
    for o in options:
        assert controls.parse_choice("a", controls._fmt(o), options, options[0]) == (o, None)
    assert controls.parse_choice("a", "2e1", options, 0.5) == (20.0, None)
    value, msg = controls.parse_choice("a", "21", options, 0.5)
    assert value == 0.5 and "21" in msg  # a number that is not on the menu still falls back
    assert controls.parse_choice("a", "nan", options, 0.5)[1]


def test_parse_choice_multi_bool():
    assert controls.parse_choice("landscape", "saddle", ["a", "saddle"], "a") == ("saddle", None)
    value, msg = controls.parse_choice("landscape", "nope", ["a", "saddle"], "a")
    assert value == "a" and "nope" in msg
    assert controls.parse_multi("opts", "sgd,sam", list(OPTIMIZERS), ["sgd"]) == (["sgd", "sam"], None)
    assert controls.parse_multi("opts", ["sam", "psam"], list(OPTIMIZERS), ["sgd"]) == (["sam", "psam"], None)
    value, msg = controls.parse_multi("opts", "sgd,zzz", list(OPTIMIZERS), ["sam"])
    assert value == ["sgd"] and "zzz" in msg
    value, msg = controls.parse_multi("opts", "zzz", list(OPTIMIZERS), ["sam"])
    assert value == ["sam"] and msg
    assert controls.parse_bool("present", "1") == (True, None)
    assert controls.parse_bool("present", "off") == (False, None)
    assert controls.parse_bool("present", "maybe")[1]


def _widgets_app():
    import streamlit as st

    from app import controls

    controls.begin_run(st.container())
    rho = controls.rho_slider(default=0.05, hi=0.5)
    steps = controls.number_slider("steps", "steps", lo=10, hi=2000, default=200)
    opts = controls.optimizer_multiselect(default=("sgd", "sam"))
    particles, steps2 = controls.cap_request(st.session_state.get("ask_particles", 10), 5000, 12)
    st.write(f"rho={rho} steps={steps} opts={','.join(opts)} capped={particles}x{steps2}")
    controls.check_unknown_params()


def _run(**params) -> AppTest:
    at = AppTest.from_function(_widgets_app, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _line(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("rho="))


def test_widgets_read_url_and_warn_visibly():
    at = _run(rho="0.2", steps="1e308", opts="sam,bogus", no_such_key="1")
    assert _line(at).startswith("rho=0.2 steps=2000 opts=sam ")
    warnings = " | ".join(w.value for w in at.warning)
    assert "steps" in warnings and "bogus" in warnings and "no_such_key" in warnings
    assert "rho" not in warnings.lower()  # a valid ρ gets no notice


def test_widget_change_goes_to_url_and_default_leaves_it():
    at = _run()
    assert "rho" not in at.query_params  # defaults stay out of the URL
    at.slider(key="rho").set_value(0.3).run()
    raw = at.query_params["rho"]
    assert float(raw if isinstance(raw, str) else raw[-1]) == pytest.approx(0.3)
    at.slider(key="rho").set_value(0.05).run()
    assert "rho" not in at.query_params


def test_cap_request_caps_particle_steps():
    """20 000 particles × 5 000 steps × 12 ρ is 1.2e9 particle-steps: above the 2e7 cap."""
    at = AppTest.from_function(_widgets_app, default_timeout=60)
    at.session_state["ask_particles"] = 20_000
    at.run()
    assert not at.exception
    line = _line(at)
    particles, steps = (int(v) for v in line.split("capped=")[1].split("x"))
    assert particles * steps * 12 <= LIMITS["particle_steps"].hi
    assert particles < 20_000
    assert any("capped" in w.value for w in at.warning)


def test_theme_colours():
    assert set(theme.COLORS) == set(OPTIMIZERS)
    assert len(set(theme.COLORS.values())) == len(theme.COLORS)  # one distinct colour each
    rhos = (0.0, 0.05, 0.1, 0.2)
    assert theme.rho_color(0.0, rhos) == theme.COLORS["sgd"]  # ρ = 0 is SGD

    def lightness(hex_color):
        r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
        return (max(r, g, b) + min(r, g, b)) / 2

    shades = [lightness(theme.rho_color(r, rhos)) for r in rhos[1:]]
    assert shades == sorted(shades, reverse=True) and len(set(shades)) == 3  # darker as ρ grows


def test_presentation_mode_enlarges_figure_fonts():
    import plotly.graph_objects as go

    normal = theme.apply_layout(go.Figure(), x_title="step", present=False).layout.font.size
    big = theme.apply_layout(go.Figure(), x_title="step", present=True).layout.font.size
    assert big > normal


def test_animation_frames_bounded_and_keep_ends():
    """charts._frame_indices: at most MAX_FRAMES samples, always the first and the last."""
    from app import charts

    for k in (1, 2, 50, 51, 201, 5001):
        idx = charts._frame_indices(k)
        assert len(idx) <= charts.MAX_FRAMES and idx[0] == 0 and idx[-1] == k - 1
        assert (idx[1:] > idx[:-1]).all()


def test_download_files_embed_the_config():
    """The deferred download files: JSON {"config", "data"} that round-trips through json.loads
    (NaN/arrays/dataclasses made JSON-safe), and a CSV whose '# key: value' header is the config."""
    import json

    import numpy as np
    import pandas as pd

    from core.toy.simulate import SimConfig

    cfg = SimConfig(landscape="double_well_1d", optimizer="sam", rhos=(0.05, 0.1), particles=10, steps=20)
    text = controls.json_export({"survival": np.array([1.0, 0.5]), "median": float("nan")}, cfg)
    out = json.loads(text)
    assert out["config"]["rhos"] == [0.05, 0.1] and out["config"]["optimizer"] == "sam"
    assert out["data"]["survival"] == [1.0, 0.5] and out["data"]["median"] is None
    lines = controls.csv_export(pd.DataFrame({"step": [0, 1], "S": [1.0, 0.9]}), cfg).splitlines()
    header = [ln for ln in lines if ln.startswith("# ")]
    assert "# optimizer: sam" in header and "# particles: 10" in header
    assert lines[len(header)] == "step,S" and lines[-1] == "1,0.9"


def test_same_value_compares_numbers_as_numbers():
    from app.controls import same_value

    assert same_value("0.2", "0.20") and same_value(["0.1", "2e-1"], "0.2") and same_value("zhu", ["zhu"])
    assert not same_value("0.2", "0.21") and not same_value("zhu", "double_well_2d") and not same_value("1", "one")
