"""Charts and tables of the Budget tournament page, built with Altair from the tournament results.

Data (plain dicts, as recorded in data/runs/):
* the toy tournament, core.toy.tournament.TournamentResult.to_dict(), one per landscape and budget
  (data/runs/toy_tournament.json: double_well_2d and valley at 55 … 75%);
* the CIFAR tournament, core.cifar.tournament.TournamentResult.to_dict() inside a record
  (data/runs/cpu_tournament*.json; a series of records, one per budget, moves with the budget slider).

`outcome_frame` turns them into one long table, one row per (panel, method): cost (share of SAM's gradient
evaluations, in %), outcome, its interval, whether the method is on the panel's Pareto front, the per-seed
values and their seed ids. `tournament_chart` draws every panel as cost against outcome: each method with its
own colour AND marker (core.methods: the registry's look, so twelve methods stay apart in greyscale and on a
projector), the Pareto front as a thick dashed step line with ringed, directly labelled points, and ONE
selection shared by all panels (`alt.selection_point(fields=["method"], bind="legend")`). The verdicts are
paired: every method ran on the same seeds, so `paired_tests` compares per-seed differences
(core.stats.paired_difference) with Holm's correction across the methods of a panel (core.stats.holm);
`gain_table` gives the share of SAM's gain over SGD that each method keeps with Fieller's paired interval
(core.stats.fieller_ratio); `tuning_table` says how each was tuned.
"""

from __future__ import annotations

import math
import warnings

import altair as alt
import numpy as np
import pandas as pd

from app import theme
from core.stats import fieller_ratio, holm, paired_difference
from core.toy.tournament import pareto_front

# panel key → (title, y-axis title, better: "higher" | "lower", number format)
PANELS = {
    "escape": ("Escape (toy double well): escaped fraction", "escaped fraction", "higher", ".3f"),
    "valley": ("Drift (toy valley): mean position, flat side > 0", "mean position", "higher", ".4f"),
    "accuracy": ("CIFAR-10 (recorded): test accuracy", "test accuracy (%)", "higher", ".2f"),
    "lambda": ("CIFAR-10 (recorded): sharpness λ_max", "λ_max (lower is flatter)", "lower", ".1f"),
}
SELECTION = "method_pick"
ALPHA = 0.05

# The registry's markers are Plotly symbols; Vega-Lite draws these natively, the others as SVG paths (unit
# square)
_VEGA_NATIVE = {"circle", "square", "cross", "diamond", "triangle-up", "triangle-down", "triangle-right",
                "triangle-left"}
_VEGA_PATHS = {
    "x": "M-1,-0.6L-0.6,-1L0,-0.4L0.6,-1L1,-0.6L0.4,0L1,0.6L0.6,1L0,0.4L-0.6,1L-1,0.6L-0.4,0Z",
    "star": ("M0,-1L0.25,-0.34L0.95,-0.31L0.4,0.13L0.59,0.81L0,0.42L-0.59,0.81L-0.4,0.13L-0.95,-0.31"
             "L-0.25,-0.34Z"),
    "star-diamond": "M0,-1L0.25,-0.25L1,0L0.25,0.25L0,1L-0.25,0.25L-1,0L-0.25,-0.25Z",
    "hexagon": "M0,-1L0.87,-0.5L0.87,0.5L0,1L-0.87,0.5L-0.87,-0.5Z",
    "pentagon": "M0,-1L0.95,-0.31L0.59,0.81L-0.59,0.81L-0.95,-0.31Z",
}


def vega_shape(key: str) -> str:
    """The Vega-Lite shape of a method's registry marker (a native name or an SVG path)."""
    m = theme.marker(key)
    return m if m in _VEGA_NATIVE else _VEGA_PATHS.get(m, "circle")


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
                         per_seed=m.get("per_seed") or [], seeds=None))  # toy seeds: the same list for every method
    return rows


