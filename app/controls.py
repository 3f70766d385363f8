"""Widgets bound to the URL, so that copying the address bar reproduces the view.

How the binding works (explicit sync with `st.query_params`, one widget key = one URL parameter):

1. The first time a widget key appears in a session, its value is read from the URL, parsed and
   passed through `core.limits.clamp`. Anything odd (NaN, Inf, 1e308, "abc", a value outside the
   slider, an unknown landscape) is replaced by the nearest safe value or the default, and a
   `st.warning` notice says what happened. Nothing a user types into the URL raises.
2. The widget is created from `st.session_state[key]`; after that the widget owns the value.
3. After each run the widget's value is written back to the URL (defaults are left out, to keep
   links short).

Streamlit 1.67 also offers `bind="query-params"`, but it silently drops invalid values (no notice),
and reads toggles only as "true"; the explicit sync gives us the notices and `?present=1`.

The parsing functions (`parse_number`, `parse_float`, `parse_choice`, `parse_multi`, `parse_lr`, `parse_bool`,
`parse_text`) are pure, and every widget below parses its URL value with one of them and nothing else.
tests/test_url_fuzz.py runs each page once, records which parser each of its widgets called with which range,
options and default, and fuzzes exactly those calls.

Public API (used by every page):
    rho_slider, grid_rho (a ρ that moves in the browser), number_slider, lr_slider, number_input, choice,
    multi_choice, toggle, text_input, lazy_tabs,
    landscape_select, optimizer_multiselect, schedule_controls, noise_controls,
    sim_config (build a capped SimConfig in one call), cap_request, notice, download_data
    (json_export / csv_export build its files),
    clicked_point (the point clicked on a chart), begin_run / check_unknown_params (called by app/main.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.jsonable import to_jsonable
from core.limits import LIMITS, clamp
from core.methods import OPTIMIZERS

from .theme import LABELS

MAX_TEXT = 300  # longest formula / text accepted from a URL parameter
LR_STABLE_SHARE = 0.7  # default η at most this share of 2/λ_max: |1 − ηλ| ≤ 0.4, noise-free paths settle
LR_OPTIONS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
_NOTICE_AREA = "_sl_notice_area"
_KEYS = "_sl_url_keys"
_PAGE_KEYS = "_sl_page_keys"  # every key registered since the page on screen was entered (forget_page_keys)
_SHOWN = "_sl_notices_shown"

# Keys the app itself puts in the URL besides widget keys (never reported as unknown).
APP_KEYS = {"present", "preset", "embed", "embed_options"}
# Values that belong to the session, not to one page's widgets: kept when the page changes (app/main.py
# forgets the other keys then). `lab` is the CIFAR lab's job token, in that page's URL only.
SESSION_KEYS = {"present", "lab"}
# The settings of the lecture scene on screen (app/main.py puts them here while its banner shows), or None.
SCENE_KEY = "_sl_scene_params"


# ----------------------------------------------------------------------------------------------
# Pure parsing: URL text -> (safe value, notice or None). Never raises.
# ----------------------------------------------------------------------------------------------
def _last(raw):
    """URL parameters may repeat (?a=1&a=2); the last one wins. Lists of length 0 mean absent."""
    if isinstance(raw, (list, tuple)):
        return raw[-1] if raw else None
    return raw


def _short(raw) -> str:
    text = str(raw)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _finite(raw) -> float | None:
    """The number in a URL text, or None when it is not a finite number (text, NaN, Inf, 1e999)."""
    try:
        x = float(str(raw).strip())
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None


def same_value(a, b) -> bool:
    """Two URL values agree: as numbers where both are numbers (0.2, "0.20", "2e-1"), else as text."""
    a, b = _last(a), _last(b)
    x, y = _finite(a), _finite(b)
    return math.isclose(x, y, rel_tol=1e-9) if x is not None and y is not None else str(a) == str(b)


def parse_number(name: str, raw, *, lo: float | None = None, hi: float | None = None,
                 default: float | None = None, label: str | None = None):
    """Parse one number for the LIMITS entry `name`, first through `core.limits.clamp` (the global
    caps), then into the widget's own range [lo, hi] (which may be narrower). Non-numbers, NaN and
    Inf give `default`. Returns (value, notice or None)."""
    r = LIMITS[name]
    shown = label or name
    lo = r.lo if lo is None else max(lo, r.lo)
    hi = r.hi if hi is None else min(hi, r.hi)
    default = r.default if default is None else default
    cast = (lambda v: int(round(v))) if r.integer else float
    raw = _last(raw)
    if raw is None:
        return cast(default), None
    x = _finite(raw)
    if x is None:
        return cast(default), f"{shown}: {_short(raw)} is not a finite number; using the default {default:g}."
    value, _ = clamp(name, x)  # the global cap (e.g. particles ≤ 20 000)
    y = min(max(float(value), lo), hi)
    if x < lo or x > hi:
        return cast(y), f"{shown}: {x:g} is outside [{lo:g}, {hi:g}]; using {cast(y):g}."
    return cast(y), None


def parse_float(key: str, raw, lo: float, hi: float, default: float, *, label: str | None = None):
    """A number with no LIMITS entry (a coordinate): non-numbers, NaN and Inf give `default`,
    others are clamped into [lo, hi]. Returns (value, notice or None)."""
    raw = _last(raw)
    if raw is None:
        return float(default), None
    x = _finite(raw)
    if x is None:
        return float(default), f"{label or key}: {_short(raw)} is not a finite number; using {default:g}."
    if x < lo or x > hi:
        y = min(max(x, lo), hi)
        return y, f"{label or key}: {x:g} is outside [{lo:g}, {hi:g}]; using {y:g}."
    return x, None


_NO_MATCH = object()


def _match_option(text: str, options: Sequence):
    """The option `text` names, or _NO_MATCH: as written (`_fmt(option)`: 20.0 is written "20") or as str(),
    ignoring case, and for numeric options by value ("20", "20.0" and "2e1" all mean the option 20.0)."""
    text = text.strip()
    for o in options:
        if text.lower() in (str(o).lower(), _fmt(o).lower()):
            return o
    x = _finite(text)
    for o in options if x is not None else ():
        if isinstance(o, (int, float)) and not isinstance(o, bool) and math.isclose(x, float(o), rel_tol=1e-9,
                                                                                    abs_tol=1e-12):
            return o
    return _NO_MATCH


def parse_choice(key: str, raw, options: Sequence, default, *, label: str | None = None):
    """One value from a fixed list; unknown text gives the default and a notice."""
    raw = _last(raw)
    if raw is None:
        return default, None
    o = _match_option(str(raw), options)
    if o is not _NO_MATCH:
        return o, None
    choices = ", ".join(str(o) for o in options[:10])
    return default, f"{label or key}: unknown value {_short(raw)}; using {default}. Choose one of: {choices}."


def parse_multi(key: str, raw, options: Sequence, default: Sequence, *, label: str | None = None):
    """Several values from a fixed list, as repeated parameters (?opt=sgd&opt=sam) or one
    comma-separated parameter (?opt=sgd,sam). Unknown entries are dropped with a notice; an empty
    parameter (?opt=) is an empty selection."""
    if raw is None or (isinstance(raw, (list, tuple)) and not raw):
        return list(default), None
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    parts = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if not parts:  # ?opts= : the page wrote an empty selection itself; keep it empty
        return [], None
    chosen, unknown = [], []
    for p in parts[:50]:  # a URL cannot make us loop over a million entries
        o = _match_option(p, options)  # "0.05", "0.050" and "5e-2" all mean the option 0.05
        if o is _NO_MATCH:
            unknown.append(p)
        elif o not in chosen:
            chosen.append(o)
    if not chosen:
        return list(default), (f"{label or key}: no known value in {_short(','.join(parts))}; "
                               f"using {', '.join(map(str, default))}.")
    if unknown:
        return chosen, f"{label or key}: ignored unknown {_short(','.join(unknown))}."
    return chosen, None


def parse_lr(raw, options: Sequence[float], default: float):
    """A learning rate for a slider over the sorted positive grid `options`: clamped into [options[0],
    options[-1]] (parse_number), then snapped to the nearest grid value in log space, with a notice when the
    URL's value was not on the grid. Returns (value, notice or None)."""
    value, msg = parse_number("lr", raw, lo=options[0], hi=options[-1], default=default, label="lr")
    nearest = min(options, key=lambda o: abs(math.log(o) - math.log(value)))
    if msg is None and raw is not None and not math.isclose(nearest, value, rel_tol=1e-9):
        msg = f"lr: {value:g} is not on the slider; using {nearest:g}."
    return nearest, msg


