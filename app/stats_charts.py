"""Figures for the two statistics pages: the Escape lab and the Asymmetric-valley lab.

Every function here takes plain numbers (numpy arrays, floats, results from `core.toy.measure` /
`core.toy.theory`) and returns a Plotly figure or a table. Nothing here runs a simulation: the pages
call `core/` for the numbers and these functions only draw them.

Naming convention for theory traces (the tests look for these words in the trace names):
    "Kramers"        the Kramers prediction for SGD, S(t) = exp(−t/τ)           (theory.md §3)
    "heuristic"      the SAM speed-up heuristic exp((λ_min ρ²/2)/T)             (theory.md §3)
    "closed form"    SGD's stationary density ∝ exp(−2L/(ησ²)) and its mean     (theory.md §4)
    "exact chain"    the grid Markov chain's stationary density / mean          (theory.md §4)
    "2-cycle"        the noise-free SAM 2-cycle mean                            (theory.md §4)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts import typed_array
from app.theme import COLORS, apply_layout, rho_color, text_scale


def _f4(a) -> np.ndarray:
    """A long data array as float32 for the browser.

    Plotly sends numpy arrays as base64 typed arrays ("bdata"): float32 halves the bytes of float64
    that every browser session downloads and decodes on each rerun, and its 7 significant digits are
    far below a pixel. Used for the long curves only (hundreds of points and more)."""
    return np.asarray(a, dtype=np.float32)


def sam_shade(rho: float, rhos: Sequence[float]) -> str:
    """The colour for SAM at radius ρ among several radii (darker = larger ρ)."""
    return rho_color(float(rho), [float(r) for r in rhos])


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 420, legend_below: bool = True) -> go.Figure:
    """The shared look (app/theme.apply_layout), legend below the plot so it never hides data."""
    return apply_layout(fig, title=title, x_title=x or None, y_title=y or None, height=height,
                        legend_below=legend_below)


def _ci_band(fig, x, lo, hi, color, name, row=None, col=None):
    """A translucent band between lo and hi (a confidence interval), drawn once under its line."""
    x = np.asarray(x, float)
    fig.add_trace(go.Scatter(
        x=np.concatenate([x, x[::-1]]), y=np.concatenate([np.asarray(hi, float), np.asarray(lo, float)[::-1]]),
        mode="lines", fill="toself", fillcolor=color, opacity=0.18, line=dict(width=0), hoverinfo="skip",
        name=name, showlegend=False), row=row, col=col)


# --------------------------------------------------------------------------------------------------
# Escape lab
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EscapeSeries:
    """One run's escape numbers for the charts: optimizer key, ρ (0 for SGD), the survival curve
    S(t) at steps t, and the first-passage steps of all particles (−1 = never escaped)."""

    optimizer: str
    rho: float
    t: np.ndarray
    survival: np.ndarray
    first_passage: np.ndarray

    @property
    def label(self) -> str:
        return "SGD" if self.optimizer == "sgd" else f"SAM ρ={self.rho:g}"


def _series_color(s: EscapeSeries, sam_rhos: Sequence[float]) -> str:
    return COLORS["sgd"] if s.optimizer == "sgd" else sam_shade(s.rho, sam_rhos)


def survival_figure(series: Sequence[EscapeSeries], kramers_tau: float | None = None,
                    sam_speedups: dict[float, float] | None = None, title: str | None = None) -> go.Figure:
    """Survival curves S(t) = fraction of particles still in the start basin after t steps.

    Overlays (theory.md §3): Kramers for SGD, S(t) = exp(−t/τ) with τ the Kramers mean escape time in
    steps; for SAM the heuristic S(t) = exp(−t·speed-up/τ), drawn dotted and labelled a heuristic
    because it overshoots at large ρ.
    """
    fig = go.Figure()
    sam_rhos = [s.rho for s in series if s.optimizer != "sgd"]
    t_max = max((float(np.max(s.t)) for s in series if len(s.t)), default=1.0)
    for s in series:
        fig.add_trace(go.Scatter(x=_f4(s.t), y=_f4(s.survival), mode="lines", name=s.label,
                                 line=dict(color=_series_color(s, sam_rhos), width=2.5),
                                 hovertemplate="step %{x}<br>S = %{y:.3f}<extra>" + s.label + "</extra>"))
    tt = np.linspace(0.0, t_max, 200)
    if kramers_tau is not None and math.isfinite(kramers_tau) and kramers_tau > 0:
        fig.add_trace(go.Scatter(x=_f4(tt), y=_f4(np.exp(-tt / kramers_tau)), mode="lines",
                                 name=f"Kramers (SGD), τ ≈ {kramers_tau:,.0f} steps",
                                 line=dict(color=COLORS["sgd"], dash="dash", width=1.8)))
        for rho, speedup in sorted((sam_speedups or {}).items()):
            if not (math.isfinite(speedup) and speedup > 0):
                continue
            fig.add_trace(go.Scatter(
                x=_f4(tt), y=_f4(np.exp(-tt * speedup / kramers_tau)), mode="lines",
                name=f"heuristic SAM ρ={rho:g} (×{speedup:.2g}, overshoots at large ρ)",
                line=dict(color=sam_shade(rho, sam_rhos or [rho]), dash="dot", width=1.5)))
    fig = _layout(fig, title or "Survival in the sharp minimum",
            "step t (iterations)", "S(t), fraction not yet escaped", height=540)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def escape_histogram_figure(series: Sequence[EscapeSeries], steps: int, bins: int = 30) -> go.Figure:
    """Histogram of first-passage steps of the particles that escaped (one colour per run)."""
    fig = go.Figure()
    sam_rhos = [s.rho for s in series if s.optimizer != "sgd"]
    size = max(1.0, steps / bins)
    for s in series:
        fp = np.asarray(s.first_passage)
        fp = fp[fp >= 0]
        fig.add_trace(go.Histogram(x=fp, name=f"{s.label} ({fp.size} escaped)", opacity=0.85,
                                   marker_color=_series_color(s, sam_rhos),
                                   xbins=dict(start=0, end=steps, size=size)))
    fig.update_layout(barmode="group", bargap=0.15)
    return _layout(fig, "When particles escape", "first-passage step (iterations)",
                   "particles escaping in the bin (count)", height=380)


def escape_table(rows: Sequence[dict]) -> pd.DataFrame:
    """A table of escape statistics. Each row: label, escaped fraction with CI, median and mean
    first-passage step with CIs (None where undefined, e.g. a median when under half escaped)."""
    def ci(v, lo, hi, fmt):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "—"
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            return fmt.format(v)
        return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]"

    out = []
    for r in rows:
        out.append({
            "run": r["label"],
            "escaped fraction [95% CI]": ci(r["escaped_fraction"], *r.get("escaped_fraction_ci", (None, None)),
                                            "{:.1%}"),
            "median escape step [95% CI]": ci(r.get("median"), *r.get("median_ci", (None, None)), "{:,.0f}"),
            "mean escape step (escaped) [95% CI]": ci(r.get("mean"), *r.get("mean_ci", (None, None)), "{:,.0f}"),
            "diverged": r.get("diverged", 0),
        })
    return pd.DataFrame(out)


def rho_sweep_figure(rhos, frac, frac_lo, frac_hi, median, median_lo, median_hi, steps: int,
                     current_rho: float | None = None, heuristic_median: np.ndarray | None = None,
                     sgd: dict | None = None) -> go.Figure:
    """Escaped fraction by step T and median escape step versus ρ, each with a 95% CI band.

    `sgd`, if given, holds the SGD reference (frac, frac_lo, frac_hi, median, …) drawn as a horizontal
    line. `heuristic_median` overlays Kramers' median τ·ln2 divided by the SAM heuristic speed-up.
    A median is missing (NaN) where fewer than half of the particles escaped within T steps.
    """
    rhos = np.asarray(rhos, float)
    sam = COLORS["sam"]
    # Two panels side by side, laid out by hand (what make_subplots(1, 2, horizontal_spacing=0.2)
    # would produce): left axes x/y, right axes x2/y2. make_subplots and add_vline(row=, col=) walk
    # Plotly's validators for every subplot and cost ~25 ms of the ~30 ms this chart took on each rerun.
    left, right = dict(xaxis="x", yaxis="y"), dict(xaxis="x2", yaxis="y2")
    x = np.concatenate([rhos, rhos[::-1]])
    band = np.concatenate([np.asarray(frac_hi, float), np.asarray(frac_lo, float)[::-1]])
    traces = [
        # the 95% CI band of the escaped fraction, drawn once under its line (as _ci_band does)
        go.Scatter(x=x, y=band, mode="lines", fill="toself", fillcolor=sam, opacity=0.18, line=dict(width=0),
                   hoverinfo="skip", name="CI", showlegend=False, **left),
        go.Scatter(x=rhos, y=frac, mode="lines+markers", name="SAM: escaped fraction", line=dict(color=sam), **left),
    ]
    med = np.asarray(median, float)
    err_hi = np.asarray(median_hi, float) - med
    err_lo = med - np.asarray(median_lo, float)
    traces.append(go.Scatter(x=rhos, y=med, mode="lines+markers", name="SAM: median escape step",
                             line=dict(color=sam, dash="solid"), marker=dict(symbol="square"),
                             error_y=dict(type="data", array=np.nan_to_num(err_hi), arrayminus=np.nan_to_num(err_lo),
                                          visible=True), **right))
    shapes = []
    if sgd is not None:
        for ax, key in (("", "frac"), ("2", "median")):
            v = sgd.get(key)
            if v is not None and math.isfinite(v):  # a horizontal line across one panel
                shapes.append(dict(type="line", xref=f"x{ax} domain", x0=0, x1=1, yref=f"y{ax}", y0=v, y1=v,
                                   line=dict(color=COLORS["sgd"], dash="dash")))
        traces.append(go.Scatter(x=[None], y=[None], mode="lines", name="SGD (dashed line)",
                                 line=dict(color=COLORS["sgd"], dash="dash")))
    if heuristic_median is not None:
        traces.append(go.Scatter(x=rhos, y=heuristic_median, mode="lines",
                                 name="Kramers × heuristic SAM speed-up (overshoots at large ρ)",
                                 line=dict(color="gray", dash="dot"), **right))
    if current_rho is not None:
        for ax in ("", "2"):  # a vertical line across each panel
            shapes.append(dict(type="line", xref=f"x{ax}", x0=current_rho, x1=current_rho, yref=f"y{ax} domain",
                               y0=0, y1=1, line=dict(color="black", width=1, dash="dot")))
    rho_title = dict(title=dict(text="SAM radius ρ (parameter units)"))
    title = lambda text, x: dict(text=text, x=x, xref="paper", xanchor="center", y=1.0, yref="paper",
                                 yanchor="bottom", showarrow=False, font=dict(size=16))
    layout = dict(
        xaxis=dict(domain=[0.0, 0.4], anchor="y", **rho_title),
        xaxis2=dict(domain=[0.6, 1.0], anchor="y2", **rho_title),
        yaxis=dict(anchor="x", title=dict(text="fraction escaped"), range=[0, 1.02]),  # left panel
        yaxis2=dict(anchor="x2", title=dict(text="median first-passage step (iterations)")),  # right panel
        annotations=[title(f"escaped by step {steps}", 0.2), title("median escape step", 0.8)], shapes=shapes)
    return _layout(go.Figure(data=traces, layout=layout), "The effect grows with ρ", "", "", height=400)


def zhu_figure(outcomes: dict, sgd_success: float | None = None) -> go.Figure:
    """Zhu et al.'s 2-D toy: where the particles are at step T, versus ρ (from `final_outcomes`).

    'success' = in the flat basin at T; it peaks at an intermediate ρ because a large ρ traps SAM
    near the non-smooth ridge (theory.md §3, "where the claim stops holding"). The other two lines:
    still at the sharp minimum, and neither (bouncing on the sharp walls for a small ρ, trapped near the ridge
    for a large one).
    """
    rhos = np.asarray(outcomes["rhos"], float)
    fig = go.Figure()
    lines = (("stayed", "still at the sharp minimum", COLORS["sgd"], "dash", 2),
             ("trapped", "neither: bouncing or trapped", "gray", "dot", 2),
             ("success", "success: in the flat minimum at T", COLORS["sam"], "solid", 4))
    for key, name, color, dash, width in lines:
        lo, hi = outcomes[key + "_ci"]
        _ci_band(fig, rhos, lo, hi, color, "CI")
        fig.add_trace(go.Scatter(x=rhos, y=outcomes[key], mode="lines+markers", name=name,
                                 line=dict(color=color, dash=dash, width=width), marker=dict(size=8)))
    s = np.asarray(outcomes["success"], float)
    if np.isfinite(s).any():
        i = int(np.nanargmax(s))
        fig.add_trace(go.Scatter(x=[rhos[i]], y=[s[i]], mode="markers+text", text=[f"best ρ = {rhos[i]:g}"],
                                 textposition="middle right", marker=dict(size=16, symbol="star", color="gold",
                                                                          line=dict(color="black", width=1)),
                                 name="peak of success"))
    if sgd_success is not None and math.isfinite(sgd_success):
        fig.add_hline(y=sgd_success, line=dict(color=COLORS["sgd"], dash="dash"))
    fig = _layout(fig, "Final position versus ρ on Zhu et al.'s toy", "SAM radius ρ (parameter units)",
            "fraction of particles at step T", height=440)
    fig.update_yaxes(range=[-0.02, 1.05])
    return fig


# --------------------------------------------------------------------------------------------------
# Escape animation
# --------------------------------------------------------------------------------------------------

def landscape_background(loss: Callable[[np.ndarray], np.ndarray], bounds, dim: int, n: int = 120):
    """Evaluate the loss on a grid for the animation background. `loss` maps (..., dim) → (...)."""
    if dim == 1:
        x = np.linspace(bounds[0][0], bounds[0][1], 4 * n)
        return x, None, np.asarray(loss(x[:, None]), float)
    x = np.linspace(bounds[0][0], bounds[0][1], n)
    y = np.linspace(bounds[1][0], bounds[1][1], n)
    xx, yy = np.meshgrid(x, y)
    z = np.asarray(loss(np.stack([xx, yy], axis=-1)), float)
    return x, y, z


class FramedFigure(go.Figure):
    """A plotly Figure whose animation frames stay plain dicts until it is serialised.

    Why: building 30 frames × 5 traces as validated plotly objects took ~250 ms, most of the page's
    300 ms budget. `to_dict()` (which st.plotly_chart and plotly.io call) adds the frames back, so
    the browser gets an ordinary animated figure. `raw_frames` is the list of frame dicts."""

    def to_dict(self):
        out = super().to_dict()
        out["frames"] = list(getattr(self, "_raw_frames", []))
        return out

    @property
    def raw_frames(self) -> list[dict]:
        return list(getattr(self, "_raw_frames", []))


@dataclass(frozen=True)
class AnimatedRun:
    """What the escape animation needs from one run: trajectories of a few particles (P, K, dim) at
    the recorded steps (K,), and every particle's first-passage step and escape position."""

    label: str
    color: str
    steps_recorded: np.ndarray
    paths: np.ndarray
    first_passage: np.ndarray
    escape_position: np.ndarray


