"""Asymmetric-valley lab (claim 2): SAM ends on the flatter side of an asymmetric valley, more so
for larger ρ, and the flat side generalises better.

1-D model (theory.md §4, He, Huang & Yuan, NeurIPS 2019): L = a_L w²/2 for w < 0 (sharp side),
a_R w²/2 for w ≥ 0 (flat side), Gaussian gradient noise σ. Also a smooth 2-D version. The page
shows where the particles spend their time, next to SGD's closed form and the exact grid Markov
chain (SGD and SAM), the drift of the mean with ρ, and the test loss as a shifted training loss.

The page only wires controls to core functions (cached by their frozen config) and to the figures
of app/stats_charts.py. As on the escape lab, moving ρ reruns only `rho_section` (a Streamlit
fragment), and the shifted-loss and schedule views are computed only when their tab is open
(?view=shift, ?view=schedules).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from app import cache, charts, controls, rhogrid, theme
from app import stats_charts as sc
from app.classroom_view import class_link
from app.components import rhochart
from app.figcache import kept, look
from core.toy import measure, theory
from core.toy.landscapes import make_landscape
from core.toy.simulate import SimConfig, grid_fits, simulate, simulate_grid

SCENES = {"valley_1d": "1-D valley (piecewise quadratic)", "valley_2d": "2-D smooth valley"}
# Menu values (also the URL values: ?a_left=20 selects 20.0; controls.choice matches numbers).
A_LEFT = (2.0, 5.0, 10.0, 20.0, 40.0)
A_RIGHT = (0.5, 1.0, 2.0, 5.0)
DELTAS = (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)
RHO_HI = 0.3
DRIFT_RHOS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # simulated points of the drift chart
CHAIN_RHOS = tuple(np.round(np.linspace(0.0, RHO_HI, 11), 4).tolist())  # exact-chain and noise-free curves
CHAIN_N = 500  # grid cells of the exact chain (n = 1000 agrees to < 0.1% on the checked example)
# The checked example of theory.md §4 (a_L = 10, a_R = 1, η = 0.05, σ = 1), smaller for a live page.
DEFAULTS = dict(landscape="valley_1d", rho=0.1, a_left=10.0, a_right=1.0, lr=0.05, sigma=1.0, particles=400,
                steps=600, seed=0, delta=0.2)
BURN_IN_FRACTION = 0.2
# The schedules tab: the thesis' PSAM (k = 2, f = 0.6) and the usual alternatives, at equal steps.
SCHEDULES = ("sgd", "psam", "late_sam", "every_k", "random_sam", "sam")
SCHEDULE_PARAMS = dict(k=2, f=0.6, late_f=0.3, p=0.3)
# Every step of the ρ slider (61) for both lecture scenes, with room to spare (the hall's warm-up fills them all;
# the cache held 32 before, fewer than one scene's steps). A run here is ~0.1 MB.
CACHE_ENTRIES = 160
# ρ moves in the browser (issue 18): every step of the slider in one batched run, shipped with the page.
SLIDER = rhogrid.Slider("rho", "ρ (SAM radius)",
                        "Radius of the ball in which SAM looks for the worst nearby loss: ε = ρ·∇L/‖∇L‖. Moves in "
                        "your browser: the server is asked only when you let go.",
                        rhogrid.steps(0.0, RHO_HI, 0.005), DEFAULTS["rho"])
GRID_ENTRIES = 64  # a grid view is ~0.5 MB


# ---------------------------------------------------------------------------------------------
# Cached calls into core/ (keyed by frozen configs or plain numbers)
# ---------------------------------------------------------------------------------------------

@cache.shared("valley.valley_run", max_entries=CACHE_ENTRIES)
def valley_run(cfg: SimConfig):
    """simulate(cfg) and the stationary mean (time average after burn-in) with its 95% CI."""
    res = simulate(cfg)
    return res, measure.stationary_mean(res)


def _row(m: measure.StationaryMean, j: int) -> measure.StationaryMean:
    """Row j of a StationaryMean over several ρ, as a StationaryMean of one ρ."""
    return measure.StationaryMean(**{k: np.asarray(getattr(m, k))[j:j + 1]
                                     for k in ("rhos", "mean", "ci_low", "ci_high", "n", "n_diverged")})


def occupancy_curves(w_grid, loss_grid, chains: dict, a_left, a_right, lr, sigma, one_d: bool):
    """The density curves of the main chart: SGD's closed form and the exact chains in `chains` (opt → chain)."""
    curves = []
    closed = theory.valley_mean_sgd_closed_form(a_left, a_right, lr, sigma) if one_d else None
    p_closed = theory.closed_form_density(w_grid, loss_grid, lr, sigma)
    if p_closed is not None:
        curves.append(sc.DensityCurve("closed form (SGD) ∝ exp(−2L/(ησ²))", "sgd", 0.0, w_grid, p_closed, closed))
    for opt, ch in chains.items():
        name = "exact chain (SGD)" if opt == "sgd" else f"exact chain (SAM ρ={ch.rho:g})"
        curves.append(sc.DensityCurve(name, opt, ch.rho, ch.grid, ch.density, ch.mean))
    return curves, closed