def parse_bool(key: str, raw, default: bool = False):
    raw = _last(raw)
    if raw is None:
        return default, None
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True, None
    if text in ("0", "false", "no", "off", ""):
        return False, None
    return default, f"{key}: {_short(raw)} is not on/off; using {'on' if default else 'off'}."


def parse_text(key: str, raw, default: str = "", max_len: int = MAX_TEXT):
    raw = _last(raw)
    if raw is None:
        return default, None
    text = str(raw)
    if len(text) > max_len:
        return text[:max_len], f"{key}: text longer than {max_len} characters was cut."
    return text, None


# ----------------------------------------------------------------------------------------------
# Notices and the per-run bookkeeping
# ----------------------------------------------------------------------------------------------
def begin_run(notice_area=None) -> None:
    """Called by app/main.py at the top of every run: where notices go (a container at the top
    of the page), and a fresh list of the URL keys the page's widgets use."""
    st.session_state[_NOTICE_AREA] = notice_area
    st.session_state[_KEYS] = set()
    st.session_state[_SHOWN] = set()


def forget_page_keys(extra: Iterable[str] = ()) -> None:
    """Forget the widget values of the page on screen (every key its widgets used since it was entered, also
    in runs that a click cut short) and the keys in `extra`, except SESSION_KEYS. app/main.py calls it when
    the page changes or a scene is loaded, so the next page starts from its defaults plus its URL."""
    for key in (set(st.session_state.get(_PAGE_KEYS, set())) | set(extra)) - SESSION_KEYS:
        if key in st.session_state:
            del st.session_state[key]
    st.session_state[_PAGE_KEYS] = set()