def escape_animation(background, dim: int, runs: Sequence[AnimatedRun], loss_1d: Callable | None = None,
                     n_frames: int = 30, max_markers: int = 150, title: str | None = None,
                     bounds=None, animate: bool = True) -> go.Figure:
    """Particles moving in the landscape, with a cross at each escape position from its first-passage
    step on. Plotly frames, so play / pause / the scrubber run in the browser.

    1-D: particles are drawn on the loss curve (x = w, y = L(w)); 2-D: on the shaded loss.
    `animate=False` draws only the last step (no frames, no play controls): the same picture, at a
    fraction of the browser's drawing work (see `landscape_shading`), for pages redrawn on every ρ change.
    """
    x, y, z = background
    fig = FramedFigure()
    if dim == 1:
        fig.add_trace(go.Scatter(x=_f4(x), y=_f4(z), mode="lines", line=dict(color="black", width=1.5),
                                 name="loss L(w)", hoverinfo="skip", showlegend=False))
    else:
        fig.add_trace(landscape_shading(x, y, z))
    K = len(runs[0].steps_recorded) if runs else 1
    frame_idx = np.unique(np.linspace(0, K - 1, min(n_frames, K)).round().astype(int))

    def coords(pos):
        """Positions (M, dim) → plot (x, y). In 1-D, y is the loss at w."""
        pos = np.asarray(pos, float)
        if dim == 1:
            w = pos[:, 0]
            ly = np.asarray(loss_1d(w[:, None]), float) if loss_1d is not None else np.zeros_like(w)
            return w, ly
        return pos[:, 0], pos[:, 1]

    def frame_traces(k):
        """The traces of one frame as plain dicts: building ~30 × 4 validated plotly objects took
        ~300 ms, over the page's whole time budget; the dicts are checked once, with the figure."""
        step = runs[0].steps_recorded[k] if runs else 0
        out = []
        for r in runs:
            px, py = coords(r.paths[:, k, :])
            out.append(dict(type="scatter", x=_f4(px), y=_f4(py), mode="markers", name=f"{r.label}: particles",
                            marker=dict(color=r.color, size=7, opacity=0.75, line=dict(width=0.5, color="white"))))
        for r in runs:
            fp = np.asarray(r.first_passage)[:max_markers]
            ep = np.asarray(r.escape_position)[:max_markers]
            hit = (fp >= 0) & (fp <= step)
            ex, ey = coords(ep[hit]) if hit.any() else (np.array([]), np.array([]))
            out.append(dict(type="scatter", x=_f4(ex), y=_f4(ey), mode="markers",
                            # counts only the particles that get a cross (the first max_markers)
                            name=f"{r.label}: {int(hit.sum())} escapes ({len(fp)} marked)",
                            marker=dict(color=r.color, size=10, symbol="x-thin", line=dict(width=2.5, color=r.color))))
        return out, step

    # The figure opens on the LAST frame (all escapes marked), so the chart says something before
    # anyone presses play; play restarts from step 0.
    first, _ = frame_traces(frame_idx[-1])
    for tr in first:
        fig.add_trace(go.Scatter(**{k: v for k, v in tr.items() if k != "type"}))
    # Each frame restates trace 0 (the background) as an empty trace of its type: plotly.js merges it
    # and keeps the landscape. (With only traces 1… in the frames the background vanished on play.)
    keep = dict(type="scatter" if dim == 1 else "heatmap")
    frames, slider_steps = [], []
    for k in frame_idx if animate else ():
        trs, step = frame_traces(k)
        name = str(int(step))
        # Frame coordinates as float32 typed arrays (base64), like the figure's own data: about a
        # quarter of the bytes of JSON number lists, for 30 frames re-sent on every rerun.
        trs = [t | dict(x=typed_array(t["x"]), y=typed_array(t["y"])) for t in trs]
        frames.append(dict(data=[keep, *trs], traces=list(range(1 + len(trs))), name=name))
        slider_steps.append(dict(method="animate", label=name,
                                 args=[[name], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                    transition=dict(duration=0))]))
    if dim == 1:
        fig = _layout(fig, title or "Particles leaving the sharp minimum", "w (parameter units)", "loss L(w)", 500,
                legend_below=False)
        finite = z[np.isfinite(z)]
        if finite.size:  # the walls far out can be tall: show the wells, cut the walls at the 80th percentile
            top = float(np.quantile(finite, 0.8))
            pad = 0.1 * (top - finite.min() + 1e-9)
            fig.update_yaxes(range=[finite.min() - pad, top + pad])
    else:
        fig = _layout(fig, title or "Particles leaving the sharp minimum", "w₁ (parameter units)",
                "w₂ (parameter units)", 540, legend_below=False)
        fig.update_xaxes(range=[x[0], x[-1]])
        fig.update_yaxes(range=[y[0], y[-1]])
    # legend above the plot (room for 3 rows in a narrow column), the title pinned to the top edge
    k = text_scale()  # presentation mode enlarges the text, so the axis title sits lower
    top, bottom = round(175 * k), round((150 if animate else 60) * k)
    fig.update_layout(legend=dict(orientation="h", x=0.0, y=1.02, yanchor="bottom"),
                      margin=dict(t=top, b=bottom),
                      title=dict(y=0.93, yref="container", yanchor="top"))  # below the mode bar
    if animate:  # play / pause below the plot, and the step slider (scrubber) next to them
        # Placed in pixels below the x-axis title (~50 px), turned into fractions of the plot's height: a fixed
        # fraction put the buttons on the axis title of the shorter 1-D chart.
        plot_h = max(100, fig.layout.height - top - bottom)
        below = -62 * k / plot_h
        controls = dict(
            updatemenus=[dict(type="buttons", showactive=False, x=0.0, y=below, xanchor="left", yanchor="top",
                              direction="left", buttons=[
                                  dict(label="▶ play", method="animate",
                                       args=[None, dict(frame=dict(duration=150, redraw=True), fromcurrent=False,
                                                        transition=dict(duration=0))]),
                                  dict(label="❚❚ pause", method="animate",
                                       args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False),
                                                          transition=dict(duration=0))])])],
            sliders=[dict(active=len(slider_steps) - 1, steps=slider_steps, x=0.2, len=0.8,
                          y=below + 0.04 * 235 / plot_h, yanchor="top",
                          currentvalue=dict(prefix="step ", visible=True, xanchor="right"))],  # clear of the buttons
        )
        fig.update_layout(controls)
        fig._raw_frames = frames
    return fig


