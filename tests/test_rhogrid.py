"""ρ in the browser (issue 18): the grid engine call, the payload, the URL snapping and the offline file.

Claims checked:
- core.toy.simulate.simulate_grid runs a whole ρ grid in one call and row i equals a run at ρ_i alone (common
  random numbers: same start, same noise draws); it refuses grids that do not fit instead of running them;
- app.rhogrid.snap never raises; whatever the URL holds, the value it returns is a step of the grid, and it says
  so (a notice) exactly when the URL's value was not that step;
- app.rhogrid.build stores a trace that does not change with ρ once, and every step's figure is recovered;
- the offline file holds plotly.js, the component's code and the payload, opens at the requested step and names
  the config, the ρ range, the version and the date.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re

import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from app import rhogrid
from core.toy.simulate import SimConfig, grid_fits, simulate, simulate_grid

GRID = rhogrid.steps(0.0, 0.3, 0.005)


def test_steps_are_the_sliders_values():
    assert len(GRID) == 61 and GRID[0] == 0.0 and GRID[-1] == 0.3 and GRID[27] == 0.135


def test_a_grid_run_equals_one_run_per_rho():
    cfg = SimConfig(landscape="double_well_2d", optimizer="sam", rhos=(0.1,), lr=0.05, sigma=2.5, particles=60,
                    steps=80, seed=3, keep_paths=5, record_points=10)
    rhos = (0.0, 0.05, 0.1, 0.2, 0.3) + tuple(np.round(np.linspace(0.01, 0.29, 20), 4))  # 25 > LIMITS n_rhos (12)
    grid = simulate_grid(cfg, rhos)
    assert grid.first_passage.shape[0] == len(rhos) and list(grid.rhos) == list(rhos)
    for i in (0, 2, 4, 17):
        one = simulate(cfg.replace(rhos=(rhos[i],)))
        assert np.array_equal(one.first_passage[0], grid.first_passage[i])
        assert np.array_equal(one.paths[0], grid.paths[i]) and np.array_equal(one.final[0], grid.final[i])


def test_a_grid_that_does_not_fit_is_refused_not_run():
    big = SimConfig(particles=10_000, steps=1000, rhos=(0.1,))  # fine alone, 61× too large
    assert not grid_fits(big, 61)
    with pytest.raises(ValueError, match="grid"):
        simulate_grid(big, GRID)
    with pytest.raises(ValueError):
        simulate_grid(SimConfig(particles=10, steps=10), (0.1, 50.0))  # ρ outside LIMITS


@settings(max_examples=300, deadline=None)
@given(raw=hs.one_of(hs.floats(allow_nan=True, allow_infinity=True).map(str), hs.text(max_size=30),
                     hs.sampled_from(["0.137", "nan", "1e9", "-1", "1e308", "-0", " 0.2 ", "0x10", "inf"]),
                     hs.lists(hs.sampled_from(["0.1", "abc", "0.3"]), max_size=3)))
def test_snap_always_returns_a_grid_step_and_says_when_it_moved(raw):
    value, notice = rhogrid.snap(raw, GRID, 0.2)
    assert value in GRID
    last = raw[-1] if isinstance(raw, list) and raw else (None if isinstance(raw, list) else raw)
    try:
        x = float(str(last).strip())
    except (TypeError, ValueError):
        x = math.nan
    if last is None:
        assert notice is None and value == 0.2
    elif any(math.isclose(x, r, rel_tol=1e-9, abs_tol=1e-12) for r in GRID):
        assert notice is None and math.isclose(value, x, abs_tol=1e-12)
    else:
        assert notice is not None and notice.startswith("ρ:") and "\n" not in notice


@pytest.mark.parametrize("raw, value, words", [("0.137", 0.135, "between"), ("nan", 0.2, "finite"),
                                               ("1e9", 0.3, "outside"), ("-1", 0.0, "outside")])
def test_snap_of_the_issues_hostile_values(raw, value, words):
    v, notice = rhogrid.snap(raw, GRID, 0.2)
    assert v == pytest.approx(value) and words in notice


def _slider(rhos=(0.0, 0.1, 0.2)):
    return rhogrid.Slider("rho", "ρ (test)", "help", tuple(rhos), rhos[1])


def _fig(rho: float) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.arange(50.0), y=np.zeros(50, np.float32), name="fixed"))
    fig.add_trace(go.Scatter(x=np.arange(50.0), y=np.full(50, rho, np.float32), name=f"moves ρ={rho:g}"))
    fig.update_layout(title=f"at {rho:g}")
    return fig


def _decode(v):
    return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))


def test_build_pools_what_does_not_move_and_recovers_every_step():
    view = rhogrid.build(_slider(), lambda i: (_fig((0.0, 0.1, 0.2)[i]),), per_step_at=lambda i: i * 10)
    body = json.loads(view.data)
    c = body["charts"][0]
    assert len(c["traces"]) == 1 + 3  # "fixed" once, "moves" at each step
    assert len(c["steps"]) == 3 and view.per_step == (0, 10, 20)
    for i, rho in enumerate((0.0, 0.1, 0.2)):
        _, traces = c["steps"][i]
        moving = c["traces"][traces[1]]
        assert moving["name"] == f"moves ρ={rho:g}" and np.allclose(_decode(moving["y"]), rho)
        assert rhogrid.layout_at(c, i)["title"]["text"] == f"at {rho:g}"
    assert c["patches"][c["steps"][0][0]] == {}  # the first step's layout is the base: no patch
    assert set(c["patches"][c["steps"][1][0]]) == {"title"}  # a patch holds only what differs
    assert c["template"] and "template" not in c["layout"]  # the theme is sent once per chart
    assert body["slider"]["rhos"] == [0.0, 0.1, 0.2] and len(view.digest) == 24


def test_offline_file_is_self_contained_and_names_its_view():
    from app import offline

    view = rhogrid.build(_slider(), lambda i: (_fig((0.0, 0.1, 0.2)[i]),))
    text = offline.caption("Test page", {"lr": 0.05, "seed": 0}, view, date=dt.date(2026, 12, 8))
    assert "lr = 0.05" in text and "from 0 to 0.2 in 3 steps" in text and "2026-12-08" in text
    assert "SAM Lab" in text
    page = offline.offline_html(view, 0.2, title="Test page", caption_text=text)
    assert re.search(r"SamLabRho\.mount\([^;]*, 2, \{\}\)", page)  # opens at the step nearest 0.2
    assert "Plotly" in page and "SamLabRho = {mount: mount" in page and "lr = 0.05" in page
    assert not re.search(r"<script[^>]+src=", page)  # no script fetched (the e2e test blocks the network)
    blob = re.search(r'id="samlab-grid">([^<]*)<', page).group(1)
    assert base64.b64decode(blob) == view.data


def test_a_grid_travels_through_the_halls_shared_cache_codec():
    """Under `make hall` a page's grid is shared through serve.safecodec (no pickle): the payload bytes, the
    slider and the per-step numbers (EscapeSeries, plain dicts, arrays) come back equal."""
    from app.stats_charts import EscapeSeries
    from serve import safecodec

    series = EscapeSeries("sam", 0.1, np.arange(5), np.linspace(1, 0, 5), np.array([3, -1, 2]))
    view = rhogrid.build(_slider(), lambda i: (_fig((0.0, 0.1, 0.2)[i]),),
                         per_step_at=lambda i: ({"label": "SGD", "n": i}, series))
    back = safecodec.decode(safecodec.encode(view))
    assert back.data == view.data and back.slider == view.slider and back.digest == view.digest
    assert back.per_step[2][0] == {"label": "SGD", "n": 2}
    assert np.array_equal(back.per_step[1][1].first_passage, series.first_passage)
