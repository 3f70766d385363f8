"""The command line: `python -m core <command> ... [--json]`. The pages call the same functions.

    python -m core escape --optimizer sam --rho 0.1 --json      escape from the sharp well
    python -m core valley --rho 0.1 --json                      mean position in the asymmetric valley
    python -m core sweep --rhos 0,0.05,0.1,0.2 --json           escape + stationary mean per ρ
    python -m core cifar ...                                    the CIFAR-10 trainer (core.cifar.cli)
    python -m core tournament --landscape valley --budget 0.65 --seeds 3 --json
                                                                every way to spend a SAM budget, at equal cost

With --json one JSON object is printed, with the config echoed under "config". These fields are a
stable contract (issue 2):
    escape: escaped_fraction, median_escape_step (null if under half escaped), mean_escape_step
            (over the escaped particles), grad_evals (per particle),
            theory.kramers_mean_escape_steps (SGD's Kramers time; null where undefined), wall_s
    valley: mean_position, theory.closed_form_sgd, theory.exact_chain (SGD/SAM/ASAM: the stationary mean;
            a schedule: the exact expected time average of this run), wall_s
    tournament: landscape, metric, budget, pareto, references, wall_s and a `methods` list, one entry per
            method: name, label, params, grad_evals (per particle), budget_ratio (against SAM), outcome,
            outcome_ci [lo, hi], source ("simulation" | "exact chain"), extra (double well: in_flat_at_T,
            its CI, mean_final_loss), wall_s  (core.toy.tournament;
            --landscape cifar: core.cifar.tournament.run_tournament, or exit 2 if this checkout lacks it)
Bad arguments (unknown names, numbers outside core.limits, bad formulas) print one line on
stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys

from core.methods import METHODS
from core.toy.simulate import SimConfig


class UsageError(Exception):
    """A user mistake: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message over several lines; we want one
        raise UsageError(message)


def _rho_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


