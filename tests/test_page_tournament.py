"""The Budget tournament page (AppTest): the Altair spec has a Pareto front and one legend-bound method selection
shared by every panel, its data has every method in every panel, the budget slider is bound to the URL and picks
the recorded tournament of that budget, the verdicts follow Welch's test, and a missing record is a message."""

import io
import json

import numpy as np
import pyarrow as pa
import pytest
import streamlit as st

from app import tournament_charts as tc
from core.stats import welch_difference
from tests.pagetest import REPO, run_page

TOY = json.loads((REPO / "data" / "runs" / "toy_tournament.json").read_text())["results"]
TOY_METHODS = {m["name"] for m in TOY[0]["methods"]}


def _vega(at) -> list:
    return at.get("vega_lite_chart")


def _data(el) -> list[dict]:
    """Every row of every dataset of a vega chart element (Arrow IPC bytes in the proto)."""
    rows = []
    for ds in el.proto.datasets:
        table = pa.ipc.open_stream(io.BytesIO(ds.data.data)).read_all()
        rows += table.to_pylist()
    return rows


def _layers(spec: dict) -> list[dict]:
    out = []
    for view in spec.get("concat", []):
        out += view.get("layer", [view])
    return out


@pytest.fixture(scope="module")
def page65():
    return run_page("pages/tournament.py", budget="0.65")


def test_spec_has_the_shared_selection_and_a_pareto_front(page65):
    charts = _vega(page65)
    assert len(charts) == 2  # the tournament and the trigger maps
    spec = json.loads(charts[0].proto.spec)
    params = spec["params"]
    assert len(params) == 1 and params[0]["bind"] == "legend" and params[0]["select"]["fields"] == ["method"]
    panels = spec["concat"]
    assert len(panels) >= 2
    for view in panels:
        assert view["layer"][2]["name"] in params[0]["views"]  # the one selection lives in every panel
        marks = [layer["mark"]["type"] for layer in view["layer"]]
        assert marks == ["line", "rule", "circle", "point"]
        front_line, rings = view["layer"][0], view["layer"][3]
        assert {"filter": "datum.pareto"} in front_line["transform"] and {"filter": "datum.pareto"} in rings["transform"]
        points = view["layer"][2]
        assert points["encoding"]["opacity"]["condition"]["param"] == tc.SELECTION  # highlight follows the pick


def test_the_data_has_every_method_in_every_panel(page65):
    rows = _data(_vega(page65)[0])
    panels = {r["panel"] for r in rows}
    assert {"escape", "valley"} <= panels
    for panel in ("escape", "valley"):
        assert {r["key"] for r in rows if r["panel"] == panel} == TOY_METHODS
    esc = tc.toy_at(TOY, "double_well_2d", 0.65)
    front = {r["key"] for r in rows if r["panel"] == "escape" and r["pareto"]}
    assert front == set(esc["pareto"]) and front
    for panel in panels - {"escape", "valley"}:  # a recorded CIFAR tournament, when one is shipped
        assert {r["key"] for r in rows if r["panel"] == panel} >= {"sgd", "sam", "psam"}


def test_budget_slider_is_url_bound_and_moves_the_toy_panels():
    at = run_page("pages/tournament.py", budget="0.55")
    assert at.slider(key="budget").value == pytest.approx(0.55)
    low = {(r["panel"], r["key"]): r["cost"] for r in _data(_vega(at)[0])}
    at.slider(key="budget").set_value(0.75).run()
    assert not at.exception
    assert at.query_params["budget"] in ("0.75", ["0.75"])
    high = {(r["panel"], r["key"]): r["cost"] for r in _data(_vega(at)[0])}
    assert high[("escape", "psam")] == pytest.approx(100 * tc.toy_at(TOY, "double_well_2d", 0.75)["methods"][2]["budget_ratio"])
    assert high[("escape", "psam")] > low[("escape", "psam")] + 15       # PSAM spends 75% instead of 55%
    assert high[("escape", "sam")] == low[("escape", "sam")] == 100.0      # the reference does not move


def test_out_of_range_or_garbled_budget_is_corrected_not_a_crash():
    assert run_page("pages/tournament.py", budget="3").slider(key="budget").value == pytest.approx(0.75)
    assert run_page("pages/tournament.py", budget="nan").slider(key="budget").value == pytest.approx(0.65)


def test_verdicts_are_welch_and_name_what_the_seeds_cannot_tell(page65):
    text = "\n".join(m.value for m in page65.markdown)
    assert "Pareto front:" in text
    frame = tc.outcome_frame(tc.toy_at(TOY, "double_well_2d", 0.65), tc.toy_at(TOY, "valley", 0.65), None)
    table = tc.verdict_table(frame)
    psam = table[table["method"] == "PSAM"].iloc[0]
    # computed here from the per-seed values, independently of the page: Welch's t for PSAM − SAM on the escape
    a = np.array(frame[(frame.panel == "escape") & (frame.key == "psam")]["per_seed"].iloc[0])
    b = np.array(frame[(frame.panel == "escape") & (frame.key == "sam")]["per_seed"].iloc[0])
    t = (a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert f"t {t:+.1f}".replace("-", "−") in psam["escape vs SAM"]
    summary = tc.verdict_summary(frame, "escape")
    # a method named "not distinguishable" must really have |t| under the critical value, and vice versa
    for _, r in frame[(frame.panel == "escape") & (frame.key != "sam")].iterrows():
        d = welch_difference(r["per_seed"], b)
        said_level = r["method"] in summary.split("Not distinguishable from SAM with these seeds:")[-1].split(".")[0]
        assert said_level == (not d.clear), r["method"]


def test_missing_records_are_one_message(monkeypatch, tmp_path):
    from app import cifar_view

    monkeypatch.setattr(cifar_view, "RUNS_DIR", tmp_path)  # nothing recorded
    st.cache_data.clear(), st.cache_resource.clear()   # the page keeps what it read once per server
    try:
        at = run_page("pages/tournament.py")
        assert any("No recorded tournament" in w.value for w in at.warning)
        assert not _vega(at)
    finally:
        st.cache_data.clear(), st.cache_resource.clear()


@pytest.mark.parametrize("name", ["tournament_65", "cifar_label_noise"])
def test_issue13_scenes_open_their_page_with_their_settings_and_no_notice(name):
    """The two lecture scenes of issue 13: every parameter is one its page accepts (no clamped/unknown notice),
    and the page's widgets show the scene's values. The label-noise scene turns on the noisy-label regime on the
    CIFAR page (40% noise, no augmentation, no label smoothing, 1,000 images × 30 epochs)."""
    from app.presets import scenes

    scene = scenes()[name]
    at = run_page(f"pages/{scene.page}.py", **scene.params)
    assert not [w.value for w in at.warning], [w.value for w in at.warning]
    for key, value in scene.params.items():
        if key == "opts":
            assert at.multiselect(key="opts").value == value.split(",")
        elif key == "cifar":
            assert at.selectbox(key="cifar").value == value
            assert value in " ".join(e.label for e in at.expander)  # its table is the one shown
        elif key == "augment":
            assert at.toggle(key="augment").value is (value == "1")
        else:
            assert at.slider(key=key).value == pytest.approx(float(value)), key