@cache.shared("valley.valley_grid", max_entries=GRID_ENTRIES, copy=False)  # read-only, read on every release
def valley_grid(sgd_cfg: SimConfig, grid_cfg: SimConfig, view_look: tuple) -> rhogrid.GridView:
    """Every step of the ρ slider in one batched run (core.toy.simulate.simulate_grid) and, on the 1-D valley, the
    exact chain at each step; the occupancy chart at each step, packed for the browser. per_step[i]: (SAM's
    StationaryMean, its occupancy counts, the exact chain or None) at the slider's i-th step."""
    sgd_res, sgd_mean = valley_run(sgd_cfg)
    grid = simulate_grid(grid_cfg, SLIDER.rhos)
    means = measure.stationary_mean(grid)
    params = dict(grid_cfg.landscape_params)
    a_left, a_right, lr, sigma = params["a_left"], params["a_right"], grid_cfg.lr, grid_cfg.sigma
    one_d = grid_cfg.landscape == "valley_1d"
    w_grid, loss_grid = profile(grid_cfg.landscape, a_left, a_right)
    chains = [None] * len(SLIDER.rhos)
    sgd_chain = {}
    if one_d:
        try:
            sgd_chain = {"sgd": chain(a_left, a_right, lr, sigma, 0.0)}
            chains = [chain(a_left, a_right, lr, sigma, r) for r in SLIDER.rhos]
        except ValueError:  # the page says why (its own chain call fails the same way)
            chains, sgd_chain = [None] * len(SLIDER.rhos), {}
    sgd_occ = sc.Occupancy("sgd", 0.0, sgd_res.occupancy[0], sgd_res.occupancy_edges, float(sgd_mean.mean[0]))

    closed = occupancy_curves(w_grid, loss_grid, sgd_chain, a_left, a_right, lr, sigma, one_d)[1]  # SGD's

    def figure_at(i):
        occ = [sgd_occ, sc.Occupancy("sam", SLIDER.rhos[i], grid.occupancy[i], grid.occupancy_edges,
                                     float(means.mean[i]))]
        curves, _ = occupancy_curves(w_grid, loss_grid, sgd_chain | ({"sam": chains[i]} if chains[i] else {}),
                                     a_left, a_right, lr, sigma, one_d)
        return (sc.occupancy_figure(occ, curves),)

    def block_at(i):  # the mean positions at this step, shown by the browser (a release reruns no table)
        chains_i = sgd_chain | ({"sam": chains[i]} if chains[i] else {})
        return (rhogrid.html_block(mean_table(sgd_mean, _row(means, i), chains_i, closed, SLIDER.rhos[i]),
                                   mean_caption(grid_cfg.burn_in, grid_cfg.particles),
                                   drift_line(SLIDER.rhos[i], float(means.mean[i]))),)

    return rhogrid.build(SLIDER, figure_at, blocks_at=block_at,
                         per_step_at=lambda i: (_row(means, i), grid.occupancy[i], chains[i]),
                         plotly_config=theme.PLOTLY_CONFIG)


