"""Escape lab (claim 1): SAM leaves a sharp minimum faster than SGD, and more so for larger ρ.

A cloud of particles starts in the sharp minimum of a double well (theory.md §3). Each particle
runs SGD or SAM with gradient noise; its first passage into the flat basin is its escape. The page
shows the escapes as they happen, the survival curves S(t) with the Kramers prediction for SGD and
the heuristic SAM speed-up, a ρ sweep, and, on Zhu et al.'s toy, where the claim stops holding.

The page only wires controls to core functions (cached by their frozen config) and to the figures
of app/stats_charts.py. Built for a lecture hall (issue 5): moving ρ reruns only `rho_section` (a
Streamlit fragment), the histogram and the ρ sweep are computed only when their tab is open
(?view=hist|sweep), and the particles play only with ?animate=1; see BENCHMARKS.md, "Load".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from app import cache, controls, rhogrid, theme
from app import stats_charts as sc
from app.classroom_view import class_link
from app.components import rhochart
from app.figcache import kept, look
from core.toy import measure, theory
from core.toy.landscapes import make_landscape
from core.toy.presets import ZHU_BREAKS
from core.toy.simulate import SimConfig, grid_fits, landscape_for, simulate, simulate_grid

SCENES = {"double_well_2d": "2-D double well", "double_well_1d": "1-D double well",
          "zhu": "Zhu et al. 2-D toy (minibatch noise)"}
RHO_HI = 0.3  # top of the ρ slider; the sweep covers [0, RHO_HI]
SWEEP_RHOS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
# The default lecture scene is core.toy.presets.ESCAPE: theory.md §3's double well made hotter (η = 0.05,
# σ = 2.5) so that escapes take hundreds of steps (Kramers τ ≈ 510) instead of ~40k.
DEFAULTS = dict(landscape="double_well_2d", rho=0.2, lr=0.05, sigma=2.5, particles=400, steps=300, seed=0)
# Every step of the ρ slider (61) for both double wells and the Zhu toy's scene, with room to spare: the hall's
# warm-up fills them all (serve/warm.py). An entry is ~0.2 MB, so 200 of them take ~40 MB per server process.
CACHE_ENTRIES = 200
ESCAPE_MARKERS = 150  # escape crosses drawn per run (more would only blur the picture and slow the page)
CURVE_POINTS = 150  # points per survival curve (a step function over T steps; more are not seen, only sent)
# ρ moves in the browser (issue 18): every step of the slider is computed in one batched run and shipped with the
# page (app/rhogrid.py, app/components/rhochart). SAM's lighter shades run at ρ/4 and ρ/2 rounded to the
# nearest slider step, so every run shown is a row of that one grid.
SLIDER = rhogrid.Slider("rho", "ρ (largest SAM radius shown)",
                        "SAM runs at ρ/4, ρ/2 and ρ (lighter to darker shades; rounded to the slider's steps). "
                        "SAM's ascent: ε = ρ·g/‖g‖. Moves in your browser: the server is asked only when you let go.",
                        rhogrid.steps(0.0, RHO_HI, 0.005), DEFAULTS["rho"])
GRID_ENTRIES = 64  # a grid view is ~1 MB (its payload) plus the per-step numbers


def sam_shades(rho: float) -> tuple[float, ...]:
    """The SAM radii shown at slider value ρ: ρ/4, ρ/2 and ρ, each on the slider's grid; (0.0,) at ρ = 0."""
    on_grid = {SLIDER.rhos[SLIDER.nearest(rho * f)] for f in (0.25, 0.5, 1.0)}
    return tuple(sorted(r for r in on_grid if r > 0)) or (0.0,)


