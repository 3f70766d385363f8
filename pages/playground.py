"""Playground: any landscape (or your own formula), several optimizers side by side.

Each optimizer runs `core.toy.simulate.simulate` on the same landscape, start, noise and seed
(common random numbers), so the paths differ only because of the optimizer. The animation runs in
the browser (Plotly frames); the server only computes the paths, cached by config.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import cache, charts, controls, theme
from core.methods import page_methods
from core.toy.formula import FormulaError

DEFAULT_LANDSCAPE = "double_well_2d"
DEFAULT_OPTS = ("sgd", "sam", "psam")
PLAYGROUND_OPTS = tuple(page_methods())  # the registry's methods for the pages (core.methods, on_pages)
# The default scene: start on the slope above the sharp well, mild noise (σ = 1), SAM at ρ = 0.2. The
# lecture scene "SGD vs SAM in the double well" (core.toy.presets.PLAYGROUND) turns the noise up to show escapes.
DEFAULT_START = {"double_well_2d": (0.6, 1.0), "formula": (2.0, 1.5)}
DEFAULT_FORMULA = "0.5*x^2 + 2*sin(y)^2 + 0.1*y^2"
VALLEY_A = (0.5, 50.0)  # range of the valley curvatures a_L, a_R (app/presets.py PAGE_PARAMS repeats it)
SHOW_PARTICLES = 3  # paths drawn per optimizer (the animation payload grows with this)

st.title("Playground")
st.caption("Pick a landscape and some optimizers; click the contour to choose where they start.")

chart_col, side = st.columns([3, 1.15], gap="medium")
with side:
    rho = controls.rho_slider(default=0.2, hi=1.0, step=0.01)
    lr_box = st.container()  # the learning rate is drawn here, but created after the landscape (its default)
    opts = controls.optimizer_multiselect(default=DEFAULT_OPTS, allowed=PLAYGROUND_OPTS)
    name = controls.landscape_select(default=DEFAULT_LANDSCAPE)
    formula = ""
    if name == "formula":
        formula = controls.text_input("formula", "L(x, y) =", DEFAULT_FORMULA,
                                      help="x, y, numbers, + − * / ^, sin cos exp log sqrt abs tanh …")
    landscape_params: tuple = ()
    if name == "valley_1d":  # the asymmetric valley's two curvatures (the valley lab's a_L, a_R; same URL keys)
        a_left = controls.float_slider("a_left", "a_L (curvature left of 0)", *VALLEY_A, 10.0, step=0.5, fmt="%.1f")
        a_right = controls.float_slider("a_right", "a_R (curvature right of 0)", *VALLEY_A, 1.0, step=0.5, fmt="%.1f")
        landscape_params = (("a_left", a_left), ("a_right", a_right))
    view_box = st.container()  # contour or 3-D surface: offered once the landscape is known to be 2-D

# --- the landscape (a bad formula is shown inline; the text stays in the box) -------------------
try:
    land = cache.landscape(name, formula, landscape_params)
    if name == "formula":
        st.session_state["playground_good_formula"] = formula
except (FormulaError, ValueError) as e:
    with side:
        st.error(f"Formula: {e}")
    good = st.session_state.get("playground_good_formula", DEFAULT_FORMULA)
    formula = good
    land = cache.landscape(name, good)
    with side:
        st.caption(f"Showing the last formula that worked: `{good}`")

# The default learning rate suits the landscape: 0.05, or less where the sharpest minimum needs it
# (Himmelblau, Rosenbrock, Rastrigin …: gradient descent is unstable there for η > 2/λ_max).
stable_lr = land.stable_lr()  # None: no minimum with positive curvature is known (e.g. a formula without one)
lr_default = controls.lr_default_for(stable_lr)
# another landscape picked here (a page just opened from a scene or a link reads its own URL instead)
landscape_changed = controls.remember("playground_landscape", name) != name
# ... or the same one with other parameters (the valley's curvatures): a sharper side may need a smaller η too
shape = f"{name}{landscape_params}"
shape_changed = controls.remember("playground_shape", shape) != shape
if (shape_changed and stable_lr is not None and "lr" in st.session_state
        and st.session_state["lr"] > controls.LR_STABLE_SHARE * stable_lr):  # too close to the new limit
    st.session_state["lr"] = lr_default  # the widget does not exist yet in this run, so it may be set
    controls.notice(f"Learning rate lowered to {lr_default:g} for this landscape: its sharpest minimum has "
                    f"curvature λ = {2 / stable_lr:.3g}, and gradient descent settles there only for η < 2/λ = "
                    f"{stable_lr:.3g}.")
lr = controls.lr_slider(default=lr_default, container=lr_box)
if stable_lr is not None and lr > stable_lr:  # e.g. a shared link with ?lr=0.5 on Rastrigin
    lr_box.warning(f"η = {lr:g} is above this landscape's stability limit 2/λ_max = {stable_lr:.3g}: gradient "
                   "descent cannot settle in its sharpest minimum, so the paths ring or fly off.",
                   icon=":material/warning:")
view = (controls.choice("view", "view", {"contour": "contour", "surface": "3-D surface"}, "contour", radio=True,
                        container=view_box) if land.dim == 2 else "contour")  # a 1-D landscape is a curve

with st.expander("More controls: noise, steps, particles, seed, schedules, start point"):
    c1, c2, c3 = st.columns(3)
    with c1:
        noise, sigma = controls.noise_controls(default_kind="isotropic", default_sigma=1.0, hi_sigma=10.0)
    with c2:
        steps = controls.number_slider("steps", "steps T", lo=10, hi=2000, default=300, step=10)
        particles = controls.number_slider("particles", "particles per optimizer", lo=1, hi=50, default=3,
                                           help="More particles show the spread the noise causes.")
        seed = controls.number_input("seed", "seed")
    with c3:
        sched = controls.schedule_controls(which=("k", "f", "late_f", "p"))

start_default = DEFAULT_START.get(name, land.default_start)
if landscape_changed:  # a new landscape: start at its default start
    for i, key in enumerate(("x", "y")[: land.dim]):
        if key in st.session_state:  # set on this visit; a page just opened (a scene, a link) reads its URL
            st.session_state[key] = float(start_default[i])
if land.dim == 2:
    with side:
        st.markdown("**Start point** (or click the contour)")
        start = controls.point_input(land.bounds, start_default)
else:
    with side:
        start = (controls.float_slider("x", "start w", *land.bounds[0], float(start_default[0])),)

if not opts:
    st.warning("Choose at least one optimizer.")
    st.stop()

# --- run every optimizer (each cached on its own, so adding one only computes that one) ----------
cfgs = [controls.sim_config(landscape=name, formula=formula, landscape_params=landscape_params, optimizer=o,
                            # SGD never uses ρ: a fixed ρ keeps its cache entry when ρ moves
                            rhos=(0.0,) if o == "sgd" else (rho,), lr=lr, noise=noise, sigma=sigma,
                            particles=particles, steps=steps, seed=seed, start=start, keep_paths=SHOW_PARTICLES,
                            record_points=min(steps + 1, 101), **sched)
        for o in opts]
results = cache.simulate_many(tuple(cfgs))


def loss_along(xy: np.ndarray) -> np.ndarray:
    z = land.loss_np(xy)
    return np.where(np.isfinite(z), z, np.nan)


tracks = []
for o, r in zip(opts, results):
    xy = r.paths[0]
    tracks.append(charts.Track(key=o, name=charts.track_name(o, None if o == "sgd" else rho), xy=xy,
                               steps=r.steps_recorded, loss=loss_along(xy)))
n_div = {o: int(r.diverged.sum()) for o, r in zip(opts, results) if r.diverged.any()}
if n_div:
    st.warning("Diverged (left the finite range, frozen where they left): "
               + ", ".join(f"{theme.label(o)} {n} of {particles}" for o, n in n_div.items())
               + ". Try a smaller learning rate"
               + (f" (here η < 2/λ_max = {stable_lr:.3g}, the stability limit of the sharpest minimum)." if stable_lr
                  else "."))

with chart_col:
    # the optimizers are in the legend; with all seven in the title it ran off the chart
    title = f"{land.title}: {', '.join(theme.label(o) for o in opts)}" if len(opts) <= 3 else land.title
    if land.dim == 1:
        x = np.linspace(*land.bounds[0], 400)
        fig = charts.curve_figure(x, loss_along(x[:, None]), tracks, title=title)
        st.plotly_chart(fig, key="main_chart", config=theme.PLOTLY_CONFIG)
    elif view == "surface":
        fig = charts.surface_figure(cache.grid(name, formula), tracks, title=title)
        st.plotly_chart(fig, key="main_chart", config=theme.PLOTLY_CONFIG)
    else:
        fig = charts.trajectory_figure(cache.grid(name, formula), tracks, animate=True, clickable=True,
                                       start=start, title=title, minima=land.minima[:8])

        def _on_click():
            point = controls.clicked_point("main_chart")
            if point is not None:
                st.session_state["x"], st.session_state["y"] = point

        st.plotly_chart(fig, key="main_chart", on_select=_on_click, selection_mode="points",
                        config=theme.PLOTLY_CONFIG)
    how = ("Drag to turn the surface; the walls are cut off so the valleys show. "
           if view == "surface" and land.dim == 2
           else "▶ play animates the paths (the slider scrubs through the steps). ")
    drawn = min(SHOW_PARTICLES, particles)
    left = ""
    if len(land.minima) >= 2:  # the simulator records when each particle first reaches another basin
        left = " Left the starting basin by step T (all particles): " + ", ".join(
            f"{theme.label(o)} {int((r.first_passage[0] >= 0).sum())}/{particles}" for o, r in zip(opts, results)) + "."
    st.caption(how + f"The chart draws {drawn} of the {particles} particles per optimizer; the loss chart below "
               "averages all of them." + left + " All optimizers share the start, "
               "the learning rate, the noise draws and the seed; SAM variants use the same ρ. In a sharp well SAM "
               "jitters more than SGD: the ascent ε amplifies the noise along sharp directions, which is what lets "
               "it escape. Hover the chart for its mode bar (top right): it saves a PNG.")

loss_series = [(o, theme.label(o), r.steps_recorded, r.mean_loss[0]) for o, r in zip(opts, results)]
# A log scale shows what a linear one flattens (noise-free SGD closing in on 0 geometrically, SAM staying at 0.02),
# but only where no loss is negative: the double wells' minima lie below 0. A loss of exactly 0 (float32 underflow
# at the minimum) just ends its line there.
nonnegative = all(np.nanmin(np.where(np.isfinite(s[3]), s[3], np.inf)) >= 0 for s in loss_series)
log_y = nonnegative and controls.toggle("loss_log", "log scale for the loss")
st.plotly_chart(charts.loss_figure(loss_series, title="Loss along the way", log_y=log_y), key="loss_chart",
                config=theme.PLOTLY_CONFIG)
st.caption("Mean training loss over the particles at each recorded step. SAM does not aim for the lowest loss "
           "fastest: it trades some of it for a flatter spot.")

table = pd.DataFrame({"step": results[0].steps_recorded}
                     | {f"loss_{o}": r.mean_loss[0] for o, r in zip(opts, results)})
controls.download_data("paths and losses", {o: {"paths": r.paths[0], "steps": r.steps_recorded,
                                                 "mean_loss": r.mean_loss[0]} for o, r in zip(opts, results)},
                       config={"page": "playground", "configs": cfgs}, file_stem="playground", key="playground_dl",
                       csv=table)