def mean_table(sgd_mean, sam_mean, chains: dict, closed, rho: float) -> pd.DataFrame:
    """The "Mean position" table: simulated E[w] with its interval, the exact chain and SGD's closed form."""
    fmt = lambda v: f"{v:+.4f}" if v is not None and math.isfinite(v) else "—"
    return pd.DataFrame(
        {"": ["simulated E[w]", "95% interval", "exact chain", "closed form"],
         "SGD": [fmt(sgd_mean.mean[0]), f"[{fmt(sgd_mean.ci_low[0])}, {fmt(sgd_mean.ci_high[0])}]",
                 fmt(chains["sgd"].mean) if "sgd" in chains else "—", fmt(closed)],
         f"SAM ρ={rho:g}": [fmt(sam_mean.mean[0]), f"[{fmt(sam_mean.ci_low[0])}, {fmt(sam_mean.ci_high[0])}]",
                           fmt(chains["sam"].mean) if "sam" in chains else "—", "—"]})


def mean_caption(burn_in: int, particles: int) -> str:
    return (f"Time average of each particle over steps > {burn_in}, averaged over {particles} particles (95% normal "
            "interval). Positive = flat side. The closed form is a continuous-time approximation (a few % low); the "
            "exact chain is exact up to its grid.")


def drift_line(rho: float, sam_mean_now: float) -> str:
    """Where the slider's ρ sits on the drift chart: SAM's simulated mean there."""
    mean_now = f"{sam_mean_now:+.4f}" if math.isfinite(sam_mean_now) else "—"
    return (f"The slider's ρ = {rho:g}: SAM's simulated mean position there is E[w] = {mean_now} (the run in the "
            "chart above); read it against the orange dots of \"Drift grows with ρ\".")


@cache.shared("valley.drift_sweep", max_entries=CACHE_ENTRIES)
def drift_sweep(cfg: SimConfig):
    """measure.rho_sweep over DRIFT_RHOS: the stationary mean per ρ (one run, common noise)."""
    return measure.rho_sweep(cfg, DRIFT_RHOS, n_boot=0).stationary


@cache.shared("valley.chain", max_entries=CACHE_ENTRIES)
def chain(a_left: float, a_right: float, lr: float, sigma: float, rho: float):
    """theory.exact_chain_valley: the exact stationary density of SGD (ρ = 0) or SAM on the 1-D valley."""
    return theory.exact_chain_valley(a_left, a_right, lr, sigma, rho, n=CHAIN_N)


@cache.shared("valley.chain_curve", max_entries=CACHE_ENTRIES)
def chain_curve(a_left: float, a_right: float, lr: float, sigma: float):
    """Exact-chain mean position at each ρ of CHAIN_RHOS."""
    return np.array([chain(a_left, a_right, lr, sigma, r).mean for r in CHAIN_RHOS])


@cache.shared("valley.noise_free", max_entries=CACHE_ENTRIES)
def noise_free(cfg: SimConfig):
    """Noise-free SAM: the time-averaged position of one particle per ρ (started just off the floor,
    since at w = 0 exactly the gradient is 0 and SAM never moves)."""
    return np.asarray(simulate(cfg).time_avg)[:, 0, 0]


@cache.shared("valley.schedule_chain", max_entries=512)  # 6 schedules × 61 ρ steps; three floats each
def schedule_chain(name: str, a_left: float, a_right: float, lr: float, sigma: float, rho: float, steps: int,
                   burn_in: int, seed: int) -> tuple[float, float, str]:
    """theory.exact_schedule_chain_valley for one schedule: (exact expected time average after burn-in,
    cost relative to SAM, label). Exact: no particles, no sampling noise."""
    mask, cost, label = cache.schedule_mask(name, steps, seed=seed, **SCHEDULE_PARAMS)  # none of them is ASAM
    res = theory.exact_schedule_chain_valley(a_left, a_right, lr, sigma, rho, mask, start=0.0, burn_in=burn_in,
                                             n=CHAIN_N)
    return res.time_avg_mean, cost, label


@st.cache_data(max_entries=16, show_spinner=False)
def profile(name: str, a_left: float, a_right: float):
    """The loss along axis 0 (at w₂ = 0 in 2-D) on a fine grid, for overlays and the shift chart."""
    land = make_landscape(name, a_left=a_left, a_right=a_right)
    lo, hi = land.bounds[0]
    w = np.linspace(lo, hi, 801)
    pts = np.zeros((w.size, land.dim))
    pts[:, 0] = w
    return w, sc.numpy_loss(land)(pts)


# ---------------------------------------------------------------------------------------------
# Controls
# ---------------------------------------------------------------------------------------------