# Banded grey scale for the loss: eight flat steps, light (low loss) to dark (high). The steps read as
# filled contour bands, and a heatmap drawn with zsmooth="fast" is one small image the browser scales,
# while a go.Contour (marching squares plus a smoothed fill) cost ~150 ms of drawing per redraw in
# each student's browser.
_BANDS = 8


def _banded_greys(n: int = _BANDS, lo: float = 0.97, hi: float = 0.55) -> list:
    scale = []
    for i in range(n):
        level = round(255 * (lo + (hi - lo) * i / (n - 1)))
        color = f"rgb({level},{level},{level})"
        scale += [[i / n, color], [(i + 1) / n, color]]
    return scale


def landscape_shading(x, y, z) -> go.Heatmap:
    """The loss on a grid as a banded grey heatmap (clipped at its 90th percentile, so the tall walls
    do not wash out the wells)."""
    zc = np.clip(z, np.nanmin(z), np.nanpercentile(z, 90))
    return go.Heatmap(x=_f4(x), y=_f4(y), z=_f4(zc), colorscale=_banded_greys(), showscale=False, zsmooth="fast",
                      name="loss L(w)", hoverinfo="skip")


# --------------------------------------------------------------------------------------------------
# Asymmetric-valley lab
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Occupancy:
    """Where one run's particles spent their time: histogram over axis-0 (counts per bin), its edges,
    and the time-averaged mean position."""

    optimizer: str
    rho: float
    counts: np.ndarray
    edges: np.ndarray
    mean: float

    @property
    def label(self) -> str:
        return "SGD" if self.optimizer == "sgd" else f"SAM ρ={self.rho:g}"

    def density(self) -> np.ndarray:
        c = np.asarray(self.counts, float)
        widths = np.diff(self.edges)
        total = c.sum()
        return c / (total * widths) if total > 0 else c