def remember(memory: str, value):
    """Store `value` under the session key `memory` and return the value stored there before: the same value on
    a first visit, so a page just opened from a link or a scene does not count as a change. Pages use it to
    react when the user switches something (a new landscape: its own start point and learning rate)."""
    previous = st.session_state.get(memory, value)
    st.session_state[memory] = value
    return previous


def notice(message: str) -> None:
    """Show a one-line warning at the top of the page (or inline when run without main.py)."""
    shown = st.session_state.setdefault(_SHOWN, set())
    if message in shown:
        return
    shown.add(message)
    area = st.session_state.get(_NOTICE_AREA)
    (area if area is not None else st).warning(message, icon=":material/warning:")


def _register(key: str) -> None:
    st.session_state.setdefault(_KEYS, set()).add(key)
    st.session_state.setdefault(_PAGE_KEYS, set()).add(key)


def keep_param(key: str) -> None:
    """Keep ?key=… in the URL although no widget reads it in this run (its widget sits in a tab that is
    not open); the widget reads it when it appears."""
    _register(key)


def check_unknown_params() -> None:
    """After the page ran: URL parameters no widget of this page used leave the URL. Unknown ones get a
    notice; those of another page (still in the session, e.g. the CIFAR lab's ?lab= job token) go quietly,
    so a link copied on this page carries only this page's view."""
    known = st.session_state.get(_KEYS, set()) | APP_KEYS
    for key in list(st.query_params.keys()):
        if key in known:
            continue
        if key not in st.session_state:
            notice(f"Ignored unknown URL parameter {_short(key)}.")
        try:
            del st.query_params[key]
        except Exception:  # a bound widget's parameter cannot be deleted; harmless
            pass


def _url_raw(key: str):
    values = st.query_params.get_all(key)
    return values if values else None