st.title("Asymmetric valley lab: SAM drifts to the flat side")
theme.intro(
    "Many minima are **asymmetric**: steep on one side, gentle on the other (He, Huang & Yuan, 2019). "
    "Noise shakes the particles; the steep wall pushes them back hard, the gentle side lets them wander, "
    "so on average they sit on the **flat side**. SAM looks ρ uphill before stepping: on the steep side "
    "that look-ahead kicks it back further, so SAM's mean moves even more to the flat side, the more so "
    "the larger ρ (theory.md §4)."
)

c1, c3, c4, _ = st.columns([1.4, 1, 1, 2])
landscape = controls.choice("landscape", "scene", SCENES, DEFAULTS["landscape"], container=c1)
a_left = float(controls.choice("a_left", "a_L (sharp side)", A_LEFT, DEFAULTS["a_left"], container=c3,
                               help="Curvature of the steep side, w < 0 (loss units per parameter unit²)."))
a_right = float(controls.choice("a_right", "a_R (flat side)", A_RIGHT, DEFAULTS["a_right"], container=c4,
                                help="Curvature of the gentle side, w > 0 (loss units per parameter unit²)."))
with st.expander("More settings (noise, learning rate, particles, steps, seed)"):
    e1, e2, e3 = st.columns(3)
    lr = controls.lr_slider(default=DEFAULTS["lr"], container=e1)
    # σ > 0: this page shows the noisy steady state (with σ = 0 every particle sits still on the valley floor);
    # the noise-free SAM 2-cycle is the separate curve of the "Drift grows with ρ" tab.
    sigma = controls.number_slider("sigma", "noise σ (gradient units)", lo=0.05, hi=3.0, default=DEFAULTS["sigma"],
                                   step=0.05, container=e1,
                                   help="Isotropic Gaussian gradient noise. The noise-free case is the grey "
                                        "dash-dot curve of the 'Drift grows with ρ' tab.")
    particles, steps, seed = controls.run_size(DEFAULTS, 100, e2, e3)

particles, steps = controls.cap_request(particles, steps, len(DRIFT_RHOS))
BASE = dict(landscape=landscape, lr=float(lr), sigma=float(sigma), particles=int(particles), steps=int(steps),
            seed=int(seed), noise="isotropic", keep_paths=0, record_points=200,
            burn_in=int(BURN_IN_FRACTION * steps), landscape_params=(("a_left", a_left), ("a_right", a_right)))


