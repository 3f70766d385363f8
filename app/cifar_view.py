"""Figures and tables for the CIFAR lab, built from core.cifar results (dicts / dataclasses).

No training happens here: the page passes finished (or running) results in, these functions return
Plotly figures and pandas tables.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import theme

RUNS_DIR = Path(__file__).resolve().parents[1] / "data" / "runs"


def run_label(cfg: dict) -> str:
    """'PSAM (k=2, f=0.6) ρ=0.05, seed 0' from a TrainConfig dict."""
    name = theme.label(cfg["optimizer"])
    extra = {"psam": f" (k={cfg['k']}, f={cfg['f']:g})", "late_sam": f" (last {cfg['late_f']:.0%})",
             "every_k": f" (k={cfg['k']})", "random_sam": f" (p={cfg['p']:g})"}.get(cfg["optimizer"], "")
    rho = "" if cfg["optimizer"] == "sgd" else f" ρ={cfg['rho']:g}"
    return f"{name}{extra}{rho}, seed {cfg['seed']}"


def learning_curves(runs: list[tuple[dict, list[dict]]]) -> go.Figure:
    """Test accuracy (solid) and training loss (dotted, right axis) per epoch, one colour per optimizer.
    `runs` is a list of (config dict, history rows)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for cfg, hist in runs:
        if not hist:
            continue
        c = theme.color(cfg["optimizer"])
        ep = [h["epoch"] for h in hist]
        name = run_label(cfg)
        fig.add_trace(go.Scatter(x=ep, y=[100 * h["test_acc"] for h in hist], mode="lines+markers", name=name,
                                 line={"color": c}, legendgroup=name), secondary_y=False)
        fig.add_trace(go.Scatter(x=ep, y=[h["train_loss"] for h in hist], mode="lines", name=f"{name}: train loss",
                                 line={"color": c, "dash": "dot"}, legendgroup=name, showlegend=False),
                      secondary_y=True)
    theme.apply_layout(fig, x_title="epoch", y_title="test accuracy (%)", height=420, legend_below=True)
    fig.update_yaxes(title_text="training loss, dotted", tickformat=".2f", secondary_y=True)
    longest = max((len(h) for _, h in runs), default=0)
    if longest <= 20:  # whole epochs only: a 3-epoch run had ticks at 1.5 and 2.5
        fig.update_xaxes(tick0=1, dtick=1)
    return fig


def comparison_table(results: list[dict]) -> pd.DataFrame:
    """One row per finished run (TrainResult.to_dict()), with the cost relative to SAM in gradient
    evaluations where a SAM run with the same settings is present."""
    sam_evals = {(r["config"]["epochs"], r["n_train"]): r["grad_evals"]
                 for r in results if r["config"]["optimizer"] == "sam"}
    rows = []
    for r in results:
        c = r["config"]
        base = sam_evals.get((c["epochs"], r["n_train"]))
        rows.append({
            "run": run_label(c), "status": r["status"], "test acc (%)": round(100 * r["test_acc"], 2)
            if r["test_acc"] == r["test_acc"] else None,
            "λ_max": None if r.get("lambda_max") is None else round(r["lambda_max"], 1),
            "Tr(H)": None if r.get("trace") is None else round(r["trace"], 0),
            "grad evals": r["grad_evals"], "SAM steps": r["sam_steps"],
            "cost vs SAM": None if not base else round(r["grad_evals"] / base, 2),
            "wall (s)": round(r["wall_s"], 1), "device": r["device"],
        })
    return pd.DataFrame(rows)