def _init(key: str, parse) -> None:
    """Step 1 of the binding: seed st.session_state[key] from the URL once per session."""
    _register(key)
    if key in st.session_state:
        return
    value, msg = parse(_url_raw(key))
    if msg:
        notice(msg)
    st.session_state[key] = value


def _fmt(value) -> str | list[str]:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _sync(key: str, value, default) -> None:
    """Step 3: write the widget's value to the URL; a default value leaves the URL."""
    is_default = value == default or (isinstance(value, list) and list(value) == list(default))
    try:
        if is_default:
            if key in st.query_params:
                del st.query_params[key]
        else:
            text = _fmt(value)
            if st.query_params.get(key) != text:
                st.query_params[key] = text
    except Exception:  # the URL is a convenience; never break the page over it
        pass
    scene = st.session_state.get(SCENE_KEY)
    # the app's own keys (presentation mode, the CIFAR job token) are no scene setting: the projector keeps the claim
    if scene is not None and key not in APP_KEYS | SESSION_KEYS and "preset" in st.query_params:
        at_scene = same_value(_fmt(value), scene[key]) if key in scene else is_default
        if not at_scene:
            _leave_scene()


def _leave_scene() -> None:
    """A setting moved away from the lecture scene on screen: its claim (app/main.py's banner, ?preset=) no
    longer describes the view. Inside a fragment (the ρ sections of the escape and valley pages) the banner
    lies outside what reruns, so the whole page reruns once to take it down."""
    del st.query_params["preset"]
    st.session_state[SCENE_KEY] = None
    ctx = get_script_run_ctx()
    if ctx is not None and getattr(ctx, "fragment_ids_this_run", None):
        st.rerun(scope="app")


# ----------------------------------------------------------------------------------------------
# Widgets
# ----------------------------------------------------------------------------------------------
def _limited_number(widget, name: str, label: str, key, lo, hi, default, step, fmt, help):
    """A number widget (st.slider or st.number_input) over the LIMITS entry `name`, range narrowed to
    [lo, hi] if given, bound to ?key=… (integers stay integers)."""
    key = key or name
    r = LIMITS[name]
    lo = r.lo if lo is None else lo
    hi = r.hi if hi is None else hi
    default = r.default if default is None else default
    if r.integer:
        lo, hi, default, step = int(lo), int(hi), int(default), int(step or 1)
    else:
        lo, hi, default, step = float(lo), float(hi), float(default), float(step or (hi - lo) / 100)
    _init(key, lambda raw: parse_number(name, raw, lo=lo, hi=hi, default=default, label=label.split(" ")[0]))
    value = widget(label, min_value=lo, max_value=hi, step=step, format=fmt, key=key, help=help)
    _sync(key, value, default)
    return value


def number_slider(name: str, label: str, *, key: str | None = None, lo: float | None = None,
                  hi: float | None = None, default: float | None = None, step: float | None = None,
                  fmt: str | None = None, help: str | None = None, container=None):
    """A slider over the LIMITS entry `name` (range narrowed to [lo, hi] if given)."""
    return _limited_number((container or st).slider, name, label, key, lo, hi, default, step, fmt, help)


def rho_slider(label: str = "ρ (SAM radius)", *, key: str = "rho", lo: float = 0.0, hi: float = 0.5,
               default: float = 0.05, step: float = 0.005, help: str | None = None, container=None) -> float:
    """The main ρ control of a page (widget key `rho`, label starting with "ρ")."""
    help = help or "Radius of the ball in which SAM looks for the worst nearby loss: ε = ρ·∇L/‖∇L‖."
    return number_slider("rho", label, key=key, lo=lo, hi=hi, default=default, step=step,
                         fmt="%.3f", help=help, container=container)