# ---------------------------------------------------------------------------------------------
# Everything that depends on ρ, in one fragment: moving ρ reruns only this function, so the server
# rebuilds and every browser redraws only these charts (see pages/escape.py).
# ---------------------------------------------------------------------------------------------
@st.fragment
def rho_section(base: dict) -> None:
    landscape, lr, sigma, particles = base["landscape"], base["lr"], base["sigma"], base["particles"]
    a_left, a_right = (dict(base["landscape_params"])[k] for k in ("a_left", "a_right"))
    try:
        sgd_cfg = SimConfig(optimizer="sgd", rhos=(0.0,), **base)
        grid_cfg = SimConfig(optimizer="sam", rhos=(RHO_HI,), **base)  # its ρ are the slider's (valley_grid)
        sweep_cfg = SimConfig(optimizer="sam", rhos=DRIFT_RHOS, **base | dict(record_points=2))
        free_cfg = SimConfig(optimizer="sam", rhos=CHAIN_RHOS,
                             **base | dict(noise="none", sigma=0.0, particles=1, record_points=2,
                                           start=(0.05,) * (1 if landscape == "valley_1d" else 2)))
    except ValueError as e:  # settings the engine refuses: one line, no traceback
        st.error(f"These settings cannot run: {e}")
        return
    one_d = landscape == "valley_1d"
    w_grid, loss_grid = profile(landscape, a_left, a_right)
    # ρ in the browser unless the grid is too large for one run (then ρ is the server slider, as before)
    in_browser = grid_fits(grid_cfg, len(SLIDER.rhos))
    view = None
    if in_browser:
        rho = controls.grid_rho(SLIDER)
        with st.spinner(f"Simulating particles at all {len(SLIDER.rhos)} values of ρ…"):
            sgd_res, sgd_mean = valley_run(sgd_cfg)
            view = valley_grid(sgd_cfg, grid_cfg, look())
        sam_mean, sam_counts, _ = view.per_step[SLIDER.nearest(rho)]
        edges = sgd_res.occupancy_edges
    else:
        rho = controls.rho_slider(SLIDER.label, hi=RHO_HI, default=DEFAULTS["rho"], step=0.005,
                                  container=st.columns([3, 1.2])[0])
        with st.spinner("Simulating particles…"):
            sgd_res, sgd_mean = valley_run(sgd_cfg)
            sam_res, sam_mean = valley_run(SimConfig(optimizer="sam", rhos=(float(rho),), **base))
        sam_counts, edges = sam_res.occupancy[0], sgd_res.occupancy_edges
    sam_cfg = SimConfig(optimizer="sam", rhos=(float(rho),), **base)  # what the exports name

    n_div = int(sgd_mean.n_diverged.sum() + sam_mean.n_diverged.sum())
    if view is not None:  # a release reruns no server text: the notice covers every ρ of the slider
        n_div = int(sgd_mean.n_diverged.sum()) + max(int(x[0].n_diverged.sum()) for x in view.per_step)
    if n_div and view is not None:
        st.warning(f"Particles diverged on this slider (|w| > 10⁶ or NaN; up to {n_div} at one ρ); they are left "
                   "out of the means and histograms. Lower the learning rate: SAM is stable on a quadratic only if "
                   "ηλ(1 + ρλ) < 2.", icon=":material/warning:")
    elif n_div:
        st.warning(f"{n_div} particles diverged (|w| > 10⁶ or NaN); they are left out of the means and "
                   "histograms. Lower the learning rate: SAM is stable on a quadratic only if ηλ(1 + ρλ) < 2.",
                   icon=":material/warning:")

    # Occupancy (main chart) with closed form and exact chain
    occ = [sc.Occupancy("sgd", 0.0, sgd_res.occupancy[0], edges, float(sgd_mean.mean[0])),
           sc.Occupancy("sam", float(rho), sam_counts, edges, float(sam_mean.mean[0]))]
    chains, chain_note = {}, None
    if one_d:  # σ ≥ 0.05 on this page: the chain has noise to work with
        try:
            for opt, r in (("sgd", 0.0), ("sam", float(rho))):
                chains[opt] = chain(a_left, a_right, lr, sigma, r)
        except ValueError as e:  # settings the grid cannot resolve (tiny η·σ): the simulation alone, with a note
            chains, chain_note = {}, f"No exact chain here: {e}."
    curves, closed = occupancy_curves(w_grid, loss_grid, chains, a_left, a_right, lr, sigma, one_d)

    left, right = st.columns([3, 2], gap="medium")
    with left:
        if view is not None:
            chart_slot = st.container()  # filled below, once the open tab is known
        else:
            fig = kept("valley.occupancy", (sgd_cfg, sam_cfg), lambda: sc.occupancy_figure(occ, curves))  # figcache
            st.plotly_chart(fig, key="main_chart", config=theme.PLOTLY_CONFIG)
        st.caption(
            "Bars: where SGD (blue) and SAM (orange) particles spend their time after a burn-in of "
            f"{base['burn_in']} steps, as a density; thick vertical lines: their mean positions. Dashed: SGD's "
            "closed-form density ∝ exp(−2L/(ησ²)); solid curves: the **exact** stationary density of the grid "
            "Markov chain (same noise, same SAM step) for SGD and SAM. The dotted line is the valley floor w = 0."
        )
        if chain_note:
            st.info(chain_note, icon=":material/info:")
        if not one_d:
            st.caption("2-D valley: the exact chain is 1-D only; the closed form uses the profile along w₁ at w₂ = 0 "
                       "(exact for SGD, since its two axes do not interact).")
    with right:
        st.subheader("Mean position")
        if view is None:
            st.table(mean_table(sgd_mean, sam_mean, chains, closed, rho), hide_index=True, border="horizontal")
            st.caption(mean_caption(base["burn_in"], particles))
        else:  # the table at every ρ is the ρ chart's block, under the chart
            st.caption("The table under the chart follows ρ in your browser; the downloads hold the ρ you let go.")
        record = rhochart.box("main_chart")

        def occupancy_export():  # at the released ρ (read when a download is clicked)
            r, counts, chain_at, means = rho, sam_counts, chains, sam_mean
            if view is not None and "index" in record:
                i = record["index"]
                r, (means, counts, c) = SLIDER.rhos[i], view.per_step[i]
                chain_at = {k: v for k, v in chains.items() if k == "sgd"} | ({"sam": c} if c else {})
            data = {"edges": sgd_res.occupancy_edges, "sgd_counts": sgd_res.occupancy[0], "sam_counts": counts,
                    "sgd_mean": sgd_mean.to_dict(), "sam_mean": means.to_dict(), "closed_form_mean_sgd": closed,
                    "exact_chain": {k: v.to_dict() for k, v in chain_at.items()}}
            csv = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], "sgd_counts": sgd_res.occupancy[0],
                                "sam_counts": counts})
            cfg = {"sgd": sgd_cfg, "sam": SimConfig(optimizer="sam", rhos=(float(r),), **base)}
            return data, csv, cfg

        controls.download_data("occupancy", lambda: occupancy_export()[0], config=lambda: occupancy_export()[2],
                               file_stem="valley_occupancy", key="dl_occ", csv=lambda: occupancy_export()[1])
        if view is not None:
            rhochart.download_view(view, rho, title="Asymmetric valley lab: SAM drifts to the flat side",
                                   config=dict(base), file_stem="valley_view", key="dl_valley_html")

    # The drift with ρ and the shifted-loss view, one at a time (only the open tab is computed and drawn).
    tabs = controls.lazy_tabs("view", {"drift": "Drift grows with ρ",
                                       "shift": "Why the flat side generalises better",
                                       "schedules": "Which steps need SAM? (exact)"}, default="drift")
    if view is not None:
        # A release reruns only the ρ chart's own fragment (app/components/rhochart.chart_light): the table and
        # the drift tab's ρ line at every step are in its payload; the other tabs, drawn at one ρ, rerun the page.
        with chart_slot:
            rhochart.chart_light(view, rho, key="main_chart", rerun_page=not tabs["drift"].open)
    with tabs["drift"]:
        if tabs["drift"].open:
            drift_tab(sweep_cfg, free_cfg, rho, closed, None if view is not None else float(sam_mean.mean[0]))
    with tabs["shift"]:
        if tabs["shift"].open:
            shift_tab(w_grid, loss_grid, rho, sgd_mean, sam_mean, sgd_cfg, sam_cfg)
        else:
            controls.keep_param("delta")  # the tab's own control: a shared ?delta=… waits for the tab
    with tabs["schedules"]:
        if tabs["schedules"].open:
            schedules_tab(base, rho, one_d and bool(chains))