def profile_figure(profiles: list[dict]) -> go.Figure:
    """1-D loss profiles (ProfileResult.to_dict()): training loss solid, test loss dashed.

    The line between the two solutions and the random directions measure t differently (t = 1 is the SAM
    solution on the first, one filter-normalised unit on the others), so with both kinds present each gets
    its own panel, side by side with a shared loss axis; on a phone one above the other (side by side at 390 px,
    their titles, axis titles and markers ran into each other)."""
    line = [p for p in profiles if p["kind"] == "interpolation"]
    rand = [p for p in profiles if p["kind"] != "interpolation"]
    panels = [g for g in (line, rand) if g]
    phone = theme.is_phone()
    titles = ([("between the solutions" if g is line else "random directions") for g in panels]
              if len(panels) > 1 else None)
    if phone:
        fig = make_subplots(rows=len(panels), cols=1, vertical_spacing=0.22, subplot_titles=titles)
    else:
        fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.06, subplot_titles=titles)

    def cell(i: int) -> dict:
        """row and col of panel i (1-based)"""
        return {"row": i, "col": 1} if phone else {"row": 1, "col": i}

    for col, group in enumerate(panels, start=1):
        for p in group:
            c = _profile_color(p)
            fig.add_trace(go.Scatter(x=p["ts"], y=p["train_loss"], mode="lines+markers", name=f"{p['label']}: train",
                                     line={"color": c}), **cell(col))
            fig.add_trace(go.Scatter(x=p["ts"], y=p["test_loss"], mode="lines", name=f"{p['label']}: test",
                                     line={"color": c, "dash": "dash"}), **cell(col))
    # the live page compares SGD with any SAM-type run: its label "SGD → PSAM" names the solution at t = 1
    other = line[0]["label"].split("→")[-1].strip() if line and "→" in line[0]["label"] else "other"
    if line:
        for x, name, side in ((0, "SGD solution", "top left"), (1, f"{other} solution", "top right")):  # apart
            fig.add_vline(x=x, line={"color": "#888", "dash": "dot"}, annotation_text=name, annotation_position=side,
                          row=1, col=1)
    theme.apply_layout(fig, y_title="loss (nats)" if phone else "loss (cross-entropy, nats)",
                       height=330 * len(panels) if phone else 400, legend_below=True)
    for col, group in enumerate(panels, start=1):
        fig.update_xaxes(title_text=f"t: from the SGD (0) to the {other} solution (1)" if group is line
                         else "t (filter-normalised units)" if phone
                         else "t: distance along the direction (filter-normalised units)", **cell(col))
    if len(panels) > 1 and not phone:
        fig.update_yaxes(title_text=None, row=1, col=2)  # shared with the left panel's
        for a in fig.layout.annotations:  # the panel titles grow with the text on the projector, as axis titles do
            if a.text in ("between the solutions", "random directions"):
                a.font.size = theme.font_size()
    return fig


def _profile_color(profile: dict) -> str:
    """A random-direction profile in its solution's optimizer colour ("SAM, random direction" → SAM's), as in
    every other chart; the line between two solutions in neutral grey."""
    if profile["kind"] == "interpolation":
        return "#444444"
    who = profile["label"].split(",")[0].strip()
    return next((theme.color(k) for k in theme.COLORS if theme.label(k) == who), "#888888")


def load_recorded(runs_dir: Path = RUNS_DIR, kinds: tuple[str, ...] = ("table",)) -> list[dict]:
    """The recorded runs shipped in data/runs/*.json of the given kinds (bad files are skipped, never fatal),
    those from a GPU first: they are the real-scale figures, the CPU ones a small-scale check."""
    out = []
    for f in sorted(Path(runs_dir).glob("*.json")):
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("kind") in kinds and "results" in d:
            if not isinstance(d.get("hardware"), dict):
                d["hardware"] = {}  # a hand-edited record without it: shown as a CPU run, never fatal
            d["file"] = f.name
            out.append(d)
    return sorted(out, key=lambda d: not d["hardware"].get("gpu"))  # stable: by file name within each


def throughput_table(recs: list[dict]) -> pd.DataFrame:
    """Recorded single runs (kind "run", e.g. bench/gpu_session.sh's SGD throughput runs), one row each:
    batch size, torch.compile or not, images per second over all epochs and after the first (which pays for
    compiling and cuDNN's kernel search when no warm-up run came first), and the test accuracy reached."""
    rows = []
    num = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731 (a cancelled run has None)
    for rec in recs:
        r, c = rec["results"], rec.get("config") if isinstance(rec.get("config"), dict) else {}
        if not isinstance(r, dict):
            continue
        rows.append({"file": rec.get("file", ""), "device": rec.get("hardware", {}).get("gpu") or "CPU",
                     "optimizer": theme.label(c.get("optimizer", "?")), "batch": r.get("batch_size"),
                     "torch.compile": "yes" if c.get("compile") else "no",
                     "images/s, all epochs": round(r["images_per_s"]) if num(r.get("images_per_s")) else None,
                     "images/s after epoch 1": round(r["steady_images_per_s"]) if num(r.get("steady_images_per_s"))
                     else None,
                     "epochs": c.get("epochs"),
                     "test acc (%)": round(100 * r["test_acc"], 2) if num(r.get("test_acc")) else None})
    if not rows:
        return pd.DataFrame(rows)
    table = pd.DataFrame(rows).sort_values(["device", "batch", "torch.compile"], ignore_index=True)
    # one device for all (the usual case): the caption names it, and the table fits a laptop's width
    return table.drop(columns="device") if table["device"].nunique() == 1 else table