def grid_rho(slider) -> float:
    """The ρ of a page whose ρ moves in the browser (app/rhogrid.Slider, drawn by app/components/rhochart): read
    from the URL once (app/rhogrid.snap: off the grid, outside it, NaN or text → the nearest step or the default,
    with a notice), then kept in st.session_state[slider.key], where the browser's releases put it, and written
    back to the URL after each run. Always a step of the grid."""
    from .rhogrid import snap

    key, label = slider.key, slider.label.split(" ")[0]

    def parse(raw):  # the lab's number parser (the URL fuzz checks it), then onto the grid (rhogrid.snap)
        value, msg = parse_number("rho", raw, lo=slider.rhos[0], hi=slider.rhos[-1], default=slider.default,
                                  label=label)
        if msg is None and raw is not None:
            return snap(value, slider.rhos, slider.default, label=label)
        return slider.rhos[slider.nearest(value)], msg

    _init(key, parse)
    value = slider.rhos[slider.nearest(float(st.session_state[key]))]  # a value kept from another page's grid
    st.session_state[key] = value
    _sync(key, value, slider.default)
    return value


def lr_default_for(stable_lr: float | None, cap: float = 0.05, options: Sequence[float] = LR_OPTIONS) -> float:
    """A learning rate that settles on a landscape: the largest slider value ≤ `cap` and below 0.7 of the
    stability limit 2/λ_max (`Landscape.stable_lr`); `cap` when there is no limit. The margin 0.7 keeps the
    sharpest minimum's contraction |1 − ηλ| ≤ 0.4, so noise-free paths settle instead of ringing."""
    limit = cap if stable_lr is None else min(cap, LR_STABLE_SHARE * stable_lr)
    below = [o for o in options if o <= limit * (1 + 1e-9)]
    return max(below) if below else min(options)


def lr_slider(label: str = "learning rate η", *, key: str = "lr", default: float = 0.01,
              options: Sequence[float] = LR_OPTIONS, help: str | None = None, container=None) -> float:
    """Learning rate on a logarithmic grid. URL values are clamped, then snapped to the nearest
    grid value (in log space) with a notice."""
    options = tuple(float(o) for o in options)
    _init(key, lambda raw: parse_lr(raw, options, default))
    value = (container or st).select_slider(label, options=options, key=key, format_func=lambda v: f"{v:g}",
                                            help=help or "Step size η of every optimizer: w ← w − η·g.")
    _sync(key, value, default)
    return float(value)


def number_input(name: str, label: str, *, key: str | None = None, lo: float | None = None,
                 hi: float | None = None, default: float | None = None, step: float | None = None,
                 fmt: str | None = None, help: str | None = None, container=None):
    """A number box over the LIMITS entry `name` (for seeds, coordinates, counts)."""
    return _limited_number((container or st).number_input, name, label, key, lo, hi, default, step, fmt, help)


def float_slider(key: str, label: str, lo: float, hi: float, default: float, *, step: float | None = None,
                 fmt: str = "%.3f", help: str | None = None, container=None) -> float:
    """A slider for a number with no LIMITS entry (e.g. a 1-D start point), bound to ?key=…"""
    # a computed default such as −2e-22 (a minimum found numerically) would show as "−0.000": round it, and
    # + 0.0 turns −0.0 into 0.0
    lo, hi, default = float(lo), float(hi), round(float(default), 9) + 0.0
    _init(key, lambda raw: parse_float(key, raw, lo, hi, default, label=label))
    st.session_state[key] = min(max(float(st.session_state[key]), lo), hi) + 0.0
    value = (container or st).slider(label, min_value=lo, max_value=hi, step=float(step or (hi - lo) / 200),
                                     format=fmt, key=key, help=help)
    _sync(key, round(float(value), 4), round(default, 4))
    return float(value)


def point_input(bounds, default, *, keys: tuple[str, str] = ("x", "y"), labels=("w₁", "w₂"),
                container=None) -> tuple[float, float]:
    """Two number boxes for a point inside `bounds` ((x_lo, x_hi), (y_lo, y_hi)), bound to ?x=…&y=….
    Pages move the point by writing st.session_state[keys[i]] in a callback (e.g. a click)."""
    c = container or st
    cols = c.columns(2)
    out = []
    for i, (key, lab) in enumerate(zip(keys, labels)):
        lo, hi = float(bounds[i][0]), float(bounds[i][1])
        d = float(default[i])
        _init(key, lambda raw, key=key, lo=lo, hi=hi, d=d, lab=lab: parse_float(key, raw, lo, hi, d, label=lab))
        st.session_state[key] = min(max(float(st.session_state[key]), lo), hi)  # bounds may have changed
        value = cols[i].number_input(lab, min_value=lo, max_value=hi, step=0.05, format="%.3f", key=key)
        _sync(key, round(float(value), 4), round(d, 4))
        out.append(float(value))
    return out[0], out[1]


