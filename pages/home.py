"""Home: the story of SAM Lab in two minutes, with a link to the page that shows each claim."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import charts, cifar_view, theme
from app.cache import device_info, recorded_runs, schedule_mask
from app.controls import download_data

st.title("SAM Lab: when does sharpness-aware minimization pay off?")
st.markdown(
    "**SGD** steps downhill from where it stands. **SAM** first looks for the worst point within a distance ρ "
    "and steps downhill from *there* — twice the gradient evaluations per step. The thesis behind this lab "
    "(Park, *On the understanding of sharpness-aware minimization and its application*) makes four claims; "
    "each page below lets you check one.")

CLAIMS = (
    ("1. SAM escapes sharp minima faster than SGD",
     "It can then explore more minima and end in flatter ones.", "escape", "Escape lab"),
    ("2. SAM ends on the flatter side of an asymmetric valley",
     "Where the loss rises steeply on one side and gently on the other, SAM settles further towards the "
     "gentle side, which generalises better.", "valley", "Asymmetric valley lab"),
    ("3. Both effects grow with the radius ρ",
     "Move the ρ slider on the escape and valley pages: faster escapes, larger drift — until ρ is so large "
     "that SAM gets trapped (shown, not hidden).", "escape", "ρ sweep in the Escape lab"),
    ("4. Parsimonious SAM (PSAM) is enough",
     "SAM on every k-th step of the early phase only: comparable accuracy at 65% of SAM's cost "
     "(k = 2, f = 0.6).", "psam", "PSAM scheduler"),
)
PAGES_DIR = Path(__file__).resolve().parent  # absolute paths: page_link resolves against app/main.py's folder
def link(page: str, label: str, icon: str = ":material/arrow_forward:") -> None:
    """st.page_link needs st.navigation (app/main.py); a page run on its own shows plain text."""
    try:
        st.page_link(str(PAGES_DIR / f"{page}.py"), label=label, icon=icon)
    except Exception:  # run outside app/main.py (e.g. AppTest of this file alone)
        st.markdown(f"→ {label}")


cols = st.columns(2, gap="large")
for i, (claim, detail, page, label) in enumerate(CLAIMS):
    with cols[i % 2].container(border=True):
        st.markdown(f"#### {claim}")
        st.markdown(detail)
        link(page, f"See it: {label}")

st.markdown("#### Start here")
c1, c2, c3 = st.columns(3)
with c1:
    link("sam_step", "How one SAM step works", ":material/my_location:")
with c2:
    link("playground", "Playground: any landscape", ":material/toys:")
with c3:
    link("cifar", "CIFAR-10: a real network", ":material/image:")

left, right = st.columns([1.3, 1], gap="large")
with left:
    T = 100
    rows = []
    for o in ("sgd", "sam", "psam", "late_sam", "every_k"):
        mask, cost, label = schedule_mask(o, T, 2, 0.6, 0.3, 0.3, 0)
        rows.append((o, label, mask, cost))
    st.plotly_chart(charts.schedule_timeline(rows, title="SAM steps per schedule (T = 100)"),
                    key="main_chart", config=theme.PLOTLY_CONFIG)
    st.caption("Each tick is a SAM step (two gradient evaluations). PSAM spends them early and sparsely: 65% of "
               "SAM's cost. Late SAM spends them at the end — the counter-evidence beside this chart says "
               "that is where they matter.")
    download_data("schedules", {o: m for o, _, m, _ in rows}, key="home_dl", file_stem="schedules",
                  config={"page": "home", "steps": T, "k": 2, "f": 0.6, "late_f": 0.3})
with right:
    st.markdown("#### The counter-evidence")
    st.markdown(
        "- **Zhou et al., ICLR 2025** (*SAM efficiently selects flatter minima late in training*): SAM applied only "
        "late recovers most of SAM's gain, and early SAM little — the opposite of PSAM's premise.\n"
        "- **LookSAM (Liu et al., CVPR 2022)**: using SAM only every k-th step throughout training degrades "
        "accuracy as k grows.\n\n"
        "The PSAM scheduler compares all of them at equal budget, so you can judge for yourself.")
st.markdown("#### On a real network: one H100 (CIFAR-10, 10k images × 30 epochs, 5 seeds, ρ = 0.05)")
lab = cifar_view.calibration_record(recorded_runs(kinds=("table",)))
try:
    calibration, note = cifar_view.calibration_table(lab), cifar_view.calibration_note(lab)
except (KeyError, TypeError, ValueError):  # a partial record: the brief's figures alone
    calibration, note = cifar_view.calibration_table(None), cifar_view.calibration_note(None)
# full width, below the two columns: five columns of numbers need it on a 1280-px projector
st.table(calibration, hide_index=True, border="horizontal")
st.caption(note)


tables = [rec for rec in recorded_runs(kinds=("table",)) if rec.get("recorded")]
if tables:
    with st.expander(f"Recorded CIFAR-10 runs in this project ({len(tables)})"):
        for rec in tables:
            c = rec.get("config", {})
            try:  # the same table as the CIFAR page's; a hand-edited or partial record is named, not shown
                table = cifar_view.recorded_table(rec)
            except (KeyError, TypeError, ValueError):
                st.caption(f"`{rec['file']}`: not a readable comparison table.")
                continue
            size = (f"{c['train_size']:,} images × {c.get('epochs')} epochs"
                    if isinstance(c.get("train_size"), int) else "")
            st.markdown(" · ".join(part for part in (f"**{rec['file']}**", rec["hardware"].get("gpu") or "CPU", size,
                                                     rec.get("date", "")[:10]) if part))
            st.dataframe(table, hide_index=True, width="stretch")
            st.caption(rec.get("note", ""))

info = device_info()
st.info(f"This app computes on **{info['device'].upper()}** ({info['name']}, torch {info['torch']}). "
        + ("Toy simulations are small enough for any laptop." if info["device"] == "cpu"
           else "The GPU runs the CIFAR experiments; toys run on it too."))
