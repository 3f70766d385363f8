"""One look for every page: a colour per optimizer, ρ shades, and Plotly figure defaults.

Every chart in the app goes through `apply_layout`, so fonts, margins and the legend look the
same everywhere, and grow together when the lecturer switches on presentation mode (`?present=1`).
The colours are the Okabe–Ito palette, which stays distinguishable for colour-blind viewers and on
washed-out projectors.
"""

from __future__ import annotations

import colorsys
import functools
import json
import re
import textwrap
from collections.abc import Mapping

import plotly.graph_objects as go
import plotly.io as pio

from core.methods import METHODS

# The white template for every figure, set once as Plotly's default: naming it per figure
# (`template="plotly_white"`) rebuilds the template each time, ~30 ms a figure.
pio.templates.default = "plotly_white"

# Colour, label, dash and marker per optimizer key come from the registry of methods (core/methods.py), where
# each method is declared once: SGD blue, SAM vermilion, the variants their own hues (Okabe–Ito and Tol's
# muted palette), with a dash style and a marker as second cues, so a method keeps its look on every page and
# stays apart in greyscale. These are live, read-only views: a method registered later has its look here too.


class _RegistryView(Mapping):
    """key → one attribute of each core.methods.METHODS entry."""

    def __init__(self, attr: str):
        self._attr = attr

    def __getitem__(self, key: str) -> str:
        return getattr(METHODS[key], self._attr)

    def __iter__(self):
        return iter(tuple(METHODS))

    def __len__(self) -> int:
        return len(METHODS)


COLORS: Mapping[str, str] = _RegistryView("color")
LABELS: Mapping[str, str] = _RegistryView("label")
DASHES: Mapping[str, str] = _RegistryView("dash")
MARKERS: Mapping[str, str] = _RegistryView("marker")   # Plotly marker symbols

# Fonts: normal screen vs projector. Presentation mode scales every text size by PRESENT_SCALE.
BASE_FONT = 14
PRESENT_SCALE = 1.45
FONT_FAMILY = "Inter, Source Sans Pro, Helvetica, Arial, sans-serif"

# The Plotly mode bar for every chart: keep it visible (PNG export), drop the Plotly logo, and save
# PNGs at twice the screen resolution so they look sharp on slides.
PLOTLY_CONFIG: dict = {
    "displaylogo": False,
    "displayModeBar": "hover",  # on hover only: always shown, it covered the start of chart titles on a projector
    "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "sam_lab"},
    "modeBarButtonsToRemove": ["lasso2d"],
}


def color(optimizer: str) -> str:
    """The colour of an optimizer key; unknown keys get a neutral dark grey."""
    return COLORS.get(optimizer, "#444444")


def label(optimizer: str) -> str:
    return LABELS.get(optimizer, optimizer)


def marker(optimizer: str) -> str:
    """The Plotly marker symbol of an optimizer key; unknown keys get a circle."""
    return MARKERS.get(optimizer, "circle")


def dash(optimizer: str) -> str:
    return DASHES.get(optimizer, "solid")


def rho_color(rho: float, rhos) -> str:
    """A shade of the SAM colour for one ρ among several: light for the smallest ρ, dark for the
    largest. ρ = 0 is plain SGD and gets the SGD colour, so "SAM at ρ = 0" reads as SGD."""
    if rho == 0:
        return COLORS["sgd"]
    positive = sorted({float(r) for r in rhos if r > 0}) or [float(rho)]
    if len(positive) == 1:
        t = 0.5
    else:
        # rank, not value: ρ grids are often geometric, and ranks give evenly spaced shades
        rank = min(range(len(positive)), key=lambda i: abs(positive[i] - rho))
        t = rank / (len(positive) - 1)
    r, g, b = (int(COLORS["sam"][i : i + 2], 16) / 255 for i in (1, 3, 5))
    h, lum, s = colorsys.rgb_to_hls(r, g, b)
    lum = 0.72 - 0.42 * t  # from light (0.72) to dark (0.30)
    r, g, b = colorsys.hls_to_rgb(h, lum, s)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def is_presentation() -> bool:
    """True when presentation mode is on (the sidebar toggle, or ?present=1 in the URL).
    Safe to call outside a Streamlit run (then False)."""
    try:
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is None:  # not inside a Streamlit run
            return False
        if "present" in st.session_state:
            return bool(st.session_state["present"])
        raw = st.query_params.get("present")
    except Exception:  # no Streamlit runtime (plain scripts, unit tests of charts)
        return False
    return str(raw).strip().lower() in ("1", "true", "yes", "on")