def _common(p: argparse.ArgumentParser, *, landscape: bool = True, lr: float, sigma: float,
            particles: int, steps: int, rho: float | None = 0.1) -> None:
    if landscape:
        p.add_argument("--landscape", default="double_well_2d")
        p.add_argument("--formula", default="", help="L(x, y) for --landscape formula")
    p.add_argument("--optimizer", default="sam", help=", ".join(METHODS))
    if rho is not None:
        p.add_argument("--rho", type=float, default=rho)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--noise", default="isotropic", help="none, isotropic, hessian, minibatch")
    p.add_argument("--sigma", type=float, default=sigma)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--particles", type=int, default=particles)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=2, help="SAM period (psam, every_k)")
    p.add_argument("--f", type=float, default=0.6, help="early fraction (psam)")
    p.add_argument("--p", type=float, default=0.3, help="SAM probability (random_sam)")
    p.add_argument("--late-f", type=float, default=0.3, help="late fraction (late_sam)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m core", description="SAM Lab engine: toy simulations and benchmarks")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("escape", help="escape from the starting (sharp) minimum")
    _common(p, lr=0.05, sigma=2.5, particles=400, steps=300)

    p = sub.add_parser("valley", help="stationary mean position in the 1-D asymmetric valley")
    p.add_argument("--a-left", type=float, default=10.0)
    p.add_argument("--a-right", type=float, default=1.0)
    p.add_argument("--burn-in", type=int, default=200)
    _common(p, landscape=False, lr=0.05, sigma=1.0, particles=500, steps=1000)

    p = sub.add_parser("sweep", help="escape statistics and stationary mean for several ρ in one run")
    p.add_argument("--rhos", type=_rho_list, default=(0.0, 0.05, 0.1, 0.15, 0.2))
    p.add_argument("--burn-in", type=int, default=0)
    _common(p, lr=0.05, sigma=2.5, particles=400, steps=300, rho=None)

    p = sub.add_parser("tournament", help="every way to spend a SAM budget, side by side at equal cost")
    p.add_argument("--landscape", default="double_well_2d", help="double_well_2d, valley or cifar")
    p.add_argument("--budget", type=float, default=0.65, help="share of SAM's gradient evaluations, in (0.5, 1)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--rho", type=float, default=None, help="default 0.1 on the toys (cifar: its own default)")
    p.add_argument("--particles", type=int, default=None, help="per seed (default: the preset's)")
    p.add_argument("--steps", type=int, default=None, help="default: the preset's")
    p.add_argument("--methods", default=None, help="comma list (default: all)")
    p.add_argument("--trigger-maps", action="store_true", help="include AE-SAM's and PSAM's trigger maps")
    p.add_argument("--epochs", type=int, default=None, help="cifar only (default: its own)")
    p.add_argument("--train-size", type=int, default=None, help="cifar only (default: its own)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    sub.add_parser("cifar", help="CIFAR-10 training (see python -m core cifar --help)", add_help=False)
    return ap


def _config(args, landscape: str, rhos, **extra) -> SimConfig:
    return SimConfig(
        landscape=landscape, formula=getattr(args, "formula", ""), optimizer=args.optimizer, rhos=rhos,
        lr=args.lr, noise=args.noise, sigma=args.sigma, batch_size=args.batch_size,
        particles=args.particles, steps=args.steps, seed=args.seed, k=args.k, f=args.f, p=args.p,
        late_f=args.late_f, device=args.device, keep_paths=0, record_points=2, **extra)


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def run_escape(args) -> dict:
    from core.toy import measure, theory
    from core.toy.simulate import landscape_for, simulate

    cfg = _config(args, args.landscape, (args.rho,))
    res = simulate(cfg)
    stats = measure.escape_stats(res.first_passage[0], cfg.steps, n_boot=500, seed=cfg.seed)
    land = landscape_for(cfg.landscape, cfg.formula, cfg.landscape_params)  # the one simulate() built
    kramers = speedup = None
    geometry = land.escape_geometry()
    if geometry is not None and cfg.noise == "isotropic":
        kramers = theory.kramers_escape_steps(*geometry, cfg.lr, cfg.sigma)
        if args.optimizer != "sgd" and args.rho > 0:
            speedup = theory.sam_speedup_heuristic(geometry[0], args.rho, cfg.lr, cfg.sigma)
    return {
        "command": "escape", "config": dataclasses.asdict(cfg),
        "escaped_fraction": stats.escaped_fraction, "escaped_fraction_ci": stats.escaped_fraction_ci,
        "median_escape_step": stats.median_escape_step, "median_escape_step_ci": stats.median_escape_step_ci,
        "mean_escape_step": stats.mean_escape_step, "mean_escape_step_ci": stats.mean_escape_step_ci,
        "grad_evals": res.grad_evals, "diverged_fraction": float(res.diverged.mean()),
        "theory": {"kramers_mean_escape_steps": _finite(kramers), "sam_speedup_heuristic": _finite(speedup),
                   "lam_min": geometry[0] if geometry else None,
                   "lam_saddle": geometry[1] if geometry else None,
                   "barrier": geometry[2] if geometry else None},
        "wall_s": res.wall_s, "device": res.device,
    }


def run_valley(args) -> dict:
    from core.methods import OPTIMIZERS
    from core.toy import measure, theory
    from core.toy.simulate import simulate

    params = (("a_left", args.a_left), ("a_right", args.a_right))
    cfg = _config(args, "valley_1d", (args.rho,), landscape_params=params, burn_in=args.burn_in)
    res = simulate(cfg)
    sm = measure.stationary_mean(res)
    closed = chain = chain_is = None
    if cfg.noise == "isotropic" and cfg.sigma > 0:
        closed = theory.valley_mean_sgd_closed_form(args.a_left, args.a_right, cfg.lr, cfg.sigma)
        kind, adaptive = OPTIMIZERS[cfg.optimizer]
        if kind in ("never", "always"):  # one fixed update rule: its stationary mean
            rho = 0.0 if kind == "never" else args.rho
            chain = theory.exact_chain_valley(args.a_left, args.a_right, cfg.lr, cfg.sigma, rho=rho,
                                              adaptive=adaptive).mean
            chain_is = "stationary mean"
        else:  # a schedule switches rules: the exact expectation of this run's time average, step by step
            start = cfg.start[0] if cfg.start else 0.0
            chain = theory.exact_schedule_chain_valley(args.a_left, args.a_right, cfg.lr, cfg.sigma, args.rho,
                                                       res.sam_mask, start, cfg.burn_in, adaptive).time_avg_mean
            chain_is = "expected time average of this run (steps burn_in+1 … T)"
    return {
        "command": "valley", "config": dataclasses.asdict(cfg),
        "mean_position": float(sm.mean[0]), "mean_position_ci": [float(sm.ci_low[0]), float(sm.ci_high[0])],
        "grad_evals": res.grad_evals, "diverged_fraction": float(res.diverged.mean()),
        "theory": {"closed_form_sgd": _finite(closed), "exact_chain": _finite(chain), "exact_chain_is": chain_is},
        "wall_s": res.wall_s, "device": res.device,
    }


def run_sweep(args) -> dict:
    from core.toy import measure

    cfg = _config(args, args.landscape, args.rhos, burn_in=args.burn_in)
    sweep = measure.rho_sweep(cfg, args.rhos, n_boot=500)
    out = sweep.to_dict()
    out["command"] = "sweep"
    out["config"] = dataclasses.asdict(cfg)
    return out


def run_tournament(args) -> dict:
    if args.landscape == "cifar":
        return _cifar_tournament(args)
    from core.toy.tournament import METHODS, TournamentConfig
    from core.toy.tournament import run_tournament as run

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else METHODS
    rho = 0.1 if args.rho is None else args.rho
    cfg = TournamentConfig(landscape=args.landscape, budget=args.budget, rho=rho, seeds=args.seeds,
                           particles=args.particles, steps=args.steps, methods=methods,
                           trigger_map=args.trigger_maps)
    res = run(cfg)
    out = {
        "command": "tournament", "config": dataclasses.asdict(cfg), "landscape": res.landscape,
        "metric": res.metric, "budget": res.budget, "steps": res.steps, "particles": res.particles,
        "methods": [{"name": m.name, "label": m.label, "params": m.params, "grad_evals": m.grad_evals,
                     "budget_ratio": m.budget_ratio, "sam_fraction": m.sam_fraction, "outcome": m.outcome,
                     "outcome_ci": list(m.ci), "source": m.source, "simulated": m.simulated,
                     "simulated_ci": list(m.simulated_ci), "per_seed": m.per_seed, "n": m.n,
                     "diverged_fraction": m.diverged_fraction, "extra": m.extra, "wall_s": m.wall_s}
                    for m in res.methods],
        "pareto": res.pareto, "references": res.references, "notes": res.notes, "wall_s": res.wall_s,
    }
    if args.trigger_maps:
        out["trigger_maps"] = res.trigger_maps
    return out


def _cifar_tournament(args) -> dict:
    """The CIFAR tournament lives in core/cifar/tournament.py (`run_tournament(cfg)`, its config
    dataclass taking `budget` and `seeds`, and, where given, methods, rho, epochs, train_size); a checkout
    without it gets one line and exit code 2."""
    try:
        from core.cifar import tournament as ct
    except ImportError:
        raise UsageError("the CIFAR tournament (core/cifar/tournament.py) is not in this checkout; "
                         "use --landscape valley or double_well_2d") from None
    config_cls = next((getattr(ct, n) for n in ("TournamentConfig", "CifarTournamentConfig")
                       if dataclasses.is_dataclass(getattr(ct, n, None))), None)
    if config_cls is None or not hasattr(ct, "run_tournament"):
        raise UsageError("core/cifar/tournament.py has no TournamentConfig/run_tournament to call")
    names = {f.name for f in dataclasses.fields(config_cls)}
    given = {"budget": args.budget, "seeds": args.seeds, "rho": args.rho, "epochs": args.epochs,
             "train_size": args.train_size,
             "methods": tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else None}
    cfg = config_cls(**{k: v for k, v in given.items() if k in names and v is not None})
    res = ct.run_tournament(cfg)
    out = res.to_dict() if hasattr(res, "to_dict") else dict(res)
    out["command"] = "tournament"
    out.setdefault("config", dataclasses.asdict(cfg))
    out.setdefault("landscape", "cifar")
    return out


def _human(out: dict) -> str:
    cmd = out["command"]
    lines = [f"{cmd}: " + ", ".join(f"{k}={v}" for k, v in out["config"].items()
                                    if k in ("landscape", "optimizer", "rhos", "lr", "sigma", "particles", "steps"))]
    if cmd == "escape":
        th = out["theory"]
        lines += [f"  escaped fraction   {out['escaped_fraction']:.3f}",
                  f"  median escape step {out['median_escape_step']}",
                  f"  mean escape step   {out['mean_escape_step']}  (of those that escaped)",
                  f"  Kramers (SGD)      {th['kramers_mean_escape_steps']}",
                  f"  gradient evals     {out['grad_evals']} per particle"]
    elif cmd == "valley":
        th = out["theory"]
        lines += [f"  mean position      {out['mean_position']:.4f}",
                  f"  closed form (SGD)  {th['closed_form_sgd']}",
                  f"  exact chain        {th['exact_chain']}"]
    elif cmd == "sweep":
        for rho, esc, mean in zip(out["rhos"], out["escape"], out["stationary"]["mean"]):
            lines.append(f"  ρ={rho:<6g} escaped {esc['escaped_fraction']:.3f}  median {esc['median_escape_step']}"
                         f"  mean position {mean}")
    elif cmd == "tournament":
        lines = [f"tournament on {out.get('landscape')}: budget {out.get('budget')} of SAM's gradient evaluations, "
                 f"outcome = {out.get('metric')}"]
        for m in out.get("methods", []):
            ci = m.get("outcome_ci") or [None, None]
            fmt = (lambda x: "—" if x is None else f"{x:.4f}")
            lines.append(f"  {m.get('label', m.get('name', '')):<38} cost {m.get('budget_ratio', 0):.3f}  "
                         f"{fmt(m.get('outcome'))} [{fmt(ci[0])}, {fmt(ci[1])}]  {m.get('source', '')}")
        if out.get("pareto"):
            lines.append(f"  Pareto front: {', '.join(out['pareto'])}")
        for name, t in (out.get("tuning") or {}).items():  # the CIFAR tournament: its search and paired verdicts
            if t.get("runs"):
                lines.append(f"  tuned {name}: {t['chosen']} ({t['runs']} pilot runs)")
        for name, v in ((out.get("verdicts") or {}).get("vs_sam") or {}).items():
            if v:
                lines.append(f"  {name} − SAM: {v['diff']:+.2f} points [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}], "
                             f"paired t {v['t']:+.2f}, Holm p {v['p_holm']:.3f}")
    if "wall_s" in out:
        lines.append(f"  wall {out['wall_s']:.3f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "cifar":  # lazy: the toy commands never import the CIFAR code
        from core.cifar.cli import main as cifar_main

        return cifar_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        run = {"escape": run_escape, "valley": run_valley, "sweep": run_sweep,
               "tournament": run_tournament}[args.command]
        out = run(args)
    except UsageError as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except ValueError as e:  # SimConfig validation, FormulaError, unknown names
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    if args.json:
        from core.jsonable import to_jsonable

        print(json.dumps(to_jsonable(out), allow_nan=False))
    else:
        print(_human(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
