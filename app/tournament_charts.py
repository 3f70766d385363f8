"""Charts and tables of the Budget tournament page, built with Altair from the tournament results.

Data (plain dicts, as recorded in data/runs/):
* the toy tournament, core.toy.tournament.TournamentResult.to_dict(), one per landscape and budget
  (data/runs/toy_tournament.json: double_well_2d and valley at 55 … 75%);
* the CIFAR tournament, core.cifar.tournament.TournamentResult.to_dict() inside a record (data/runs/cpu_tournament*.json).

`outcome_frame` turns them into one long table, one row per (panel, method): cost (share of SAM's gradient
evaluations, in %), outcome, its interval, whether the method is on the panel's Pareto front. `tournament_chart`
draws every panel of it as cost against outcome, the front as a dashed step line with ringed points, and ONE
selection shared by all panels (`alt.selection_point(fields=["method"], bind="legend")`): clicking a method in the
legend, or a point, highlights that method in every panel and fades the others. `verdict_table` says, per method,
how it compares with SAM and with SGD on each outcome, by Welch's t over the seeds (core.stats.welch_difference),
as the CIFAR page's recorded verdicts do: a difference inside the seeds' noise is called so.
"""

from __future__ import annotations

import math
import warnings

import altair as alt
import numpy as np
import pandas as pd

from app import theme
from core.stats import welch_difference
from core.toy.tournament import pareto_front

# panel key → (title, y-axis title, better: "higher" | "lower", number format)
PANELS = {
    "escape": ("Escape (toy double well): escaped fraction", "escaped fraction", "higher", ".3f"),
    "valley": ("Drift (toy valley): mean position, flat side > 0", "mean position", "higher", ".4f"),
    "accuracy": ("CIFAR-10 (recorded): test accuracy", "test accuracy (%)", "higher", ".2f"),
    "lambda": ("CIFAR-10 (recorded): sharpness λ_max", "λ_max (lower is flatter)", "lower", ".1f"),
}
SELECTION = "method_pick"


def toy_at(results: list[dict], landscape: str, budget: float) -> dict | None:
    """The recorded toy tournament on `landscape` whose budget is nearest to `budget` (None if none)."""
    runs = [r for r in results if isinstance(r, dict) and r.get("landscape") == landscape and r.get("methods")]
    if not runs:
        return None
    return min(runs, key=lambda r: abs(float(r.get("budget", 0)) - budget))


def _toy_rows(res: dict, panel: str) -> list[dict]:
    rows = []
    for m in res["methods"]:
        lo, hi = (m.get("ci") or [None, None])[:2]
        rows.append(dict(panel=panel, key=m["name"], method=theme.label(m["name"]), detail=m.get("label", ""),
                         cost=100 * m["budget_ratio"], outcome=m["outcome"], lo=lo, hi=hi,
                         pareto=m["name"] in res.get("pareto", []), source=m.get("source", ""),
                         per_seed=m.get("per_seed") or []))
    return rows


def _cifar_rows(results: dict) -> list[dict]:
    rows = []
    methods = results.get("methods", [])
    for m in methods:
        lo, hi = (m.get("outcome_ci") or [None, None])[:2]
        rows.append(dict(panel="accuracy", key=m["name"], method=theme.label(m["name"]), detail=m.get("label", ""),
                         cost=100 * m["budget_ratio"], outcome=_pct(m.get("test_acc_mean")), lo=_pct(lo), hi=_pct(hi),
                         pareto=m["name"] in results.get("pareto", []), source=f"{m.get('seeds')} seeds, t interval",
                         per_seed=[100 * a for a in m.get("per_seed") or []]))
    lam = [m.get("lambda_max_mean") for m in methods]
    lam_ok = [x if x is not None else math.nan for x in lam]
    front = set(pareto_front([m["budget_ratio"] for m in methods], [-x for x in lam_ok]))  # lower λ is better
    for i, m in enumerate(methods):
        mu, sd = m.get("lambda_max_mean"), m.get("lambda_max_std")
        if mu is None:
            continue
        sd = sd or 0.0
        rows.append(dict(panel="lambda", key=m["name"], method=theme.label(m["name"]), detail=m.get("label", ""),
                         cost=100 * m["budget_ratio"], outcome=mu, lo=mu - sd, hi=mu + sd, pareto=i in front,
                         source=f"{m.get('seeds')} seeds, ± 1 std", per_seed=m.get("lambda_per_seed") or []))
    return rows


def _pct(x):
    return None if x is None else 100 * x