# The theory brief's calibration (docs/theory.md §6): one H100, the same JPEG CIFAR-10, 10k images × 30 epochs,
# 5 seeds, a small VGG-style net. Test accuracy %, λ_max, wall time relative to SAM.
BRIEF = {"sgd": ("81.83 ± 0.20", 117, 0.47), "sam": ("82.38 ± 0.15", 91, 1.0), "psam": ("82.34 ± 0.22", 114, 0.65),
         "late_sam": ("82.04 ± 0.22", 97, None)}


def calibration_record(recs: list[dict]) -> dict | None:
    """The recorded GPU table with the brief's settings (10k images × 30 epochs), or None: Home sets it beside
    the brief's calibration."""
    return next((r for r in recs if r["hardware"].get("gpu") and r.get("recorded")
                 and r.get("config", {}).get("train_size") == 10_000 and r.get("config", {}).get("epochs") == 30), None)


def calibration_table(lab: dict | None) -> dict:
    """This project's own recorded H100 table (10k × 30) beside the brief's, one row per optimizer; the brief's
    columns alone when no such record ships."""
    rows = {r["optimizer"]: r for r in lab["results"]["rows"]} if lab else {}
    table = {"optimizer": [theme.label(o) for o in BRIEF]}
    if rows:
        table["test acc. %, this lab"] = [mean_std(rows[o]["test_acc_mean"], rows[o]["test_acc_std"], 100)
                                          if o in rows else "—" for o in BRIEF]
    table["test acc. %, brief"] = [b[0] for b in BRIEF.values()]
    table["λ_max" + (", lab / brief" if rows else "")] = [
        (f"{mean_std(rows[o]['lambda_max_mean'], rows[o]['lambda_max_std'], nd=0)} / " if o in rows else "") + str(b[1])
        for o, b in BRIEF.items()]
    table["time vs SAM" + (", lab / brief" if rows else "")] = [
        (f"{rows[o]['cost_vs_sam_wall']:.2f}× / " if o in rows else "") + (f"{b[2]:.2f}×" if b[2] else "—")
        for o, b in BRIEF.items()]
    return table


def calibration_note(lab: dict | None) -> str:
    """The caption under calibration_table: what the two sources say, this lab's side judged against its seeds'
    noise (Welch, as the CIFAR page's verdicts), so Home never states a difference the seeds cannot carry."""
    from core.stats import welch_difference

    if not lab:
        return ("Calibration runs from the project's theory brief (docs/theory.md §6). PSAM matches SAM at 65% of "
                "the time yet ends as sharp as SGD: flatness at the end is not the whole story.")
    acc, lam = per_seed(lab)
    gap = welch_difference(acc["sam"], acc["psam"])
    to_sgd, to_sam = welch_difference(lam["psam"], lam["sgd"]), welch_difference(lam["psam"], lam["sam"])
    if gap is None or to_sgd is None or to_sam is None:
        raise ValueError("the record has too few seeds for a comparison")
    sharpness = {(False, True): "PSAM ends as sharp as SGD, as in the brief",
                 (True, False): "PSAM ends as flat as SAM, unlike the brief",
                 (False, False): "PSAM's λ_max lies between SGD's and SAM's, and the seeds cannot tell it from either",
                 (True, True): "PSAM's λ_max lies between SGD's and SAM's, clearly apart from both"}
    return (f"This lab: the fast net, recorded in `{lab.get('file', '?')}`. Brief: the theory brief's calibration "
            "(docs/theory.md §6), a small VGG-style net on the same data and settings. SAM − PSAM is "
            f"{gap.diff:+.2f} points here ({'clear of' if gap.clear else 'within'} the seed noise) and +0.04 in the "
            f"brief. {sharpness[(to_sgd.clear, to_sam.clear)]}. The CIFAR page lists every difference with its "
            "noise.")


NO_BREAK_PM = "\u00a0±\u00a0"  # a value does not break across lines in the projector's static table


def mean_std(m: float | None, s: float | None, scale: float = 1.0, nd: int = 2, sep: str = " ± ") -> str:
    """'79.21 ± 0.34' (the mean alone without a spread, '–' without a mean)."""
    if m is None:
        return "–"
    if s is None or math.isnan(s):
        return f"{scale * m:.{nd}f}"
    return f"{scale * m:.{nd}f}{sep}{scale * s:.{nd}f}"


