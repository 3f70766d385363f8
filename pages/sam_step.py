"""How a SAM step works: one step of SAM drawn on a 2-D contour, next to the SGD step.

SAM (Foret et al., ICLR 2021), as written in core/sam.py:
    (1) g = ∇L(w)    (2) ε = ρ·g/‖g‖    (3) w ← w − η·∇L(w + ε)
SGD takes  w ← w − η·∇L(w). Click the contour to move w; "Step" applies (3) to w.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import cache, charts, controls, theme
from core.toy.sam_step import sam_step_numbers

LANDSCAPES_2D = ("double_well_2d", "saddle", "himmelblau", "rosenbrock", "valley_2d", "rastrigin", "zhu")
DEFAULT_LANDSCAPE = "double_well_2d"
DEFAULT_POINT = {"double_well_2d": (0.55, 0.7)}  # on the sharp well's slope, where ε matters


st.title("How a SAM step works")
st.caption("SAM asks: what is the worst loss within a distance ρ of w? It steps downhill from *there*.")

chart_col, side = st.columns([3, 1.15], gap="medium")

with side:
    rho = controls.rho_slider(default=0.1, hi=1.0, step=0.01)
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
    point = controls.clicked_point("main_chart")
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


if zoom == "near":
    # large enough for the ρ-ball and both steps, small enough that the steps are visible
    step_len = max(np.linalg.norm(np.subtract(nums["w_sgd"], w)), np.linalg.norm(np.subtract(nums["w_sam"], w)))
    g = cache.grid_window(name, window_around(w, max(2.5 * rho, 3.0 * step_len, 0.25)))
else:
    g = cache.grid(name)

with chart_col:
    fig = charts.sam_step_figure(g, w=w, grad_w=nums["grad_w"], eps=nums["eps"], grad_adv=nums["grad_adv"],
                                 rho=rho, lr=lr, history=history, title=f"One SAM step on “{land.title}”")
    st.plotly_chart(fig, key="main_chart", on_select=_on_click, selection_mode="points",
                    config=theme.PLOTLY_CONFIG)
    st.caption("Yellow: the ascent ε of length ρ along the gradient, to the worst point w+ε on the dashed "
               "circle. Blue: the SGD step −η∇L(w). Orange: the SAM step −η∇L(w+ε), the gradient taken at w+ε "
               "but applied at w. Click anywhere to move w; **Step** repeats the SAM update.")

with side:
    st.markdown("**This step**")
    st.dataframe(
        {"quantity": ["‖∇L(w)‖", "‖ε‖ (= ρ)", "L(w)", "L(w+ε)", "L after SGD step", "L after SAM step"],
         "value": [float(np.linalg.norm(nums["grad_w"])), float(np.linalg.norm(nums["eps"])), nums["loss_w"],
                   nums["loss_adv"], nums["loss_sgd"], nums["loss_sam"]]},
        hide_index=True, width="stretch", column_config={"value": st.column_config.NumberColumn(format="%.4f")})
    angle = np.degrees(np.arccos(np.clip(
        np.dot(nums["grad_w"], nums["grad_adv"])
        / (np.linalg.norm(nums["grad_w"]) * np.linalg.norm(nums["grad_adv"]) + 1e-12), -1, 1)))
    st.caption(f"The SAM step turns {angle:.0f}° away from the SGD step here.")

controls.download_data("step data", nums | {"history": history}, key="sam_step_dl", file_stem="sam_step",
                       config={"page": "sam_step", "landscape": name, "rho": rho, "lr": lr, "w": list(w)})