def clicked_point(key: str = "main_chart") -> tuple[float, float] | None:
    """The (x, y) of the point clicked on the chart `key` (st.plotly_chart with on_select and
    selection_mode="points"), read in its on_select callback; None when nothing is selected."""
    sel = st.session_state.get(key)
    if isinstance(sel, Mapping):
        points = sel.get("selection", {}).get("points", [])
    else:
        points = getattr(getattr(sel, "selection", None), "points", None) or []
    if not points:
        return None
    return float(points[0]["x"]), float(points[0]["y"])


def choice(key: str, label: str, options: Mapping | Sequence, default, *, radio: bool = False,
           help: str | None = None, container=None):
    """A selectbox (or horizontal radio) bound to ?key=value. `options` may map values to labels."""
    values = list(options.keys()) if isinstance(options, Mapping) else list(options)
    names = dict(options) if isinstance(options, Mapping) else {v: _fmt(v) for v in values}
    if default not in values:
        default = values[0]
    _init(key, lambda raw: parse_choice(key, raw, values, default, label=label))
    c = container or st
    if radio:
        value = c.radio(label, values, key=key, format_func=lambda v: names[v], horizontal=True, help=help)
    else:
        value = c.selectbox(label, values, key=key, format_func=lambda v: names[v], help=help)
    _sync(key, value, default)
    return value


def multi_choice(key: str, label: str, options: Mapping | Sequence, default: Sequence, *,
                 help: str | None = None, container=None) -> list:
    values = list(options.keys()) if isinstance(options, Mapping) else list(options)
    names = dict(options) if isinstance(options, Mapping) else {v: str(v) for v in values}
    default = [d for d in default if d in values]
    _init(key, lambda raw: parse_multi(key, raw, values, default, label=label))
    # wrap: every chosen chip stays visible in a narrow side column (five optimizers did not fit one row)
    value = (container or st).multiselect(label, values, key=key, format_func=lambda v: names[v], help=help,
                                          wrap=True)
    _sync(key, list(value), default)
    return list(value)


def toggle(key: str, label: str, default: bool = False, *, help: str | None = None, container=None) -> bool:
    _init(key, lambda raw: parse_bool(key, raw, default))
    value = (container or st).toggle(label, key=key, help=help)
    _sync(key, bool(value), default)
    return bool(value)


def lazy_tabs(key: str, options: Mapping[str, str], default: str, *, container=None) -> dict:
    """Tabs whose hidden tabs cost nothing: {id: tab container}; each container's `.open` says whether
    it is the tab on screen, so a page computes and draws only that one. `options` maps a short id
    (what the URL holds, ?key=id) to the tab's label; `default` (an id) must be the first entry.

    Why: Streamlit runs and sends every tab's content, and each browser redraws every chart in it,
    shown or not; with on_change="rerun" the tabs become a widget and the page can skip the others."""
    ids, labels = list(options), list(options.values())
    assert ids and ids[0] == default, "the default tab must come first"
    _register(key)
    if key not in st.session_state:
        value, msg = parse_choice(key, _url_raw(key), ids, default)
        if msg:
            notice(msg)
        st.session_state[key] = options[value]
    if st.session_state[key] not in labels:  # another page's tab label: session state spans all pages
        st.session_state[key] = labels[0]
    tabs = (container or st).tabs(labels, key=key, on_change="rerun")
    current = ids[labels.index(st.session_state[key])]
    _sync(key, current, default)
    return dict(zip(ids, tabs))


