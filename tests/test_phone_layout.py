"""The phone layout of the figures (app/theme.is_phone), without a browser: tests/e2e/test_viewports.py measures
the drawn charts in chromium at 390 px; these check the layouts the server sends, so they run where no chromium is.

Claims: on a phone a chart's legend sits at the figure's bottom edge (below the x-axis title) and its title wraps
into lines of at most theme.PHONE_TITLE_CHARS characters, with the top margin grown by a line each; the contour
figure puts one legend entry per row above the plot under the wrapped title, sizes the figure so that the plot
has the grid's aspect at charts.PHONE_WIDTH, and gives the step slider its own row under the play buttons. Off a
phone, the same calls give the desktop layout (legend beside or above the plot, the title on one line).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from app import charts, theme

LONG_TITLE = "Sharp vs flat double well (2-D): SGD, SAM, PSAM, late SAM"


@pytest.fixture
def phone(monkeypatch):
    monkeypatch.setattr(theme, "is_phone", lambda: True)
    monkeypatch.setattr(charts, "is_phone", lambda: True)


def _line_figure() -> go.Figure:
    fig = go.Figure()
    for name in ("SGD", "SAM", "PSAM"):
        fig.add_scatter(x=[0, 1, 2], y=[1, 0.5, 0.2], name=name)
    return fig


def test_desktop_layout_is_unchanged():
    fig = theme.apply_layout(_line_figure(), title=LONG_TITLE, height=360)
    assert fig.layout.title.text == LONG_TITLE
    assert fig.layout.legend.yref is None and fig.layout.height == 360


def test_phone_legend_below_and_title_wrapped(phone):
    fig = theme.apply_layout(_line_figure(), title=LONG_TITLE, x_title="step", height=360)
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) >= 2 and all(len(line) <= theme.PHONE_TITLE_CHARS for line in lines)
    assert " ".join(lines) == LONG_TITLE
    assert fig.layout.margin.t == 50 + 22 * (len(lines) - 1)
    legend = fig.layout.legend
    assert (legend.yref, legend.y, legend.yanchor, legend.orientation) == ("container", 0.0, "bottom", "h")
    assert fig.layout.height == 360 + theme.PHONE_LEGEND_ROW * 3  # a row per entry below the plot


def _grid(x_span: float, y_span: float) -> charts.Grid:
    x, y = np.linspace(-x_span / 2, x_span / 2, 20), np.linspace(-y_span / 2, y_span / 2, 15)
    return charts.Grid(x, y, np.add.outer(y ** 2, x ** 2))


def _tracks():
    rng = np.random.default_rng(0)
    return [charts.Track(key=k, name=n, xy=rng.normal(size=(2, 40, 2)), steps=np.arange(40))
            for k, n in (("sgd", "SGD"), ("sam", "SAM (ρ = 0.2)"), ("psam", "PSAM (ρ = 0.2)"))]


@pytest.mark.parametrize("animate", [True, False])
def test_phone_contour_gets_the_grids_aspect_and_its_legend_rows(phone, animate):
    grid = _grid(4.0, 3.0)
    fig = charts.trajectory_figure(grid, _tracks(), animate=animate, start=(0.5, 0.5), title=LONG_TITLE)
    lay = fig.layout
    entries = 4  # start + three optimizers
    assert lay.legend.orientation == "v" and lay.legend.yref == "paper" and lay.legend.yanchor == "bottom"
    lines = len(theme.title_lines(LONG_TITLE, True))
    assert lay.margin.t >= charts.PHONE_ROW_PX * (lines + entries)  # room for the title and every legend row
    plot_w = charts.PHONE_WIDTH - lay.margin.l - lay.margin.r
    plot_h = lay.height - lay.margin.t - lay.margin.b
    assert plot_h == pytest.approx(plot_w * 3.0 / 4.0, abs=1.0)
    if animate:  # the step slider on its own row, under the buttons, the full width
        assert lay.sliders[0].x == 0.0 and lay.sliders[0].len == 1.0
        assert lay.sliders[0].y < lay.updatemenus[0].y < 0


def test_desktop_contour_keeps_its_one_row_legend():
    fig = charts.trajectory_figure(_grid(4.0, 3.0), _tracks(), animate=True, start=(0.5, 0.5), title=LONG_TITLE)
    assert fig.layout.legend.orientation == "h" and fig.layout.height == 560
    assert fig.layout.sliders[0].x == pytest.approx(0.3)


def test_phone_wraps_a_legend_entry_wider_than_the_screen(phone):
    long = "theory: escaped fraction from Kramers' rate for SGD and the heuristic SAM speed-up"
    fig = _line_figure()
    fig.add_scatter(x=[0, 1], y=[0.3, 0.3], name=long)
    theme.apply_layout(fig, x_title="ρ", height=360, legend_below=True)
    lines = fig.data[-1].name.split("<br>")
    assert len(lines) >= 2 and all(len(line) <= theme.PHONE_TITLE_CHARS for line in lines)
    assert " ".join(lines) == long
    assert fig.layout.height == 360 + theme.PHONE_LEGEND_ROW * (3 + len(lines))
