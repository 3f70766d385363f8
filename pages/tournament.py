"""Budget tournament: every way to spend a SAM budget, side by side at equal cost (issues 13 and 21).

Cost (share of SAM's gradient evaluations) against outcome, for each method at the budget on the slider: the
toy escape and valley (core.toy.tournament, recorded in data/runs/toy_tournament.json at 55 … 75%) and the
recorded CIFAR tournament (core.cifar.tournament, data/runs/cpu_tournament*.json: a series of records, one per
budget, moves with the slider). Charts, paired verdicts, the share of SAM's gain and the tuning record:
app/tournament_charts.
"""

from __future__ import annotations

import json

import streamlit as st

from app import cifar_view, controls, theme
from app import tournament_charts as tc


@st.cache_data(max_entries=1, show_spinner=False)  # one record file, read once per server
def toy_results() -> list[dict]:
    """The recorded toy tournaments (every budget, both toys); [] if the record is missing or unreadable."""
    try:
        d = json.loads((cifar_view.RUNS_DIR / "toy_tournament.json").read_text())
    except (OSError, ValueError):
        return []
    res = d.get("results") if isinstance(d, dict) else None
    return res if isinstance(res, list) else []


@st.cache_data(max_entries=1, show_spinner=False)
def cifar_records() -> list[dict]:
    """The recorded CIFAR tournaments (kind "tournament" in data/runs/), those with a method table."""
    return [r for r in cifar_view.load_recorded(cifar_view.RUNS_DIR, kinds=("tournament",))
            if isinstance(r.get("results"), dict) and r["results"].get("methods")]


def _regime(rec: dict) -> tuple:
    """What makes records one series (the same tournament at several budgets): data, size, labels, ρ, seeds,
    and whether it was tuned."""
    c, r = rec.get("config", {}), rec["results"]
    return (c.get("data"), c.get("train_size"), c.get("epochs"), c.get("label_noise") or 0, c.get("augment"),
            c.get("label_smoothing"), c.get("rho"), max((m.get("seeds") or 0) for m in r["methods"]),
            bool(r.get("tuning")))


@st.cache_data(max_entries=1, show_spinner=False)
def cifar_series() -> dict[str, list[dict]]:
    """The recorded CIFAR tournaments grouped into series (one regime at several budgets), each named by the
    file of its member nearest 65% (the URL's `cifar` value), tuned and paired series first."""
    groups: dict[tuple, list[dict]] = {}
    for rec in cifar_records():
        groups.setdefault(_regime(rec), []).append(rec)
    series = {}
    for key in sorted(groups, key=lambda k: (not k[-1], -(k[3] or 0))):
        members = sorted(groups[key], key=lambda r: float(r["results"].get("budget", 0)))
        name = min(members, key=lambda r: abs(float(r["results"].get("budget", 0)) - 0.65))["file"]
        series[name] = members
    return series


def series_title(members: list[dict]) -> str:
    """'1,000 images × 30 epochs, 40% noisy labels, tuned, paired seeds: 55/65/75% of SAM'."""
    c = members[0].get("config", {})
    noise = c.get("label_noise") or 0
    labels = f"{noise:.0%} noisy labels" if noise else "clean labels"
    tuned = ", tuned, paired seeds" if members[0]["results"].get("tuning") else ""
    budgets = "/".join(f"{100 * float(r['results'].get('budget', 0)):.0f}" for r in members)
    return f"{c.get('train_size', 0):,} images × {c.get('epochs')} epochs, {labels}{tuned}: {budgets}% of SAM"


@st.cache_resource(max_entries=64, show_spinner=False)
def view(budget: float, phone: bool, present: bool, series: str) -> dict:
    """Everything the page shows for one budget and CIFAR series, built once per server and (budget, phone,
    projector, series): the slider has five stops, and building the Altair charts and the verdicts took most
    of a redraw's time."""
    toys = toy_results()
    escape, valley = tc.toy_at(toys, "double_well_2d", budget), tc.toy_at(toys, "valley", budget)
    members = cifar_series().get(series, [])
    rec = min(members, key=lambda r: abs(float(r["results"].get("budget", 0)) - budget)) if members else None
    cifar = rec["results"] if rec else None
    frame = tc.outcome_frame(escape, valley, cifar)
    if frame.empty:
        return {"frame": frame}
    notes = []
    if escape and abs(escape["budget"] - budget) > 1e-6:
        notes.append(f"the toy tournament nearest to this budget is {escape['budget']:.0%}")
    if cifar and abs(float(cifar["budget"]) - budget) > 1e-6:
        have = ", ".join(f"{float(r['results']['budget']):.0%}" for r in members)
        shown = float(cifar["budget"])
        notes.append(f"this CIFAR tournament was recorded at {have}: its panels show {shown:.0%}")
    maps = escape.get("trigger_maps") if escape else None
    return dict(frame=frame, rec=rec, cifar=cifar, notes=notes,
                chart=tc.tournament_chart(frame, phone=phone, present=present),
                trigger=tc.trigger_map_chart(maps or {}, phone=phone, present=present),
                summaries=[f"- **{tc.PANELS[p][0]}**: {tc.verdict_summary(frame, p)}"
                           for p in tc.PANELS if (frame["panel"] == p).any()],
                verdicts=tc.verdict_table(frame), gains=tc.gain_table(cifar) if cifar else None,
                tuning=tc.tuning_table(cifar) if cifar else None,
                export=frame.drop(columns=["per_seed", "seeds"]))


BUDGET_STOPS = (0.55, 0.6, 0.65, 0.7, 0.75)  # the slider's stops (55–75% in steps of 5)