def drift_tab(sweep_cfg, free_cfg, rho, closed, sam_mean_now: float | None) -> None:
    """SAM's mean position against ρ: simulated, the exact chain, the noise-free 2-cycle (`closed`: SGD's
    closed-form mean, or None).

    The chart does not depend on the slider's ρ, so it is built once per sweep (app/figcache.py) and is
    the same element on every ρ change: the server sends it as a reference to what the browser already
    has, and the browser does not redraw it. Where the slider's ρ sits (`rho`, with SAM's simulated mean
    there, `sam_mean_now`) is a line of text under it; as a marker line in the chart it made every ρ
    change rebuild, resend and redraw the whole chart."""
    a_left, a_right = (dict(sweep_cfg.landscape_params)[k] for k in ("a_left", "a_right"))
    lr, sigma, one_d = sweep_cfg.lr, sweep_cfg.sigma, sweep_cfg.landscape == "valley_1d"
    d1, d2 = st.columns([3, 2], gap="medium")
    with d1:
        with st.spinner("ρ sweep…"):
            drift = drift_sweep(sweep_cfg)
        try:
            chain_mean = chain_curve(a_left, a_right, lr, sigma) if one_d else None
        except ValueError:  # the grid cannot resolve these settings (said above the main chart)
            chain_mean = None
        cycle = [theory.valley_two_cycle_mean_sam(a_left, a_right, lr, r) for r in CHAIN_RHOS] if one_d else None
        cycle = None if cycle is None or any(c is None for c in cycle) else cycle
        free = noise_free(free_cfg)
        dfig = kept("valley.drift", (sweep_cfg, free_cfg, closed), lambda: sc.drift_figure(
            drift.rhos, drift.mean, drift.ci_low, drift.ci_high, CHAIN_RHOS, chain_mean, CHAIN_RHOS, cycle, closed,
            free_rhos=CHAIN_RHOS, free_mean=free))
        st.plotly_chart(dfig, key="drift_chart", config=theme.PLOTLY_CONFIG)
        if sam_mean_now is not None:  # None: ρ moves in the browser, and this line is under its chart
            st.caption(drift_line(rho, sam_mean_now))
        controls.download_data(
            "drift", {"rhos": drift.rhos, "mean": drift.mean, "ci_low": drift.ci_low, "ci_high": drift.ci_high,
                      "chain_rhos": CHAIN_RHOS, "chain_mean": chain_mean, "two_cycle_mean": cycle,
                      "noise_free_mean": free,
                      "closed_form_sgd": closed},
            config=sweep_cfg, file_stem="valley_drift", key="dl_drift",
            csv=pd.DataFrame({"rho": drift.rhos, "mean": drift.mean, "ci_low": drift.ci_low,
                              "ci_high": drift.ci_high}))
    with d2:
        st.markdown(
            "**Drift grows with ρ.** Orange dots: simulated mean position for SAM at each ρ (ρ = 0 is SGD), with "
            "95% intervals. Black: the exact chain. Grey dash-dot: **noise-free** SAM — even without noise SAM never "
            "settles at the bottom but bounces across the floor, and its bounce sits on the flat side, growing "
            "with ρ; noise adds SGD's own flat-side bias on top. Diamond: SGD's closed form at ρ = 0."
        )
        if one_d and cycle is None:
            st.caption("The closed-form 2-cycle mean ρ(a_L − a_R)/(a_L + a_R − η a_L a_R) (grey dotted) holds only "
                       "when (1 − η a_R)·a_L < a_R; here SAM's noise-free orbit is a longer cycle, so only its "
                       "simulated mean is drawn.")


