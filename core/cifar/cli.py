"""Command line for the CIFAR lab: `python -m core cifar ...` (core/__main__.py dispatches here).

    python -m core cifar --optimizer psam --k 2 --f 0.6 --rho 0.05 --epochs 5 --json
    python -m core cifar table --seeds 3 --epochs 5 --json        # the thesis table
    python -m core cifar tournament --budget 0.65 --seeds 3 --json # every method at one budget (core.cifar.tournament)

One run prints test_acc, grad_evals, sam_steps, wall_s, lambda_max, trace and the per-epoch history.
The table runs SGD, SAM, PSAM and late SAM under equal settings over several seeds and prints
mean ± std of test accuracy and λ_max, gradient evaluations, wall time and the cost relative to SAM.
Bad arguments print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shlex
import sys
from dataclasses import asdict, replace

import numpy as np

from core.cifar.data import DataError
from core.cifar.models import MODELS
from core.cifar.tournament import METHODS, TournamentConfig, run_tournament
from core.cifar.train import (
    TrainConfig,
    check_config,
    common_hardware,
    hardware_info,
    pick_device,
    run_summary,
    train,
)
from core.jsonable import to_jsonable
from core.limits import LIMITS, check
from core.methods import OPTIMIZERS
from core.schedules import P_SHAPES

TABLE_OPTIMIZERS = ("sgd", "sam", "psam", "late_sam")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
        raise _BadArgs(message)


class _BadArgs(Exception):
    pass


def _in_range(name):
    r = LIMITS[name]

    def parse(text):
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        try:
            check(name, x)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return int(x) if r.integer else x

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core cifar", description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", default="run", choices=("run", "table", "escape", "tournament"))
    p.add_argument("--data", default="builtin", help="builtin | full | download | a path")
    p.add_argument("--train-size", type=_in_range("train_size"), default=5000)
    p.add_argument("--test-size", type=int, default=0)
    p.add_argument("--epochs", type=_in_range("epochs"), default=5)
    p.add_argument("--model", choices=tuple(MODELS), default="tiny")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sam")
    p.add_argument("--optimizers", default=",".join(TABLE_OPTIMIZERS), help="table mode: comma list")
    p.add_argument("--rho", type=_in_range("rho"), default=0.05)
    p.add_argument("--k", type=_in_range("k"), default=2)
    p.add_argument("--f", type=_in_range("f"), default=0.6)
    p.add_argument("--p", type=_in_range("p"), default=0.3)
    p.add_argument("--late-f", type=_in_range("late_f"), default=0.3)
    # the other method parameters (core.methods.MethodParams; each method reads its own)
    p.add_argument("--alpha", type=float, default=0.7, help="LookSAM's α")
    p.add_argument("--p-shape", choices=P_SHAPES, default="constant", help="SS-SAM's p(t)")
    p.add_argument("--p-end", type=float, default=None, help="SS-SAM's p at the end / after the switch")
    p.add_argument("--switch", type=float, default=0.5, help="SS-SAM step: where p changes (fraction)")
    p.add_argument("--lam1", type=float, default=-1.0, help="AE-SAM's threshold at the end")
    p.add_argument("--lam2", type=float, default=1.0, help="AE-SAM's threshold at the start")
    p.add_argument("--delta", type=float, default=0.9, help="AE-SAM's averaging factor")
    p.add_argument("--no-scale-rho", action="store_true", help="Composer: keep ρ instead of ρ·k")
    p.add_argument("--msam-nesterov", action="store_true", help="Momentum-SAM on Nesterov (default heavy ball)")
    p.add_argument("--label-noise", type=float, default=0.0, help="fraction of training labels made wrong, in [0, 1)")
    p.add_argument("--no-augment", action="store_true", help="train on the images as they are (no flips/shifts)")
    p.add_argument("--label-smoothing", type=float, default=0.2)
    p.add_argument("--budget", type=float, default=0.65, help="tournament mode: share of SAM's gradient evaluations")
    p.add_argument("--msam-rho", type=float, default=0.3, help="tournament mode: Momentum-SAM's radius")
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.0)
    p.add_argument("--seed", type=_in_range("seed"), default=0)
    p.add_argument("--seeds", type=int, default=3, help="table mode: seeds 0 … n−1")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU; the first epoch pays ~1 min)")
    p.add_argument("--sharpness-iters", type=int, default=20)
    p.add_argument("--trace-samples", type=int, default=10)
    p.add_argument("--eval-batch", type=int, default=500)
    p.add_argument("--profiles", action="store_true", help="table mode: loss profiles between seed 0's SGD and SAM")
    p.add_argument("--rhos", default="0.05,0.1,0.2", help="escape mode: SAM radii to continue with")
    p.add_argument("--continue-epochs", type=int, default=2, help="escape mode: epochs after the SGD solution")
    p.add_argument("--warmup-run", action="store_true", help="one untimed short run first (GPU kernel warm-up)")
    p.add_argument("--out", default="", help="also write the JSON to this file")
    p.add_argument("--record", action="store_true", help="mark the JSON as a recorded run (data/runs/)")
    p.add_argument("--note", default="", help="a note stored with a recorded run")
    p.add_argument("--json", action="store_true")
    return p


def config_from_args(a):

    if a.batch_size < 0 or a.test_size < 0 or not (0 <= a.lr <= 10):
        raise _BadArgs("--batch-size, --test-size must be ≥ 0 and --lr in [0, 10]")
    if not (0 <= a.label_noise < 1 and 0 <= a.label_smoothing < 1):
        raise _BadArgs("--label-noise and --label-smoothing must lie in [0, 1)")
    return TrainConfig(data=a.data, train_size=a.train_size, test_size=a.test_size, model=a.model,
                       optimizer=a.optimizer, rho=a.rho, k=a.k, f=a.f, p=a.p, late_f=a.late_f, alpha=a.alpha,
                       p_shape=a.p_shape, p_end=a.p_end, switch=a.switch, lam1=a.lam1, lam2=a.lam2,
                       delta=a.delta, scale_rho=not a.no_scale_rho, msam_nesterov=a.msam_nesterov,
                       epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device,
                       precision=a.precision, compile=a.compile, sharpness_iters=a.sharpness_iters,
                       trace_samples=a.trace_samples, eval_batch=a.eval_batch, label_noise=a.label_noise,
                       augment=not a.no_augment, label_smoothing=a.label_smoothing)


def thesis_table(base, optimizers=TABLE_OPTIMIZERS, seeds=3, progress=None, profiles: bool = False) -> dict:
    """Run each optimizer for seeds base.seed … base.seed + seeds − 1 under `base` (only optimizer and seed change).
    Returns {"rows": [...], "runs": [...]}: per optimizer mean ± std (ddof=1) of test accuracy and λ_max,
    gradient evaluations, mean wall time, and cost relative to SAM (grad evals and wall time).
    With `profiles`, also the 1-D loss profiles between seed 0's SGD and SAM solutions (t ∈ [−1, 2]) and
    along a filter-normalised random direction at each."""

    runs, rows, states = [], [], {}
    for name in optimizers:
        accs, lams, walls, evals = [], [], [], []
        for seed in range(base.seed, base.seed + seeds):   # --seed is the first seed (fresh seeds for a check)
            res = train(replace(base, optimizer=name, seed=seed))
            if seed == base.seed and profiles and name in ("sgd", "sam") and res.status == "done":
                states[name] = (res.state, res.device)
            d = run_summary(res)
            d.update(optimizer=name, seed=seed, config=asdict(res.config))
            runs.append(d)
            if progress:
                progress(d)
            accs.append(res.test_acc)
            lams.append(res.lambda_max if res.lambda_max is not None else math.nan)
            walls.append(res.wall_s)
            evals.append(res.grad_evals)
        rows.append(dict(optimizer=name, seeds=seeds, test_acc_mean=_mean(accs), test_acc_std=_std(accs),
                         lambda_max_mean=_mean(lams), lambda_max_std=_std(lams), grad_evals=int(np.mean(evals)),
                         wall_s_mean=_mean(walls), wall_s_std=_std(walls)))
    sam = next((r for r in rows if r["optimizer"] == "sam"), None)
    for r in rows:
        r["cost_vs_sam_evals"] = r["grad_evals"] / sam["grad_evals"] if sam else math.nan
        r["cost_vs_sam_wall"] = r["wall_s_mean"] / sam["wall_s_mean"] if sam else math.nan
    out = {"rows": rows, "runs": runs}
    if len(states) == 2:
        from core.cifar.profiles import ProfileConfig, interpolation_profile, random_direction_profile

        dev = states["sgd"][1]
        cfg0 = base
        out["profiles"] = [interpolation_profile(cfg0, states["sgd"][0], states["sam"][0], label="SGD → SAM",
                                                 device=dev).to_dict()]
        for name in ("sgd", "sam"):
            out["profiles"].append(random_direction_profile(
                cfg0, states[name][0], ProfileConfig(t_min=-1.0, t_max=1.0, points=11),
                label=f"{name.upper()}, random direction", device=dev).to_dict())
    return out


def _mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else math.nan


def _std(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan


def format_table(rows) -> str:
    lines = [f"{'optimizer':10} {'test acc %':>16} {'λ_max':>16} {'grad evals':>10} {'wall s':>8} {'vs SAM':>7}"]
    for r in rows:
        lines.append(f"{r['optimizer']:10} {100 * r['test_acc_mean']:7.2f} ± {100 * r['test_acc_std']:5.2f}  "
                     f"{r['lambda_max_mean']:7.1f} ± {r['lambda_max_std']:5.1f}  {r['grad_evals']:10d} "
                     f"{r['wall_s_mean']:8.2f} {r['cost_vs_sam_wall']:7.2f}")
    return "\n".join(lines)


def format_tournament(results: dict) -> str:
    lines = [f"budget {results['budget']:.2f} of SAM's gradient evaluations, T = {results['steps']} steps; "
             f"Pareto front: {', '.join(results['pareto'])}",
             f"{'method':34} {'cost':>5} {'test acc %':>14} {'λ_max':>14} {'wall s':>7}"]
    for r in results["methods"]:
        lam = "—" if r["lambda_max_mean"] is None else f"{r['lambda_max_mean']:6.1f} ± {r['lambda_max_std'] or 0:4.1f}"
        lines.append(f"{r['label'][:34]:34} {r['budget_ratio']:5.2f} {100 * r['test_acc_mean']:6.2f} ± "
                     f"{100 * (r['test_acc_std'] or 0):5.2f} {lam:>14} {r['wall_s_mean']:7.1f}")
    return "\n".join(lines)


def record(kind: str, command: str, config, results: dict, hardware: dict, note: str = "",
           recorded: bool = False) -> dict:
    """A recorded run (data/runs/*.json): hardware, command, date, torch version, config, results."""
    import torch

    return {"kind": kind, "recorded": recorded, "note": note, "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__, "hardware": hardware, "config": asdict(config), "results": results}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        a = build_parser().parse_args(argv)
        cfg = config_from_args(a)

        check_config(cfg)
        device = pick_device(cfg.device)
    except (_BadArgs, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    shown = [x for i, x in enumerate(argv) if x != "--note" and (i == 0 or argv[i - 1] != "--note")]
    command = "python -m core cifar " + shlex.join(shown)  # the note is stored on its own
    try:
        if a.warmup_run:
            train(replace(cfg, epochs=1, train_size=min(cfg.train_size, 2000), sharpness_iters=0, trace_samples=0))
        if a.mode == "table":
            opts = tuple(o.strip() for o in a.optimizers.split(",") if o.strip())
            bad = [o for o in opts if o not in OPTIMIZERS]
            if bad or not 1 <= a.seeds <= 20:
                print(f"error: unknown optimizers {bad} or --seeds outside 1…20", file=sys.stderr)
                return 2
            progress = None if a.json else (lambda d: print(
                f"  {d['optimizer']:9} seed {d['seed']}: acc {d['test_acc']:.4f} λ {d['lambda_max']} "
                f"{d['wall_s']:.1f} s", flush=True))
            table = thesis_table(cfg, opts, a.seeds, progress, profiles=a.profiles)
            hw = common_hardware([r["hardware"] for r in table["runs"]], hardware_info(device))
            out = record("table", command, cfg, table, hw, a.note, a.record)
            text = format_table(table["rows"])
        elif a.mode == "tournament":

            opts = tuple(o.strip() for o in a.optimizers.split(",") if o.strip()) if "--optimizers" in argv else METHODS
            try:
                tcfg = TournamentConfig(budget=a.budget, seeds=a.seeds, methods=opts, train_size=cfg.train_size,
                                        epochs=cfg.epochs, model=cfg.model, data=cfg.data, rho=cfg.rho,
                                        batch_size=cfg.batch_size, msam_rho=a.msam_rho, label_noise=cfg.label_noise,
                                        augment=cfg.augment,
                                        label_smoothing=cfg.label_smoothing, sharpness_iters=cfg.sharpness_iters,
                                        eval_batch=cfg.eval_batch, device=cfg.device)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            progress = None if a.json else (lambda d: print(
                f"  {d['optimizer']:9} seed {d['seed']}: acc {d['test_acc']:.4f} evals {d['grad_evals']} "
                f"{d['wall_s']:.1f} s", flush=True))
            res = run_tournament(tcfg, progress)
            results = res.to_dict()
            hw = common_hardware([r["hardware"] for r in results["runs"]], hardware_info(device))
            out = record("tournament", command, tcfg.base(), results, hw, a.note, a.record)
            text = format_tournament(results)
        elif a.mode == "escape":
            from core.cifar.profiles import EscapeConfig, escape

            try:
                rhos = tuple(float(r) for r in a.rhos.split(",") if r.strip())
            except ValueError:
                rhos = ()
            if not rhos or not all(0 < r <= LIMITS["rho"].hi for r in rhos) or not 1 <= a.continue_epochs <= 50:
                print("error: --rhos must be numbers in (0, 2], --continue-epochs in 1…50", file=sys.stderr)
                return 2
            esc = escape(cfg, EscapeConfig(rhos=rhos, continue_epochs=a.continue_epochs))
            out = record("escape", command, cfg, esc.to_dict(), common_hardware(esc.hardware, hardware_info(device)),
                         a.note, a.record)
            text = "\n".join(f"{r['optimizer']:4} ρ={r['rho']:<5g} distance {r['distance']:.3f}  loss jump "
                             f"{r['loss_jump']:+.4f}  λ_max {r['lambda_max']:.1f} (drop {r['lambda_drop']:+.1f})"
                             for r in esc.rows)
        else:
            res = train(cfg)
            # the run's own hardware: after a GPU out-of-memory fallback it ran on the CPU, not on `device`
            out = record("run", command, cfg, run_summary(res), res.hardware, a.note, a.record)
            text = "\n".join(f"{k}: {v}" for k, v in run_summary(res).items() if k != "history")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = to_jsonable(out)  # NaN/Inf → null, numpy → plain numbers
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1) if a.json else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