def recorded_table(rec: dict) -> pd.DataFrame:
    rows = []
    for r in rec["results"]["rows"]:
        rows.append({"optimizer": theme.label(r["optimizer"]), "seeds": r["seeds"],
                     "test acc (%)": mean_std(r["test_acc_mean"], r["test_acc_std"], 100, sep=NO_BREAK_PM),
                     "λ_max": mean_std(r["lambda_max_mean"], r["lambda_max_std"], 1, 1, sep=NO_BREAK_PM),
                     "grad evals": r["grad_evals"],
                     "wall (s)": mean_std(r["wall_s_mean"], r["wall_s_std"], sep=NO_BREAK_PM),
                     "cost vs SAM (time)": (None if r.get("cost_vs_sam_wall") is None
                                            else f"{r['cost_vs_sam_wall']:.2f}×"),
                     "cost vs SAM (evals)": (None if r.get("cost_vs_sam_evals") is None
                                             else f"{r['cost_vs_sam_evals']:.2f}×")})
    return pd.DataFrame(rows)


def per_seed(rec: dict) -> tuple[dict[str, list], dict[str, list]]:
    """A recorded table's finished runs, by optimizer: test accuracies (%) and λ_max, one value per seed (NaN
    where a run has none)."""
    acc: dict[str, list] = {}
    lam: dict[str, list] = {}
    for r in rec.get("results", {}).get("runs", []):
        if isinstance(r, dict) and r.get("status") == "done" and r.get("optimizer"):
            acc.setdefault(r["optimizer"], []).append(
                100 * r["test_acc"] if r.get("test_acc") is not None else math.nan)
            lam.setdefault(r["optimizer"], []).append(r["lambda_max"] if r.get("lambda_max") is not None else math.nan)
    return acc, lam


def recorded_verdict(rec: dict) -> str:
    """What a recorded table says, pair by pair, with the seeds' noise taken into account (Welch's t on the
    per-seed runs, core.stats.welch_difference): SAM against SGD, SAM against PSAM (the thesis: within 0.3
    points) and late SAM against PSAM (the same cost, SAM's steps at the other end). Markdown bullets; empty
    when the record has no per-seed runs."""
    from core.stats import welch_difference

    acc, lam = per_seed(rec)

    def say(values: dict, a: str, b: str, unit: str, nd: int) -> str:
        d = welch_difference(values[a], values[b])
        if d is None:
            return "too few seeds to tell"
        noise = "clear of the seed noise (5% level)" if d.clear else "within the seed noise"
        signed = lambda v, n: f"{round(v, n) + 0.0:+.{n}f}".replace("-", "−")  # noqa: E731 (no "−0.00")
        return f"{signed(d.diff, nd)}{unit} (Welch t = {signed(d.t, 1)}, {d.n_a} and {d.n_b} seeds): {noise}"

    pairs = (("sam", "sgd", "**SAM vs SGD**"), ("sam", "psam", "**SAM vs PSAM** (the thesis: within 0.3 points)"),
             ("late_sam", "psam", "**Late SAM vs PSAM** (the same cost, SAM's steps at the other end)"))
    lines = [f"- {title}: test accuracy {say(acc, a, b, ' points', 2)}; λ_max {say(lam, a, b, '', 0)}."
             for a, b, title in pairs if a in acc and b in acc]
    return "\n".join(lines)


def recorded_figure(rec: dict) -> go.Figure:
    """Test accuracy (mean ± std over seeds) against wall time, one marker per optimizer."""
    fig = go.Figure()
    for r in rec["results"]["rows"]:
        if r["test_acc_mean"] is None:
            continue
        fig.add_trace(go.Scatter(
            x=[r["wall_s_mean"]], y=[100 * r["test_acc_mean"]], mode="markers", name=theme.label(r["optimizer"]),
            marker={"color": theme.color(r["optimizer"]), "size": 14},
            error_y={"type": "data", "array": [100 * (r["test_acc_std"] or 0)], "visible": True},
            error_x={"type": "data", "array": [r["wall_s_std"] or 0], "visible": True}))
    theme.apply_layout(fig, x_title="wall time per run (s)", y_title="test accuracy (%)",
                       height=340)
    return fig


