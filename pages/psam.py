"""PSAM scheduler: which steps use SAM under each schedule, what that costs, and what it buys.

Schedules come from core.schedules (the one schedule module): PSAM uses SAM on every k-th step
during the first fraction f of training; late SAM only in the last fraction; SAM-k on every k-th
step throughout; random SAM on each step with probability p. Cost relative to full SAM over T steps
is (T + S)/(2T), S the number of SAM steps (two gradient evaluations each).

The comparison runs every schedule on the same toy problem at EQUAL BUDGET: each gets as many steps
as its gradient evaluations allow within full SAM's budget of 2T evaluations, so cheaper schedules
take more steps (SGD takes 2T).

ρ moves in the browser (issue 18): each schedule runs at every step of the ρ slider in one batched run
(core.toy.simulate.simulate_grid), and the outcome and loss charts at every step ship with the page; the table and
the verdict follow when ρ is released.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import cache, charts, controls, rhogrid, theme
from app.classroom_view import class_link
from app.components import rhochart
from app.figcache import look
from core.methods import for_optimizer
from core.toy.measure import minimum_outcome
from core.toy.simulate import grid_fits, simulate_grid

SCHEDULES = ("sgd", "sam", "psam", "late_sam", "every_k", "random_sam")
SCENE_LANDSCAPES = ("double_well_1d", "double_well_2d", "many_wells")
DEFAULTS = dict(landscape="double_well_1d", rho=0.3, lr=0.05, sigma=3.0, particles=500, steps=100, seed=0)
SLIDER = rhogrid.Slider("rho", "ρ (SAM radius)",
                        "Radius of the ball in which SAM looks for the worst nearby loss: ε = ρ·∇L/‖∇L‖. Moves in "
                        "your browser: the table and the verdict follow when you let go.",
                        rhogrid.steps(0.0, 1.0, 0.01), DEFAULTS["rho"])


st.title("PSAM scheduler")
present = theme.is_presentation()
if not present:  # the lecturer says it; the projector's first screen is for the chart
    st.caption("SAM costs two gradient evaluations per step. Which steps deserve them?")
if present:  # the projector: the four sliders in one row, so that the outcome chart starts on the first screen
    c_rho, c_steps, c_k, c_f = st.columns(4, gap="medium", vertical_alignment="bottom")  # sliders in one line
    c_mode = st.container()
else:
    c_rho, c_k = st.columns([1, 1], gap="large")
    c_steps = c_mode = c_rho
    c_f = c_k
rho = controls.grid_rho(SLIDER)  # drawn with the outcome chart (app/components/rhochart)
steps_label = "steps T of full SAM" + ("" if present else " (budget = 2T gradient evaluations)")
steps = controls.number_slider("steps", steps_label,
                               lo=20, hi=1000, default=DEFAULTS["steps"], step=10, container=c_steps,
                               help="Full SAM's T steps cost 2T gradient evaluations: the budget every schedule gets.")
mode = controls.choice("budget", "compare at", {"equal": "equal budget (gradient evaluations)",
                                                "steps": "equal number of steps"}, "equal", radio=True,
                       container=c_mode)
sched = controls.schedule_controls(which=("k",), container=c_k) | controls.schedule_controls(which=("f",),
                                                                                             container=c_f)

with st.expander("More controls: late SAM, random SAM, the toy problem"):
    e0, e1, e2, e3 = st.columns(4)
    with e0:
        sched |= controls.schedule_controls(which=("late_f", "p"))
    with e1:
        name = controls.landscape_select(default=DEFAULTS["landscape"], allowed=SCENE_LANDSCAPES,
                                         label="toy problem (sharp and flat minima)")
        lr = controls.lr_slider(default=DEFAULTS["lr"])
    with e2:
        sigma = controls.number_slider("sigma", "noise σ", lo=0.0, hi=10.0, default=DEFAULTS["sigma"], step=0.1)
        particles = controls.number_slider("particles", "particles", lo=50, hi=2000, default=DEFAULTS["particles"],
                                           step=50)
    with e3:
        seed = controls.number_input("seed", "seed", default=DEFAULTS["seed"])

sched_kw = dict(k=sched["k"], f=sched["f"], p=sched["p"], late_f=sched["late_f"], seed=seed)

# The timeline comes first, then what each schedule achieves; on the projector the other way round, so the
# outcome chart (the page's main chart) is on the first screen.
first, second = st.container(), st.container()
timeline_box, outcome_box = (second, first) if present else (first, second)

# --- 1. the timeline: which steps are SAM steps, over the T steps of full SAM --------------------
rows = []
for o in SCHEDULES:
    mask, cost, label = cache.schedule_mask(o, steps, **sched_kw)
    rows.append((o, label, mask, cost))
timeline_box.subheader("Which steps use SAM")
timeline_box.plotly_chart(charts.schedule_timeline(rows, title=f"SAM steps over T = {steps} steps"),
                          key="timeline_chart", config=theme.PLOTLY_CONFIG)
timeline_box.caption("Each tick is a SAM step (2 gradient evaluations); the gaps are SGD steps (1). "
                     f"PSAM with k = {sched['k']}, "
                     f"f = {sched['f']:g} costs (1 + f/k)/2 = {(1 + sched['f'] / sched['k']) / 2:.0%} of SAM; "
                     "the thesis' setting k = 2, f = 0.6 gives 65%.")

# --- 2. the same toy run under each schedule -------------------------------------------------------
land = cache.landscape(name)
budget = 2 * steps
cfgs = []
for o in SCHEDULES:
    t_o = for_optimizer(o, **sched_kw)[0].steps_within_budget(budget) if mode == "equal" else steps
    cfgs.append(controls.sim_config(
        landscape=name, optimizer=o, rhos=(0.0,) if o == "sgd" else (rho,), lr=lr, noise="isotropic", sigma=sigma,
        particles=particles, steps=t_o, seed=seed, keep_paths=0, record_points=min(t_o + 1, 101), **sched))


def outcome(r, i: int = 0) -> dict:
    """One table row: cost, then where the particles of ρ index i ended (core.toy.measure.minimum_outcome)."""
    out = minimum_outcome(r, land, "flat", i)
    return {
        "steps": int(r.config.steps), "gradient evaluations": int(r.grad_evals),
        # (T' + S)/(2T'): the cost per step relative to SAM, at this run's own number of steps T'
        "cost per step vs SAM": r.grad_evals / (2 * r.config.steps),
        "in a flat minimum": out.fraction, "95% low": out.fraction_ci[0], "95% high": out.fraction_ci[1],
        "left the start basin": out.left_start, "mean final loss": out.mean_final_loss, "diverged": out.diverged,
    }


def budget_verdict(table: pd.DataFrame, mode: str) -> str:
    """What the bars say, read from the table: the leading schedule, and how full SAM fares against SGD."""
    frac = {o: v for o, v in zip(SCHEDULES, table["in a flat minimum"]) if np.isfinite(v)}  # NaN: all diverged
    names = dict(zip(SCHEDULES, table["schedule"]))
    if not frac or "sam" not in frac or "sgd" not in frac:
        gone = [names[o] for o in SCHEDULES if o not in frac]
        who = "every schedule" if len(gone) == len(SCHEDULES) else ", ".join(gone)
        return (f"Every particle diverged under {who}, so there is nothing to compare; lower the learning rate "
                "or the noise.")
    best = max(frac, key=frac.get)
    text = (f"Here **{names[best]}** ends in a flat minimum most often ({frac[best]:.0%}; the error bars show which "
            "differences are larger than the sampling noise). ")
    if frac["sam"] > frac["sgd"]:
        text += f"Full SAM beats SGD ({frac['sam']:.0%} against {frac['sgd']:.0%})"
        text += " even with half SGD's steps." if mode == "equal" else "."
    elif mode == "equal":
        text += (f"Full SAM does **not** beat SGD here ({frac['sam']:.0%} against {frac['sgd']:.0%}): at equal budget "
                 "SGD takes twice SAM's steps, and on this toy twice the noisy steps carry more particles over the "
                 "barrier than SAM's steeper ones. Switch to *equal number of steps* to compare the steps themselves.")
    else:
        text += f"Full SAM does **not** beat SGD here ({frac['sam']:.0%} against {frac['sgd']:.0%})."
    return text


def bar_rows(outcomes) -> list:
    """The outcome chart's bars: (key, label, fraction in a flat minimum, its 95% interval) per schedule."""
    return [(o, theme.label(o), out.fraction, out.fraction_ci) for o, out in zip(SCHEDULES, outcomes)]


