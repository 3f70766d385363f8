"""Figures for the toy pages (SAM step, playground, PSAM scheduler), built from plain results.

Nothing here simulates: the pages call `core/` (or app/cache.py) for numbers, and these functions
draw them. Every figure goes through `theme.apply_layout` (fonts, legend) and labels its axes with
units ("step", "loss", "w₁" …).

Animations use Plotly frames, so play / pause / scrubbing run in the browser without a round trip
to the server. To keep the JSON small, a path is subsampled to at most MAX_FRAMES frames, and only
the trajectory traces change from frame to frame (the contour is sent once).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from .theme import COLORS, LABELS, apply_layout, color, is_phone, text_scale, title_lines

# Animation frames per figure. Each frame repeats the paths up to its step, so the JSON grows with
# the square of this: 30 frames send ~2.5× less than 50 (playground default: 224 kB -> ~95 kB).
MAX_FRAMES = 30
# Plotly ≥ 6 sends numpy arrays as base64 binary; float32 halves that payload (7 digits is plenty
# for a picture).
F32 = np.float32


class AnimatedFigure(go.Figure):
    """A Plotly figure whose animation frames are kept as plain dicts and added in `to_dict`
    (which Streamlit and `to_json` call). Plotly validates frames element by element, which costs
    ~0.5 s for 50 frames; these frames only repeat trace types already validated in `data`."""

    def set_frames(self, frames: list[dict]) -> AnimatedFigure:
        for f in frames:  # numpy arrays → plotly.js typed arrays (base64), as to_dict does for data
            for trace in f["data"]:
                for axis in ("x", "y", "z"):
                    if isinstance(trace.get(axis), np.ndarray):
                        trace[axis] = typed_array(trace[axis])
        self._raw_frames = frames
        return self

    def to_dict(self):
        out = super().to_dict()
        out["frames"] = getattr(self, "_raw_frames", [])
        return out


def typed_array(a: np.ndarray) -> dict:
    """plotly.js's typed-array spec: {"dtype": "f4", "bdata": base64 of the little-endian bytes}."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}


@dataclass(frozen=True)
class Grid:
    """A landscape sampled on a regular grid: z[i, j] = L(x[j], y[i])."""

    x: np.ndarray  # (nx,)
    y: np.ndarray  # (ny,)
    z: np.ndarray  # (ny, nx)


@dataclass
class Track:
    """One optimizer's trajectories for display: `xy` is (P, K, 2) for P particles over K recorded
    samples at step numbers `steps` (K,). `loss` (P, K) is optional (for the 3-D view)."""

    key: str  # optimizer key (colour), e.g. "sam"
    name: str  # legend text, e.g. "SAM (ρ = 0.05)"
    xy: np.ndarray
    steps: np.ndarray
    loss: np.ndarray | None = None


def landscape_grid(loss_fn, bounds, n: int = 90) -> Grid:
    """Evaluate loss_fn on an n×n grid over bounds ((x_lo, x_hi), (y_lo, y_hi)). loss_fn takes a
    (..., 2) torch tensor. Non-finite values are kept as NaN (Plotly leaves them blank)."""
    import torch

    (x0, x1), (y0, y1) = bounds
    x = np.linspace(x0, x1, n)
    y = np.linspace(y0, y1, n)
    xx, yy = np.meshgrid(x, y)
    w = torch.tensor(np.stack([xx, yy], axis=-1), dtype=torch.float64)
    with torch.no_grad():
        z = loss_fn(w).detach().cpu().numpy().astype(float)
    z = np.where(np.isfinite(z), z, np.nan)
    return Grid(x, y, z)


