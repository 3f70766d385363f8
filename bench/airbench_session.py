"""The airbench part of the GPU session (issue 15), in ONE Python process, sized to a deadline.

    python bench/airbench_session.py --out $OUT --tag gpu_ --deadline 420      # on the device (bench/gpu_session.sh)
    python bench/airbench_session.py --out /tmp/x --tag dryrun_ --dry-run      # the same steps on the CPU, tiny

What it measures, in this order (a later step gets what time is left; each keeps ≥ its minimum of seeds or is
skipped with a line in the log saying so):
  1. an untimed warm-up run (cuDNN autotuning, CUDA start-up);
  2. the thesis table at ρ = 0.05 on the full set, 10 epochs, batch 1024: SGD, SAM, PSAM, late SAM, 5 seeds
     (at least 3); SGD's seed-0 run is also the throughput record (images/s, whole-run time);
  3. a profile of the SGD and SAM steps (torch.profiler, top kernels printed to the log);
  4. SAM at ρ = 0.02 and 0.1, 5 seeds (at least 3): each a table record beside the same SGD runs, for the
     page's Welch verdicts;
  5. escape from an SGD solution, ≥ 3 seeds (core.cifar.profiles.escape per seed; rows = mean ± std);
  6. the budget-tournament methods (every other name in core.schedules.OPTIMIZERS, ASAM aside) at ρ = 0.05,
     5 seeds where time allows, else 3, else skipped; they join the ρ = 0.05 table.
Records (data/runs/ format, cli.record) in --out, 5 files: {tag}airbench_table.json, {tag}airbench_rho002.json,
{tag}airbench_rho01.json, {tag}airbench_escape.json, {tag}airbench_throughput.json. A summary at the end
checks the issue's targets (≥ 93.0% SGD with TTA, ≥ 200k img/s, ≤ 4 s a run, SAM ≤ 2.1× SGD, PSAM ≤ 0.70× SAM).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.cifar import airbench  # noqa: E402
from core.cifar.cli import _mean, _std, record, thesis_table  # noqa: E402
from core.cifar.profiles import EscapeConfig, escape  # noqa: E402
from core.cifar.train import TrainConfig, common_hardware, hardware_info, train  # noqa: E402
from core.device import pick_device  # noqa: E402
from core.jsonable import to_jsonable  # noqa: E402
from core.methods import OPTIMIZERS  # noqa: E402

CORE = ("sgd", "sam", "psam", "late_sam")
TOURNAMENT = tuple(o for o in OPTIMIZERS if o not in CORE + ("asam",))
RHOS = (0.02, 0.05, 0.1)
# The escape's continuations run at 1/5 of the recipe's peak learning rate (1.50 at batch 1024), as the fast
# net's escape runs at 0.02 = 1/5 of its 0.1.
ESCAPE_LR = 0.3
# Relative cost of a run (SGD = 1) before one has been measured: two passes for SAM, ~1.3 for the schedules.
GUESS = {"sgd": 1.0, "sam": 1.9, "escape": 3.5}


class Clock:
    """The time left before the deadline, and each kind of run's measured cost relative to SGD's."""

    def __init__(self, deadline_s: float):
        self.t0, self.deadline = time.perf_counter(), deadline_s
        self.cost: dict[str, list[float]] = {}

    def left(self) -> float:
        return self.deadline - (time.perf_counter() - self.t0)

    def per_run(self, name: str) -> float:
        sgd = np.mean(self.cost["sgd"]) if self.cost.get("sgd") else 10.0
        if self.cost.get(name):
            return float(np.mean(self.cost[name]))
        return sgd * GUESS.get(name, 1.4)

    def seeds(self, name: str, want: int, least: int, reserve: float = 0.0) -> int:
        """As many seeds as fit (≤ want) in the time left minus `reserve`; 0 if not even `least` fit."""
        n = min(want, int((self.left() - reserve) / self.per_run(name)))
        return n if n >= least else 0


def log(msg: str) -> None:
    print(msg, flush=True)


def run_table(base: TrainConfig, names, seeds: int, clock: Clock) -> dict:
    """cli.thesis_table for `names` under `base`, timing each optimizer's runs for the clock."""
    out = {"rows": [], "runs": []}
    for name in names:
        t0 = time.perf_counter()
        part = thesis_table(base, (name,), seeds, progress=lambda d: log(
            f"  {d['optimizer']:10} ρ={d['config']['rho']:<5g} seed {d['seed']}: TTA acc {d['test_acc']:.4f}  "
            f"λ_max {d['lambda_max']}  train {d['wall_s']:.2f} s  {d['images_per_s']:.0f} img/s"))
        clock.cost.setdefault(name, []).append((time.perf_counter() - t0) / seeds)   # SAM costs the same at any ρ
        out["rows"] += part["rows"]
        out["runs"] += part["runs"]
    return out