@dataclass(frozen=True)
class DensityCurve:
    """A theory density p(w) on a grid (closed form or exact chain), with its mean."""

    name: str
    optimizer: str
    rho: float
    w: np.ndarray
    p: np.ndarray
    mean: float | None = None


def occupancy_figure(occ: Sequence[Occupancy], curves: Sequence[DensityCurve] = (), title: str | None = None,
                     x_label: str = "w (parameter units; sharp side w < 0, flat side w > 0)") -> go.Figure:
    """Histograms (as densities) of where SGD and SAM particles spend their time, means marked as
    vertical lines, with theory densities (closed form for SGD, exact chain for SGD and SAM) overlaid."""
    fig = go.Figure()
    sam_rhos = [o.rho for o in occ if o.optimizer != "sgd"] + [c.rho for c in curves if c.optimizer != "sgd"]
    col = lambda opt, rho: COLORS["sgd"] if opt == "sgd" else sam_shade(rho, sorted(set(sam_rhos)) or [rho])
    for o in occ:
        centers = 0.5 * (o.edges[1:] + o.edges[:-1])
        fig.add_trace(go.Bar(x=_f4(centers), y=_f4(o.density()), width=_f4(np.diff(o.edges)),
                             name=f"{o.label}: time spent", marker_color=col(o.optimizer, o.rho), opacity=0.45,
                             marker_line_width=0))
    for c in curves:
        dash = "dash" if "closed" in c.name else "solid"
        fig.add_trace(go.Scatter(x=_f4(c.w), y=_f4(c.p), mode="lines", name=c.name,
                                 line=dict(color=col(c.optimizer, c.rho), dash=dash, width=2)))
    ymax = max([float(np.max(o.density())) for o in occ if len(o.counts)] + [1e-9])
    for o in occ:
        if o.mean is not None and math.isfinite(o.mean):
            fig.add_trace(go.Scatter(x=[o.mean, o.mean], y=[0, 1.1 * ymax], mode="lines",
                                     line=dict(color=col(o.optimizer, o.rho), width=3),
                                     name=f"{o.label}: mean position {o.mean:+.3f}"))
    # Show where the mass is: the bins holding all but the outer 0.1% on each side, padded.
    xs = np.concatenate([0.5 * (o.edges[1:] + o.edges[:-1]) for o in occ]) if occ else np.zeros(0)
    ws = np.concatenate([np.asarray(o.counts, float) for o in occ]) if occ else np.zeros(0)
    if ws.sum() > 0:
        order = np.argsort(xs)
        cdf = np.cumsum(ws[order]) / ws.sum()
        lo, hi = xs[order][np.searchsorted(cdf, 0.001)], xs[order][min(np.searchsorted(cdf, 0.999), cdf.size - 1)]
        pad = 0.25 * (hi - lo) + 1e-3
        fig.update_xaxes(range=[lo - pad, hi + pad])
    fig.add_vline(x=0.0, line=dict(color="black", width=1, dash="dot"))
    fig.update_layout(barmode="overlay", bargap=0)
    fig = _layout(fig, title or "Where the particles spend their time", x_label, "density (1 / parameter unit)", 440)
    return fig