def outcome_frame(escape: dict | None, valley: dict | None, cifar: dict | None) -> pd.DataFrame:
    """One row per (panel, method); panels without data are left out."""
    rows = []
    if escape:
        rows += _toy_rows(escape, "escape")
    if valley:
        rows += _toy_rows(valley, "valley")
    if cifar:
        rows += _cifar_rows(cifar)
    return pd.DataFrame(rows, columns=["panel", "key", "method", "detail", "cost", "outcome", "lo", "hi", "pareto",
                                       "source", "per_seed"])


def _panel(frame: pd.DataFrame, panel: str, color: alt.Color, sel, width: int, height: int) -> alt.LayerChart:
    title, y_title, better, fmt = PANELS[panel]
    data = frame[frame["panel"] == panel].drop(columns=["per_seed"]).sort_values("cost")
    base = alt.Chart(data).encode(x=alt.X("cost:Q", title="cost: % of SAM's gradient evaluations",
                                          scale=alt.Scale(zero=False, padding=12)))
    y = alt.Y("outcome:Q", title=y_title, scale=alt.Scale(zero=False, padding=10))
    faded = alt.condition(sel, alt.value(1.0), alt.value(0.15))
    tooltip = [alt.Tooltip("method:N"), alt.Tooltip("detail:N", title="settings"),
               alt.Tooltip("cost:Q", format=".1f", title="cost (% of SAM)"),
               alt.Tooltip("outcome:Q", format=fmt, title=y_title), alt.Tooltip("lo:Q", format=fmt, title="low"),
               alt.Tooltip("hi:Q", format=fmt, title="high"), alt.Tooltip("pareto:N", title="on the Pareto front"),
               alt.Tooltip("source:N")]
    # the Pareto front: the methods no other beats on both cost and outcome, joined in order of cost
    front = base.transform_filter(alt.datum.pareto).mark_line(
        interpolate="step-after" if better == "higher" else "step-before", strokeDash=[5, 4], color="#555555",
        strokeWidth=1.5).encode(y=y)
    bars = base.mark_rule(strokeWidth=2).encode(y=alt.Y("lo:Q", title=y_title), y2="hi:Q", color=color,
                                                opacity=faded)
    points = base.mark_circle(size=130).encode(y=y, color=color, opacity=faded, tooltip=tooltip).add_params(sel)
    rings = base.transform_filter(alt.datum.pareto).mark_point(size=420, shape="circle", filled=False,
                                                                 color="#222222", strokeWidth=1.5).encode(y=y)
    return alt.layer(front, bars, points, rings).properties(
        title=alt.TitleParams(title, anchor="start"), width=width, height=height)


def tournament_chart(frame: pd.DataFrame, *, phone: bool = False, present: bool = False) -> alt.ConcatChart:
    """Every panel of `frame` as cost against outcome, with one legend-bound method selection shared by all."""
    keys = list(dict.fromkeys(frame["key"]))
    names = [theme.label(k) for k in keys]
    sel = alt.selection_point(fields=["method"], bind="legend", name=SELECTION)
    color = alt.Color("method:N", scale=alt.Scale(domain=names, range=[theme.color(k) for k in keys]),
                      legend=alt.Legend(title="method (click to highlight)", orient="bottom", direction="horizontal",
                                        columns=2 if phone else 4, symbolSize=160))
    panels = [p for p in PANELS if (frame["panel"] == p).any()]
    width, height = (300, 230) if phone else (370, 260)  # two panels a row fit the page's 880 px beside the sidebar
    with warnings.catch_warnings():  # one selection in every panel is what we want: Altair merges it, and says so
        warnings.simplefilter("ignore", UserWarning)
        chart = alt.concat(*[_panel(frame, p, color, sel, width, height) for p in panels],
                           columns=1 if phone else 2)
    size = theme.font_size(present)
    return (chart.configure_axis(labelFontSize=size - 2, titleFontSize=size)
                 .configure_legend(labelFontSize=size - 1, titleFontSize=size, labelLimit=220)
                 .configure_title(fontSize=size + 1)
                 .configure_view(strokeWidth=0))


