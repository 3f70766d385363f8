"""Budget tournament: every way to spend a SAM budget, side by side at equal cost (issue 13).

Cost (share of SAM's gradient evaluations) against outcome, for each method at the budget on the slider: the toy
escape and valley (core.toy.tournament, recorded in data/runs/toy_tournament.json at 55 … 75%) and the recorded
CIFAR tournament (core.cifar.tournament, data/runs/cpu_tournament*.json). Charts and verdicts: app/tournament_charts.
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


def record_title(rec: dict) -> str:
    """'2,000 images × 5 epochs, clean labels, 65% of SAM' for a recorded CIFAR tournament."""
    c = rec.get("config", {})
    noise = c.get("label_noise") or 0
    labels = f"{noise:.0%} noisy labels" if noise else "clean labels"
    return (f"{c.get('train_size', 0):,} images × {c.get('epochs')} epochs, {labels}, "
            f"{float(rec['results'].get('budget', 0)):.0%} of SAM")


@st.cache_resource(max_entries=64, show_spinner=False)
def view(budget: float, phone: bool, present: bool, cifar_file: str) -> dict:
    """Everything the page shows for one budget and CIFAR record, built once per server and (budget, phone,
    projector, record): the slider has five stops, and building the Altair charts and the Welch verdicts took most
    of a redraw's time."""
    toys = toy_results()
    escape, valley = tc.toy_at(toys, "double_well_2d", budget), tc.toy_at(toys, "valley", budget)
    rec = next((r for r in cifar_records() if r["file"] == cifar_file), None)
    cifar = rec["results"] if rec else None
    frame = tc.outcome_frame(escape, valley, cifar)
    if frame.empty:
        return {"frame": frame}
    notes = []
    if escape and abs(escape["budget"] - budget) > 1e-6:
        notes.append(f"the toy tournament nearest to this budget is {escape['budget']:.0%}")
    if cifar and abs(float(cifar["budget"]) - budget) > 1e-6:
        notes.append(f"the CIFAR tournament was recorded at {float(cifar['budget']):.0%} only, so its panels do not "
                     "move with the slider")
    maps = escape.get("trigger_maps") if escape else None
    return dict(frame=frame, rec=rec, cifar=cifar, notes=notes,
                chart=tc.tournament_chart(frame, phone=phone, present=present),
                trigger=tc.trigger_map_chart(maps or {}, phone=phone, present=present),
                summaries=[f"- **{tc.PANELS[p][0]}**: {tc.verdict_summary(frame, p)}"
                           for p in tc.PANELS if (frame["panel"] == p).any()],
                verdicts=tc.verdict_table(frame), export=frame.drop(columns=["per_seed"]))


BUDGET_STOPS = (0.55, 0.6, 0.65, 0.7, 0.75)  # the slider's stops (55–75% in steps of 5)

st.title("Budget tournament")
st.caption("SAM costs two gradient evaluations a step. PSAM, late SAM, AE-SAM, LookSAM, Momentum-SAM, SS-SAM and "
           "Composer's SAM each spend less in their own way: which buys the most at the same cost?")

present, phone = theme.is_presentation(), theme.is_phone()
budget = controls.float_slider("budget", "budget: share of SAM's gradient evaluations", 0.55, 0.75, 0.65, step=0.05,
                               fmt="%.2f", help="Every method except SGD, SAM and Momentum-SAM (one pass a step "
                               "whatever the budget) gets its parameters chosen to spend this share.")
RECORDS = {r["file"]: record_title(r) for r in cifar_records()}
if len(RECORDS) > 1:  # several recorded CIFAR tournaments (e.g. clean and noisy labels): the lecturer picks one
    cifar_file = controls.choice("cifar", "recorded CIFAR tournament", RECORDS, next(iter(RECORDS)))
else:
    cifar_file = next(iter(RECORDS), "")
v = view(round(budget, 2), phone, present, cifar_file)
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
st.caption("Each point is one method: its cost (share of SAM's gradient evaluations, as it really spent them) "
           "against its outcome, with a 95% interval (escape: Wilson over all particles; valley: the exact chain, "
           "or Student's t over particles where simulated; CIFAR accuracy: Student's t over seeds; λ_max: ± one "
           "standard deviation). Ringed points joined by the dashed line are the Pareto front: no other method is "
           "both cheaper and better. Click a method in the legend to highlight it in every panel (shift-click "
           "adds more; click an empty spot to clear).")

st.subheader("What the seeds can carry")
st.markdown("\n".join(v["summaries"]))
st.caption("Welch's t on the per-seed values (core.stats.welch_difference), two-sided 5%: 'not distinguishable' "
           "means the difference is inside what the seeds' spread explains, not that the methods are equal. The "
           "toys compare 3 seeds of 400–500 particles each; the CIFAR runs 3 seeds: only large differences can be "
           "clear.")
with theme.fold(":material/balance: Method by method: against SAM and against SGD"):
    theme.table(v["verdicts"])

st.subheader("Where AE-SAM spends its SAM steps")
trigger = v["trigger"]
if trigger is None:
    st.caption("No trigger map in the recorded toy tournament.")
else:
    st.altair_chart(trigger, key="trigger_chart")
    st.caption("On the escape toy (double well: every particle starts in the sharp well at w₁ = +1; the flat well is "
               "at w₁ = −1), the share of the steps taken in each cell that were SAM steps. AE-SAM decides from ‖g‖², step by step; PSAM's "
               "SAM steps are fixed in time (every k-th step of the first f of training), so its map only shows "
               "where the particles were early. Cells visited fewer than 20 times are blank.")

if rec:
    with theme.fold(f":material/history: the recorded CIFAR tournament: {rec.get('file', '')}"):
        st.caption(cifar_view.recorded_caption(rec))
        theme.table(cifar_view.recorded_table({"results": {"rows": cifar["methods"]}}))
        if cifar.get("ae_pilot", {}).get("pilots"):
            pilots = cifar["ae_pilot"]["pilots"]
            shares = ", ".join(f"{p['sam_fraction']:.0%}" for p in pilots)
            st.caption(f"AE-SAM's thresholds were calibrated on {len(pilots)} pilot run(s) of its own (seed "
                       f"1000), not counted above: SAM shares {shares} for a target of "
                       f"{cifar['ae_pilot']['target_fraction']:.0%}.")
        for n in cifar.get("notes", []):
            st.caption(n)

controls.download_data("tournament", v["export"].to_dict(orient="records"), config={"budget": budget},
                       file_stem="budget_tournament", csv=v["export"])

# The other stops of the slider, built now that this view is on screen: otherwise the first move to each budget
# would pay for building it (0.7–3 s on the 2-core CPU); every later move is a cache hit (BENCHMARKS.md).
for other in BUDGET_STOPS:
    if other != round(budget, 2):
        view(other, phone, present, cifar_file)