def outcome_figure(outcomes):
    return charts.budget_bar_figure(
        bar_rows(outcomes), metric="share in a flat minimum",  # short enough for the projector's larger font
        title=(f"Equal budget: {budget} gradient evaluations each" if mode == "equal"
               else f"Equal steps: {steps} steps each"),
        x_title="schedule (same gradient budget)" if mode == "equal" else "schedule (same number of steps)")


def loss_chart(series):
    return charts.loss_figure(series, title="Mean loss against gradient evaluations spent",
                              x_title="gradient evaluations")


def loss_series(res, i: int = 0) -> list:
    """(key, label, gradient evaluations spent at each recorded step, mean loss) per schedule, ρ index i."""
    out = []
    for (o, label, _, _), r in zip(rows, res):
        ev = r.steps_recorded + np.concatenate([[0], np.cumsum(r.sam_mask)])[r.steps_recorded]
        out.append((o, label, ev, r.mean_loss[0 if o == "sgd" else i]))
    return out


@cache.shared("psam.psam_grid", max_entries=32, copy=False)  # read-only, read on every release
def psam_grid(cfgs: tuple, mode: str, budget: int, steps: int, view_look: tuple) -> rhogrid.GridView:
    """Every schedule at every step of the ρ slider (one simulate_grid per schedule; SGD once), and the outcome
    and loss charts at each step. `mode`, `budget` and `steps` name the charts' titles."""
    res = [cache.simulate(c) if c.optimizer == "sgd" else simulate_grid(c, SLIDER.rhos) for c in cfgs]

    def at(c, i):  # SGD ran once, at ρ index 0
        return 0 if c.optimizer == "sgd" else i

    def figures_at(i):
        outs = [minimum_outcome(r, land, "flat", at(c, i)) for c, r in zip(cfgs, res)]
        return outcome_figure(outs), loss_chart(loss_series(res, i))

    return rhogrid.build(SLIDER, figures_at, plotly_config=theme.PLOTLY_CONFIG,
                         per_step_at=lambda i: tuple(outcome(r, at(c, i)) for c, r in zip(cfgs, res)))