def drift_figure(rhos, sim_mean, sim_lo, sim_hi, chain_rhos=None, chain_mean=None, cycle_rhos=None,
                 cycle_mean=None, closed_form_sgd: float | None = None, current_rho: float | None = None,
                 free_rhos=None, free_mean=None) -> go.Figure:
    """Mean position versus ρ: simulation with 95% CIs, the exact chain curve, the noise-free SAM
    2-cycle mean ρ(a_L − a_R)/(a_L + a_R − η a_L a_R) where that cycle exists, the simulated
    noise-free SAM mean (`free_*`: the time average of one noise-free particle, whatever cycle it
    settles on) and SGD's closed form (at ρ = 0)."""
    fig = go.Figure()
    rhos = np.asarray(rhos, float)
    m = np.asarray(sim_mean, float)
    fig.add_trace(go.Scatter(x=rhos, y=m, mode="markers", name="simulation (95% CI)",
                             marker=dict(color=COLORS["sam"], size=9),
                             error_y=dict(type="data", array=np.nan_to_num(np.asarray(sim_hi, float) - m),
                                          arrayminus=np.nan_to_num(m - np.asarray(sim_lo, float)), visible=True)))
    if chain_mean is not None:
        fig.add_trace(go.Scatter(x=chain_rhos, y=chain_mean, mode="lines", name="exact chain",
                                 line=dict(color="black", width=2)))
    if cycle_mean is not None:
        fig.add_trace(go.Scatter(x=cycle_rhos, y=cycle_mean, mode="lines", name="noise-free SAM 2-cycle mean",
                                 line=dict(color="gray", dash="dot", width=2)))
    if free_mean is not None:
        fig.add_trace(go.Scatter(x=free_rhos, y=free_mean, mode="lines", name="noise-free SAM (simulated cycle mean)",
                                 line=dict(color="gray", dash="dashdot", width=2)))
    if closed_form_sgd is not None and math.isfinite(closed_form_sgd):
        fig.add_trace(go.Scatter(x=[0.0], y=[closed_form_sgd], mode="markers", name="closed form (SGD)",
                                 marker=dict(symbol="diamond-open", size=14, color=COLORS["sgd"],
                                             line=dict(width=2))))
    if current_rho is not None:
        fig.add_vline(x=current_rho, line=dict(color="black", width=1, dash="dot"))
    fig.add_hline(y=0.0, line=dict(color="black", width=1))
    return _layout(fig, "Drift to the flat side grows with ρ", "SAM radius ρ (parameter units)",
                   "mean position E[w]", 420)  # short: a long title ran into the chart title on a projector