def _frame_indices(k: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """At most max_frames sample indices from 0 … k−1, always including the first and the last."""
    if k <= max_frames:
        return np.arange(k)
    return np.unique(np.linspace(0, k - 1, max_frames).round().astype(int))


# A phone's layout for the contour figures (theme.is_phone). The server cannot measure the screen, so it lays the
# figure out for a chart PHONE_WIDTH px wide (a 360-430 px phone less the page's padding): narrow side margins
# and a thin colour bar, one legend entry per row above the plot (at 390 px an entry or two fit a row, and the
# desktop layout's one-row strip let the wrapped legend run into the title), and a height that gives the plot
# its grid's aspect ratio (a fixed 560 px left the equal-scale contour a 190 × 135 px strip amid empty axes).
PHONE_WIDTH = 360
PHONE_MARGIN = {"l": 55, "r": 75}  # room for the w₂ ticks and title on the left, the thin colour bar on the right
PHONE_ROW_PX = 22  # a legend row or a title line


def _phone_plot_height(grid: Grid) -> int:
    """Height in px of an equal-scale contour plot PHONE_WIDTH px wide, less the side margins."""
    width = PHONE_WIDTH - PHONE_MARGIN["l"] - PHONE_MARGIN["r"]
    aspect = float(grid.y[-1] - grid.y[0]) / max(float(grid.x[-1] - grid.x[0]), 1e-12)
    return round(width * min(max(aspect, 0.4), 1.6))


def _phone_frame(fig: go.Figure, grid: Grid, title: str | None, legend_entries: int, bottom: int) -> int:
    """Lay out a contour figure for a phone: the legend above the plot one entry per row, under the (wrapped)
    title; margins fixed (see trajectory_figure) with `bottom` px below the plot. Returns the plot's height."""
    plot_h = _phone_plot_height(grid)
    top = 20 + PHONE_ROW_PX * (len(title_lines(title, True)) + legend_entries) + 12
    fig.update_traces(colorbar={"thickness": 10}, selector={"type": "heatmap"})
    fig.update_layout(height=top + plot_h + bottom,
                      legend={"orientation": "v", "x": 0.0, "y": 1.0, "xanchor": "left", "yanchor": "bottom",
                              "yref": "paper",
                              "bgcolor": "rgba(0,0,0,0)", "borderwidth": 0},
                      margin={"t": top, "b": bottom, **PHONE_MARGIN, "autoexpand": False},
                      title={"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 12}})
    return plot_h


def _zrange(z: np.ndarray) -> tuple[float, float]:
    """Colour range from the 1st to the 85th percentile of the loss on the grid, so the walls do not flatten
    the interesting part of the landscape: on the double well the walls beyond |w₁| = 1.5 fill a third of the
    picture and rise to ~5, and with the 97th percentile the sharp and the flat well (both at −0.5, barrier 0)
    came out the same dark colour. Higher ground simply shows in the top colour."""
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 85])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def contour_trace(grid: Grid, *, showscale: bool = True) -> go.Heatmap:
    """The landscape as a colour map (a Plotly heatmap, smoothed by the browser).

    Why a heatmap and not go.Contour: in the browser a contour costs ~2× the drawing time of the
    whole figure (plotly.js traces every level with marching squares on each redraw), and every ρ
    change redraws it. Measured in headless chromium on this machine (main-thread CPU per redraw of
    the default SAM-step figure): contour 105 ms, heatmap 65 ms; with the 20×20 click grid 48 ms."""
    lo, hi = _zrange(grid.z)
    return go.Heatmap(
        x=grid.x.astype(F32), y=grid.y.astype(F32), z=grid.z.astype(F32), zmin=lo, zmax=hi, zsmooth="fast",
        colorscale="Viridis", reversescale=False, opacity=0.85, name="loss L(w)", showscale=showscale,
        colorbar={"title": {"text": "loss", "side": "right"}, "thickness": 14},
        hovertemplate="w₁=%{x:.3f}<br>w₂=%{y:.3f}<br>L=%{z:.4f}<extra></extra>", showlegend=False,
    )


CLICK_GRID_N = 20  # click-target points per side (each point costs the browser a marker to draw)
CLICK_HOVER_PX = 30  # layout.hoverdistance: a click within this many pixels of a grid point counts


def click_grid(grid: Grid, n: int = CLICK_GRID_N) -> go.Scatter:
    """An invisible grid of points over the plot. Plotly selection events only fire on points, so
    this is what makes 'click anywhere on the map' work with on_select='rerun'. The figure sets
    layout.hoverdistance = CLICK_HOVER_PX, wider than half the grid spacing (~15 px on a 600 px
    plot), so every click lands on its nearest grid point."""
    x = np.linspace(grid.x[0], grid.x[-1], n)
    y = np.linspace(grid.y[0], grid.y[-1], n)
    xx, yy = np.meshgrid(x, y)
    return go.Scatter(
        x=xx.ravel().astype(F32), y=yy.ravel().astype(F32), mode="markers",
        marker={"size": 9, "opacity": 0.0, "color": "white"}, name="click to set the start",
        hovertemplate="click: start at (%{x:.2f}, %{y:.2f})<extra></extra>", showlegend=False,
    )


def _path_xy(track: Track, upto: int, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All particles of a track up to sample `upto` as one polyline per particle, separated by NaN
    (a gap in Plotly). With `idx`, only those sample indices are used (the animation frames), so a
    frame holds at most MAX_FRAMES points per particle."""
    keep = np.arange(upto + 1) if idx is None else np.append(idx[idx < upto], upto)
    seg = track.xy[:, keep, :2]  # (P, n, 2)
    gap = np.full((seg.shape[0], 1, 2), np.nan)
    flat = np.concatenate([seg, gap], axis=1).reshape(-1, 2).astype(F32)
    return flat[:, 0], flat[:, 1]


def _head_xy(track: Track, at: int) -> tuple[np.ndarray, np.ndarray]:
    head = track.xy[:, at].astype(F32)
    return head[:, 0], head[:, 1]


def trajectory_figure(grid: Grid, tracks: Sequence[Track], *, animate: bool = True, clickable: bool = False,
                      start=None, title: str | None = None, height: int = 560,
                      minima: Sequence = ()) -> go.Figure:
    """Contour of the landscape with each track's paths. With animate=True the paths grow frame
    by frame (play / pause buttons and a step slider, all in the browser)."""
    fig = AnimatedFigure()
    fig.add_trace(contour_trace(grid))
    if clickable:
        fig.add_trace(click_grid(grid))
    for m in minima:  # Critical points of the landscape: a marker under the paths, its label above them
        fig.add_trace(go.Scatter(
            x=[m.position[0]], y=[m.position[1]], mode="markers", marker={"symbol": "x", "size": 11, "color": "white",
                                                                        "line": {"width": 1, "color": "black"}},
            showlegend=False, hoverinfo="skip"))
        # an annotation, not trace text: annotations sit on top of every trace, so paths that end in a
        # minimum (they usually do) no longer hide which one it is; set off up and right with a thin pointer,
        # so the label does not cover the particles gathered at the minimum either
        fig.add_annotation(x=m.position[0], y=m.position[1], text=m.label or m.kind, showarrow=True, arrowhead=0,
                           arrowwidth=1, arrowcolor="white", ax=24, ay=-24, font={"color": "white"},
                           bgcolor="rgba(0, 0, 0, 0.4)", borderpad=2)
    if start is not None:
        fig.add_trace(go.Scatter(x=[start[0]], y=[start[1]], mode="markers", name="start",
                                 marker={"symbol": "star", "size": 16, "color": "white",
                                         "line": {"width": 1.5, "color": "black"}}))
    first_path = len(fig.data)
    k = max((t.xy.shape[1] for t in tracks), default=1)
    idx = _frame_indices(k)
    for t in tracks:
        c = color(t.key)
        at = t.xy.shape[1] - 1
        xs, ys = _path_xy(t, at, idx if animate else None)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=t.name, legendgroup=t.name,
                                 line={"color": c, "width": 2.5}, hoverinfo="skip"))
        hx, hy = _head_xy(t, at)
        fig.add_trace(go.Scatter(x=hx, y=hy, mode="markers", name=t.name, legendgroup=t.name, showlegend=False,
                                 marker={"color": c, "size": 11, "line": {"width": 1.5, "color": "white"}},
                                 hovertemplate=f"{t.name}<br>w₁=%{{x:.3f}}<br>w₂=%{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(range=[float(grid.x[0]), float(grid.x[-1])], constrain="domain")
    fig.update_yaxes(range=[float(grid.y[0]), float(grid.y[-1])], scaleanchor="x", scaleratio=1)
    apply_layout(fig, title=title, x_title="w₁ (parameter units)", y_title="w₂ (parameter units)", height=height)
    # Legend in one row between the title and the plot: the colour bar takes the right side.
    # Fixed margins (autoexpand off): with Plotly's automatic margins every redraw measures the legend,
    # colour bar, buttons and slider and then draws the figure a second time; fixed margins halved the
    # browser's CPU per ρ change on the Playground (headless chromium: 634 -> 347 ms).
    s = text_scale()
    # About three legend entries ("late SAM (ρ = 0.2)") fit on a row; each further row gets its own strip of the
    # top margin, so a legend of many optimizers wraps above the plot without running into the title.
    entries = len({t.name for t in tracks}) + (start is not None)
    legend_rows = max(1, math.ceil(entries / 3))
    fig.update_layout(legend={"orientation": "h", "x": 0.0, "y": 1.03, "xanchor": "left", "yanchor": "bottom"},
                      margin={"t": round(((85 if title else 45) + 28 * (legend_rows - 1)) * s), "l": round(75 * s),
                              "r": round(95 * s), "autoexpand": False}, hoverdistance=CLICK_HOVER_PX,
                      title={"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 12}})  # title on top
    plot_h = _phone_frame(fig, grid, title, entries, 195 if animate else 60) if is_phone() else None
    if animate and tracks:
        fig = _with_frames(fig, tracks, idx, first_path, plot_h)
    return fig


def _with_frames(fig: go.Figure, tracks: Sequence[Track], idx: np.ndarray, first_path: int,
                 phone_plot_h: int | None = None) -> go.Figure:
    """Add the animation frames (plain dicts, see AnimatedFigure): the paths up to each frame."""
    steps_ref = max(tracks, key=lambda t: t.xy.shape[1]).steps
    trace_ids = list(range(first_path, first_path + 2 * len(tracks)))
    frames = []
    for i in idx:
        data = []
        for t in tracks:
            at = min(int(i), t.xy.shape[1] - 1)
            xs, ys = _path_xy(t, at, idx)
            hx, hy = _head_xy(t, at)
            data += [{"type": "scatter", "x": xs, "y": ys}, {"type": "scatter", "x": hx, "y": hy}]
        frames.append({"data": data, "traces": trace_ids, "name": str(int(steps_ref[int(i)]))})
    return _add_controls(fig, frames, phone_plot_h)


def _add_controls(fig: AnimatedFigure, frames: list[dict], phone_plot_h: int | None = None) -> AnimatedFigure:
    """Play / pause buttons and a step slider (scrubber) under the plot, driving the frames. On a phone
    (`phone_plot_h`: the plot's height in px) the slider gets its own row under the buttons: beside them it had
    a third of 230 px, and its read-out slid under the pause button."""
    play = {"frame": {"duration": 80, "redraw": False}, "transition": {"duration": 0}, "fromcurrent": True,
            "mode": "immediate"}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    fig.update_layout(
        updatemenus=[{
            "type": "buttons", "direction": "left", "x": 0.0, "y": -0.13, "xanchor": "left", "yanchor": "top",
            "pad": {"r": 8, "t": 8}, "showactive": False,
            "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                        {"label": "pause", "method": "animate", "args": [[None], pause]}],
        }],
        sliders=[{
            # starts right of the play / pause buttons (which end near x = 0.22 on a narrow chart), with
            # the "step N" read-out on the right, so the label never hides under the pause button
            "active": len(frames) - 1, "x": 0.3, "y": -0.13, "len": 0.7, "xanchor": "left", "yanchor": "top",
            "pad": {"t": 8}, "currentvalue": {"prefix": "step ", "visible": True, "xanchor": "right"},
            "steps": [{"label": f["name"], "method": "animate",
                       "args": [[f["name"]], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                              "transition": {"duration": 0}}]} for f in frames],
        }],
        margin={"b": round(130 * text_scale())},
    )
    if phone_plot_h:  # paper units are fractions of the plot's height: place the rows in px below the plot
        fig.update_layout(margin={"b": 195}, updatemenus=[{"y": -50 / phone_plot_h}],
                          sliders=[{"x": 0.0, "len": 1.0, "y": -95 / phone_plot_h}])
    return fig.set_frames(frames)


def surface_figure(grid: Grid, tracks: Sequence[Track], *, title: str | None = None, height: int = 560) -> go.Figure:
    """The landscape as a 3-D surface, with the paths drawn on it (loss as height)."""
    finite = grid.z[np.isfinite(grid.z)]
    lo = float(finite.min()) if finite.size else 0.0
    # cap the walls at the 75th percentile of the loss so the valleys, not the walls, fill the box
    cap = float(np.percentile(finite, 75)) if finite.size else 1.0
    cap = cap if cap > lo else lo + 1.0
    z = np.clip(grid.z, None, cap)
    lift = 0.015 * (cap - lo)  # paths float just above the surface, or the surface hides them
    fig = go.Figure(go.Surface(x=grid.x.astype(F32), y=grid.y.astype(F32), z=z.astype(F32),
                               colorscale="Viridis", opacity=0.85, showscale=False, name="loss L(w)",
                               hovertemplate="w₁=%{x:.3f}<br>w₂=%{y:.3f}<br>L=%{z:.4f}<extra></extra>"))
    for t in tracks:
        if t.loss is None:
            continue
        P = t.xy.shape[0]
        gap = np.full((P, 1), np.nan)
        xs = np.concatenate([t.xy[:, :, 0], gap], axis=1).ravel().astype(F32)
        ys = np.concatenate([t.xy[:, :, 1], gap], axis=1).ravel().astype(F32)
        zs = np.concatenate([np.clip(t.loss, None, cap) + lift, gap], axis=1).ravel().astype(F32)
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name=t.name,
                                   line={"color": color(t.key), "width": 7}))
    apply_layout(fig, title=title, height=height)
    fig.update_layout(scene={"xaxis": {"title": {"text": "w₁"}}, "yaxis": {"title": {"text": "w₂"}},
                             "zaxis": {"title": {"text": "loss"}}, "aspectmode": "manual",
                             "aspectratio": {"x": 1.3, "y": 1.0, "z": 0.55},
                             "camera": {"eye": {"x": 1.25, "y": -1.35, "z": 0.95}}},
                      margin={"l": 0, "r": 0, "b": 0})
    return fig


def loss_figure(series: Sequence[tuple[str, str, np.ndarray, np.ndarray]], *, title: str | None = None,
                x_title: str = "step", log_y: bool = False, height: int = 360) -> go.Figure:
    """Loss versus step: one line per (key, name, steps, loss)."""
    fig = go.Figure()
    for key, name, steps, loss in series:
        loss = np.asarray(loss, float)
        # six decimals keep the JSON small; on a log axis six significant digits, or small losses would become 0
        y = [float(f"{v:.6g}") for v in loss] if log_y else np.round(loss, 6).tolist()
        fig.add_trace(go.Scatter(x=np.asarray(steps).tolist(), y=y,
                                 mode="lines", name=name, line={"color": color(key), "width": 2.5}))
    apply_layout(fig, title=title, x_title=x_title, y_title="loss (mean over particles)", height=height)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def sam_step_marks(*, w, grad_w, eps, grad_adv, rho: float, lr: float) -> tuple[list[dict], list[dict]]:
    """What of the SAM-step diagram depends on ρ, as plain Plotly dicts: the traces (the ball ‖ε‖ ≤ ρ, w, w+ε and
    one legend line per arrow) and the four arrow annotations (ascent ε, the gradient at w+ε, the SGD and SAM
    steps). Plain dicts: the browser grid (pages/sam_step.py) builds 101 of them per view without Plotly's
    validators, and `sam_step_figure` adds the same dicts to its figure."""
    w = np.asarray(w, float)
    w_adv = w + np.asarray(eps, float)
    sgd_to = w - lr * np.asarray(grad_w, float)
    sam_to = w - lr * np.asarray(grad_adv, float)
    theta = np.linspace(0, 2 * np.pi, 100)
    traces = [
        dict(type="scatter", x=(w[0] + rho * np.cos(theta)).astype(F32), y=(w[1] + rho * np.sin(theta)).astype(F32),
             mode="lines", name=f"ball ‖ε‖ ≤ ρ = {rho:g}", line={"color": "white", "width": 2, "dash": "dash"},
             hoverinfo="skip"),
        dict(type="scatter", x=[float(w[0])], y=[float(w[1])], mode="markers+text", text=["w"],
             textposition="bottom left", name="w (current point)", textfont={"color": "white", "size": 16},
             marker={"size": 13, "color": "white", "line": {"width": 2, "color": "black"}}),
        dict(type="scatter", x=[float(w_adv[0])], y=[float(w_adv[1])], mode="markers+text", text=["w+ε"],
             textposition="top right", name="w+ε (worst point on the ball)", textfont={"color": "white", "size": 16},
             marker={"size": 12, "color": COLORS["sam"], "symbol": "diamond",
                     "line": {"width": 1.5, "color": "white"}}),
    ]
    annotations = []
    # gradients drawn at the SGD-step length, so they compare with the steps
    for start, end, col, text, width, dash in (
            (w, w_adv, "#F0E442", "ascent ε = ρ·∇L(w)/‖∇L(w)‖", 2.5, False),
            (w_adv, w_adv - lr * np.asarray(grad_adv, float), "#FFFFFF", "−η∇L(w+ε) (gradient at w+ε)", 2, True),
            (w, sgd_to, COLORS["sgd"], "SGD step −η∇L(w)", 4, False),
            (w, sam_to, COLORS["sam"], "SAM step −η∇L(w+ε)", 4, False)):
        annotations.append(dict(x=float(end[0]), y=float(end[1]), ax=float(start[0]), ay=float(start[1]), xref="x",
                                yref="y", axref="x", ayref="y", showarrow=True, arrowhead=3, arrowsize=1.2,
                                arrowwidth=width, arrowcolor=col, text="", opacity=0.6 if dash else 1.0))
        # a legend entry per arrow (annotations have none): an invisible line with the same colour
        traces.append(dict(type="scatter", x=[float(start[0]), float(end[0])], y=[float(start[1]), float(end[1])],
                           mode="lines", name=text,
                           line={"color": col, "width": width, "dash": "dot" if dash else "solid"},
                           hoverinfo="name"))
    return traces, annotations


def sam_step_figure(grid: Grid, *, w, grad_w, eps, grad_adv, rho: float, lr: float, history=(),
                    title: str | None = None, height: int = 600) -> go.Figure:
    """One SAM step drawn on the contour (Foret et al. 2021, eqs. (1)–(3) in core/sam.py):
    w, the ascent ε = ρ∇L(w)/‖∇L(w)‖ to w+ε on the circle of radius ρ, the gradient ∇L(w+ε) there,
    and the two steps: SGD  w − η∇L(w)  and SAM  w − η∇L(w+ε). `history` is the list of earlier
    points of the SAM iteration, drawn as a path. The ρ-dependent part is `sam_step_marks`."""
    fig = go.Figure(layout={"hoverdistance": CLICK_HOVER_PX})
    fig.add_trace(contour_trace(grid))
    fig.add_trace(click_grid(grid))
    if len(history) > 1:
        h = np.asarray(history, float)
        fig.add_trace(go.Scatter(x=h[:, 0], y=h[:, 1], mode="lines+markers", name="SAM path so far",
                                 line={"color": COLORS["sam"], "width": 1.5, "dash": "dot"},
                                 marker={"size": 5, "color": COLORS["sam"]}))
    traces, annotations = sam_step_marks(w=w, grad_w=grad_w, eps=eps, grad_adv=grad_adv, rho=rho, lr=lr)
    for t in traces:
        fig.add_trace(go.Scatter({k: v for k, v in t.items() if k != "type"}))
    for a in annotations:
        fig.add_annotation(a)
    fig.update_xaxes(range=[float(grid.x[0]), float(grid.x[-1])], constrain="domain")
    fig.update_yaxes(range=[float(grid.y[0]), float(grid.y[-1])], scaleanchor="x", scaleratio=1)
    apply_layout(fig, title=title, x_title="w₁ (parameter units)", y_title="w₂ (parameter units)", height=height,
                 legend_below=True)
    # Fixed margins (see trajectory_figure), room for the legend below: a ρ change draws the figure once.
    s = text_scale()
    fig.update_layout(margin={"t": round(50 * s), "l": round(75 * s), "r": round(95 * s), "b": round(175 * s),
                              "autoexpand": False})
    if is_phone():  # the legend's six or seven long entries above the plot, one a row (see _phone_frame)
        _phone_frame(fig, grid, title, sum(1 for t in fig.data if t.showlegend is not False and t.name), 60)
    return fig


def with_marks(figure_json: dict, marks: tuple[list[dict], list[dict]]) -> dict:
    """A `sam_step_figure` (as plotly.js JSON) with its ρ-dependent marks replaced by `marks` (`sam_step_marks` at
    another ρ): the same figure as `sam_step_figure` would build there, without building it."""
    traces, annotations = marks
    traces = [{k: typed_array(v) if isinstance(v, np.ndarray) else v for k, v in t.items()} for t in traces]
    data = figure_json["data"][: len(figure_json["data"]) - len(traces)] + traces
    return {"data": data, "layout": figure_json["layout"] | {"annotations": annotations}}


def schedule_timeline(rows: Sequence[tuple[str, str, np.ndarray, float]], *, title: str | None = None,
                      height: int | None = None) -> go.Figure:
    """Which steps are SAM steps: one row per schedule (key, label, mask (T,), cost relative to SAM).
    A tick marks each SAM step; the row's label gives its cost, (T + S)/(2T)."""
    fig = go.Figure()
    names = []
    for key, name, mask, cost in rows:
        mask = np.asarray(mask, bool)
        steps = np.flatnonzero(mask)
        row = f"{name} · cost {cost:.0%}"
        names.append(row)
        if steps.size == 0:  # no SAM step (SGD): one point left of the axis keeps the row on the chart
            steps = np.array([-10])
        fig.add_trace(go.Scatter(
            x=steps.tolist(), y=[row] * len(steps), mode="markers", name=row,
            marker={"symbol": "line-ns", "size": 22, "line": {"width": 2 if len(mask) <= 300 else 1,
                                                               "color": color(key)}, "color": color(key)},
            hovertemplate=f"{name}: SAM at step %{{x}}<extra></extra>"))
    apply_layout(fig, title=title, x_title="step" if is_phone() else "step (tick = one SAM step)",  # 390 px: cut
                 height=height or 90 + 55 * len(rows), legend=False)
    total = max((len(r[2]) for r in rows), default=1)
    fig.update_xaxes(range=[-0.5, total - 0.5])
    fig.update_yaxes(categoryorder="array", categoryarray=names[::-1], title_text="")
    return fig


def budget_bar_figure(rows: Sequence[tuple[str, str, float, tuple[float, float]]], *, metric: str = "final loss",
                      title: str | None = None, height: int = 340,
                      x_title: str = "schedule (same gradient budget)") -> go.Figure:
    """Outcome per schedule at equal budget: bars of `metric`, rows (key, label, value, (lo, hi)),
    the interval drawn as an asymmetric error bar (hidden when it is NaN)."""
    fig = go.Figure()
    for key, name, value, (lo, hi) in rows:
        shown = bool(np.isfinite([value, lo, hi]).all())
        fig.add_trace(go.Bar(x=[name], y=[value], name=name, marker_color=color(key),
                             error_y={"type": "data", "symmetric": False, "array": [hi - value if shown else 0],
                                      "arrayminus": [value - lo if shown else 0], "visible": shown},
                             hovertemplate=f"{name}: %{{y:.4g}}<extra></extra>"))
    apply_layout(fig, title=title, x_title=x_title, y_title=metric, height=height, legend=False)
    return fig


def track_name(key: str, rho: float | None = None) -> str:
    base = LABELS.get(key, key)
    return base if rho is None or key == "sgd" else f"{base} (ρ = {rho:g})"


def curve_figure(x: np.ndarray, z: np.ndarray, tracks: Sequence[Track], *, title: str | None = None,
                 height: int = 520, animate: bool = True) -> go.Figure:
    """A 1-D landscape as the curve L(w), with each track's particles as dots on it; with
    animate=True the dots move frame by frame (play / pause / step slider in the browser)."""
    fig = AnimatedFigure(go.Scatter(x=np.asarray(x, F32), y=np.asarray(z, F32), mode="lines",
                                    name="loss L(w)", line={"color": "#333333", "width": 2}))
    first = len(fig.data)
    k = max((t.xy.shape[1] for t in tracks), default=1)
    idx = _frame_indices(k)
    last = int(idx[-1])

    def dots(t: Track, at: int):
        at = min(at, t.xy.shape[1] - 1)
        loss = t.loss[:, at] if t.loss is not None else np.zeros(t.xy.shape[0])
        return t.xy[:, at, 0].astype(F32), np.asarray(loss, F32)

    for t in tracks:
        px, py = dots(t, last)
        fig.add_trace(go.Scatter(x=px, y=py, mode="markers", name=t.name,
                                 marker={"color": color(t.key), "size": 13, "opacity": 0.85,
                                         "line": {"width": 1.5, "color": "white"}}))
    finite = z[np.isfinite(z)]
    if finite.size:
        lo, hi = float(finite.min()), float(np.percentile(finite, 98))
        fig.update_yaxes(range=[lo - 0.08 * (hi - lo + 1e-9), hi + 0.08 * (hi - lo + 1e-9)])
    apply_layout(fig, title=title, x_title="w (parameter units)", y_title="loss L(w)", height=height)
    if animate and tracks:
        steps_ref = max(tracks, key=lambda t: t.xy.shape[1]).steps
        frames = []
        for i in idx:
            data = []
            for t in tracks:
                px, py = dots(t, int(i))
                data.append({"type": "scatter", "x": px, "y": py})
            frames.append({"data": data, "traces": list(range(first, first + len(tracks))),
                           "name": str(int(steps_ref[int(i)]))})
        fig = _add_controls(fig, frames)
    return fig