def _cifar_rows(results: dict) -> list[dict]:
    rows = []
    methods = results.get("methods", [])
    for m in methods:
        lo, hi = (m.get("outcome_ci") or [None, None])[:2]
        rows.append(dict(panel="accuracy", key=m["name"], method=theme.label(m["name"]),
                         detail=m.get("label", ""),
                         cost=100 * m["budget_ratio"], outcome=_pct(m.get("test_acc_mean")), lo=_pct(lo),
                         hi=_pct(hi), pareto=m["name"] in results.get("pareto", []),
                         source=f"{m.get('seeds')} seeds, t interval",
                         per_seed=[100 * a for a in m.get("per_seed") or []], seeds=m.get("seed_ids")))
    lam = [m.get("lambda_max_mean") for m in methods]
    lam_ok = [x if x is not None else math.nan for x in lam]
    front = set(pareto_front([m["budget_ratio"] for m in methods], [-x for x in lam_ok]))  # lower λ is better
    for i, m in enumerate(methods):
        mu, sd = m.get("lambda_max_mean"), m.get("lambda_max_std")
        if mu is None:
            continue
        sd = sd or 0.0
        rows.append(dict(panel="lambda", key=m["name"], method=theme.label(m["name"]),
                         detail=m.get("label", ""),
                         cost=100 * m["budget_ratio"], outcome=mu, lo=mu - sd, hi=mu + sd, pareto=i in front,
                         source=f"{m.get('seeds')} seeds, ± 1 std", per_seed=m.get("lambda_per_seed") or [],
                         seeds=m.get("seed_ids")))
    return rows


def _pct(x):
    return None if x is None else 100 * x


COLUMNS = ["panel", "key", "method", "detail", "cost", "outcome", "lo", "hi", "pareto", "source", "per_seed",
           "seeds"]


def outcome_frame(escape: dict | None, valley: dict | None, cifar: dict | None) -> pd.DataFrame:
    """One row per (panel, method); panels without data are left out."""
    rows = []
    if escape:
        rows += _toy_rows(escape, "escape")
    if valley:
        rows += _toy_rows(valley, "valley")
    if cifar:
        rows += _cifar_rows(cifar)
    return pd.DataFrame(rows, columns=COLUMNS)


# --- paired verdicts ------------------------------------------------------------------------------------


def paired_tests(frame: pd.DataFrame, panel: str, ref: str) -> dict:
    """Every method of `panel` against the method `ref` ("sam" or "sgd"): the paired t on per-seed values (by
    seed id where recorded, else by position: the toys' seeds are the same list for every method), with Holm's
    correction across the methods of the panel. key → dict(d=PairedDifference or None, p_holm, clear) ({}
    without `ref`)."""
    sub = frame[frame["panel"] == panel]
    other = sub[sub["key"] == ref]
    if other.empty:
        return {}
    b, sb = other["per_seed"].iloc[0], other["seeds"].iloc[0]
    tests = {}
    for _, r in sub.iterrows():
        if r["key"] == ref:
            continue
        sa = r["seeds"]
        tests[r["key"]] = paired_difference(r["per_seed"], b, sa, sb) if sa is not None and sb is not None \
            else paired_difference(r["per_seed"], b)
    keys = list(tests)
    adjusted, rejected = holm([tests[k].p if tests[k] else math.nan for k in keys], ALPHA)
    return {k: dict(d=tests[k], p_holm=a, clear=c) for k, a, c in zip(keys, adjusted, rejected)}


def _num(x: float, nd: int) -> str:
    return f"{round(x, nd) + 0.0:+.{nd}f}".replace("-", "−")


def _say(test: dict | None, nd: int) -> str:
    if not test or test["d"] is None:
        return "too few seeds"
    d = test["d"]
    lo, hi = d.ci
    return (f"{_num(d.diff, nd)} [{_num(lo, nd)}, {_num(hi, nd)}] (p {_p(test['p_holm'])} Holm): "
            f"{'clear' if test['clear'] else 'within noise'}")


def _p(p: float) -> str:
    return "—" if p is None or not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def verdict_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method and panel: the paired difference from SAM and from SGD (mean over seeds, its 95% interval),
    the Holm-adjusted p across the panel's methods and whether it is clear of the seeds' noise at 5%
    family-wise."""
    nd = {"escape": 3, "valley": 4, "accuracy": 2, "lambda": 1}
    tests = {(p, ref): paired_tests(frame, p, ref) for p in PANELS for ref in ("sam", "sgd")}
    rows = []
    for key in dict.fromkeys(frame["key"]):
        if key == "sam":
            continue
        row = {"method": theme.label(key)}
        for panel in PANELS:
            for ref in ("sam", "sgd"):
                t = tests[(panel, ref)]
                if key in t:
                    row[f"{panel} vs {theme.label(ref)}"] = _say(t[key], nd[panel])
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_summary(frame: pd.DataFrame, panel: str) -> str:
    """One sentence on a panel: the Pareto front, and which methods are clearly behind (or ahead of) SAM by
    the paired t with Holm's correction, and which are not distinguishable from it with these seeds."""
    sub = frame[frame["panel"] == panel]
    if sub.empty:
        return ""
    front = ", ".join(sub[sub["pareto"]].sort_values("cost")["method"])
    text = f"Pareto front: {front}."
    tests = paired_tests(frame, panel, "sam")
    if tests:
        better = PANELS[panel][2]
        level, clear_worse, clear_better = [], [], []
        for key, t in tests.items():
            if t["d"] is None:
                continue
            worse = t["d"].diff < 0 if better == "higher" else t["d"].diff > 0
            pile = clear_worse if t["clear"] and worse else clear_better if t["clear"] else level
            pile.append(theme.label(key))
        if level:
            text += f" Not distinguishable from SAM with these seeds: {', '.join(level)}."
        if clear_worse:
            text += f" Clearly behind SAM: {', '.join(clear_worse)}."
        if clear_better:
            text += f" Clearly ahead of SAM: {', '.join(clear_better)}."
    return text