def with_costs(table: dict) -> dict:
    """Each row's cost relative to SAM's row (gradient evaluations and wall time), as cli.thesis_table gives."""
    sam = next((r for r in table["rows"] if r["optimizer"] == "sam"), None)
    for r in table["rows"]:
        r["cost_vs_sam_evals"] = r["grad_evals"] / sam["grad_evals"] if sam else math.nan
        r["cost_vs_sam_wall"] = r["wall_s_mean"] / sam["wall_s_mean"] if sam else math.nan
    return table


def run_seconds(runs: list[dict]) -> list[float]:
    """Whole-run times (whitening + training + TTA, the last history row's run_s), one per finished run."""
    return [r["history"][-1]["run_s"] for r in runs if r.get("status") == "done" and "run_s" in r["history"][-1]]


def escape_seeds(base: TrainConfig, seeds: int, rhos, epochs: int, eval_images: int = 500) -> dict:
    """core.cifar.profiles.escape for seeds 0 … n−1, combined: each (optimizer, ρ) row is the mean over seeds,
    with a `_std` beside each measure and the per-seed results under `seeds` (histories left out but seed 0's)."""
    per = []
    for s in range(seeds):
        r = escape(replace(base, seed=s, optimizer="sgd"),
                   EscapeConfig(rhos=tuple(rhos), continue_epochs=epochs, lr=ESCAPE_LR, eval_images=eval_images))
        d = r.to_dict()
        log(f"  escape seed {s}: start λ_max {d['start_lambda_max']:.1f}; " + "; ".join(
            f"{x['optimizer']} ρ={x['rho']:g} distance {x['distance']:.3f} λ_max {x['lambda_max']:.1f}"
            for x in d["rows"]))
        per.append(d)
    rows = []
    for i, r0 in enumerate(per[0]["rows"]):
        row = {"optimizer": r0["optimizer"], "rho": r0["rho"], "seeds": len(per), "history": r0.get("history", [])}
        for k in ("distance", "loss", "loss_jump", "lambda_max", "lambda_drop", "test_acc", "grad_evals"):
            vals = [p["rows"][i][k] for p in per if len(p["rows"]) > i and p["rows"][i].get(k) is not None]
            row[k], row[f"{k}_std"] = _mean(vals), _std(vals)
        rows.append(row)
    for p in per:
        for r in p["rows"]:
            r.pop("history", None)
    start = [p["start_lambda_max"] for p in per]
    return {"rows": rows, "start_loss": _mean([p["start_loss"] for p in per]), "start_lambda_max": _mean(start),
            "start_lambda_max_std": _std(start), "base": per[0]["base"], "seeds": per,
            "hardware": [h for p in per for h in p["hardware"]]}