def is_phone() -> bool:
    """True when the browser is a phone: its User-Agent says "Mobi" (MDN's advice for telling phones from tablets
    and desktops; iPhones and Android phones say "Mobile"). The server cannot see the screen's width, and a phone's
    browser says what it is with every page request, so charts laid out for a 390-px screen are sent to phones
    only: legends below the plot, titles wrapped, contours as tall as they are wide. False outside a Streamlit run."""
    try:
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is None:
            return False
        phone = st.session_state.get(_PHONE_KEY)
        if phone is None:  # once per session: reading the request's headers costs ~0.1 ms, and every chart asks
            phone = st.session_state[_PHONE_KEY] = "Mobi" in (st.context.headers.get("User-Agent") or "")
    except Exception:  # no Streamlit runtime, or no request headers (AppTest)
        return False
    return phone


_PHONE_KEY = "_sl_phone"  # session state: is_phone's answer for this session
PHONE_TITLE_CHARS = 34  # one line of a chart title on a 390-px phone (bold, 1.1 × 14 px)
PHONE_LEGEND_ROW = 20  # px per legend entry below a phone's chart


def title_lines(title: str | None, phone: bool | None = None) -> list[str]:
    """A chart title as the lines it is drawn on: one line, or wrapped at word breaks on a phone."""
    if not title:
        return []
    phone = is_phone() if phone is None else phone
    return (textwrap.wrap(title, PHONE_TITLE_CHARS) or [title]) if phone else [title]


def font_size(present: bool | None = None) -> int:
    present = is_presentation() if present is None else present
    return round(BASE_FONT * (PRESENT_SCALE if present else 1.0))


def text_scale() -> float:
    """How much larger text is than normal (presentation mode enlarges it); fixed margins grow with it."""
    return font_size() / BASE_FONT


def table(data) -> None:
    """A table the back row can read: the interactive data grid normally (sortable, scrollable), a static table
    in presentation mode, whose text grows with the page's (the grid is drawn on a canvas, which CSS cannot
    enlarge)."""
    import streamlit as st

    if is_presentation():
        st.table(data, hide_index=True, border="horizontal")
    else:
        st.dataframe(data, hide_index=True)


def intro(text: str) -> None:
    """A page's introduction (markdown). Left out in presentation mode: the lecturer says it aloud, and a
    projector's first screen (1280 × 800) is kept for the page's main chart and its ρ slider."""
    import streamlit as st

    if not is_presentation():
        st.markdown(text)


def fold(label: str, expanded: bool = False):
    """An expander for secondary content; in presentation mode, which hides expanders, a bordered box with the
    label on top instead, for content a lecture shows (the CIFAR page's recorded runs)."""
    import streamlit as st

    if not is_presentation():
        return st.expander(label, expanded=expanded)
    box = st.container(border=True)
    box.markdown(f"**{label}**")
    return box