def gain_table(cifar: dict) -> pd.DataFrame:
    """The CIFAR table: per method its cost, test accuracy, λ_max, the share of SAM's gain over SGD it keeps
    (mean(m − SGD)/mean(SAM − SGD) over the paired seeds, Fieller's 95% interval) and its paired verdicts."""
    frame = outcome_frame(None, None, cifar)
    acc = frame[frame["panel"] == "accuracy"].set_index("key")
    if acc.empty:
        return pd.DataFrame()
    vs_sam, vs_sgd = paired_tests(frame, "accuracy", "sam"), paired_tests(frame, "accuracy", "sgd")
    lam = {m["name"]: m for m in cifar.get("methods", [])}
    have_ref = "sgd" in acc.index and "sam" in acc.index
    rows = []
    for key, r in acc.iterrows():
        share = "—"
        if key in ("sgd", "sam"):
            share = "0% (the reference)" if key == "sgd" else "100% (the reference)"
        elif have_ref:
            theta, lo, hi = _share(r, acc.loc["sgd"], acc.loc["sam"])
            if math.isfinite(theta):
                bounds = "unbounded: SAM's own gain is inside the noise" if math.isinf(lo) else \
                    f"[{lo:.0%}, {hi:.0%}]"
                share = f"{theta:.0%} {bounds}"
        m = lam.get(key, {})
        lm, ls = m.get("lambda_max_mean"), m.get("lambda_max_std")
        rows.append({"method": theme.label(key), "settings": r["detail"],
                     "cost (% of SAM)": round(r["cost"], 1),
                     "test acc (%)": f"{r['outcome']:.1f} ± {np.std(r['per_seed'], ddof=1):.1f}"
                     if len(r["per_seed"]) > 1 else f"{r['outcome']:.1f}",
                     "λ_max": "—" if lm is None else f"{lm:.0f} ± {ls or 0:.0f}",
                     "share of SAM's gain": share,
                     "vs SGD (points, paired)": _say(vs_sgd.get(key), 2) if key != "sgd" else "",
                     "vs SAM (points, paired)": _say(vs_sam.get(key), 2) if key != "sam" else ""})
    return pd.DataFrame(rows)


def _share(r, sgd, sam) -> tuple[float, float, float]:
    """Fieller's ratio for one method row against the SGD and SAM rows, paired by seed id (or by position)."""
    ids = [r["seeds"], sgd["seeds"], sam["seeds"]]
    if all(i is not None for i in ids):
        common = [s for s in ids[0] if s in ids[1] and s in ids[2]]
        pick = lambda row, own: np.array([row["per_seed"][list(own).index(s)] for s in common])  # noqa: E731
        x, base, top = pick(r, ids[0]), pick(sgd, ids[1]), pick(sam, ids[2])
    else:
        n = min(len(r["per_seed"]), len(sgd["per_seed"]), len(sam["per_seed"]))
        x, base, top = (np.asarray(v["per_seed"][:n], dtype=float) for v in (r, sgd, sam))
    return fieller_ratio(x - base, top - base)