def profile_steps(base: TrainConfig, cuda: bool) -> None:
    """torch.profiler over a few SGD and SAM steps of the airbench recipe: on CUDA the top kernels by GPU time, so
    a missed speed target can be explained (printed to the log only); on the CPU (a dry run) the top operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    key = "self_device_time_total" if cuda else "self_cpu_time_total"

    for name in ("sgd", "sam"):
        cfg = replace(base, optimizer=name, train_size=min(base.train_size, 20 * 1024), epochs=1,
                      sharpness_iters=0, trace_samples=0)
        with profile(activities=activities) as prof:
            res = train(cfg)
        if cuda:
            torch.cuda.synchronize()
        log(f"-- profile: {name}, {res.total_steps} steps at batch {res.batch_size}, {res.images_per_s:.0f} img/s "
            f"(under the profiler)")
        log(prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=60))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", default="gpu_")
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds for the whole script")
    ap.add_argument("--dry-run", action="store_true", help="CPU, built-in mini set, tiny sizes")
    # the real run's settings; smaller ones try its deadline logic on a CPU (e.g. --device cpu --data builtin
    # --train-size 64 --test-size 32 --eval-batch 16 --epochs 1 --batch-size 32 --deadline 150)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default="full")
    ap.add_argument("--train-size", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--test-size", type=int, default=0, help="0: the whole test set")
    ap.add_argument("--eval-batch", type=int, default=500, help="training images for λ_max (20 power steps)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/airbench_session.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if a.dry_run:
        base = TrainConfig(model="airbench", data="builtin", train_size=32, test_size=16, epochs=1, batch_size=16,
                           device="cpu", rho=0.05, sharpness_iters=2, trace_samples=0, eval_batch=8)
        want, least, esc_seeds, esc_epochs = 2, 2, 2, 1
        # a dry run checks the plumbing, not the net: a narrow net (every AirbenchNet built in this process, the
        # escape's too) keeps it to seconds on a CPU; the real widths are tested in tests/test_airbench.py
        airbench.WIDTHS = (8, 16, 16)
        a.deadline = max(a.deadline, 1e6)   # a dry run runs every step, however slow the CPU
    else:
        base = TrainConfig(model="airbench", data=a.data, train_size=a.train_size, test_size=a.test_size,
                           epochs=a.epochs, batch_size=a.batch_size, device=a.device, rho=0.05, sharpness_iters=20,
                           trace_samples=0, eval_batch=a.eval_batch)
        want, least, esc_seeds, esc_epochs = 5, 3, 3, 2
    clock = Clock(a.deadline)
    device = pick_device(base.device)
    hw = hardware_info(device)
    log(f"airbench session on {hw.get('gpu', hw['cpu'])}, deadline {a.deadline:.0f} s")

    def save(name: str, kind: str, cfg: TrainConfig, results: dict, note: str, runs=None) -> None:
        hardware = common_hardware([r.get("hardware", {}) for r in (runs or results.get("runs", []))], hw)
        rec = to_jsonable(record(kind, command, cfg, results, hardware, note, recorded=True))
        (out / f"{a.tag}airbench_{name}.json").write_text(json.dumps(rec, indent=1))
        log(f"   wrote {a.tag}airbench_{name}.json")

    t0 = time.perf_counter()
    if not a.dry_run:   # untimed warm-up: CUDA start-up, cuDNN autotuning
        train(replace(base, epochs=1, train_size=min(base.train_size, 2048), sharpness_iters=0))
    log(f"== warm-up run: {time.perf_counter() - t0:.1f} s")

    # 2. the core table at ρ = 0.05 (SGD first: it sets the clock's unit)
    log("== thesis table at ρ = 0.05")
    table = run_table(base, ("sgd",), want, clock)
    # the most seeds k ≤ want for SAM, PSAM and late SAM that leave the minimum of the required steps after them
    # (SAM at two more radii with `least` seeds, the escape's seeds)
    rest = 2 * least * clock.per_run("sam") + esc_seeds * clock.per_run("escape")
    per_seed = sum(clock.per_run(o) for o in CORE[1:])
    k = max(least, min(want, int((clock.left() - rest) / per_seed)))
    log(f"   {k} seeds for SAM, PSAM, late SAM ({clock.left():.0f} s left)")
    table_core = run_table(base, CORE[1:], k, clock)
    table = {"rows": table["rows"] + table_core["rows"], "runs": table["runs"] + table_core["runs"]}
    sgd_runs = [r for r in table["runs"] if r["optimizer"] == "sgd"]
    thr = dict(sgd_runs[0])
    save("throughput", "run", replace(base, optimizer="sgd", seed=thr["seed"]), thr,
         "SGD on the airbench net (the ρ = 0.05 table's seed-0 run, after an untimed warm-up): images/s of the "
         "training loop; history[-1].run_s is the whole run (whitening + training + TTA)", runs=[thr])
    # saved now, so that a later failure keeps the core table; saved again below with the tournament methods
    save("table", "table", base, with_costs(dict(table)), "airbench94 recipe; thesis table at ρ = 0.05 (core only)")

    # 3. a profile of the two steps
    if clock.left() > 60:
        try:
            profile_steps(base, device.type == "cuda")
        except Exception as e:   # a profile is a diagnosis, not a result: never fatal
            log(f"-- profile failed: {e}")

    # 4. SAM at the other radii, each beside the same SGD runs
    for rho, tag in ((0.02, "rho002"), (0.1, "rho01")):
        n = clock.seeds("sam", want, least, reserve=clock.per_run("escape") * esc_seeds)
        if not n:
            log(f"== SAM at ρ = {rho}: skipped, {clock.left():.0f} s left")
            continue
        log(f"== SAM at ρ = {rho}, {n} seeds")
        part = run_table(replace(base, rho=rho), ("sam",), n, clock)
        sgd_row = next(r for r in table["rows"] if r["optimizer"] == "sgd")
        save(tag, "table", replace(base, rho=rho),
             with_costs({"rows": [sgd_row] + part["rows"], "runs": sgd_runs + part["runs"]}),
             f"airbench94 recipe; SAM at ρ = {rho} beside the ρ = 0.05 table's SGD runs (the same runs)")

    # 5. escape, ≥ 3 seeds
    n = min(esc_seeds, int(clock.left() / clock.per_run("escape")))
    if n >= (2 if a.dry_run else 3):
        log(f"== escape from an SGD solution, {n} seeds")
        t0 = time.perf_counter()
        esc = escape_seeds(base, n, RHOS, esc_epochs, eval_images=base.eval_batch)
        clock.cost["escape"] = [(time.perf_counter() - t0) / n]
        rec = to_jsonable(record("escape", command, replace(base, optimizer="sgd"), esc,
                                 common_hardware(esc["hardware"], hw),
                                 f"escape on the airbench net, {n} seeds (rows: mean and _std over seeds); "
                                 f"continuations of {esc_epochs} epochs at lr {ESCAPE_LR}", recorded=True))
        (out / f"{a.tag}airbench_escape.json").write_text(json.dumps(rec, indent=1))
        log(f"   wrote {a.tag}airbench_escape.json")
    else:
        log(f"== escape: skipped, {clock.left():.0f} s left")

    # 6. the tournament methods with the time that is left
    # (a dry run takes one: the per-optimizer path is the same, and tests/test_airbench.py runs them all on the net)
    for name in TOURNAMENT[:1] if a.dry_run else TOURNAMENT:
        n = 1 if a.dry_run else clock.seeds(name, want, least)
        if not n:
            log(f"== {name}: skipped, {clock.left():.0f} s left")
            continue
        part = run_table(base, (name,), n, clock)
        table["rows"] += part["rows"]
        table["runs"] += part["runs"]
        save("table", "table", base, with_costs(dict(table)),
             "airbench94 recipe; thesis table at ρ = 0.05 with the budget-tournament methods that fitted")

    summary(table, out, a.tag)
    return 0


def summary(table: dict, out: Path, tag: str) -> None:
    """The issue's targets, from the records just written."""
    rows = {r["optimizer"]: r for r in table["rows"]}
    log("== airbench summary")
    for o, r in rows.items():
        log(f"  {o:10} TTA acc {100 * r['test_acc_mean']:6.2f} ± {100 * (r['test_acc_std'] or 0):4.2f}  "
            f"λ_max {r['lambda_max_mean'] or float('nan'):7.1f}  evals {r['grad_evals']:5d}  "
            f"train {r['wall_s_mean']:6.2f} s  ×SAM {r.get('cost_vs_sam_wall', math.nan):.2f}  ({r['seeds']} seeds)")
    sgd = [r for r in table["runs"] if r["optimizer"] == "sgd"]
    acc = _mean([r["test_acc"] for r in sgd])
    rate = _mean([r["images_per_s"] for r in sgd])
    whole = _mean(run_seconds(sgd))
    log(f"  target SGD ≥ 93.0% (TTA, 10 epochs, {len(sgd)} seeds): {100 * acc:.2f}%  -> {acc >= 0.93}")
    log(f"  target ≥ 200,000 img/s at batch {sgd[0]['batch_size'] if sgd else '?'}: {rate:.0f}  -> {rate >= 2e5}")
    log(f"  target whole run ≤ 4 s (whitening + training + TTA): {whole:.2f} s  -> {whole <= 4.0}")
    if "sam" in rows and "sgd" in rows:
        x = rows["sam"]["wall_s_mean"] / rows["sgd"]["wall_s_mean"]
        log(f"  target SAM ≤ 2.1× SGD's wall time: {x:.2f}×  -> {x <= 2.1}")
    if "psam" in rows and "sam" in rows:
        x = rows["psam"]["wall_s_mean"] / rows["sam"]["wall_s_mean"]
        log(f"  target PSAM ≤ 0.70× SAM's wall time: {x:.2f}×  -> {x <= 0.70}")
    log("  files: " + ", ".join(sorted(p.name for p in out.iterdir())))


if __name__ == "__main__":
    raise SystemExit(main())
