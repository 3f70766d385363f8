"""The Budget tournament page (AppTest): the Altair spec has a Pareto front and one legend-bound method
selection shared by every panel, each method has its own colour and its own marker, its data has every method
in every panel, the budget slider is bound to the URL and picks the recorded tournament of that budget, the
verdicts are paired t tests with Holm's correction, the CIFAR gain and tuning tables come from a real (tiny)
tournament's result, and a missing record is a message."""

import io
import json

import numpy as np
import pyarrow as pa
import pytest
import streamlit as st

from app import tournament_charts as tc
from core.stats import holm, t_critical_95
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
        marks = [layer["mark"]["type"] for layer in view["layer"]]
        assert marks == ["line", "rule", "point", "point", "text", "text"]
        front_line, rings, points = view["layer"][0], view["layer"][2], view["layer"][3]
        labels = view["layer"][4]
        assert points["name"] in params[0]["views"]  # the one selection lives in every panel
        for layer in (front_line, rings):
            assert {"filter": "datum.pareto"} in layer["transform"]
        # the front's names, above and below their points in turn: every front point is named exactly once
        named = [json.dumps(view["layer"][i]["transform"]) for i in (4, 5)]
        assert all("datum.pareto" in t and "label_below" in t for t in named)
        assert points["encoding"]["opacity"]["condition"]["param"] == tc.SELECTION  # highlight follows the pick
        assert points["encoding"]["shape"]["field"] == points["encoding"]["color"]["field"] == "method"
        assert labels["encoding"]["text"]["field"] == "method"  # the front is named on the chart itself
        tips = {t.get("title", t["field"]) for t in points["encoding"]["tooltip"]}
        assert {"method", "cost (% of SAM)", "interval", "against SAM (paired)"} <= tips


def test_every_method_has_its_own_colour_and_its_own_marker(page65):
    """Twelve methods told apart in greyscale: the markers alone are all different, and so are the colours."""
    from core.methods import METHODS as REGISTRY

    shapes = [tc.vega_shape(k) for k in REGISTRY]
    assert len(REGISTRY) >= 12 and len(set(shapes)) == len(shapes)
    spec = json.loads(_vega(page65)[0].proto.spec)
    enc = spec["concat"][0]["layer"][3]["encoding"]
    names, colors = enc["color"]["scale"]["domain"], enc["color"]["scale"]["range"]
    marks = enc["shape"]["scale"]["range"]
    assert enc["shape"]["scale"]["domain"] == names
    assert len(set(colors)) == len(set(marks)) == len(names) >= len(TOY_METHODS)


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
    psam_at_075 = tc.toy_at(TOY, "double_well_2d", 0.75)["methods"][2]
    assert high[("escape", "psam")] == pytest.approx(100 * psam_at_075["budget_ratio"])
    assert high[("escape", "psam")] > low[("escape", "psam")] + 15       # PSAM spends 75% instead of 55%
    assert high[("escape", "sam")] == low[("escape", "sam")] == 100.0      # the reference does not move


def test_out_of_range_or_garbled_budget_is_corrected_not_a_crash():
    assert run_page("pages/tournament.py", budget="3").slider(key="budget").value == pytest.approx(0.75)
    assert run_page("pages/tournament.py", budget="nan").slider(key="budget").value == pytest.approx(0.65)