def survival_points(first_passage, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """S(t) (core.toy.measure.survival_curve) at about CURVE_POINTS evenly spaced steps, for the charts."""
    t, s = measure.survival_curve(first_passage, steps)
    every = max(1, len(t) // CURVE_POINTS)
    return t[::every], s[::every]




# ---------------------------------------------------------------------------------------------
# Cached calls into core/ (keyed by the frozen configs)
# ---------------------------------------------------------------------------------------------

@cache.shared("escape.escape_run", max_entries=CACHE_ENTRIES)
def escape_run(cfg: SimConfig):
    """simulate(cfg), then per ρ the survival curve S(t) and the escape statistics with CIs."""
    res = simulate(cfg)
    stats, curves = [], []
    for fp in res.first_passage:
        curves.append(survival_points(fp, cfg.steps))
        stats.append(measure.escape_stats(fp, cfg.steps, n_boot=400, seed=cfg.seed))
    return res, stats, curves


def theory_numbers(base: dict, facts: dict, sam_rhos) -> tuple[float | None, dict]:
    """Kramers' τ for SGD and the heuristic SAM speed-ups at `sam_rhos` (theory.md §3); (None, {}) off the wells."""
    if facts["lam_min"] is None or base["noise"] != "isotropic":
        return None, {}
    tau = theory.kramers_escape_steps(facts["lam_min"], facts["lam_saddle"], facts["barrier"], base["lr"],
                                      base["sigma"])
    speedups = {r: theory.sam_speedup_heuristic(facts["lam_min"], r, base["lr"], base["sigma"]) for r in sam_rhos}
    return tau, {r: v for r, v in speedups.items() if v is not None}


def escape_figures(base: dict, facts: dict, sgd, sam: dict, sam_rhos) -> tuple:
    """The two charts at one ρ: the survival curves and the particles at the last step. `sgd` is (result, row,
    series); `sam` maps ρ to (paths, first passage, escape positions, steps recorded, series)."""
    tau, speedups = theory_numbers(base, facts, sam_rhos)
    series = [sgd[2]] + [sam[r][4] for r in sam_rhos]
    fig = sc.survival_figure(series, kramers_tau=tau, sam_speedups=speedups)
    top = sam[sam_rhos[-1]]
    res = sgd[0]
    runs = [sc.AnimatedRun("SGD", theme.COLORS["sgd"], res.steps_recorded, res.paths[0], res.first_passage[0],
                           res.escape_position[0]),
            sc.AnimatedRun(f"SAM ρ={sam_rhos[-1]:g}", sc.sam_shade(sam_rhos[-1], sam_rhos), top[3], top[0], top[1],
                           top[2])]
    anim = sc.escape_animation(facts["background"], facts["dim"], runs, max_markers=ESCAPE_MARKERS,
                               loss_1d=_loss_1d(base["landscape"]) if facts["dim"] == 1 else None, animate=False)
    return fig, anim


@cache.shared("escape.escape_grid", max_entries=GRID_ENTRIES, copy=False)  # read-only, read on every release
def escape_grid(sgd_cfg: SimConfig, sam_cfg: SimConfig, view_look: tuple) -> rhogrid.GridView:
    """Every step of the ρ slider in one batched run (core.toy.simulate.simulate_grid), drawn by the same figure
    functions as one ρ, packed for the browser. `view_look` (app.figcache.look) keys the fonts and sizes.
    per_step[i]: (ρ_i, EscapeSeries, escape row) of the SAM run at the slider's i-th step."""
    sgd_res, sgd_stats, sgd_curves = escape_run(sgd_cfg)
    grid = simulate_grid(sam_cfg, SLIDER.rhos)
    base = dict(landscape=sam_cfg.landscape, lr=sam_cfg.lr, sigma=sam_cfg.sigma, noise=sam_cfg.noise)
    facts = landscape_facts(sam_cfg.landscape)
    sgd_series = sc.EscapeSeries("sgd", 0.0, *sgd_curves[0], sgd_res.first_passage[0])
    sgd = (sgd_res, escape_row("SGD", sgd_stats[0], sgd_res.diverged[0]), sgd_series)
    sam = {}
    for j, r in enumerate(SLIDER.rhos):
        fp = grid.first_passage[j]
        st_j = measure.escape_stats(fp, sam_cfg.steps, n_boot=400, seed=sam_cfg.seed)
        sam[r] = (grid.paths[j], fp, grid.escape_position[j], grid.steps_recorded,
                  sc.EscapeSeries("sam", float(r), *survival_points(fp, sam_cfg.steps), fp),
                  escape_row(f"SAM ρ={r:g}", st_j, grid.diverged[j]))
    exact = exact_for(sgd_cfg)

    def block_at(i):  # the statistics at this step, shown by the browser (a release reruns no table)
        rhos = sam_shades(SLIDER.rhos[i])
        rows = [sgd[1]] + [sam[r][5] for r in rhos]
        tau, speedups = theory_numbers(base, facts, rhos)
        return (rhogrid.html_block(sc.escape_table(rows), divergence_note(rows),
                                   statistics_caption(sgd_cfg, tau, speedups, exact)),)

    return rhogrid.build(
        SLIDER, lambda i: escape_figures(base, facts, sgd, sam, sam_shades(SLIDER.rhos[i])), blocks_at=block_at,
        per_step_at=lambda i: (sgd[1:],) + tuple((r, sam[r][4], sam[r][5]) for r in sam_shades(SLIDER.rhos[i])),
        plotly_config=theme.PLOTLY_CONFIG)


@cache.shared("escape.sweep_run", max_entries=CACHE_ENTRIES)
def sweep_run(cfg: SimConfig):
    """measure.rho_sweep: one simulate() over SWEEP_RHOS, escape statistics per ρ."""
    return measure.rho_sweep(cfg, SWEEP_RHOS, n_boot=400)


@st.cache_data(max_entries=8, show_spinner=False)
def landscape_facts(name: str) -> dict:
    """Curvatures and barrier for the Kramers overlay, and the loss on a grid for the animation."""
    land = make_landscape(name)
    facts = dict(lam_min=None, lam_saddle=None, barrier=None, dim=land.dim, bounds=land.bounds,
                 # 80 × 80 points (not the default 120 × 120): the contour is re-sent to and re-drawn
                 # by every browser on each rerun, and the smooth wells look the same at 80.
                 background=sc.landscape_background(sc.numpy_loss(land), land.bounds, land.dim, n=80))
    if land.saddles and hasattr(land, "barrier"):  # the double wells; the Zhu toy has a ridge, not a saddle
        m, s = land.minima[0], land.saddles[0]
        # Escape runs along axis 0 (w₁): the curvatures along that axis at the minimum and the saddle.
        facts.update(lam_min=float(land.hessian(m.position)[0, 0]), lam_saddle=float(land.hessian(s.position)[0, 0]),
                     barrier=float(land.barrier()))
    return facts


@cache.shared("escape.exact_sgd_escape", max_entries=CACHE_ENTRIES)
def exact_sgd_escape(landscape: str, params: tuple, lr: float, sigma: float) -> float | None:
    """SGD's exact mean escape step from the sharp minimum of the double wells, with isotropic noise
    (theory.double_well_escape_steps); None for other landscapes."""
    return theory.double_well_escape_steps(landscape_for(landscape, "", params), lr, sigma)  # simulate()'s instance


@cache.shared("escape.zhu_run", max_entries=8)
def zhu_run(cfg: SimConfig):
    """Zhu et al.'s toy over ρ: fractions in the flat minimum / at the sharp minimum / trapped at step T."""
    res = simulate(cfg)
    return measure.final_outcomes(res, make_landscape(cfg.landscape, **dict(cfg.landscape_params)), target=1)


@st.cache_resource(max_entries=8, show_spinner=False)
def _loss_1d(name: str):
    """The landscape's loss as a numpy function, built once per name (make_landscape searches for the
    critical points, which takes a while) and shared read-only."""
    return sc.numpy_loss(make_landscape(name))


# ---------------------------------------------------------------------------------------------
# Controls
# ---------------------------------------------------------------------------------------------

# Lecture scenes link here with ?opts=sgd,sam (the optimizers of their run); this page always compares
# SGD with SAM, so the parameter is accepted and dropped instead of being reported as unknown.
if "opts" in st.query_params:
    del st.query_params["opts"]

st.title("Escape lab: SAM leaves sharp minima faster")
theme.intro(
    "A cloud of particles starts in the **sharp** minimum of a double well. Gradient noise kicks them "
    "about; now and then one crosses the barrier into the flat basin: an **escape**. SAM takes its step "
    "from the worst point within distance ρ, which in a sharp well is far up the wall, so its particles "
    "are thrown out sooner. The larger ρ, the stronger the effect (theory.md §3)."
)

c1, c2 = st.columns([1.2, 3.2])
landscape = controls.choice("landscape", "scene", SCENES, DEFAULTS["landscape"], container=c1)
if landscape == "zhu":
    c2.info("Zhu et al.'s toy: a sharp and a flat quadratic meeting at a non-smooth ridge, real minibatch noise "
            "(σ is not used). Escape = reaching the flat basin (both coordinates below −0.5). See \"Where it "
            "breaks\" below.", icon=":material/info:")
# Per-scene defaults: the Zhu toy runs at core.toy.presets.ZHU_BREAKS' settings.
SCENE_DEFAULTS = {"zhu": dict(lr=ZHU_BREAKS.config.lr, steps=ZHU_BREAKS.config.steps)}
# The η grid plus the Zhu toy's η = 0.009 (ηλ = 1.8 on its sharp minimum). The nearest grid value, 0.01, sits at
# ηλ = 2.0, the edge of stability, where the toy behaves otherwise: ρ = 0.2 escaped more than ρ = 0.1 there.
LR_CHOICES = tuple(sorted(set(controls.LR_OPTIONS) | {ZHU_BREAKS.config.lr}))
d = DEFAULTS | SCENE_DEFAULTS.get(landscape, {})
# Switching the scene in the menu starts it at its own η and T: the double well's η = 0.05 would carry every
# SGD particle out of the Zhu toy's sharp minimum within a few steps, the opposite of what that scene shows.
# Only between scenes whose defaults differ (the two double wells share theirs), and only values set on this
# visit: a page just opened from a link or a scene keeps the η and T of its URL.
previous = controls.remember("_escape_scene", landscape)
if previous != landscape and SCENE_DEFAULTS.get(previous) != SCENE_DEFAULTS.get(landscape):
    for key in ("lr", "steps"):
        if key in st.session_state:
            del st.session_state[key]
            st.query_params.pop(key, None)
with st.expander("More settings (noise, learning rate, particles, steps, seed)"):
    e1, e2, e3 = st.columns(3)
    lr = controls.lr_slider(default=d["lr"], options=LR_CHOICES, container=e1)
    sigma = controls.number_slider("sigma", "noise σ (gradient units)", lo=0.0, hi=12.0, default=d["sigma"],
                                   step=0.25, container=e1,
                                   help="Isotropic Gaussian gradient noise, shared by both SAM passes.")
    particles, steps, seed = controls.run_size(d, 50, e2, e3)

particles, steps = controls.cap_request(particles, steps, len(SWEEP_RHOS))
# The Zhu toy has real minibatch noise (its data set); the double wells get isotropic Gaussian noise σ.
noise = (dict(noise="minibatch", batch_size=ZHU_BREAKS.config.batch_size) if landscape == "zhu"
         else dict(noise="isotropic"))
BASE = dict(landscape=landscape, lr=float(lr), sigma=float(sigma), particles=int(particles), steps=int(steps),
            seed=int(seed), keep_paths=40, record_points=120, **noise)


# ---------------------------------------------------------------------------------------------
# Everything that depends on ρ, in one fragment: moving ρ reruns only this function, so the server
# rebuilds and every browser redraws only these charts (not the page header, the settings or the
# Zhu section below). In a lecture hall that is most of the cost of a ρ change.
# ---------------------------------------------------------------------------------------------
@st.fragment
def rho_section(base: dict) -> None:
    r1, r2 = st.columns([3, 1.2], vertical_alignment="bottom")
    animate = controls.toggle("animate", "Animate the particles", default=False, container=r2,
                              help="Play the particles step by step (Plotly frames, played in the browser). "
                                   "Off: the picture at the last step, and ρ moves in your browser.")
    steps = base["steps"]
    try:
        sgd_cfg = SimConfig(optimizer="sgd", rhos=(0.0,), **base)
        grid_cfg = SimConfig(optimizer="sam", rhos=(RHO_HI,), **base)  # its ρ are the slider's (escape_grid)
        sweep_cfg = SimConfig(optimizer="sam", rhos=SWEEP_RHOS, **base | dict(keep_paths=0, record_points=2))
    except ValueError as e:  # settings the engine refuses: one line, no traceback
        st.error(f"These settings cannot run: {e}")
        return
    facts = landscape_facts(base["landscape"])
    # ρ in the browser unless the particles are animated (30 frames × 61 steps would not fit 2 MB) or the grid is
    # too large for one run (then ρ is a server slider, as before, one rerun per move)
    in_browser = not animate and grid_fits(grid_cfg, len(SLIDER.rhos))
    if in_browser:
        rho = controls.grid_rho(SLIDER)
        sam_rhos = sam_shades(rho)
        with st.spinner(f"Simulating particles at all {len(SLIDER.rhos)} values of ρ…"):
            view = escape_grid(sgd_cfg, grid_cfg, look())
        at = view.per_step[SLIDER.nearest(rho)]
        (sgd_row, sgd_series), sam_at = at[0], at[1:]
        series = [sgd_series] + [x[1] for x in sam_at]
        rows = [sgd_row] + [x[2] for x in sam_at]
        sam_cfg = SimConfig(optimizer="sam", rhos=sam_rhos, **base)  # what the exports name
        # the table under the chart counts the diverged runs at each ρ; here, once, whether any ρ has them
        n_div = max(x[0][0]["diverged"] + sum(y[2]["diverged"] for y in x[1:]) for x in view.per_step)
    else:
        rho = controls.rho_slider(SLIDER.label, hi=RHO_HI, default=DEFAULTS["rho"], step=0.005, container=r1,
                                  help=SLIDER.help.split(" Moves in")[0])
        sam_rhos = sam_shades(rho)
        sam_cfg = SimConfig(optimizer="sam", rhos=sam_rhos, **base)
        with st.spinner("Simulating particles…"):
            sgd_res, sgd_stats, sgd_curves = escape_run(sgd_cfg)
            sam_res, sam_stats, sam_curves = escape_run(sam_cfg)
        series = [sc.EscapeSeries("sgd", 0.0, *sgd_curves[0], sgd_res.first_passage[0])]
        series += [sc.EscapeSeries("sam", float(r), *sam_curves[i], sam_res.first_passage[i])
                   for i, r in enumerate(sam_rhos)]
        rows = [escape_row("SGD", sgd_stats[0], sgd_res.diverged[0])]
        rows += [escape_row(f"SAM ρ={r:g}", sam_stats[i], sam_res.diverged[i]) for i, r in enumerate(sam_rhos)]
        n_div = int(np.asarray(sgd_res.diverged).sum() + np.asarray(sam_res.diverged).sum())

    # Divergent particles: shown as such (a count and a notice), never a crash.
    if n_div and in_browser:
        st.warning(f"Some particle runs diverged on this slider (|w| > 10⁶ or NaN; up to {n_div} at one ρ): they "
                   "are frozen where they left and count as not escaped; the table under the chart counts them at "
                   "each ρ. Lower the learning rate or the noise.", icon=":material/warning:")
    elif n_div:
        st.warning(divergence_note(rows), icon=":material/warning:")
    tau, speedups = theory_numbers(base, facts, sam_rhos)

    # Row 1: the survival curves (main chart) and the particles
    survival_caption = (
        "**Survival** S(t): the fraction of particles still in the sharp basin after t steps. SAM's curves "
        "(orange shades, darker = larger ρ) fall faster than SGD's (blue). Dashed: **Kramers** for SGD, "
        "S(t) = exp(−t/τ) with τ = (2π/√(λ_min|λ_saddle|))·exp(ΔL/T)/η, T = ησ²/2. Dotted: the **heuristic** "
        "SAM speed-up exp((λ_min ρ²/2)/T) — right direction, but it overshoots at large ρ."
        + (" No Kramers curve here: it needs a saddle and isotropic gradient noise σ > 0." if tau is None else ""))
    how = ("The chart opens at the last step; press ▶ to play from step 0 (or drag the step slider)."
           if animate else f"The particles at the last step, T = {steps}; switch on **Animate the particles** "
           "to play them from step 0.")
    particles_caption = (
        f"{how} Dots: {base['keep_paths']} particles of each run in the landscape (on the loss curve "
        f"in 1-D; shading: the loss, darker = higher). A cross marks where one of the first {ESCAPE_MARKERS} "
        "particles escaped, from its first-passage step on (its first step in the flat basin). The legend "
        f"counts escapes among those {ESCAPE_MARKERS} marked particles; the table counts all particles.")
    if in_browser:
        chart_slot = st.container()  # filled below, once the open tab is known
        left, right = st.columns(2, gap="medium")
        left.caption(survival_caption)
        right.caption(particles_caption)
        rhochart.download_view(view, rho, title="Escape lab: SAM leaves sharp minima faster",
                               config=dict(base), file_stem="escape_view", key="dl_escape_html", container=right)
    else:
        left, right = st.columns(2, gap="medium")
        with left:
            # built once per config pair (app/figcache.py): τ, the speed-ups and the series follow from the configs
            fig = kept("escape.survival", (sgd_cfg, sam_cfg),
                       lambda: sc.survival_figure(series, kramers_tau=tau, sam_speedups=speedups))
            st.plotly_chart(fig, key="main_chart", config=theme.PLOTLY_CONFIG)
            st.caption(survival_caption)
        with right:
            runs = [sc.AnimatedRun("SGD", theme.COLORS["sgd"], sgd_res.steps_recorded, sgd_res.paths[0],
                                   sgd_res.first_passage[0], sgd_res.escape_position[0]),
                    sc.AnimatedRun(f"SAM ρ={sam_rhos[-1]:g}", sc.sam_shade(sam_rhos[-1], sam_rhos),
                                   sam_res.steps_recorded, sam_res.paths[-1], sam_res.first_passage[-1],
                                   sam_res.escape_position[-1])]
            anim = kept("escape.animation", (sgd_cfg, sam_cfg, animate), lambda: sc.escape_animation(
                facts["background"], facts["dim"], runs, max_markers=ESCAPE_MARKERS,
                loss_1d=_loss_1d(base["landscape"]) if facts["dim"] == 1 else None, animate=animate))
            st.plotly_chart(anim, key="escape_animation", config=theme.PLOTLY_CONFIG)
            st.caption(particles_caption)

    # Row 2: the numbers, the histogram and the ρ sweep, one at a time (only the open tab is computed
    # and drawn: a hidden chart would still cost every browser a redraw on each ρ change).
    tabs = controls.lazy_tabs("view", {"stats": "Escape statistics", "hist": "Escape-time histogram",
                                       "sweep": "ρ sweep: the effect grows with ρ"}, default="stats")
    if in_browser:
        # A release reruns only the ρ chart's own fragment (app/components/rhochart.chart_light): the statistics
        # at every step are in its payload; the histogram and the sweep, drawn here at one ρ, rerun the page.
        with chart_slot:
            rhochart.chart_light(view, rho, key="main_chart", rerun_page=not tabs["stats"].open)
    with tabs["stats"]:
        if tabs["stats"].open and in_browser:
            st.caption("The table under the charts follows ρ in your browser; the downloads hold the ρ you let go.")
            exact, record = exact_for(sgd_cfg), rhochart.box("main_chart")

            def released():  # the export at the released ρ (read when a download is clicked)
                i = record.get("index", SLIDER.nearest(rho))
                (sgd_row, sgd_series), sam_at = view.per_step[i][0], view.per_step[i][1:]
                t, sp = theory_numbers(base, facts, tuple(x[0] for x in sam_at))
                data, csv = escape_export([sgd_series] + [x[1] for x in sam_at],
                                          [sgd_row] + [x[2] for x in sam_at], t, sp, exact)
                cfg = SimConfig(optimizer="sam", rhos=tuple(x[0] for x in sam_at), **base)
                return data, csv, {"sgd": sgd_cfg, "sam": cfg}

            controls.download_data("escape data", lambda: released()[0], config=lambda: released()[2],
                                   file_stem="escape_survival", key="dl_escape", csv=lambda: released()[1])
        elif tabs["stats"].open:
            statistics_tab(series, rows, tau, speedups, sgd_cfg, sam_cfg)
    with tabs["hist"]:
        if tabs["hist"].open:
            hist_series = [series[0], series[-1]]  # SGD and the largest ρ: two overlaid histograms stay readable
            st.plotly_chart(sc.escape_histogram_figure(hist_series, steps), key="escape_histogram",
                            config=theme.PLOTLY_CONFIG)
            st.caption(f"How many particles escape in each window of steps, SGD against SAM at ρ = {sam_rhos[-1]:g}. "
                       "SAM's escapes come earlier and more often; particles still inside at step T are not counted.")
    with tabs["sweep"]:
        if tabs["sweep"].open:
            sweep_tab(sweep_cfg, rho, tau, facts["lam_min"])


def escape_row(label: str, s, diverged) -> dict:
    """One run's row of the statistics table (and of the JSON download): its EscapeStats as plain numbers."""
    return dict(label=label, escaped_fraction=s.escaped_fraction, escaped_fraction_ci=s.escaped_fraction_ci,
                median=s.median_escape_step, median_ci=s.median_escape_step_ci, mean=s.mean_escape_step,
                mean_ci=s.mean_escape_step_ci, diverged=int(np.asarray(diverged).sum()))


def exact_for(sgd_cfg: SimConfig) -> float | None:
    """SGD's exact mean escape step for this run's chain (exact_sgd_escape), where it starts in the sharp minimum
    with isotropic noise; None otherwise."""
    c = sgd_cfg
    return (exact_sgd_escape(c.landscape, c.landscape_params, c.lr, c.sigma)
            if c.noise == "isotropic" and c.start is None and c.start_spread == 0 else None)


def divergence_note(rows) -> str:
    """One line when particle runs diverged (they count as not escaped), else ""."""
    n_div = sum(r["diverged"] for r in rows)
    return (f"{n_div} particle runs diverged (|w| > 10⁶ or NaN) and are frozen where they left; they count as not "
            "escaped. Lower the learning rate or the noise.") if n_div else ""


def statistics_caption(sgd_cfg, tau, speedups, exact) -> str:
    """The caption of the statistics table, with Kramers' τ, the heuristic speed-ups and SGD's exact escape time."""
    if tau is not None:
        theory_line = (f"Kramers for SGD: mean escape τ ≈ {tau:,.0f} steps (median τ·ln2 ≈ {tau * math.log(2):,.0f}). "
                       + ", ".join(f"heuristic SAM ρ={r:g}: ×{v:.2g} faster" for r, v in speedups.items()) + ".")
    else:
        theory_line = "Kramers: no prediction for this scene."
    if exact is not None and math.isfinite(exact):
        theory_line += (f" Exact for SGD (the grid chain of w₁, which moves on its own here): mean escape "
                        f"{exact:,.0f} steps" + (f"; Kramers is {1 - tau / exact:.0%} low, as its ΔL ≫ T does not "
                                                 "quite hold" if tau is not None and tau < exact else "") + ".")
    elif exact is not None:
        theory_line += f" Exact for SGD: beyond {theory.MAX_ESCAPE_STEPS:.0e} steps, practically never."
    return (f"{sgd_cfg.particles} particles per run, {sgd_cfg.steps} steps. Escaped fraction with a 95% Wilson "
            "interval; median first-passage step (— when fewer than half escaped) and mean over the escaped "
            f"particles, each with a 95% bootstrap interval. {theory_line}")


def escape_export(series, rows, tau, speedups, exact) -> tuple[dict, pd.DataFrame]:
    """The statistics tab's downloads: the JSON body and the CSV of the survival curves."""
    data = {"runs": [r | {"survival_t": s.t, "survival": s.survival} for r, s in zip(rows, series)],
            "kramers_mean_escape_steps": tau, "exact_sgd_mean_escape_steps": exact, "sam_heuristic_speedup": speedups}
    return data, pd.DataFrame({s.label: s.survival for s in series} | {"step": series[0].t})


def statistics_tab(series, rows, tau, speedups, sgd_cfg, sam_cfg) -> None:
    """The escape statistics of every run, with the Kramers numbers, and the data download."""
    exact = exact_for(sgd_cfg)
    # a static table: cheaper to redraw than st.dataframe
    st.table(sc.escape_table(rows), hide_index=True, border="horizontal")
    st.caption(statistics_caption(sgd_cfg, tau, speedups, exact))
    data, csv = escape_export(series, rows, tau, speedups, exact)
    controls.download_data("escape data", data, config={"sgd": sgd_cfg, "sam": sam_cfg}, file_stem="escape_survival",
                           key="dl_escape", csv=csv)


def sweep_tab(sweep_cfg, rho, tau, lam_min) -> None:
    """SAM at ρ = 0 … RHO_HI on the same noise draws: escaped fraction and median escape step; with
    Kramers' τ (None: no prediction), the heuristic SAM median τ·ln2 / speed-up(ρ) as well."""
    lr, sigma, steps = sweep_cfg.lr, sweep_cfg.sigma, sweep_cfg.steps
    with st.spinner("ρ sweep…"):
        sweep = sweep_run(sweep_cfg)
    esc = sweep.escape
    nan = lambda v: math.nan if v is None else float(v)
    heur = None
    if tau is not None:
        heur = [tau * math.log(2) / (theory.sam_speedup_heuristic(lam_min, r, lr, sigma) or math.nan)
                for r in sweep.rhos]
    sweep_fig = sc.rho_sweep_figure(
        sweep.rhos, [e.escaped_fraction for e in esc], [e.escaped_fraction_ci[0] for e in esc],
        [e.escaped_fraction_ci[1] for e in esc], [nan(e.median_escape_step) for e in esc],
        [nan(e.median_escape_step_ci[0]) for e in esc], [nan(e.median_escape_step_ci[1]) for e in esc],
        steps, current_rho=rho, heuristic_median=heur)
    st.plotly_chart(sweep_fig, key="rho_sweep", config=theme.PLOTLY_CONFIG)
    st.caption("SAM at ρ from 0 (= SGD) to 0.3, same noise draws for every ρ. Left: fraction escaped by step T "
               "(95% Wilson band); right: median first-passage step (95% bootstrap bars; missing where "
               "fewer than half escaped). The dotted line marks the current ρ.")
    controls.download_data(
        "ρ sweep", {"rhos": sweep.rhos, "escape": [e.to_dict() for e in esc]}, config=sweep_cfg,
        file_stem="escape_rho_sweep", key="dl_sweep",
        csv=pd.DataFrame({"rho": sweep.rhos, "escaped_fraction": [e.escaped_fraction for e in esc],
                          "median_escape_step": [nan(e.median_escape_step) for e in esc]}))


rho_section(BASE)
# The entry point of the class experiment (issue 14): every student runs one ρ of these settings.
class_link("escape", landscape=landscape, lr=float(lr), sigma=float(sigma), steps=int(steps))

# ---------------------------------------------------------------------------------------------
# Where it breaks: Zhu et al.'s toy
# ---------------------------------------------------------------------------------------------
st.subheader("Where it breaks: too much ρ traps SAM")
zhu_cfg = ZHU_BREAKS.config.replace(keep_paths=0, record_points=2)
with st.spinner("Zhu et al.'s toy…"):
    zhu = zhu_run(zhu_cfg)
z1, z2 = st.columns([3, 2], gap="medium")
with z1:
    st.plotly_chart(sc.zhu_figure(zhu), key="zhu_chart", config=theme.PLOTLY_CONFIG)
    controls.download_data("Zhu toy", zhu, config=zhu_cfg, file_stem="escape_zhu", key="dl_zhu",
                           csv=pd.DataFrame({"rho": zhu["rhos"], "success": zhu["success"],
                                             "stayed": zhu["stayed"], "trapped": zhu["trapped"]}))
with z2:
    peak = int(np.argmax(zhu["success"]))
    rho_peak = float(zhu["rhos"][peak])
    st.markdown(
        "On Zhu et al.'s 2-D toy (ICML 2019) the sharp minimum sits **0.26 away from a non-smooth ridge**, "
        "where each sample's loss switches from a sharp quadratic to a flat one. SGD (ρ = 0) never leaves "
        f"the sharp minimum in {zhu_cfg.steps} steps (blue). With ηλ = 1.8 along the sharp direction, SAM bounces "
        "across the minimum with amplitude ηλρ/(2 − ηλ) = 9ρ (theory.md §2). While 9ρ is short of the ridge "
        "(ρ below about 0.03) the particles keep **bouncing on the sharp walls** at high loss (grey). At "
        f"ρ = {rho_peak:g} the bounce (9ρ = {9 * rho_peak:.2f}) clears the ridge and **{zhu['success'][peak]:.0%}** of "
        "the particles roll into the flat minimum (orange). A **larger ρ** puts SAM's look-ahead point beyond the "
        "ridge at every step; the gradient there points back, and the particles end **trapped near the ridge** "
        "(grey, \"hallucinated minimizers\"). Success lives in a window of ρ: more ρ is not always better."
    )
    st.caption(f"{zhu_cfg.particles} particles, {zhu_cfg.steps} steps, lr {zhu_cfg.lr:g}, real minibatch noise "
               f"(batch {zhu_cfg.batch_size}), ρ ∈ {{{', '.join(f'{r:g}' for r in zhu_cfg.rhos)}}} "
               "(core.toy.presets.ZHU_BREAKS). Success = both coordinates below −0.5 at step T; 'still at the "
               "sharp minimum' = within 0.1 of it. Bands: 95% Wilson intervals.")
