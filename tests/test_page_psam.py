"""pages/psam.py: which steps use SAM under each schedule, their cost, and an equal-budget comparison.

Claims:
1. Runs without exceptions; a timeline row per schedule, each labelled with its cost relative to SAM.
2. PSAM's cost is (1 + f/k)/2 of SAM's (core/schedules.py), e.g. 65% at k = 2, f = 0.6, and the
   timeline follows k and f: changing k changes the PSAM row.
3. Equal budget: every schedule spends at most SAM's 2T gradient evaluations; SGD takes 2T steps.
4. Moving ρ changes the main chart's data; the URL restores ρ, k, f and T.
5. Bad URL values get a notice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.gridtest import figure, rho_shown, shipped
from tests.pagetest import chart, run_page

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "psam.py")


def _run(**params) -> AppTest:
    return run_page("pages/psam.py", **params)


def _chart(at: AppTest, key: str) -> dict:
    """A chart by its server key; with ρ in the browser (issue 18) the outcome and loss charts are the ρ chart's
    charts 0 and 1 (key "main_chart")."""
    grid_charts = {"main_chart": 0, "loss_chart": 1}
    if key in grid_charts and at.get("bidi_component"):
        return figure(at, grid_charts[key])
    return chart(at, key)


def _table(at):
    return at.dataframe[0].value


@pytest.fixture(scope="module")
def default_page():
    return _run()


def test_timeline_rows_with_costs(default_page):
    rows = [t["name"] for t in _chart(default_page, "timeline_chart")["data"]]
    assert len(rows) == 6
    psam = next(r for r in rows if r.startswith("PSAM"))
    assert "k=2, f=0.6" in psam and psam.endswith("cost 65%")  # (1 + 0.6/2)/2 = 0.65
    assert next(r for r in rows if r.startswith("SGD")).endswith("cost 50%")
    assert next(r for r in rows if r.startswith("SAM ·")).endswith("cost 100%")


def test_equal_budget(default_page):
    table = _table(default_page)
    T = 100  # the page's default T
    assert (table["gradient evaluations"] <= 2 * T).all()
    sgd = table[table["schedule"] == "SGD"].iloc[0]
    sam = table[table["schedule"] == "SAM"].iloc[0]
    assert sgd["steps"] == 2 * T and sam["steps"] == T
    # each schedule uses its budget: one more step would exceed it (at most 2 evaluations short)
    assert (table["gradient evaluations"] >= 2 * T - 1).all()
    assert table["in a flat minimum"].between(0, 1).all()


def test_rho_changes_main_chart_and_k_changes_timeline(default_page):
    at = default_page
    main0, time0 = _chart(at, "main_chart"), _chart(at, "timeline_chart")
    head, payload = shipped(at)
    assert len(payload["slider"]["rhos"]) == 101 and all(len(c["steps"]) == 101 for c in payload["charts"])
    assert figure(at, 0, step=60)["data"] != main0["data"]  # ρ = 0.6, shipped with the page
    at.session_state["rho"] = 0.6  # what a release in the browser does
    at.run()
    assert not at.exception and rho_shown(at) == pytest.approx(0.6)
    assert _chart(at, "main_chart") == figure(at, 0, step=60)
    at.slider(key="k").set_value(4).run()
    time1 = _chart(at, "timeline_chart")
    psam = next(t for t in time1["data"] if t["name"].startswith("PSAM"))
    # (1 + f/k)/2 = (1 + 0.6/4)/2 = 57.5%, shown rounded to a whole percent
    assert "k=4" in psam["name"] and abs(float(psam["name"].split("cost ")[1].rstrip("%")) - 57.5) <= 0.5
    assert time1["data"] != time0["data"]


def test_url_restores_view():
    at = _run(rho="0.25", k="3", f="0.5", steps="60", budget="steps")
    assert rho_shown(at) == pytest.approx(0.25)
    assert at.slider(key="k").value == 3 and at.slider(key="f").value == pytest.approx(0.5)
    table = _table(at)
    assert (table["steps"] == 60).all()  # "equal number of steps" mode from the URL
    assert not at.warning, [w.value for w in at.warning]


@pytest.mark.parametrize("params, expect", [
    ({"rho": "-inf"}, "ρ"), ({"rho": "0.137"}, "between"), ({"rho": "1e9"}, "outside"), ({"rho": "nan"}, "finite"),
    ({"k": "1e9"}, "k"), ({"particles": "1e12"}, "particles"), ({"budget": "zzz"}, "zzz"),
])
def test_bad_url_values_get_a_notice(params, expect):
    at = _run(**params)
    assert any(expect in w.value for w in at.warning), [w.value for w in at.warning]
    _chart(at, "main_chart")


def test_error_bars_are_wilson_intervals_around_each_bar(default_page):
    """The bars' error bars are the table's 95% Wilson interval: asymmetric, inside [0, 1], around the value."""
    table = _table(default_page)
    traces = _chart(default_page, "main_chart")["data"]
    assert len(traces) == len(table)
    for trace, (_, row) in zip(traces, table.iterrows()):  # one bar per table row, in the same order
        value, err = trace["y"][0], trace["error_y"]
        assert value == pytest.approx(row["in a flat minimum"])
        assert err["symmetric"] is False
        assert value + err["array"][0] == pytest.approx(row["95% high"]) and row["95% high"] <= 1
        assert value - err["arrayminus"][0] == pytest.approx(row["95% low"]) and row["95% low"] >= 0


@pytest.mark.parametrize("mode", ["equal", "steps"])
def test_verdict_and_titles_follow_the_table_and_the_mode(mode):
    """The text names the schedule that ends in a flat minimum most often and says whether full SAM beats SGD,
    both read from the table; the heading and the axis say which comparison is shown."""
    at = _run(budget=mode)
    t = _table(at)
    frac = dict(zip(t["schedule"], t["in a flat minimum"]))
    best = max(frac, key=frac.get)
    text = " ".join(m.value for m in at.markdown)
    assert f"**{best}** ends in a flat minimum most often ({frac[best]:.0%};" in text, text
    assert ("Full SAM beats SGD" in text) == (frac["SAM"] > frac["SGD"])
    headings = " ".join(h.value for h in at.subheader)
    spec = _chart(at, "main_chart")
    axis = spec["layout"]["xaxis"]["title"]["text"]
    if mode == "equal":
        assert "same budget" in headings and axis == "schedule (same gradient budget)"
    else:
        assert "same number of steps" in headings and axis == "schedule (same number of steps)"


def test_when_every_particle_diverges_the_page_says_so():
    """η = 1 with σ = 10 and ρ = 1 throws every particle out: the verdict says that every schedule diverged (not
    "some"), and the mean-loss curves stop instead of dropping to 0, which would read as the lowest loss."""
    import numpy as np

    at = _run(lr="1", sigma="10", rho="1")
    text = " ".join(m.value for m in at.markdown)
    assert "Every particle diverged under every schedule" in text, text
    from tests.pagetest import trace_array

    ys = [trace_array(d["y"]) for d in _chart(at, "loss_chart")["data"]]
    assert ys and all(not np.isfinite(y[-1]) for y in ys), [y[-3:] for y in ys]