def recorded_caption(rec: dict) -> str:
    """Where, when and what a recorded run ran: the hardware, the settings in words (for an escape record, the SGD
    start and then the continuations, which its config alone does not describe), the command and the note."""
    hw = rec.get("hardware", {})
    threads = hw.get("threads", "?")
    where = hw.get("gpu") or f"CPU ({hw.get('cpu', '?')}, {threads} thread{'' if threads == 1 else 's'})"
    if hw.get("mixed"):  # some runs fell back to another device (GPU out of memory): say which ones were used
        where = f"{where}, but its runs used {' and '.join(hw['mixed'])} (see each run's device)"
    c = rec.get("config", {})
    n = c.get("train_size")
    images = f"{n:,}" if isinstance(n, int) else str(n)
    if rec.get("kind") == "escape":
        rows = rec.get("results", {}).get("rows", [])
        rhos = ", ".join(f"{r['rho']:g}" for r in rows if r.get("optimizer") != "sgd")
        more = len(rows[0].get("history", [])) if rows else "?"
        what = (f"an SGD start of {c.get('epochs')} epochs on {images} training images (seed {c.get('seed')}), then "
                f"{more} more epochs each of SGD and of SAM at ρ {rhos}; "
                # a multi-seed record (bench/airbench_session.py) has means in its rows and `seeds` in each
                + (f"mean of {rows[0]['seeds']} seeds" if rows and rows[0].get("seeds", 1) > 1 else "one seed"))
    else:
        seeds = next(iter(rec.get("results", {}).get("rows", [])), {}).get("seeds")
        what = (f"{images} training images, {c.get('epochs')} epochs, ρ {c.get('rho')}"
                + (f", {seeds} seeds" if seeds else ""))
    return (f"Recorded run `{rec.get('file', '')}` on {where}, torch {rec.get('torch', '?')}, "
            f"{rec.get('date', '')[:10]}: "
            f"model {c.get('model')}, {what}. Command: `{rec.get('command', '')}`. {rec.get('note', '')}")


def escape_figure(esc: dict) -> go.Figure:
    """Escape from an SGD solution (core.cifar.profiles.escape result as a dict): left, the distance
    ‖w − w₀‖ travelled in the continuation against ρ; right, λ_max at the end against ρ, with the
    starting λ_max as a dashed line. SGD is the point at ρ = 0 in its own colour, SAM a line over ρ."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14)
    sam = [r for r in esc["rows"] if r["optimizer"] != "sgd"]
    sgd = [r for r in esc["rows"] if r["optimizer"] == "sgd"]
    # a record averaged over seeds (bench/airbench_session.py) carries each measure's std: drawn as error bars
    def bars(rows: list[dict], key: str) -> dict | None:
        std = [r.get(f"{key}_std") for r in rows]
        if not any(isinstance(v, (int, float)) and math.isfinite(v) for v in std):
            return None
        return {"type": "data", "array": [v if isinstance(v, (int, float)) and math.isfinite(v) else 0 for v in std],
                "visible": True}

    for col, key in ((1, "distance"), (2, "lambda_max")):
        fig.add_trace(go.Scatter(x=[r["rho"] for r in sam], y=[r[key] for r in sam], mode="lines+markers",
                                 name="SAM", line={"color": theme.color("sam")}, showlegend=col == 1,
                                 legendgroup="sam", error_y=bars(sam, key)), row=1, col=col)
        fig.add_trace(go.Scatter(x=[0.0] * len(sgd), y=[r[key] for r in sgd], mode="markers", name="SGD",
                                 marker={"color": theme.color("sgd"), "size": 12, "symbol": "diamond"},
                                 showlegend=col == 1, legendgroup="sgd", error_y=bars(sgd, key)), row=1, col=col)
    lam0 = esc.get("start_lambda_max")
    if lam0 is not None and math.isfinite(lam0):
        fig.add_hline(y=lam0, line={"color": "gray", "dash": "dash"}, row=1, col=2,
                      annotation_text="λ_max at the SGD solution", annotation_position="top right")
    theme.apply_layout(fig, x_title="ρ of the continuation (SGD at 0)", height=360, legend_below=True)
    # both axes from 0: a 4% difference in distance should look like one, not fill the panel
    fig.update_yaxes(title_text="distance travelled ‖w − w₀‖", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="λ_max after the continuation", rangemode="tozero", row=1, col=2)
    return fig


def escape_table(esc: dict) -> pd.DataFrame:
    """Escape from an SGD solution (core.cifar.profiles.escape result as a dict): one row per continuation."""
    return pd.DataFrame([{
        "continue with": "SGD" if r["optimizer"] == "sgd" else f"SAM ρ={r['rho']:g}",
        "distance ‖w − w₀‖": round(r["distance"], 3), "loss jump": round(r["loss_jump"], 4),
        "λ_max": round(r["lambda_max"], 1), "λ_max drop": round(r["lambda_drop"], 1),
        "test acc (%)": round(100 * r["test_acc"], 2)} for r in esc["rows"]])