def tuning_table(cifar: dict) -> pd.DataFrame:
    """How each method was tuned (core.cifar.tournament.tune_method): its grid, its pilot runs, the validation
    accuracy of each configuration, the one chosen. Empty for a record made before tuning existed."""
    rows = []
    for key, t in (cifar.get("tuning") or {}).items():
        grid = t.get("grid") or []
        scores = t.get("scores") or []
        spent = t.get("spent") or []
        if not t.get("runs"):
            rows.append({"method": theme.label(key), "searched": "—", "pilot runs": 0,
                         "validation accuracy per configuration": "",
                         "chosen": _params(t.get("chosen") or {}),
                         "how": t.get("criterion", "")})
            continue
        cells = []
        for i, g in enumerate(grid):
            sc = scores[i] if i < len(scores) and scores[i] is not None else math.nan
            sp = spent[i] if i < len(spent) and spent[i] is not None else math.nan
            mark = " ✓" if i == t.get("chosen_index") else ""
            cells.append(f"{_params(_knobs(key, g))}: {'—' if not math.isfinite(sc) else f'{sc:.1%}'}"
                         f" ({'—' if not math.isfinite(sp) else f'{sp:.0%}'} of SAM){mark}")
        seeds = sorted({p["seed"] for p in t.get("pilots", [])})
        searched = ", ".join(sorted({k for g in grid for k in _knobs(key, g)}))
        rows.append({"method": theme.label(key), "searched": searched,
                     "pilot runs": f"{t['runs']} (seeds {', '.join(map(str, seeds))})",
                     "validation accuracy per configuration": "; ".join(cells),
                     "chosen": _params(_knobs(key, t.get("chosen") or {})), "how": t.get("criterion", "")})
    return pd.DataFrame(rows)


_KNOBS = {"psam": ("k", "f"), "ss_sam": ("p_shape",), "composer": ("scale_rho", "rho"), "looksam": ("alpha",),
          "ae_sam": ("lam1", "lam2"), "msam": ("rho",)}


def _knobs(key: str, params: dict) -> dict:
    """The parameters a method's search varies (the rest of its configuration is the budget's)."""
    keep = _KNOBS.get(key)
    return {k: v for k, v in params.items() if keep is None or k in keep}


def _params(p: dict) -> str:
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ", ".join(f"{k} {fmt(v)}" for k, v in p.items()) or "—"


# --- the chart ------------------------------------------------------------------------------------------


def _tooltip_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame the chart draws: without the per-seed lists, with the hover's interval and verdict text."""
    data = frame.drop(columns=["per_seed", "seeds"]).copy()
    verdicts = {}
    for panel in PANELS:
        nd = 3 if panel == "escape" else 4 if panel == "valley" else 2 if panel == "accuracy" else 1
        for key, t in paired_tests(frame, panel, "sam").items():
            verdicts[(panel, key)] = _say(t, nd)
    data["vs_sam"] = [verdicts.get((p, k), "the reference" if k == "sam" else "—")
                      for p, k in zip(data["panel"], data["key"])]
    # the front's direct labels alternate above and below their points, in order of cost, so that neighbours
    # on the front (often within a few % of cost of each other) do not write over each other
    below = {}
    for panel in PANELS:
        front = data[(data["panel"] == panel) & data["pareto"]].sort_values(["cost", "outcome"])
        for i, key in enumerate(front["key"]):
            below[(panel, key)] = i % 2 == 1
    data["label_below"] = [below.get((p, k), False) for p, k in zip(data["panel"], data["key"])]
    fmt = {p: PANELS[p][3] for p in PANELS}
    data["interval"] = [("—" if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi))
                         else f"{format(lo, fmt[p])} – {format(hi, fmt[p])}")
                        for p, lo, hi in zip(data["panel"], data["lo"], data["hi"])]
    return data