def shift_tab(w_grid, loss_grid, rho, sgd_mean, sam_mean, sgd_cfg, sam_cfg) -> None:
    """Test loss as the training loss shifted by δ: the flat-side solution loses less."""
    delta = float(controls.choice("delta", "shift δ between training and test loss (parameter units)", DELTAS,
                                  DEFAULTS["delta"], radio=True))
    shifted = np.interp(w_grid - delta, w_grid, loss_grid, left=np.nan, right=np.nan)
    f_train = lambda x: float(np.interp(x, w_grid, loss_grid))
    f_test = lambda x, d: float(np.interp(x - d, w_grid, loss_grid))
    points, shift_rows, averages = [], [], {}
    for label, color, m in (("SGD", theme.COLORS["sgd"], float(sgd_mean.mean[0])),
                            (f"SAM ρ={rho:g}", theme.COLORS["sam"], float(sam_mean.mean[0]))):
        if math.isfinite(m):
            points.append((label, color, m, f_train(m), f_test(m, delta)))
            d = abs(delta) or 0.2
            shift_rows.append({"solution": f"{label}, w = {m:+.3f}", "train L(w)": f"{f_train(m):.4f}",
                               f"test δ=+{d:g}": f"{f_test(m, d):.4f}", f"test δ=−{d:g}": f"{f_test(m, -d):.4f}",
                               "mean ±δ": f"{0.5 * (f_test(m, d) + f_test(m, -d)):.4f}"})
            averages[label.split(" ")[0]] = 0.5 * (f_test(m, d) + f_test(m, -d))
    s1, s2 = st.columns([3, 2], gap="medium")
    with s1:
        sfig = sc.shifted_loss_figure(w_grid, loss_grid, shifted, delta, points, x_range=(-0.4, 0.8))
        st.plotly_chart(sfig, key="shift_chart", config=theme.PLOTLY_CONFIG)
        controls.download_data("shifted loss", {"w": w_grid, "train_loss": loss_grid, "test_loss": shifted,
                                                "delta": delta, "solutions": shift_rows},
                               config={"sgd": sgd_cfg, "sam": sam_cfg, "delta": delta}, file_stem="valley_shift",
                               key="dl_shift")
    with s2:
        if len(averages) == 2:  # the verdict from the table's last column, not assumed
            better = "SAM's" if averages["SAM"] < averages["SGD"] else "SGD's"
            verdict = (f"Averaged over both directions, **{better}** solution has the lower test loss "
                       f"({min(averages.values()):.4f} against {max(averages.values()):.4f}).")
        else:
            verdict = ""
        st.markdown(
            "Test data never look exactly like training data; a simple model of that is a **shifted** loss, "
            "test loss = L(w − δ). A shift towards the solutions (δ > 0) brings the **steep** wall to them: the "
            "solution further out on the flat side loses much less. A shift the other way (δ < 0) moves the test "
            "minimum away along the **flat** side, which rises slowly: both solutions lose a little there, the one "
            "further out (SAM's) a little more. The steep wall's loss is the larger of the two. " + verdict
        )
    st.dataframe(pd.DataFrame(shift_rows), hide_index=True, width="stretch")
    st.caption("Losses of each solution (its mean position) under the training loss and under shifts by +δ and −δ; "
               "the last column is their average.")


