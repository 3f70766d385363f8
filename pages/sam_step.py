"""How a SAM step works: one step of SAM drawn on a 2-D contour, next to the SGD step.

SAM (Foret et al., ICLR 2021), as written in core/sam.py:
    (1) g = ∇L(w)    (2) ε = ρ·g/‖g‖    (3) w ← w − η·∇L(w + ε)
SGD takes  w ← w − η·∇L(w). Click the contour to move w; "Step" applies (3) to w.

ρ moves in the browser (issue 18): the diagram at every step of the ρ slider is shipped with the page (one
contour per zoom level, the ρ-dependent marks per step: app/charts.sam_step_marks), so dragging ρ asks the server
nothing; a click on the contour, Step, η and the landscape rerun the page as before.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.io as pio
import streamlit as st

from app import cache, charts, controls, rhogrid, theme
from app.components import rhochart
from app.figcache import look
from core.toy.sam_step import sam_step_numbers

LANDSCAPES_2D = ("double_well_2d", "saddle", "himmelblau", "rosenbrock", "valley_2d", "rastrigin", "zhu")
DEFAULT_LANDSCAPE = "double_well_2d"
DEFAULT_POINT = {"double_well_2d": (0.55, 0.7)}  # on the sharp well's slope, where ε matters
SLIDER = rhogrid.Slider("rho", "ρ (SAM radius)",
                        "Radius of the ball in which SAM looks for the worst nearby loss: ε = ρ·∇L/‖∇L‖. Moves in "
                        "your browser: the server is asked only when you let go.", rhogrid.steps(0.0, 1.0, 0.01), 0.1)
ZOOM = 1.25  # the zoomed view's half-width is 0.25·1.25^k: a few contours serve all 101 steps of ρ


st.title("How a SAM step works")
st.caption("SAM asks: what is the worst loss within a distance ρ of w? It steps downhill from *there*.")

chart_col, side = st.columns([3, 1.15], gap="medium")

with side:
    rho = controls.grid_rho(SLIDER)  # drawn with the chart (app/components/rhochart)
    lr = controls.lr_slider(default=0.1)
    name = controls.landscape_select(default=DEFAULT_LANDSCAPE, allowed=LANDSCAPES_2D)

land = cache.landscape(name)
start = DEFAULT_POINT.get(name, land.default_start)
bounds = land.bounds


def _clip(p):
    return [float(np.clip(p[i], bounds[i][0], bounds[i][1])) for i in range(2)]


def _set_point(p, keep_history=False):
    p = _clip(p)
    st.session_state["x"], st.session_state["y"] = p
    hist = st.session_state.get("sam_step_history", []) if keep_history else []
    st.session_state["sam_step_history"] = hist + [p]


def _on_step():
    w = (st.session_state["x"], st.session_state["y"])
    nums = sam_step_numbers(land, w, st.session_state["rho"], st.session_state["lr"])
    if not st.session_state.get("sam_step_history"):
        st.session_state["sam_step_history"] = [list(w)]
    _set_point(nums["w_sam"], keep_history=True)


def _on_reset():
    _set_point(start)


def _on_click():
    point = rhochart.clicked("main_chart")
    if point is not None:
        _set_point(point)


if st.session_state.get("sam_step_landscape") != name:  # a new landscape: back to its start
    if "sam_step_landscape" in st.session_state:
        _set_point(start)
    st.session_state["sam_step_landscape"] = name

with side:
    b1, b2 = st.columns(2)
    b1.button("Step ▶", on_click=_on_step, type="primary", width="stretch",
              help="Apply one SAM step: w ← w − η∇L(w+ε).")
    b2.button("Reset ↺", on_click=_on_reset, width="stretch", help="Back to the start point.")
    st.markdown("**Current point w** (or click the contour)")
    x, y = controls.point_input(bounds, start)

    zoom = controls.choice("zoom", "view", {"near": "zoom to w", "all": "whole landscape"}, "near", radio=True)

w = (x, y)
nums = sam_step_numbers(land, w, rho, lr)
history = [p for p in st.session_state.get("sam_step_history", []) if len(p) == 2]


def window_around(w, half: float):
    """A square view of half-width `half` around w, shifted to stay inside the landscape's window
    and rounded so that small moves of w reuse the cached grid."""
    out = []
    for i in range(2):
        lo, hi = bounds[i]
        half_i = min(half, (hi - lo) / 2)
        c = min(max(w[i], lo + half_i), hi - half_i)
        out.append((round(c - half_i, 2), round(c + half_i, 2)))
    return tuple(out)


def half_width(r: float) -> float:
    """The zoomed view's half-width at ρ = r: room for the ρ-ball and both steps, on the levels 0.25·ZOOM^k."""
    n = sam_step_numbers(land, w, r, lr)
    step_len = max(np.linalg.norm(np.subtract(n["w_sgd"], w)), np.linalg.norm(np.subtract(n["w_sam"], w)))
    need = max(2.5 * r, 3.0 * step_len, 0.25)
    return round(0.25 * ZOOM ** math.ceil(math.log(need / 0.25, ZOOM) - 1e-9), 4)


