"""Benchmark: the budget tournament at several budgets: the toys (core.toy.tournament, issue 13 item 6) or the
CPU CIFAR tournament (core.cifar.tournament, issue 21: tuned on pilot seeds, paired seeds, noisy labels).

    .venv/bin/python bench/tournament.py                                  # 55%, 65%, 75%; 3 seeds; both toys
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/tournament.py --cifar --seeds 5 \
        --write-dir data/runs          # → cpu_tournament_noisy_{055,065,075}.json, one record per budget
    .venv/bin/python bench/tournament.py --budgets 0.65 --seeds 1 --landscapes valley
    .venv/bin/python bench/tournament.py --write data/runs/toy_tournament.json   # the record the page can load

Prints, per toy and budget, one row per method: what it spent (share of SAM's gradient evaluations), its
outcome with the 95% interval (escape: Wilson over all particles of all seeds; valley: the exact chain where
the rule does not depend on the state, else Student's t over particles), where the number comes from, and the
wall time. Then the Pareto front and the total wall time. `--json` prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.jsonable import to_jsonable  # noqa: E402
from core.toy.tournament import METHODS, TournamentConfig, run_tournament  # noqa: E402


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def table(res) -> str:
    name = "escaped fraction" if res.metric == "escaped_fraction" else "mean position"
    lines = [f"{res.landscape}, budget {res.budget:.0%} of SAM ({res.particles} particles in all, T = {res.steps}): "
             f"{name}, larger is better",
             f"  {'method':<36} {'spent':>6}  {'outcome':>8}  {'95% interval':<20} {'source':<12} {'wall':>6}"
             + ("   in flat basin at T   mean loss at T" if res.metric == "escaped_fraction" else "")]
    for m in res.methods:
        extra = ""
        if "in_flat_at_T" in m.extra:
            lo, hi = m.extra["in_flat_at_T_ci"]
            extra = f"   {m.extra['in_flat_at_T']:.3f} [{lo:.3f}, {hi:.3f}]  {m.extra['mean_final_loss']:.3f}"
        lines.append(f"  {m.label:<36} {m.budget_ratio:>6.1%}  {m.outcome:>8.4f}  "
                     f"[{m.ci[0]:.4f}, {m.ci[1]:.4f}]{'':<2} {m.source:<12} {m.wall_s:>5.1f}s{extra}")
    for ref in res.references.values():
        lines.append(f"  {ref['label']:<36} {ref['budget_ratio']:>6.1%}  {ref['outcome']:>8.4f}  "
                     f"[{ref['ci'][0]:.4f}, {ref['ci'][1]:.4f}]{'':<2} {'simulation':<12} {ref['wall_s']:>5.1f}s")
    lines.append(f"  Pareto front (cost vs outcome): {', '.join(res.pareto)}")
    lines += [f"  note: {n}" for n in res.notes]
    lines.append(f"  wall {res.wall_s:.1f} s")
    return "\n".join(lines)


def cifar_main(args, argv) -> dict:
    """The CIFAR tournament at each budget (SGD's, SAM's and Momentum-SAM's runs shared between budgets), one
    record per budget written as soon as that budget is done, with the command, date, hardware and load."""
    import dataclasses

    import torch

    from core.cifar import tournament as ct
    from core.cifar.cli import format_tournament, record
    from core.cifar.train import common_hardware, hardware_info
    from core.device import pick_device

    torch.set_num_threads(args.threads)
    given = dict(model=args.model, data=args.data, train_size=args.train_size, epochs=args.epochs,
                 batch_size=args.batch_size, label_noise=args.label_noise, rho=args.rho, device=args.device,
                 pilot_runs=args.pilot_runs,
                 methods=tuple(m.strip() for m in (args.methods or "").split(",") if m.strip()) or None)
    given = {k: v for k, v in given.items() if v is not None}
    cfg = ct.TournamentConfig(seeds=args.seeds, seed0=args.seed0, **given)
    runs = ct.RunCache(args.resume)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    command = "python bench/tournament.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = []

    def progress(d):
        print(f"  [{time.perf_counter() - t0:7.0f} s, load {os.getloadavg()[0]:.1f}] {d['phase']:5} "
              f"{d['optimizer']:10} seed {d['seed']:4}: test {d['test_acc']:.3f} "
              f"val {d.get('val_acc', float('nan')):.3f} "
              f"evals {d['grad_evals']} {d['wall_s']:.1f} s", flush=True)

    for b in args.budgets:
        res = ct.run_tournament(dataclasses.replace(cfg, budget=b), progress, runs=runs)
        results = res.to_dict()
        device = pick_device(cfg.device)
        hw = common_hardware([r["hardware"] for r in results["runs"]], hardware_info(device))
        hw["threads"] = torch.get_num_threads()
        where = (f"{torch.get_num_threads()} torch thread(s) on {device.type}"
                 + (", nice 10, on the shared 2-core machine" if device.type == "cpu" else ""))
        pilots = ", ".join(map(str, cfg.pilot_seeds))
        seeds = f"{cfg.seed0}–{cfg.seed0 + cfg.seeds - 1}"
        note = (f"budget tournament, issue 21: every method tuned by the same search ({cfg.pilot_runs} pilot "
                f"runs on seeds {pilots}, scored on {cfg.val_size} held-out validation images), then trained "
                f"on the same {cfg.seeds} seeds {seeds} at "
                f"{b:.0%} of SAM's gradient evaluations; {cfg.model} net, {cfg.train_size:,} images with "
                f"{cfg.label_noise:.0%} noisy labels, {cfg.epochs} epochs, "
                f"augmentation {'on' if cfg.augment else 'off'}"
                f", label smoothing {cfg.label_smoothing:g}, ρ {cfg.rho:g}; {where}")
        rec = record("tournament", command, res.config.base(), results, hw, note, True)
        rec["tournament_config"] = dataclasses.asdict(res.config)
        rec["load"] = {"start": load0, "now": os.getloadavg()}
        rec["elapsed_s"] = time.perf_counter() - t0     # since the whole multi-budget run started
        print(format_tournament(results), flush=True)
        print(f"budget {b:.0%} done at {rec['elapsed_s']:.0f} s (load {os.getloadavg()})", flush=True)
        if args.write_dir:
            path = os.path.join(args.write_dir, f"{args.prefix}_{round(100 * b):03d}.json")
            with open(path, "w") as f:
                json.dump(to_jsonable(rec), f, allow_nan=False)
            print(f"wrote {path}", flush=True)
        out.append(rec)
    print(f"whole tournament: {time.perf_counter() - t0:.0f} s; load {load0} at the start, {os.getloadavg()} "
          "at the end", flush=True)
    return {"records": out}


def _markdown(df) -> str:
    """A pandas frame as a markdown table (no extra dependency)."""
    cells = lambda row: "| " + " | ".join(str(x).replace("|", "/") for x in row) + " |"  # noqa: E731
    rows = [cells(df.columns), cells(["---"] * len(df.columns))]
    return "\n".join(rows + [cells(r) for r in df.values.tolist()])


def report(paths: list[str]) -> str:
    """Markdown tables of recorded CIFAR tournaments (one per budget): per method its cost, accuracy, λ_max,
    the share of SAM's gain (Fieller) and the paired verdicts with Holm (app/tournament_charts.py, as the page
    shows them), then how each was tuned, the head-to-head pairs, and the wall and load of the runs."""
    from app import tournament_charts as tc

    out = []
    for path in paths:
        with open(path) as f:
            rec = json.load(f)
        res = rec["results"]
        out.append(f"**{float(res['budget']):.0%} of SAM** (`{os.path.basename(path)}`, "
                   f"{rec.get('date', '')}; "
                   f"T = {res['steps']} steps)\n")
        out.append(_markdown(tc.gain_table(res)))
        tuning = tc.tuning_table(res)
        if not tuning.empty:
            out.append("\nHow each method was tuned:\n")
            out.append(_markdown(tuning.drop(columns=["how"])))
        pairs = res.get("pairs") or {}
        if pairs:
            out.append("\nHead to head (paired, points): " + "; ".join(
                f"{k} {v['diff']:+.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}], p {v['p']:.3f}"
                for k, v in pairs.items() if v))
        out.append(f"\nPilot training {res.get('pilot_wall_s', 0):.0f} s; "
                   f"this budget's part {res['wall_s']:.0f} s; "
                   f"whole run so far {rec.get('elapsed_s', 0):.0f} s; load {rec.get('load')}\n")
    return "\n".join(out)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=_floats, default=[0.55, 0.65, 0.75])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--landscapes", default="double_well_2d,valley")
    ap.add_argument("--methods", default=None, help="cifar: a comma list (default: the registry's)")
    ap.add_argument("--rho", type=float, default=0.1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write", default=None, help="write the results (with the command and machine) to this file")
    ap.add_argument("--cifar", action="store_true", help="the CPU CIFAR tournament instead of the toys")
    ap.add_argument("--seed0", type=int, default=20, help="cifar: the first reported seed")
    ap.add_argument("--threads", type=int, default=1, help="cifar: torch threads")
    ap.add_argument("--write-dir", default=None,
                    help="cifar: write PREFIX_NNN.json records here (NNN: budget %%)")
    ap.add_argument("--resume", default=None,
                    help="cifar: keep every finished run in this JSON-lines file and "
                    "reuse those already there (a stopped run resumes)")
    ap.add_argument("--prefix", default="cpu_tournament_noisy",
                    help="cifar: the records' file name before _NNN")
    for flag, kind in (("--model", str), ("--data", str), ("--train-size", int), ("--epochs", int),
                       ("--batch-size", int), ("--label-noise", float), ("--device", str),
                       ("--pilot-runs", int)):
        ap.add_argument(flag, type=kind, default=None,
                        help="cifar: instead of core.cifar.tournament's default")
    ap.add_argument("--report", nargs="*", default=None, metavar="RECORD",
                    help="print BENCHMARKS.md tables (markdown) of recorded CIFAR tournaments and exit")
    args = ap.parse_args(argv)
    if args.report is not None:
        print(report(args.report))
        return {}
    if args.cifar:
        return cifar_main(args, argv)
    t0 = time.perf_counter()
    results = []
    for land in [x.strip() for x in args.landscapes.split(",") if x.strip()]:
        for b in args.budgets:
            res = run_tournament(TournamentConfig(landscape=land, budget=b, seeds=args.seeds, rho=args.rho,
                                                  methods=METHODS))
            results.append(res)
            if not args.json:
                print(table(res), flush=True)
    out = {
        "benchmark": "toy budget tournament", "command": "python bench/tournament.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load": os.getloadavg()},
        "git": _git_head(), "wall_s": time.perf_counter() - t0,
        "results": [r.to_dict() for r in results],
    }
    if args.json:
        print(json.dumps(to_jsonable(out), allow_nan=False))
    else:
        print(f"total wall {out['wall_s']:.1f} s")
    if args.write:
        with open(args.write, "w") as f:
            json.dump(to_jsonable(out), f, allow_nan=False)
    return out


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()