def schedules_tab(base: dict, rho: float, exact_ok: bool) -> None:
    """Claim 4 and its counter-evidence on the valley, exactly: the expected time-averaged position under
    each schedule (theory.exact_schedule_chain), at equal steps, as a share of SAM's shift from SGD."""
    if not exact_ok:
        st.info("The exact schedule chain is for the 1-D valley, at settings its grid can resolve: switch the scene, "
                "or raise η or σ.",
                icon=":material/info:")
        return
    a_left, a_right = (dict(base["landscape_params"])[k] for k in ("a_left", "a_right"))
    with st.spinner("Exact chains, step by step…"):
        # SGD never uses ρ: a fixed ρ = 0 keeps its cache entry when ρ moves
        out = {o: schedule_chain(o, a_left, a_right, base["lr"], base["sigma"], 0.0 if o == "sgd" else float(rho),
                                 base["steps"], base["burn_in"], base["seed"]) for o in SCHEDULES}
    m_sgd, m_sam = out["sgd"][0], out["sam"][0]
    shift = m_sam - m_sgd
    rows = [{"schedule": label, "cost vs SAM": cost, "exact mean position": m,
             "share of SAM's shift": (m - m_sgd) / shift if abs(shift) > 1e-12 else math.nan}
            for o, (m, cost, label) in out.items()]
    s1, s2 = st.columns([3, 2], gap="medium")
    with s1:
        fig = charts.budget_bar_figure(
            [(o, f"{label} · {cost:.0%}", m, (math.nan, math.nan)) for o, (m, cost, label) in out.items()],
            metric="expected mean w (flat > 0)", x_title="schedule · cost vs SAM (same steps)",
            title=f"Exact expected time average, ρ = {rho:g}, T = {base['steps']}")
        st.plotly_chart(fig, key="schedules_chart", config=theme.PLOTLY_CONFIG)
    with s2:
        st.markdown(
            "Each bar is **exact**: the distribution of w is carried step by step through the run, with SAM's or "
            "SGD's transition matrix as the schedule says (no particles, no sampling noise). Every schedule takes "
            f"the same {base['steps']} steps from w = 0; the mean is over steps after the burn-in of "
            f"{base['burn_in']}, as in the simulation above.")
        share = {r["schedule"]: r["share of SAM's shift"] for r in rows}
        early, late = share[out["psam"][2]], share[out["late_sam"][2]]
        tau = 1.0 / (base["lr"] * a_right)  # relaxation time of the flat side, in steps: 1/(η a_R)
        verdict = ("about the same share" if abs(early - late) < 0.05 else
                   "more with late SAM" if late > early else "more with PSAM")
        st.markdown(
            f"PSAM ({early:.0%} of SAM's shift) spends its SAM steps **early**, late SAM ({late:.0%}) at the **end**; "
            f"here both cost {out['psam'][1]:.0%} of SAM. Verdict on this valley: **{verdict}**. The valley forgets "
            f"its past within ~1/(η a_R) = {tau:.0f} steps, so what counts is how many SAM steps fall inside the "
            "window the mean is taken over, not when training started. The thesis' early-phase premise and the "
            "late-SAM counter-evidence (Zhou et al., ICLR 2025) are about real networks, whose early and late "
            "phases differ; the CIFAR-10 lab tests them there.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("cost vs SAM", "exact mean position", "share of SAM's shift")})
    controls.download_data("schedules", {"rows": rows, "schedule_params": SCHEDULE_PARAMS},
                           config=base | {"rho": rho}, file_stem="valley_schedules", key="dl_sched",
                           csv=pd.DataFrame(rows))


rho_section(BASE)
# The entry point of the class experiment (issue 14): every student runs one ρ of these settings.
class_link("valley", landscape=landscape, a_left=a_left, a_right=a_right, lr=float(lr), sigma=float(sigma),
           steps=int(steps))