@st.cache_resource(max_entries=64, show_spinner=False)  # one read-only view per key: no copy per rerun
def step_grid(name: str, w: tuple, lr: float, history: tuple, zoom: str, view_look: tuple) -> rhogrid.GridView:
    """The diagram at every step of the ρ slider: one `sam_step_figure` per zoom level (its contour), and per step
    the ρ-dependent marks (charts.with_marks). Cheap (~0.5 s): no engine run, and 101 marks are plain dicts."""
    title = f"One SAM step on “{land.title}”"
    bases: dict = {}

    def figure_at(i: int):
        r = SLIDER.rhos[i]
        n = sam_step_numbers(land, w, r, lr)
        kw = dict(w=w, grad_w=n["grad_w"], eps=n["eps"], grad_adv=n["grad_adv"], rho=r, lr=lr)
        window = window_around(w, half_width(r)) if zoom == "near" else None
        if window not in bases:
            g = cache.grid_window(name, window) if window else cache.grid(name)
            fig = charts.sam_step_figure(g, history=list(history), title=title, **kw)
            bases[window] = json.loads(pio.to_json(fig, validate=False))
        return (charts.with_marks(bases[window], charts.sam_step_marks(**kw)),)

    def block_at(i: int):  # "This step" at this ρ, shown by the browser (a release reruns no table)
        return (rhogrid.html_block(*step_table(sam_step_numbers(land, w, SLIDER.rhos[i], lr))),)

    return rhogrid.build(SLIDER, figure_at, blocks_at=block_at, plotly_config=theme.PLOTLY_CONFIG)


def step_table(n: dict) -> tuple:
    """The numbers of one step (a table) and the angle between the SAM and SGD steps (a line)."""
    values = [float(np.linalg.norm(n["grad_w"])), float(np.linalg.norm(n["eps"])), n["loss_w"], n["loss_adv"],
              n["loss_sgd"], n["loss_sam"]]
    table = pd.DataFrame({"this step": ["‖∇L(w)‖", "‖ε‖ (= ρ)", "L(w)", "L(w+ε)", "L after SGD step",
                                        "L after SAM step"], "value": [f"{v:.4f}" for v in values]})
    angle = np.degrees(np.arccos(np.clip(
        np.dot(n["grad_w"], n["grad_adv"]) / (np.linalg.norm(n["grad_w"]) * np.linalg.norm(n["grad_adv"]) + 1e-12),
        -1, 1)))
    return table, f"The SAM step turns {angle:.0f}° away from the SGD step here."


with chart_col:
    view = step_grid(name, tuple(w), float(lr), tuple(tuple(p) for p in history), zoom, look())
    # a release reruns only the ρ chart's own fragment (app/components/rhochart.chart_light); a click on the chart
    # moves w, which reruns the page
    rhochart.chart_light(view, rho, key="main_chart", on_click=_on_click)
    st.caption("Yellow: the ascent ε of length ρ along the gradient, to the worst point w+ε on the dashed "
               "circle. Blue: the SGD step −η∇L(w). Orange: the SAM step −η∇L(w+ε), the gradient taken at w+ε "
               "but applied at w. Click anywhere to move w; **Step** repeats the SAM update. ρ moves in your "
               "browser; the numbers of this step are under the chart.")
    rhochart.download_view(view, rho, title="How a SAM step works",
                           config={"landscape": name, "lr": lr, "w": list(w)}, file_stem="sam_step_view",
                           key="dl_sam_step_html")

record = rhochart.box("main_chart")


def released_rho() -> float:
    """The ρ the browser let go last (read when a download is clicked)."""
    return record.get("rho", rho)


controls.download_data("step data", lambda: sam_step_numbers(land, w, released_rho(), lr) | {"history": history},
                       key="sam_step_dl", file_stem="sam_step",
                       config=lambda: {"page": "sam_step", "landscape": name, "rho": released_rho(), "lr": lr,
                                       "w": list(w)})
