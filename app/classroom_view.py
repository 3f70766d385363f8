"""Figures of the class experiment (pages/classroom.py): the pooled chart, the QR code of the join link, and the
text lines the projector shows. Built from serve.classroom's result objects; no Streamlit calls here."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import plotly.graph_objects as go

from app import theme
from serve.classroom import Pooled

ROOT = Path(__file__).resolve().parents[1]


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def pooled_figure(pooled: Pooled, mine: list[tuple[int, float]] | None = None, *, height: int = 420,
                  present: bool | None = None, empty_text: str = "waiting for the first run…") -> go.Figure:
    """The class's pooled estimate per setting with its 95% interval (error bars that narrow as runs arrive), the
    theory curve beside it (dashed), and, on a student's screen, that student's own runs (stars)."""
    return with_mine(class_figure(pooled, height=height, present=present, empty_text=empty_text), pooled, mine)


def class_figure(pooled: Pooled, *, height: int = 420, present: bool | None = None,
                 empty_text: str = "waiting for the first run…") -> go.Figure:
    """The chart every screen shares: pooled points with intervals and the theory (no student's stars)."""
    exp = pooled.experiment
    numeric = exp.varies_rho
    xs = [float(p.value) if numeric else p.label for p in pooled.points]
    have = [p for p in pooled.points if _finite(p.estimate)]
    fig = go.Figure()
    if have:
        x = [float(p.value) if numeric else p.label for p in have]
        y = [p.estimate for p in have]
        up = [(p.hi - p.estimate) if _finite(p.hi) else 0.0 for p in have]
        down = [(p.estimate - p.lo) if _finite(p.lo) else 0.0 for p in have]
        unit = "runs" if exp.kind == "cifar" else "particles"
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers" if numeric else "markers", name="class, pooled (95% CI)",
            line={"color": theme.COLORS["sam"], "width": 3}, marker={"size": 12, "color": theme.COLORS["sam"]},
            error_y={"type": "data", "array": up, "arrayminus": down, "thickness": 2.5, "width": 8},
            customdata=[[p.runs, p.n] for p in have],
            hovertemplate="%{x}: %{y:.3f}<br>%{customdata[0]} runs, %{customdata[1]} " + unit + "<extra></extra>"))
    if pooled.theory is not None:
        tx = [x for x, t in zip(xs, pooled.theory) if _finite(t)]
        ty = [t for t in pooled.theory if _finite(t)]
        if ty:
            fig.add_trace(go.Scatter(x=tx, y=ty, mode="lines+markers" if numeric else "markers",
                                     name=pooled.theory_label or "theory",
                                     line={"color": theme.COLORS["sgd"], "dash": "dash", "width": 2},
                                     marker={"symbol": "diamond-open", "size": 10, "color": theme.COLORS["sgd"]}))
    if not have:
        fig.add_annotation(text=empty_text, showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font={"size": 20, "color": "#777777"})
    if exp.kind in ("escape", "psam"):
        fig.update_yaxes(range=[-0.02, 1.02])
    if not numeric:
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs)
    else:
        fig.update_xaxes(range=[min(xs) - 0.02, max(xs) + 0.02] if xs else None)
    return theme.apply_layout(fig, title=None, x_title=exp.x_title, y_title=exp.metric, height=height,
                              present=present, legend_below=True)


def _xs(pooled: Pooled) -> list:
    return [float(p.value) if pooled.experiment.varies_rho else p.label for p in pooled.points]


def with_mine(base: go.Figure, pooled: Pooled, mine: list[tuple[int, float]] | None) -> go.Figure:
    """`base` (the shared class chart, left untouched) plus one student's runs as stars. The new figure is assembled
    from base's JSON without re-validating it (plotly's `_validate=False`): base is valid already and the star
    trace is a literal, so this costs ~1 ms where building the chart again cost ~10 ms, for each of 300 phones."""
    if not mine:
        return base
    xs = _xs(pooled)
    points = [(xs[s], v) for s, v in mine if 0 <= s < len(xs)]
    star = {"type": "scatter", "x": [x for x, _ in points], "y": [y for _, y in points], "mode": "markers",
            "name": "your run" + ("s" if len(points) > 1 else ""),
            "marker": {"symbol": "star", "size": 20, "color": "#111111", "line": {"width": 1.5, "color": "#ffd400"}}}
    spec = base.to_plotly_json()
    return go.Figure({"data": [*spec["data"], star], "layout": spec["layout"]}, _validate=False)


def count_line(pooled: Pooled) -> str:
    """“12 runs from 9 students”: what the projector shows under the chart (tests read it)."""
    r, s = pooled.runs, pooled.students
    return f"{r} run{'' if r == 1 else 's'} from {s} student{'' if s == 1 else 's'}"


def qr_png(url: str, scale: int = 8) -> bytes:
    """The join link as a QR code (segno; error correction M survives a glare spot on the projector)."""
    import segno

    buf = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()


def time_left(expires: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    left = expires - now
    if left <= 0:
        return "expired"
    minutes = int(left // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min left" if minutes >= 60 else f"{max(minutes, 0)} min left"


def spaced(code: str) -> str:
    """ABCD EFGH: easier to read off a wall and type on a phone."""
    return f"{code[:4]} {code[4:]}"


def class_link(kind: str, container=None, **settings) -> None:
    """The entry point on a lab: a link to the class experiment page with this page's current settings in the URL
    (the classroom page clamps them into the class limits). Falls back to a plain link where the page runs on its
    own (AppTest of a single page: no navigation to resolve the page in)."""
    import streamlit as st

    box = container if container is not None else st
    params = {"kind": kind} | {k: (f"{v:g}" if isinstance(v, float) else str(v)) for k, v in settings.items()}
    label = "Run this as a class experiment (room code + QR for the students)"
    try:
        box.page_link(str(ROOT / "pages" / "classroom.py"), label=label, icon=":material/groups:", query_params=params)
    except Exception:  # StreamlitPageNotFoundError and kin: no st.navigation in this run
        from urllib.parse import urlencode

        box.markdown(f":material/groups: [{label}](classroom?{urlencode(params)})")