def text_input(key: str, label: str, default: str = "", *, max_chars: int = MAX_TEXT,
               placeholder: str | None = None, help: str | None = None, container=None) -> str:
    _init(key, lambda raw: parse_text(key, raw, default, max_chars))
    value = (container or st).text_input(label, key=key, max_chars=max_chars, placeholder=placeholder, help=help)
    _sync(key, value, default)
    return value


def _landscape_names() -> list[str]:
    from core.toy.landscapes import (
        LANDSCAPES,  # imported here: it brings in torch, which not every page needs
    )

    return list(LANDSCAPES)


def landscape_select(*, key: str = "landscape", default: str = "double_well_2d",
                     allowed: Iterable[str] | None = None, extra: Mapping[str, str] | None = None,
                     label: str = "landscape", container=None) -> str:
    """Pick a toy landscape by name (core.toy.landscapes.LANDSCAPES); `extra` adds entries such as
    {"formula": "your own formula"}. Unknown names in the URL fall back to `default`."""
    from core.toy.landscapes import LANDSCAPES

    names = dict(LANDSCAPES)
    if allowed is not None:
        allowed = list(allowed)
        names = {k: v for k, v in names.items() if k in allowed}
    names.update(extra or {})
    return choice(key, label, names, default, container=container)


def optimizer_multiselect(*, key: str = "opts", default: Sequence[str] = ("sgd", "sam"),
                          allowed: Iterable[str] | None = None, label: str = "optimizers",
                          container=None) -> list[str]:
    """Several optimizers side by side (keys of core.methods.OPTIMIZERS)."""
    keys = [k for k in OPTIMIZERS if allowed is None or k in set(allowed)]
    chosen = multi_choice(key, label, {k: LABELS.get(k, k) for k in keys}, default, container=container,
                          help="Each optimizer runs on the same landscape, start, noise and seed.")
    return chosen


def schedule_controls(*, which: Sequence[str] = ("k", "f", "late_f", "p"), defaults: Mapping | None = None,
                      container=None) -> dict:
    """Sliders for the schedule parameters: PSAM period k and early fraction f, late-SAM fraction,
    random-SAM probability p. Returns a dict with every key of `which`."""
    d = {"k": 2, "f": 0.6, "late_f": 0.3, "p": 0.3} | dict(defaults or {})
    out = {}
    c = container or st
    labels = {
        "k": ("k (SAM every k-th step)", 1, 10, 1, "PSAM uses SAM on every k-th step."),
        "f": ("f (early fraction with SAM)", 0.0, 1.0, 0.05, "PSAM uses SAM only in the first f·T steps."),
        "late_f": ("late fraction (late SAM)", 0.0, 1.0, 0.05,
                   "Late SAM uses SAM only in the last fraction of the steps."),
        "p": ("p (random SAM probability)", 0.0, 1.0, 0.05, "Random SAM picks each step with probability p."),
    }
    for name in which:
        text, lo, hi, step, help = labels[name]
        out[name] = number_slider(name, text, lo=lo, hi=hi, default=d[name], step=step, help=help, container=c)
    return out


NOISE_KINDS = {"none": "none", "isotropic": "isotropic (Gaussian)", "hessian": "Hessian-shaped",
               "minibatch": "minibatch"}


def noise_controls(*, default_kind: str = "isotropic", default_sigma: float = 1.0, hi_sigma: float = 5.0,
                   kinds: Iterable[str] = ("none", "isotropic", "hessian", "minibatch"), container=None):
    """Gradient-noise kind and its scale σ. Returns (kind, sigma)."""
    c = container or st
    kind = choice("noise", "gradient noise", {k: NOISE_KINDS[k] for k in kinds}, default_kind, container=c)
    sigma = number_slider("sigma", "noise σ", lo=0.0, hi=hi_sigma, default=default_sigma, step=0.05, container=c,
                          help="Standard deviation of the gradient noise added at every step.")
    return kind, sigma