def budget_control() -> float:
    """The budget slider (URL-bound ?budget=…, 55–75% in steps of 5), rounded to its stop."""
    value = controls.float_slider(
        "budget", "budget: share of SAM's gradient evaluations", 0.55, 0.75, 0.65, step=0.05, fmt="%.2f",
        help="Every method except SGD, SAM and Momentum-SAM (one pass a step whatever the budget) gets its "
             "parameters chosen to spend this share.")
    return round(value, 2)


st.title("Budget tournament")
st.caption("SAM costs two gradient evaluations a step. PSAM, late SAM, AE-SAM, LookSAM, Momentum-SAM, SS-SAM "
           "and Composer's SAM each spend less in their own way: which buys the most at the same cost?")

present, phone = theme.is_presentation(), theme.is_phone()
budget = budget_control()
SERIES = {name: series_title(members) for name, members in cifar_series().items()}
if len(SERIES) > 1:  # several recorded CIFAR tournaments (noisy and clean labels): the lecturer picks one
    series = controls.choice("cifar", "recorded CIFAR tournament", SERIES, next(iter(SERIES)))
else:
    series = next(iter(SERIES), "")
v = view(budget, phone, present, series)
frame = v["frame"]
if frame.empty:
    st.warning("No recorded tournament was found in data/runs/ (toy_tournament.json, cpu_tournament*.json). "
               "Record one with `python -m core tournament` (see BENCHMARKS.md).", icon="⚠️")
    st.stop()
rec, cifar = v["rec"], v["cifar"]
notice = st.empty()  # always there, so that the chart below keeps its place when the note comes and goes
if v["notes"]:
    notice.info("Recorded budgets: " + "; ".join(v["notes"]) + ".", icon=":material/info:")

st.altair_chart(v["chart"], key="tournament_chart")
st.caption("Each point is one method (its colour and its marker): its cost (share of SAM's gradient "
           "evaluations, as it really spent them) against its outcome, with a 95% interval (escape: Wilson "
           "over all particles; valley: the exact chain, or Student's t over particles where simulated; "
           "CIFAR accuracy: Student's t over seeds; λ_max: ± one standard deviation). Ringed, named points "
           "joined by the thick dashed line are the Pareto front: no other method is both cheaper and "
           "better. Hover a point for its interval and its paired verdict against SAM; click a method in the "
           "legend to highlight it in every panel (shift-click adds more; click an empty spot to clear).")

st.subheader("What the seeds can carry")
st.markdown("\n".join(v["summaries"]))
st.caption("Every method ran on the same seeds (the same initial weights, data, label noise and minibatch "
           "order), so each verdict is a paired t on the per-seed differences "
           "(core.stats.paired_difference), with Holm's correction across the methods of a panel "
           "(core.stats.holm), two-sided 5% family-wise: 'not distinguishable' means the difference is "
           "inside what the seeds' spread explains, not that the methods are equal. The toys compare 3 seeds "
           "of 400–500 particles each.")
if v.get("gains") is not None and not v["gains"].empty:
    st.markdown("**CIFAR-10: how much of SAM's gain over SGD each method keeps**")
    theme.table(v["gains"])
    st.caption("Share of SAM's gain = mean over seeds of (method − SGD) / mean of (SAM − SGD), with "
               "Fieller's 95% interval for a ratio of paired means (core.stats.fieller_ratio): 100% keeps "
               "all of SAM's gain, 0% none. Where SAM's own gain is not clear of the seed noise the interval "
               "is unbounded.")
with theme.fold(":material/balance: Method by method: against SAM and against SGD (paired)"):
    theme.table(v["verdicts"])

if v.get("tuning") is not None and not v["tuning"].empty:
    with theme.fold(":material/tune: How each method was tuned"):
        theme.table(v["tuning"])
        st.caption("Every method with a free hyperparameter got the same search: the registry's grid "
                   "(core.methods), turned into configurations that spend the budget, and the same number of "
                   "pilot runs on seeds no reported run uses, each scored on held-out validation images "
                   "(never on the test set); the configuration with the best mean validation accuracy among "
                   "those within the budget was run on the reported seeds (✓). The pilot runs' cost is not "
                   "in the table's cost column.")

st.subheader("Where AE-SAM spends its SAM steps")
trigger = v["trigger"]
if trigger is None:
    st.caption("No trigger map in the recorded toy tournament.")
else:
    st.altair_chart(trigger, key="trigger_chart")
    st.caption("On the escape toy (double well: every particle starts in the sharp well at w₁ = +1; the flat "
               "well is at w₁ = −1), the share of the steps taken in each cell that were SAM steps. AE-SAM "
               "decides from ‖g‖², step by step; PSAM's SAM steps are fixed in time (every k-th step of the "
               "first f of training), so its map only shows where the particles were early. Cells visited "
               "fewer than 20 times are blank.")

if rec:
    with theme.fold(f":material/history: the recorded CIFAR tournament: {rec.get('file', '')}"):
        st.caption(cifar_view.recorded_caption(rec))
        theme.table(cifar_view.recorded_table({"results": {"rows": cifar["methods"]}}))
        for n in cifar.get("notes", []):
            st.caption(n)

controls.download_data("tournament", v["export"].to_dict(orient="records"), config={"budget": budget},
                       file_stem="budget_tournament", csv=v["export"])

# The other stops of the slider, built now that this view is on screen: otherwise the first move to each
# budget would pay for building it (0.7–3 s on the 2-core CPU); every later move is a cache hit
# (BENCHMARKS.md).
for other in BUDGET_STOPS:
    if other != budget:
        view(other, phone, present, series)