def test_verdicts_are_paired_with_holm_and_name_what_the_seeds_cannot_tell(page65):
    text = "\n".join(m.value for m in page65.markdown)
    assert "Pareto front:" in text
    frame = tc.outcome_frame(tc.toy_at(TOY, "double_well_2d", 0.65), tc.toy_at(TOY, "valley", 0.65), None)
    table = tc.verdict_table(frame)
    psam = table[table["method"] == "PSAM"].iloc[0]
    # computed here from the per-seed values, independently of the page: the paired difference PSAM − SAM on
    # the escape (the toy's seeds are the same list for every method) and its 95% interval
    esc = frame[frame.panel == "escape"]
    b = np.array(esc[esc.key == "sam"]["per_seed"].iloc[0])
    a = np.array(esc[esc.key == "psam"]["per_seed"].iloc[0])
    d = a - b
    half = t_critical_95(len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    fmt = lambda x: f"{round(x, 3) + 0.0:+.3f}".replace("-", "−")  # noqa: E731
    want = f"{fmt(d.mean())} [{fmt(d.mean() - half)}, {fmt(d.mean() + half)}]"
    assert psam["escape vs SAM"].startswith(want)
    # Holm across the panel's methods: a method named "not distinguishable" has an adjusted p ≥ 5%, and vice
    # versa
    tests = tc.paired_tests(frame, "escape", "sam")
    adjusted, rejected = holm([t["d"].p for t in tests.values()])
    summary = tc.verdict_summary(frame, "escape")
    level = summary.split("Not distinguishable from SAM with these seeds:")[-1].split(".")[0]
    for (key, t), adj, rej in zip(tests.items(), adjusted, rejected):
        assert t["p_holm"] == pytest.approx(adj) and t["clear"] == rej
        assert (tc.theme.label(key) in level) == (not rej), key


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
    """The two lecture scenes of issue 13: every parameter is one its page accepts (no clamped/unknown
    notice), and the page's widgets show the scene's values. The label-noise scene turns on the noisy-label
    regime on the CIFAR page (40% noise, no augmentation, no label smoothing, 1,000 images × 30 epochs)."""
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


@pytest.fixture(scope="module")
def tiny_series(tmp_path_factory):
    """A real (tiny) tuned CIFAR tournament at 60% and 70%, recorded as two files of one series."""
    from core.cifar import tournament as ct
    from core.cifar.cli import record

    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = ct.TournamentConfig(seeds=3, train_size=320, epochs=1, batch_size=32, sharpness_iters=2,
                                  eval_batch=32,
                                  device="cpu", methods=("sgd", "sam", "psam", "looksam"), pilot_runs=2,
                                  val_size=200)
        results = ct.run_budgets(cfg, budgets=(0.6, 0.7))
    finally:
        torch.set_num_threads(threads)
    d = tmp_path_factory.mktemp("runs")
    for res in results:
        rec = record("tournament", "test", res.config.base(), res.to_dict(), {"device": "cpu"}, "", True)
        path = d / f"cpu_tournament_tiny_{round(100 * res.budget):03d}.json"
        path.write_text(json.dumps(rec, allow_nan=False))
    return d, [r.to_dict() for r in results]


def test_gain_table_is_fieller_on_the_paired_seeds(tiny_series):
    from core.stats import fieller_ratio

    _, (low, _) = tiny_series
    table = tc.gain_table(low).set_index("method")
    assert set(table.index) == {"SGD", "SAM", "PSAM", "LookSAM"}
    rows = {m["name"]: m for m in low["methods"]}
    sgd, sam = (np.array(rows[k]["per_seed"]) for k in ("sgd", "sam"))
    for key in ("psam", "looksam"):
        theta, lo, hi = fieller_ratio(np.array(rows[key]["per_seed"]) - sgd, sam - sgd)
        if np.isfinite(theta):
            assert table.loc[tc.theme.label(key), "share of SAM's gain"].startswith(f"{theta:.0%}")
    assert table.loc["SAM", "share of SAM's gain"].startswith("100%")
    assert table.loc["SGD", "share of SAM's gain"].startswith("0%")
    assert "paired" in " ".join(table.columns)


def test_tuning_table_says_how_each_method_was_tuned(tiny_series):
    _, (low, _) = tiny_series
    table = tc.tuning_table(low).set_index("method")
    assert table.loc["SGD", "pilot runs"] == 0 and table.loc["SAM", "pilot runs"] == 0
    for name in ("PSAM", "LookSAM"):
        assert table.loc[name, "pilot runs"].startswith("2 (seeds 1000")
        assert table.loc[name, "validation accuracy per configuration"].count("✓") == 1
    assert "alpha" in table.loc["LookSAM", "searched"]
    chosen = low["tuning"]["looksam"]["chosen"]["alpha"]
    assert table.loc["LookSAM", "chosen"] == f"alpha {chosen:.3g}"


def test_the_budget_slider_moves_the_cifar_panels_of_a_series(tiny_series, monkeypatch):
    from app import cifar_view

    d, (low, high) = tiny_series
    monkeypatch.setattr(cifar_view, "RUNS_DIR", d)
    st.cache_data.clear(), st.cache_resource.clear()
    try:
        at = run_page("pages/tournament.py", budget="0.6")
        assert not at.exception
        first = {r["key"]: r["cost"] for r in _data(_vega(at)[0]) if r["panel"] == "accuracy"}
        at.slider(key="budget").set_value(0.7).run()
        second = {r["key"]: r["cost"] for r in _data(_vega(at)[0]) if r["panel"] == "accuracy"}
        psam = lambda res: 100 * next(m for m in res["methods"] if m["name"] == "psam")["budget_ratio"]  # noqa: E731
        assert first["psam"] == pytest.approx(psam(low)) and second["psam"] == pytest.approx(psam(high))
        assert second["psam"] > first["psam"]
        assert any("How each method was tuned" in e.label for e in at.expander)
        assert "cpu_tournament_tiny_070.json" in " ".join(e.label for e in at.expander)
    finally:
        st.cache_data.clear(), st.cache_resource.clear()
