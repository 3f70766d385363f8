"""URL parameters are hostile input (issue 5): random strings, NaN, Inf, huge numbers, unknown keys.

Claims:
1. The parsers every URL-bound widget calls (`controls.parse_number`, `parse_float`, `parse_choice`,
   `parse_multi`, `parse_bool`, `parse_text`) never raise; what they return is inside the control's
   range (numbers finite and within core.limits and the widget's own range, choices from their list),
   and every value that was not taken as written comes with a notice.
2. A real page (pages/sam_step.py, the cheapest) run under random query strings either renders its
   main chart or shows notices; it never shows an exception.
Fixed seed (derandomize) and bounded example counts keep this fast and reproducible in CI.
"""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from app import controls
from core.limits import LIMITS
from core.schedules import OPTIMIZERS

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "sam_step.py")

hostile_number = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e999", "", " ", "0x1p3", "1_000", "½", "٣"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(max_size=30),
)
# A URL parameter arrives as one string, or as a list when it repeats (?a=1&a=2): the last one wins.
values = st.one_of(st.none(), hostile_number, st.lists(hostile_number, min_size=1, max_size=3))
FUZZ = settings(max_examples=300, derandomize=True, deadline=None)


def _last(raw):
    return raw[-1] if isinstance(raw, list) else raw


@FUZZ
@given(st.sampled_from(sorted(LIMITS)), values, st.floats(0, 1), st.floats(0, 1))
def test_parse_number_stays_in_range_and_says_when_it_changed_the_value(name, raw, a, b):
    r = LIMITS[name]
    # the widget's own range: a random sub-interval of the global limit
    lo, hi = sorted((r.lo + a * (r.hi - r.lo), r.lo + b * (r.hi - r.lo)))
    value, msg = controls.parse_number(name, raw, lo=lo, hi=hi, default=r.default)
    assert math.isfinite(value) and r.lo <= value <= r.hi, (name, raw, value)
    if raw is None:
        assert msg is None
        return
    x = controls._finite(_last(raw))
    if x is None or not lo <= x <= hi:
        assert msg and name in msg
    else:
        assert msg is None
        assert value == (round(x) if r.integer else x)
        assert lo <= value <= hi or r.integer  # rounding may step past a fractional bound


@FUZZ
@given(values, st.floats(-5, 5), st.floats(0, 5))
def test_parse_float_clamps_into_its_range(raw, lo, width):
    hi = lo + width
    value, msg = controls.parse_float("x", raw, lo, hi, default=lo)
    assert math.isfinite(value) and lo <= value <= hi
    x = None if raw is None else controls._finite(_last(raw))
    assert (msg is None) == (raw is None or (x is not None and lo <= x <= hi))


OPTIONS = ("double_well", "asym_valley", "saddle", "rosenbrock")


@FUZZ
@given(st.one_of(values, st.sampled_from(OPTIONS), st.sampled_from([o.upper() for o in OPTIONS])))
def test_parse_choice_returns_an_option(raw):
    value, msg = controls.parse_choice("landscape", raw, OPTIONS, OPTIONS[0])
    assert value in OPTIONS
    if raw is not None and str(_last(raw)).strip().lower() in OPTIONS:
        assert msg is None and value == str(_last(raw)).strip().lower()
    elif raw is not None:
        assert msg and "landscape" in msg and value == OPTIONS[0]


def _parts(raw) -> list[str]:
    items = [] if raw is None else (raw if isinstance(raw, list) else [raw])
    return [p.strip() for item in items for p in str(item).split(",") if p.strip()]


@FUZZ
@given(st.one_of(values, st.lists(st.sampled_from([*OPTIMIZERS, "zzz", "SAM", " sgd "]), max_size=5)))
def test_parse_multi_keeps_only_known_values(raw):
    value, msg = controls.parse_multi("opts", raw, tuple(OPTIMIZERS), ("sgd", "sam"))
    assert set(value) <= set(OPTIMIZERS) and len(set(value)) == len(value)
    parts = [p.lower() for p in _parts(raw)]
    absent = raw is None or raw == []  # no parameter at all: the default
    assert bool(value) == (absent or bool(parts))  # empty only for an empty parameter (?opts=)
    if any(p not in OPTIMIZERS for p in parts):
        assert msg  # something unknown was dropped (or nothing known was left)


RHOS = (0.02, 0.05, 0.1, 0.2, 0.5)


@FUZZ
@given(st.one_of(values, st.lists(st.sampled_from(["0.05", "0.050", "5e-2", ".5", "0.2", "0.3", "abc"]),
                                  max_size=4).map(",".join)))
def test_parse_multi_matches_numeric_options_by_value(raw):
    value, msg = controls.parse_multi("esc_rhos", raw, RHOS, (0.1,))
    assert set(value) <= set(RHOS) and len(set(value)) == len(value)
    for p in _parts(raw):
        x = controls._finite(p)
        if x is not None and any(math.isclose(x, r) for r in RHOS):
            assert any(math.isclose(x, v) for v in value)  # "0.050" and "5e-2" are the option 0.05
        elif msg is None:
            raise AssertionError(f"{p!r} is no option, yet no notice")


@FUZZ
@given(values)
def test_parse_bool_and_text(raw):
    flag, msg = controls.parse_bool("present", raw)
    assert isinstance(flag, bool)
    if raw is not None and str(_last(raw)).strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
        assert msg
    text, msg = controls.parse_text("formula", raw, max_len=12)
    assert isinstance(text, str) and len(text) <= 12
    assert (msg is not None) == (raw is not None and len(str(_last(raw))) > 12)


@settings(max_examples=8, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(("rho", "lr", "x", "y", "landscape", "zz")), hostile_number,
                       min_size=1, max_size=4))
def test_page_under_random_query_strings(params):
    at = AppTest.from_file(PAGE, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, (params, [e.value for e in at.exception])
    assert any(c.proto.id.endswith("-main_chart") for c in at.get("plotly_chart"))
    rho = at.slider(key="rho").value
    assert math.isfinite(rho) and 0.0 <= rho <= 1.0