in_browser = all(grid_fits(c, len(SLIDER.rhos)) for c in cfgs if c.optimizer != "sgd")
if in_browser:
    with st.spinner(f"Running every schedule at all {len(SLIDER.rhos)} values of ρ…"):
        # keyed by the configs without the current ρ (the grid holds every ρ): a release must not recompute it
        grid_cfgs = tuple(c if c.optimizer == "sgd" else c.replace(rhos=(SLIDER.rhos[-1],)) for c in cfgs)
        view = psam_grid(grid_cfgs, mode, budget, steps, look())
else:  # too many particle-steps for one batched run per schedule: ρ is the server slider, as before
    rho = controls.rho_slider(default=DEFAULTS["rho"], hi=1.0, step=0.01, container=c_rho)
    cfgs = [c.replace(rhos=(0.0,) if c.optimizer == "sgd" else (rho,)) for c in cfgs]
    results = cache.simulate_many(cfgs)

# Short headers (the full meaning on hover), so all ten columns fit a 1280-px projector without scrolling.
SHORT = {"gradient evaluations": ("grad evals", "gradient evaluations spent (SAM step 2, SGD step 1)"),
         "cost per step vs SAM": ("cost/step", "cost per step relative to SAM, (T' + S)/(2T')"),
         "in a flat minimum": ("flat min.", "fraction of particles in a flat minimum at the end"),
         "95% low": ("95% lo", "Wilson interval, lower end"), "95% high": ("95% hi", "Wilson interval, upper end"),
         "left the start basin": ("left start", "fraction that left the starting (sharp) basin"),
         "mean final loss": ("final loss", "mean loss at the end"), "diverged": ("diverged", "particles that diverged")}