# ----------------------------------------------------------------------------------------------
# Building a config
# ----------------------------------------------------------------------------------------------
def run_size(defaults: dict, steps_lo: int, size_box, seed_box) -> tuple[int, int, int]:
    """The size of a simulation, as the escape and valley labs ask for it: particles and steps T in `size_box`,
    the seed in `seed_box`, each with its URL key and `defaults[key]`. Returns (particles, steps, seed)."""
    particles = number_slider("particles", "particles", lo=50, hi=2000, default=defaults["particles"], step=50,
                              container=size_box)
    steps = number_slider("steps", "steps T", lo=steps_lo, hi=3000, default=defaults["steps"], step=50,
                          container=size_box)
    seed = number_input("seed", "seed", default=defaults["seed"], container=seed_box)
    return particles, steps, seed


def cap_request(particles: int, steps: int, n_rhos: int = 1) -> tuple[int, int]:
    """Cap particles × steps × #ρ at LIMITS["particle_steps"]; particles shrink first, with a
    notice. Returns (particles, steps)."""
    particles = int(clamp("particles", particles)[0])
    steps = int(clamp("steps", steps)[0])
    n_rhos = max(1, int(n_rhos))
    budget = int(LIMITS["particle_steps"].hi)
    if particles * steps * n_rhos > budget:
        new_particles = max(1, budget // (steps * n_rhos))
        if new_particles * steps * n_rhos > budget:  # even one particle is too much: cut steps
            steps = max(1, budget // n_rhos)
            new_particles = 1
        notice(f"Request capped: {particles} particles × {steps} steps × {n_rhos} ρ is more than "
               f"{budget:,} particle-steps; using {new_particles} particles.")
        particles = new_particles
    return particles, steps


def sim_config(**fields):
    """Build a `core.toy.simulate.SimConfig` in one call from control values, capping particles ×
    steps × #ρ (with a notice). Unknown fields raise TypeError (a programming error, not user input)."""
    from core.toy.simulate import SimConfig

    rhos = tuple(float(r) for r in fields.pop("rhos", (fields.pop("rho", 0.05),)))
    fields.pop("rho", None)
    particles, steps = cap_request(fields.get("particles", SimConfig.particles), fields.get("steps", SimConfig.steps),
                                   len(rhos))
    fields.update(particles=particles, steps=steps, rhos=rhos)
    if fields.get("start") is not None:
        fields["start"] = tuple(float(x) for x in fields["start"])
    return SimConfig(**fields)


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


def json_export(data, config=None) -> str:
    """The JSON file of a chart's data: {"config": …, "data": …}, both made JSON-safe."""
    return json.dumps({"config": to_jsonable(config), "data": to_jsonable(data)}, indent=1)


def csv_export(frame, config=None) -> str:
    """The CSV file of a chart's data (a pandas DataFrame), the config first as '# key: value' lines."""
    header = "".join(f"# {k}: {v}\n" for k, v in (to_jsonable(config) or {}).items())
    return header + frame.to_csv(index=False)


def download_data(label: str, data, *, config=None, file_stem: str = "sam_lab", key: str | None = None,
                  csv=None, container=None) -> None:
    """Offer a chart's data for download: JSON with the config embedded (`json_export`), and, if `csv`
    is a pandas DataFrame, a CSV (`csv_export`).

    The files are built only when a button is clicked (Streamlit's deferred download: `data=` is a
    function). Building them on every rerun cost 12-18 ms per chart, paid on each ρ change by every
    student in the room."""
    c = container or st
    cols = c.columns(2) if csv is not None else [c]
    now = lambda v: v() if callable(v) else v  # data, config or csv given as a function: read when clicked
    cols[0].download_button(f"{label} (JSON)", lambda: json_export(now(data), now(config)),
                            file_name=f"{file_stem}.json", mime="application/json", key=f"{key or file_stem}_json",
                            on_click="ignore",
                            icon=":material/download:")
    if csv is not None:
        cols[1].download_button(f"{label} (CSV)", lambda: csv_export(now(csv), now(config)),
                                file_name=f"{file_stem}.csv", mime="text/csv", key=f"{key or file_stem}_csv",
                                on_click="ignore",
                                icon=":material/download:")