def _merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: values in `over` win, nested dicts are merged."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@functools.lru_cache(maxsize=256)
def _theme_json(title, x_title, y_title, height, present, legend, legend_below, phone=False) -> str:
    """The theme's layout settings as a plain dict (frozen as JSON, so the cache is immutable).
    Computed once per distinct set of arguments. On a phone the legend goes below the plot (beside it, it took
    half the width; inside, it covered the data) and a long title wraps onto more lines."""
    size = font_size(present)
    legend_below = legend_below or phone
    lines = title_lines(title, phone)
    layout: dict = {
        "font": {"family": FONT_FAMILY, "size": size},
        "margin": {"l": 10, "r": 10, "t": 50 + 22 * (len(lines) - 1) if title else 20,
                   "b": 20 if legend and legend_below else 10},
        "showlegend": legend,
        "hoverlabel": {"font": {"size": size}},
    }
    if title is not None:
        layout["title"] = {"text": "<br>".join(lines), "font": {"size": round(size * (1.1 if phone else 1.2))},
                           "x": 0.0, "xanchor": "left"}
    if legend:  # below: under the x-axis title, so the legend never hides data
        layout["legend"] = ({"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0.0} if legend_below else
                            {"bgcolor": "rgba(255,255,255,0.75)", "bordercolor": "#cccccc", "borderwidth": 1})
        if phone:  # at the figure's bottom edge: y = −0.22 of a phone's short plot put it on the x-axis title
            layout["legend"] = {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0.0}
    if height is not None:
        layout["height"] = round(height * (1.15 if present else 1.0))
    axis = {"title": {"font": {"size": size}}, "tickfont": {"size": round(size * 0.9)}}
    layout["_x"] = axis if x_title is None else _merge(axis, {"title": {"text": x_title}})
    layout["_y"] = axis if y_title is None else _merge(axis, {"title": {"text": y_title}})
    return json.dumps(layout)


_AXIS = re.compile(r"([xy])axis\d*")


def apply_layout(
    fig: go.Figure,
    *,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    height: int | None = None,
    present: bool | None = None,
    legend: bool = True,
    legend_below: bool = False,
) -> go.Figure:
    """Common Plotly defaults: white template, font sizes (larger in presentation mode), margins,
    axis titles (on every 2-D axis of the figure, subplots included) and a legend. Returns the same
    figure, so calls can be chained.

    Why it is built this way: `fig.update_layout(...)` / `update_xaxes(...)` walk Plotly's validators
    for every key, ~12-30 ms a figure, which adds up when a ρ change redraws seven charts. Here the
    theme's settings are a cached plain dict, merged over the figure's own layout and assigned in
    one go (one validation pass, ~1-2 ms)."""
    present = is_presentation() if present is None else present
    phone = is_phone()
    theme = json.loads(_theme_json(title, x_title, y_title, height, bool(present), bool(legend), bool(legend_below),
                                   phone))
    axis = {"x": theme.pop("_x"), "y": theme.pop("_y")}
    own = fig.layout.to_plotly_json()
    own.pop("template", None)  # re-validating the template is the slow part; Plotly re-applies the default
    names = {k for k in own if _AXIS.fullmatch(k)} | {"xaxis", "yaxis"}
    for name in names:
        theme[name] = axis[name[0]]
    if phone and legend:
        rows = 0
        for t in fig.data:
            if t.showlegend is not False and t.name:
                if len(t.name) > PHONE_TITLE_CHARS and "<br>" not in t.name:  # one legend entry cannot wrap itself
                    t.name = "<br>".join(textwrap.wrap(t.name, PHONE_TITLE_CHARS))
                rows += t.name.count("<br>") + 1
        if height is not None:  # the phone's legend rows (about one entry each) add to the height
            theme["height"] += PHONE_LEGEND_ROW * rows
    fig.layout = _merge(own, theme)
    return fig


# No motion while the server works. Streamlit fades stale elements and spins its spinner icon during a
# rerun; each animated frame is composited in software by every browser, ~0.17 CPU-seconds per second
# of waiting (measured in headless chromium), so on a busy server the waiting itself slowed the
# machine down. Transitions become one step at their usual delay (elements still dim when a rerun
# takes a while, without 60 frames a second), and the spinner icon stands still next to its text.
_CALM = """
*, *::before, *::after {transition-duration: 0s !important;}
[data-testid="stSpinnerIcon"] {animation: none !important;}
"""


# A phone has no hover, so Plotly shows every chart's mode bar all the time, on top of the chart's title; the
# tools it offers (zoom boxes, PNG export) are for a mouse. Below 640 px (where Streamlit stacks the columns) it goes.
_NARROW = """
@media (max-width: 640px) {.js-plotly-plot .modebar-container {display: none !important;}}
"""


def css(present: bool) -> str:
    """The page CSS. Presentation mode hides the sidebar and the expanders that hold secondary
    controls (the widgets still run, so URL parameters keep working) and enlarges the text."""
    base = """
<style>
.block-container {padding-top: 2.2rem;}
""" + _CALM + _NARROW + """
</style>
"""
    if not present:
        return base
    return base + """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] {display: none !important;}
[data-testid="stExpander"] {display: none !important;}
html, body, [data-testid="stMarkdownContainer"] p,
[data-testid="stMarkdownContainer"] li {font-size: 1.3rem !important;}
[data-testid="stCaptionContainer"] p {font-size: 1.1rem !important;}
h1 {font-size: 2.4rem !important;} h2 {font-size: 2.3rem !important;} h3 {font-size: 1.8rem !important;}
[data-testid="stWidgetLabel"] p {font-size: 1.2rem !important;}
[data-testid="stTable"] td, [data-testid="stTable"] th {font-size: 1.2rem !important;}
.block-container {max-width: 100% !important; padding-left: 2rem; padding-right: 2rem;}
</style>
"""