def outcome_section(rho: float, place=None) -> None:
    """What follows ρ on the server: the chart (`place`, the ρ chart; None: the server chart), the verdict, the
    table, the exports and the class experiment's link. With ρ in the browser this is all a release reruns
    (app/components/rhochart.chart_light), and the rows are picked from the grid, not computed."""
    table_rows = view.per_step[SLIDER.nearest(rho)] if in_browser else [outcome(r) for r in results]
    table = pd.DataFrame([{"schedule": label} | row for (o, label, _, _), row in zip(rows, table_rows)])
    if not present:  # on the projector the chart's own title says it, and the chart moves up into the first screen
        st.subheader("Same problem, same budget: what each schedule achieves" if mode == "equal"
                     else "Same problem, same number of steps: what each schedule achieves")
    chart_col, text_col = st.columns([2.2, 1], gap="medium")
    with chart_col:
        if place is not None:  # the outcome chart and the loss chart at every ρ step, switched in the browser
            place()
            rhochart.download_view(view, rho, title="PSAM scheduler: what each schedule buys at equal budget",
                                   config={"landscape": name, "lr": lr, "sigma": sigma, "steps": steps,
                                           "mode": mode, "particles": particles, "seed": seed} | sched,
                                   file_stem="psam_view", key="dl_psam_html")
        else:
            st.plotly_chart(outcome_figure([minimum_outcome(r, land, "flat") for r in results]), key="main_chart",
                            config=theme.PLOTLY_CONFIG)
    with text_col:
        start = land.default_start
        st.markdown(
            f"All particles start in the **sharp** minimum at w = {start[0]:.2f} of “{land.title}” with gradient "
            f"noise σ = {sigma:g}. A flatter final minimum is the outcome SAM is meant to buy. "
            + ("Every schedule spends the same number of gradient evaluations, so cheaper schedules take more steps."
               if mode == "equal" else "Every schedule takes the same number of steps; SAM-heavy schedules pay more."))
        st.markdown(budget_verdict(table, mode))
        st.caption("Error bars: 95% Wilson intervals over the particles that did not diverge (one seed).")
        st.info("**Counter-evidence.** Zhou et al. (ICLR 2025) find SAM matters most *late* in training, the opposite "
                "of PSAM's early-phase premise; LookSAM (Liu et al., CVPR 2022) reports that SAM every k-th step "
                "throughout degrades. Compare the PSAM, late SAM and SAM-k bars; the asymmetric valley lab's tab "
                "*Which steps need SAM? (exact)* compares them without sampling noise.")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: (st.column_config.NumberColumn(label, help=text, format="%.3f")
                                    if c not in ("gradient evaluations", "diverged")
                                    else st.column_config.NumberColumn(label, help=text))
                                for c, (label, text) in SHORT.items()})
    if place is None:  # in the browser it is the ρ chart's second chart
        st.plotly_chart(loss_chart(loss_series(results)), key="loss_chart", config=theme.PLOTLY_CONFIG)
    st.caption("The x-axis counts gradient evaluations, not steps, so the curves compare like for like. The mean "
               "loss rises at first: every particle starts at the bottom of the sharp well, and the noise spreads the "
               "cloud up its walls (and over the barrier) until it reaches its noisy steady state.")
    controls.download_data("outcomes per schedule", {"table": table.to_dict(orient="list"),
                                                     "masks": {o: m for o, _, m, _ in rows}},
                           config={"page": "psam", "mode": mode, "budget": budget, "configs": at_rho(cfgs, rho)},
                           file_stem="psam_schedules", key="psam_dl", csv=table)
    # The entry point of the class experiment (issue 14): every student runs one schedule at this equal budget.
    class_link("psam", landscape=name, rho=float(rho), lr=float(lr), sigma=float(sigma), steps=int(steps),
               k=int(sched["k"]), f=float(sched["f"]), late_f=float(sched["late_f"]), p=float(sched["p"]))


def at_rho(configs, r: float) -> list:
    """The configs at ρ = r (SGD keeps ρ = 0): what the exports name."""
    return [c if c.optimizer == "sgd" else c.replace(rhos=(float(r),)) for c in configs]


with outcome_box:
    if in_browser:  # a release reruns outcome_section only (rhochart.chart_light)
        rhochart.chart_light(view, rho, key="main_chart", draw=outcome_section)
    else:
        outcome_section(rho)