def trigger_map_chart(maps: dict, *, phone: bool = False, present: bool = False) -> alt.ConcatChart | None:
    """AE-SAM's and PSAM's trigger maps on the 2-D double well: in each cell of w, the share of the steps taken
    there that were SAM steps (cells visited fewer than 20 times are left blank)."""
    panels = []
    for key in ("ae_sam", "psam"):
        m = maps.get(key) if maps else None
        if not m or len(m.get("edges", [])) != 2:
            continue
        ex, ey = (np.asarray(e, dtype=float) for e in m["edges"])
        sam, visits = np.asarray(m["sam"], dtype=float), np.asarray(m["all"], dtype=float)
        while visits.shape[0] > 24 and visits.shape[0] % 2 == 0 and visits.shape[1] % 2 == 0:
            # 2 × 2 cells into one: a quarter of the rectangles for the browser to draw on every redraw
            sam, visits = (a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).sum(axis=(1, 3)) for a in (sam, visits))
            ex, ey = ex[::2], ey[::2]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = sam / visits
        ix, iy = np.nonzero(visits >= 20)
        df = pd.DataFrame(dict(x=ex[ix], x2=ex[ix + 1], y=ey[iy], y2=ey[iy + 1], rate=rate[ix, iy],
                               visits=visits[ix, iy]))
        panels.append(alt.Chart(df).mark_rect().encode(
            x=alt.X("x:Q", title="w₁", scale=alt.Scale(zero=False)), x2="x2:Q",
            y=alt.Y("y:Q", title="w₂", scale=alt.Scale(zero=False)), y2="y2:Q",
            color=alt.Color("rate:Q", title="SAM share", scale=alt.Scale(scheme="viridis", domain=[0, 1])),
            tooltip=[alt.Tooltip("rate:Q", format=".2f", title="SAM share"), alt.Tooltip("visits:Q", title="steps")],
        ).properties(title=f"{theme.label(key)}: where its SAM steps fall", width=300 if phone else 340,
                     height=220 if phone else 260))
    if not panels:
        return None
    size = theme.font_size(present)
    return (alt.concat(*panels, columns=1 if phone else 2)
            .configure_axis(labelFontSize=size - 2, titleFontSize=size).configure_title(fontSize=size + 1)
            .configure_legend(labelFontSize=size - 1, titleFontSize=size).configure_view(strokeWidth=0))


def _say(a, b, nd: int) -> str:
    d = welch_difference(a, b)
    if d is None:
        return "too few seeds"
    signed = f"{round(d.diff, nd) + 0.0:+.{nd}f}".replace("-", "−")
    t = "∞" if math.isinf(d.t) else f"{d.t:+.1f}".replace("-", "−")
    return f"{signed} (t {t}, df {d.df:.1f}): {'clear' if d.clear else 'within noise'}"


def verdict_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method and panel: the difference from SAM and from SGD, Welch's t over the per-seed values and whether
    it is clear of the seeds' noise (two-sided 5%). Escape and valley compare the simulation's per-seed values
    (3 seeds: only large differences can be clear); CIFAR the per-seed test accuracies (points) and λ_max."""
    nd = {"escape": 3, "valley": 4, "accuracy": 2, "lambda": 1}
    rows = []
    for key in dict.fromkeys(frame["key"]):
        if key in ("sam",):
            continue
        row = {"method": theme.label(key)}
        for panel in PANELS:
            sub = frame[frame["panel"] == panel]
            me = sub[sub["key"] == key]
            if me.empty:
                continue
            for ref in ("sam", "sgd"):
                other = sub[sub["key"] == ref]
                if ref == key or other.empty:
                    continue
                row[f"{panel} vs {theme.label(ref)}"] = _say(me["per_seed"].iloc[0], other["per_seed"].iloc[0],
                                                            nd[panel])
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_summary(frame: pd.DataFrame, panel: str) -> str:
    """One sentence on a panel: the Pareto front, and which methods are clearly below SAM (Welch, 5%)."""
    sub = frame[frame["panel"] == panel]
    if sub.empty:
        return ""
    sam = sub[sub["key"] == "sam"]
    front = ", ".join(sub[sub["pareto"]].sort_values("cost")["method"])
    text = f"Pareto front: {front}."
    if not sam.empty:
        better = PANELS[panel][2]
        level, clear_worse, clear_better = [], [], []
        for _, r in sub.iterrows():
            if r["key"] == "sam":
                continue
            d = welch_difference(r["per_seed"], sam["per_seed"].iloc[0])
            if d is None:
                continue
            worse = d.diff < 0 if better == "higher" else d.diff > 0
            (clear_worse if d.clear and worse else clear_better if d.clear else level).append(r["method"])
        if level:
            text += f" Not distinguishable from SAM with these seeds: {', '.join(level)}."
        if clear_worse:
            text += f" Clearly behind SAM: {', '.join(clear_worse)}."
        if clear_better:
            text += f" Clearly ahead of SAM: {', '.join(clear_better)}."
    return text
