"""URL parameters are hostile input (issue 5): random strings, NaN, Inf, huge numbers, unknown keys.

Claims:
1. The parsers every URL-bound widget calls (`controls.parse_number`, `parse_float`, `parse_choice`,
   `parse_multi`, `parse_lr`, `parse_bool`, `parse_text`) never raise; what they return is inside the control's
   range (numbers finite and within core.limits and the widget's own range, choices from their list),
   and every value that was not taken as written comes with a notice.
2. The same, for exactly the calls the pages make: each page runs once under AppTest with the parsers wrapped,
   which records every parser call its widgets make (which parser, with which range, options and default);
   then each recorded call is fuzzed with hostile URL values. So a page whose default lies outside its own
   slider, or whose parser and widget disagree about the range, fails here, whatever the generic tests of 1
   assume about ranges. (An older `controls.parse_url` with defaults of its own is gone: there is one parser
   per kind of widget, and the widgets call nothing else.) The class experiment binds no widget to the URL: it
   parses the settings a lab's entry link passes (serve.classroom.DEFAULTS, within BOUNDS) only when they are
   there, so it runs once per kind of experiment with those settings in its URL.
3. A real page (pages/sam_step.py, the cheapest) run under random query strings either renders its
   main chart or shows notices; it never shows an exception.
Fixed seed (derandomize) and bounded example counts keep this fast and reproducible in CI.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from app import controls
from app.pagelist import PAGE_LIST
from core.limits import LIMITS
from core.methods import OPTIMIZERS
from serve import classroom

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "pages" / "sam_step.py")

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
    words = ("1", "true", "yes", "on", "0", "false", "no", "off", "")
    if raw is not None and str(_last(raw)).strip().lower() not in words:
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
    # the main chart: a Plotly chart, or the ρ chart whose ρ moves in the browser (app/components/rhochart)
    assert any(c.proto.id.endswith("-main_chart") for c in [*at.get("plotly_chart"), *at.get("bidi_component")])
    rho = at.session_state["rho"]
    assert math.isfinite(rho) and 0.0 <= rho <= 1.0


# ------------------------------------------------------------------------------------------------------------
# 2. The calls the pages make
# ------------------------------------------------------------------------------------------------------------
PARSERS = ("parse_number", "parse_float", "parse_choice", "parse_multi", "parse_lr", "parse_bool", "parse_text")
# app/main.py runs Home and adds the app's own controls (presentation toggle); the other pages run on their own.
# Every page of the one page list (app/pagelist.py); Home runs through app/main.py.
SCRIPTS = ("app/main.py", *(f"pages/{p.file}" for p in PAGE_LIST if p.key != "home"))
PAGE_FUZZ = settings(max_examples=60, derandomize=True, deadline=None, database=None)
# The control each page cannot be without (its parser, the URL key it parses): a ρ slider on the toy pages, the
# presentation toggle on app/main.py, the budget slider on the tournament, ρ among a class experiment's settings.
MAIN_CONTROL = {"app/main.py": ("parse_bool", "present"), "pages/tournament.py": ("parse_float", "budget"),
                "pages/classroom.py": ("parse_float", "rho")}
# URL parameters a script runs under (one run per set). The class experiment parses only what a link passes: the
# settings of each kind of experiment (the lab entry links carry ?kind=… and the fixed settings).
URL_RUNS: dict[str, list[dict[str, str]]] = {
    "pages/classroom.py": [{"kind": kind, **{k: str(v) for k, v in classroom.DEFAULTS[kind].items()}}
                           for kind in classroom.KINDS],
}


def _main_control(script: str) -> tuple[str, str]:
    return MAIN_CONTROL.get(script, ("parse_number", "rho"))


def _key(name: str, call: dict) -> str | None:
    """The URL key a recorded parser call parses."""
    return call.get("name") if name == "parse_number" else call.get("key")


@pytest.fixture(scope="module")
def page_calls() -> dict[str, list[tuple[str, dict]]]:
    """{script: [(parser name, its arguments except raw), ...]}: every distinct parser call the script's widgets
    made on a first visit with no URL parameters (each widget parses its URL value once per session), or, for a
    script in URL_RUNS, on first visits with those parameters."""
    out = {}
    for script in SCRIPTS:
        out[script] = []
        for params in URL_RUNS.get(script, [{}]):
            out[script] += [c for c in _record_calls(script, params) if c not in out[script]]
    return out


def _record_calls(script: str, params: dict[str, str]) -> list[tuple[str, dict]]:
    """The distinct parser calls one first visit of the script, with these URL parameters, made."""
    calls: list[tuple[str, dict]] = []
    with pytest.MonkeyPatch.context() as mp:
        for name in PARSERS:
            real = getattr(controls, name)
            sig = inspect.signature(real)

            def spy(*args, _real=real, _sig=sig, _name=name, **kwargs):
                bound = _sig.bind(*args, **kwargs)
                bound.apply_defaults()
                call = {k: v for k, v in bound.arguments.items() if k != "raw"}
                if (_name, call) not in calls:
                    calls.append((_name, call))
                return _real(*args, **kwargs)

            mp.setattr(controls, name, spy)  # the widgets look the parser up in app.controls at each call
        at = AppTest.from_file(str(REPO / script), default_timeout=180)
        for k, v in params.items():
            at.query_params[k] = v
        at.run()
    assert not at.exception, (script, params, [e.value for e in at.exception])
    return calls


def _check(name: str, call: dict, raw) -> None:
    """One parser call with one URL value: never raises, the value is one the widget accepts, and a value not
    taken as written comes with a notice."""
    value, msg = getattr(controls, name)(raw=raw, **call)
    last = _last(raw)
    where = (name, call, raw, value, msg)
    if name == "parse_number":
        r = LIMITS[call["name"]]
        lo = r.lo if call["lo"] is None else max(call["lo"], r.lo)
        hi = r.hi if call["hi"] is None else min(call["hi"], r.hi)
        assert math.isfinite(value) and lo - 1e-9 <= value <= hi + 1e-9, where
        assert not r.integer or value == int(value), where
        x = None if raw is None else controls._finite(last)
        assert (msg is not None) == (raw is not None and (x is None or not lo <= x <= hi)), where
    elif name == "parse_float":
        assert math.isfinite(value) and call["lo"] <= value <= call["hi"], where
        x = None if raw is None else controls._finite(last)
        assert (msg is not None) == (raw is not None and (x is None or not call["lo"] <= x <= call["hi"])), where
    elif name == "parse_lr":
        assert value in call["options"], where  # a value on the slider's grid
        x = None if raw is None else controls._finite(last)
        taken = x is not None and any(math.isclose(x, o, rel_tol=1e-9) for o in call["options"])
        assert (msg is None) == (raw is None or taken), where
    elif name == "parse_choice":
        assert value in call["options"], where
        assert (msg is None) == (raw is None or controls._match_option(str(last), call["options"])
                                 is not controls._NO_MATCH), where
    elif name == "parse_multi":
        assert set(value) <= set(call["options"]) and len(set(value)) == len(value), where
        if any(controls._match_option(p, call["options"]) is controls._NO_MATCH for p in _parts(raw)):
            assert msg, where
    elif name == "parse_bool":
        assert isinstance(value, bool), where
    elif name == "parse_text":
        assert isinstance(value, str) and len(value) <= call["max_len"], where
        assert (msg is not None) == (raw is not None and len(str(last)) > call["max_len"]), where


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_parsers_a_page_calls_under_hostile_urls(script, page_calls):
    calls = page_calls[script]
    assert calls, f"{script}: no URL-bound widget parsed anything"
    # Every page parses its main control (MAIN_CONTROL) from the URL.
    assert _main_control(script) in [(n, _key(n, c)) for n, c in calls], (script, calls)
    for name, call in calls:
        _check(name, call, None)  # the widget's own default is one it accepts

        @PAGE_FUZZ
        @given(st.one_of(values, _on_the_options(name, call)))
        def fuzz(raw):
            _check(name, call, raw)

        fuzz()


def _on_the_options(name: str, call: dict):
    """URL values that name one of the widget's options (as written, in capitals, with spaces), so the fuzz
    also reaches the 'taken as written' side of each parser."""
    options = list(call.get("options") or [])
    if not options:
        return st.nothing()
    texts = [controls._fmt(o) for o in options]
    return st.sampled_from(texts + [t.upper() for t in texts] + [f" {t} " for t in texts])
