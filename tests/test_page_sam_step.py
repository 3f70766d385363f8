"""pages/sam_step.py: one SAM step drawn on the contour (Foret et al. 2021, core/sam.py eqs. 1–3).

Claims:
1. The page runs without exceptions and draws its main chart with the ρ-ball, w, w+ε and both steps.
2. Every step of the ρ slider is shipped with the page (issue 18: ρ moves in the browser), the step shown first
   is the URL's ρ, and the steps differ (the ball and w+ε move); a released ρ is the page's ρ on the next run.
3. "Step" moves w to w − η∇L(w + ε), ε = ρ∇L(w)/‖∇L(w)‖ (eq. 3), checked against the landscape's own
   gradient; "Reset" returns to the start.
4. Query parameters restore the view (ρ, lr, w); malformed ones give notices, not tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.toy.landscapes import make_landscape
from tests.gridtest import block, figure, rho_shown, shipped
from tests.pagetest import run_page

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "sam_step.py")


def _run(**params) -> AppTest:
    return run_page("pages/sam_step.py", **params)


def _main(at, step: int | None = None) -> dict:
    return figure(at, 0, step=step)


def _trace(spec, start: str) -> dict:
    return next(t for t in spec["data"] if t.get("name", "").startswith(start))


def test_runs_and_draws_the_step():
    at = _run()
    spec = _main(at)
    names = [t.get("name", "") for t in spec["data"]]
    for part in ("ball", "w (current", "w+ε", "SGD step", "SAM step"):
        assert any(n.startswith(part) for n in names), f"missing {part!r} in {names}"
    assert spec["layout"]["xaxis"]["title"]["text"] == "w₁ (parameter units)"
    assert at.get("download_button"), "no data download"


def test_rho_changes_the_plot():
    at = _run()
    head, payload = shipped(at)
    assert payload["slider"]["rhos"] == [round(0.01 * i, 10) for i in range(101)]
    assert rho_shown(at) == pytest.approx(0.1)
    before, after = _main(at), _main(at, step=60)
    assert _trace(before, "ball")["name"] == "ball ‖ε‖ ≤ ρ = 0.1" and _trace(after, "ball")["name"].endswith("0.6")
    assert before["data"] != after["data"]
    at.session_state["rho"] = 0.6  # what a release in the browser does
    at.run()
    assert not at.exception and rho_shown(at) == pytest.approx(0.6) and _main(at) == after


def test_step_is_eq3_and_reset_returns():
    at = _run(rho="0.3", lr="0.1", x="0.5", y="0.7")
    w = np.array([at.session_state["x"], at.session_state["y"]])
    assert np.allclose(w, [0.5, 0.7])
    at.button[0].click().run()  # "Step"
    land = make_landscape("double_well_2d")
    g = land.grad(torch.tensor(w, dtype=torch.float64)).numpy()
    w_adv = w + 0.3 * g / np.linalg.norm(g)
    expected = w - 0.1 * land.grad(torch.tensor(w_adv, dtype=torch.float64)).numpy()
    got = np.array([at.session_state["x"], at.session_state["y"]])
    assert np.allclose(got, expected, atol=1e-9), (got, expected)
    at.button[1].click().run()  # "Reset": back to the page's start point on the sharp well's slope
    assert np.allclose([at.session_state["x"], at.session_state["y"]], [0.55, 0.7])


def test_url_restores_view():
    at = _run(rho="0.42", lr="0.2", x="-1", y="0.25", landscape="saddle")
    assert rho_shown(at) == pytest.approx(0.42)
    assert at.select_slider(key="lr").value == pytest.approx(0.2)
    assert at.selectbox(key="landscape").value == "saddle"
    assert (at.session_state["x"], at.session_state["y"]) == (pytest.approx(-1.0), pytest.approx(0.25))
    assert not at.warning


@pytest.mark.parametrize("params, expect", [
    ({"rho": "nan"}, "ρ"), ({"rho": "1e308"}, "outside"), ({"rho": "0.137"}, "between"), ({"rho": "-1"}, "outside"),
    ({"lr": "abc"}, "lr"), ({"x": "inf"}, "w₁"),
    ({"landscape": "../../etc/passwd"}, "unknown"),
])
def test_bad_url_values_get_a_notice(params, expect):
    at = _run(**params)
    assert any(expect in w.value for w in at.warning), [w.value for w in at.warning]
    _main(at)  # still draws


def test_the_numbers_of_the_step_travel_with_the_chart():
    """A release reruns only the ρ chart's fragment (issue 18: ≤ 10 ms of server CPU): "This step" at every ρ is
    the chart's block, ‖ε‖ equal to that step's ρ, and the angle between the steps named under it."""
    at = _run()
    for step, rho in ((10, 0.1), (60, 0.6)):
        html = block(at, 0, step=step)
        assert f"<td>‖ε‖ (= ρ)</td>\n      <td>{rho:.4f}</td>" in html, html[:600]
        assert "The SAM step turns" in html
    assert not at.dataframe  # no server table: a release would leave it behind