def _panel(data: pd.DataFrame, panel: str, color: alt.Color, shape: alt.Shape, sel, width: int, height: int,
           size: int) -> alt.LayerChart:
    title, y_title, better, fmt = PANELS[panel]
    data = data[data["panel"] == panel].sort_values("cost")
    base = alt.Chart(data).encode(x=alt.X("cost:Q", title="cost: % of SAM's gradient evaluations",
                                          scale=alt.Scale(zero=False, padding=14)))
    y = alt.Y("outcome:Q", title=y_title, scale=alt.Scale(zero=False, padding=12))
    faded = alt.condition(sel, alt.value(1.0), alt.value(0.15))
    tooltip = [alt.Tooltip("method:N"), alt.Tooltip("cost:Q", format=".1f", title="cost (% of SAM)"),
               alt.Tooltip("outcome:Q", format=fmt, title=y_title),
               alt.Tooltip("interval:N", title="interval"),
               alt.Tooltip("vs_sam:N", title="against SAM (paired)"),
               alt.Tooltip("detail:N", title="settings"),
               alt.Tooltip("pareto:N", title="on the Pareto front"), alt.Tooltip("source:N")]
    # the Pareto front: the methods no other beats on both cost and outcome, joined in order of cost
    front = base.transform_filter(alt.datum.pareto).mark_line(
        interpolate="step-after" if better == "higher" else "step-before", strokeDash=[7, 4], color="#222222",
        strokeWidth=2.5).encode(y=y)
    bars = base.mark_rule(strokeWidth=2).encode(y=alt.Y("lo:Q", title=y_title), y2="hi:Q", color=color,
                                                opacity=faded)
    rings = base.transform_filter(alt.datum.pareto).mark_point(
        size=int(size * 3.2), shape="circle", filled=False, color="#111111", strokeWidth=2).encode(y=y)
    points = base.mark_point(size=size, filled=True, stroke="#111111", strokeWidth=0.8).encode(
        y=y, color=color, shape=shape, opacity=faded, tooltip=tooltip).add_params(sel)
    font = max(11, size // 12)
    above = base.transform_filter(alt.datum.pareto & ~alt.datum.label_below).mark_text(
        align="left", baseline="bottom", dx=10, dy=-6, fontWeight="bold", fontSize=font).encode(
        y=y, text="method:N", opacity=faded)
    below = base.transform_filter(alt.datum.pareto & alt.datum.label_below).mark_text(
        align="left", baseline="top", dx=10, dy=8, fontWeight="bold", fontSize=font).encode(
        y=y, text="method:N", opacity=faded)
    return alt.layer(front, bars, rings, points, above, below).properties(
        title=alt.TitleParams(title, anchor="start"), width=width, height=height)


def panel_size(phone: bool, present: bool) -> tuple[int, int, int]:
    """(width, height, marker area) of one panel: two panels a row fit the wide layout's content beside the
    sidebar at 1280 px (one a row on a phone, 390 px), with room for the axis titles."""
    if phone:
        return 262, 220, 150
    return (320, 250, 260) if present else (330, 250, 190)


def tournament_chart(frame: pd.DataFrame, *, phone: bool = False, present: bool = False) -> alt.ConcatChart:
    """Every panel of `frame` as cost against outcome, with one legend-bound method selection for all."""
    keys = list(dict.fromkeys(frame["key"]))
    names = [theme.label(k) for k in keys]
    sel = alt.selection_point(fields=["method"], bind="legend", name=SELECTION)
    legend = alt.Legend(title="method (click to highlight)", orient="bottom", direction="horizontal",
                        columns=2 if phone else 4, symbolSize=200, symbolStrokeColor="#111111",
                        symbolStrokeWidth=0.8)
    color = alt.Color("method:N", scale=alt.Scale(domain=names, range=[theme.color(k) for k in keys]),
                      legend=legend)
    shape = alt.Shape("method:N", scale=alt.Scale(domain=names, range=[vega_shape(k) for k in keys]),
                      legend=legend)
    panels = [p for p in PANELS if (frame["panel"] == p).any()]
    width, height, size = panel_size(phone, present)
    data = _tooltip_frame(frame)
    with warnings.catch_warnings():  # one selection in every panel is what we want: Altair merges it, says so
        warnings.simplefilter("ignore", UserWarning)
        chart = alt.concat(*[_panel(data, p, color, shape, sel, width, height, size) for p in panels],
                           columns=1 if phone else 2, spacing=16)
    fs = theme.font_size(present)
    return (chart.configure_axis(labelFontSize=fs - 2, titleFontSize=fs)
                 .configure_legend(labelFontSize=fs - 1, titleFontSize=fs, labelLimit=220)
                 .configure_title(fontSize=fs + 1)
                 .configure_view(strokeWidth=0))


def trigger_map_chart(maps: dict, *, phone: bool = False, present: bool = False) -> alt.ConcatChart | None:
    """AE-SAM's and PSAM's trigger maps on the 2-D double well: in each cell of w, the share of the steps
    taken there that were SAM steps (cells visited fewer than 20 times are left blank)."""
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
        w, h, _ = panel_size(phone, present)
        panels.append(alt.Chart(df).mark_rect().encode(
            x=alt.X("x:Q", title="w₁", scale=alt.Scale(zero=False)), x2="x2:Q",
            y=alt.Y("y:Q", title="w₂", scale=alt.Scale(zero=False)), y2="y2:Q",
            color=alt.Color("rate:Q", title="SAM share", scale=alt.Scale(scheme="viridis", domain=[0, 1])),
            tooltip=[alt.Tooltip("rate:Q", format=".2f", title="SAM share"), alt.Tooltip("visits:Q", title="steps")],
        ).properties(title=f"{theme.label(key)}: where its SAM steps fall", width=w - 40, height=h))
    if not panels:
        return None
    size = theme.font_size(present)
    return (alt.concat(*panels, columns=1 if phone else 2)
            .configure_axis(labelFontSize=size - 2, titleFontSize=size).configure_title(fontSize=size + 1)
            .configure_legend(labelFontSize=size - 1, titleFontSize=size).configure_view(strokeWidth=0))