def shifted_loss_figure(w: np.ndarray, loss: np.ndarray, loss_shifted: np.ndarray, delta: float,
                        points: Sequence[tuple[str, str, float, float, float]],
                        x_range: tuple[float, float] | None = None) -> go.Figure:
    """Training loss L(w) and the 'test' loss L(w − δ): the same valley moved by δ.

    points: (label, colour, position, train loss, test loss) for each solution; the vertical segment
    between the two losses is what each solution loses when the landscape shifts.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=_f4(w), y=_f4(loss), mode="lines", name="training loss L(w)",
                             line=dict(color="black", width=2)))
    fig.add_trace(go.Scatter(x=_f4(w), y=_f4(loss_shifted), mode="lines", name=f"test loss L(w − δ), δ = {delta:+.2f}",
                             line=dict(color="gray", width=2, dash="dash")))
    for label, color, pos, tr, te in points:
        fig.add_trace(go.Scatter(x=[pos, pos], y=[tr, te], mode="lines+markers",
                                 name=f"{label} at w={pos:+.3f}: test loss {te:.3f} (+{te - tr:.3f})",
                                 line=dict(color=color, width=3), marker=dict(size=[8, 12], symbol=["circle", "x"])))
    fig = _layout(fig, "Training loss and shifted test loss", "w (parameter units)", "loss", 440)
    if x_range is not None:
        fig.update_xaxes(range=list(x_range))
    if points:  # zoom on the solutions: the losses that matter are small next to the steep wall
        top = max(max(p[4] for p in points), max(p[3] for p in points), 0.02)
        fig.update_yaxes(range=[-0.05 * top, 2.5 * top])
    return fig


def frame_count(fig: go.Figure) -> int:
    """Number of animation frames (for tests and the UI)."""
    return len(fig.to_dict().get("frames") or ())


# --------------------------------------------------------------------------------------------------
# Small adapters between core objects and the figures (no simulation here)
# --------------------------------------------------------------------------------------------------

def numpy_loss(land) -> Callable[[np.ndarray], np.ndarray]:
    """A landscape's loss as a numpy function (..., dim) → (...), for drawing backgrounds."""
    import torch

    def f(a):
        with torch.no_grad():
            return land.loss(torch.as_tensor(np.asarray(a, float), dtype=torch.float64)).numpy()

    return f
