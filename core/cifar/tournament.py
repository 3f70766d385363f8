"""The budget tournament on CIFAR-10: every way to spend a SAM budget, trained side by side at equal cost.

The toy tournament (core.toy.tournament) asks the question on particles; this one asks it on a network.
A budget b is a share of full SAM's gradient evaluations over the same T steps (SAM 2T, SGD T). Each method's
parameters are chosen to spend b, by the same rule as on the toys (core.toy.tournament.method_params):

    psam        k = 2, f = 2(2b − 1)                              the thesis: f = 0.6, k = 2 at b = 0.65
    late_sam    SAM on the last 2b − 1 of the steps               Zhou et al., ICLR 2025
    composer    SAM every k = round(1/(2b − 1)) steps, ρ·k         mosaicml/composer
    ss_sam      p(t) rising linearly, mean 2b − 1                  Zhao, Zhang, Hu 2022
    looksam     a SAM step every k = round(1/(2b − 1)), α = 0.7    Liu et al., CVPR 2022
    ae_sam      thresholds (c − 1, c + 1), c calibrated on pilot runs (below)   Jiang et al., ICLR 2023
    msam        one pass a step whatever b: at its own cost 50%, with its own radius `msam_rho`
    sgd, sam    the two ends (50% and 100%)

and the record says what each really spent (`budget_ratio` = its gradient evaluations / SAM's).

AE-SAM's share of SAM steps depends on the gradients it meets, so no formula gives it. Its shift c starts at the
Gaussian guess of theory.md §7 (P(SAM) = 1 − Φ(c_t), Schedule.expected_sam_fraction) and is corrected on pilot
runs (a seed none of the tournament's runs uses): c ← c + Φ⁻¹(1 − target) − Φ⁻¹(1 − share measured), twice. The
pilots' cost is reported (`ae_pilot`), not hidden.

Outcome: test accuracy after training, mean ± std over the seeds and a 95% t interval; λ_max (the top Hessian
eigenvalue on a fixed training batch) beside it. The Pareto front is taken on (cost lower, mean accuracy higher).
Differences between methods are judged with Welch's t over the seeds (core.stats.welch_difference) by whoever
shows them (app/tournament_charts.py); three seeds only support large differences.

`run_tournament(TournamentConfig) -> TournamentResult` (`to_dict()`), used by `python -m core tournament
--landscape cifar` and by `python -m core cifar tournament` (which can record it in data/runs/).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist

import numpy as np

from core.cifar.train import TrainConfig, run_summary, train
from core.jsonable import to_jsonable
from core.methods import for_optimizer
from core.stats import t_critical_95
from core.toy.tournament import method_params, pareto_front

METHODS = ("sgd", "sam", "psam", "late_sam", "composer", "ss_sam", "ae_sam", "looksam", "msam")
MAX_SEEDS = 10
PILOT_SEED = 1000          # AE-SAM's calibration runs: a seed no tournament run uses
PILOT_ROUNDS = 2


@dataclass(frozen=True)
class TournamentConfig:
    """One CIFAR tournament. The defaults are the CPU table: the tiny CNN on the built-in mini set."""

    budget: float = 0.65               # share of SAM's gradient evaluations, in (0.5, 1)
    seeds: int = 3
    methods: tuple[str, ...] = METHODS
    train_size: int = 5000
    epochs: int = 5
    batch_size: int = 0                # 0 → the model's default (tiny: 128)
    model: str = "tiny"
    data: str = "builtin"
    rho: float = 0.05
    msam_rho: float = 0.3              # Momentum-SAM's radius (core.sam.MomentumSAM's default; the paper's is
                                       # ~15× SAM's, theory.md §7)
    alpha: float = 0.7                 # LookSAM's α
    label_noise: float = 0.0
    augment: bool = True
    label_smoothing: float = 0.2
    sharpness_iters: int = 10          # λ_max by power iteration at the end of each run (0 → skip)
    eval_batch: int = 256
    device: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        if not (isinstance(self.budget, (int, float)) and 0.5 < self.budget < 1.0):
            raise ValueError(f"the budget is a share of SAM's cost strictly between 0.5 (SGD) and 1 (SAM), "
                             f"got {self.budget!r}")
        if not (isinstance(self.seeds, int) and 1 <= self.seeds <= MAX_SEEDS):
            raise ValueError(f"seeds must be a whole number in [1, {MAX_SEEDS}], got {self.seeds!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown tournament method {', '.join(unknown) or '(none given)'}; choose from "
                             f"{', '.join(METHODS)}")
        if not (math.isfinite(self.msam_rho) and self.msam_rho >= 0):
            raise ValueError(f"msam_rho must be a finite number ≥ 0, got {self.msam_rho!r}")

    def base(self) -> TrainConfig:
        """The training settings every method shares (only the optimizer, its parameters and the seed change)."""
        return TrainConfig(data=self.data, train_size=self.train_size, model=self.model, rho=self.rho,
                           batch_size=self.batch_size,
                           epochs=self.epochs, alpha=self.alpha, label_noise=self.label_noise,
                           augment=self.augment, label_smoothing=self.label_smoothing,
                           sharpness_iters=self.sharpness_iters, trace_samples=0, eval_batch=self.eval_batch,
                           device=self.device)


@dataclass
class MethodRow:
    """One method's line. `optimizer` = `name` and the *_mean/*_std/cost_vs_sam_* keys follow the CIFAR tables
    (core.cifar.cli.thesis_table), so app/cifar_view.py's table builders read it too."""

    name: str
    optimizer: str
    label: str
    params: dict
    seeds: int
    grad_evals: float                  # mean over seeds (AE-SAM: what each run really took)
    budget_ratio: float                # grad_evals / SAM's 2T
    sam_fraction: float                # second passes / steps
    outcome: float                     # mean test accuracy (fraction)
    outcome_ci: tuple[float, float]    # 95% t interval over the seeds (None with one seed)
    test_acc_mean: float
    test_acc_std: float
    lambda_max_mean: float
    lambda_max_std: float
    wall_s: float                      # mean training time per run
    wall_s_mean: float
    wall_s_std: float
    cost_vs_sam_evals: float
    cost_vs_sam_wall: float
    per_seed: list[float]              # test accuracy per seed
    lambda_per_seed: list[float]


@dataclass
class TournamentResult:
    config: TournamentConfig
    metric: str                        # "test_acc"
    budget: float
    steps: int                         # T, the same for every method
    methods: list[MethodRow]
    pareto: list[str]
    runs: list[dict]                   # every training run's summary (status, accuracy, λ_max, history …)
    ae_pilot: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return to_jsonable(self)


def method_config(cfg: TournamentConfig, name: str, steps: int, ae_shift: float | None = None) -> TrainConfig:
    """The TrainConfig of `name` at cfg's budget (seed 0; the caller sets the seed)."""
    params = {k: v for k, v in method_params(name, cfg.budget, steps).items() if k != "momentum"}
    base = replace(cfg.base(), optimizer=name, **params)
    if name == "msam":
        base = replace(base, rho=cfg.msam_rho)
    if name == "ae_sam":
        c = ae_gaussian_shift(cfg.budget, steps) if ae_shift is None else ae_shift
        base = replace(base, lam1=c - 1.0, lam2=c + 1.0)
    return base


def ae_gaussian_shift(budget: float, steps: int) -> float:
    """The shift c for which thresholds (c − 1, c + 1) take SAM on a share 2b − 1 of the steps if ‖g‖² were
    Gaussian (Schedule.expected_sam_fraction): bisection, the share falls as c grows."""
    target = 2.0 * budget - 1.0
    lo, hi = -4.0, 4.0
    for _ in range(40):
        c = 0.5 * (lo + hi)
        share = for_optimizer("ae_sam", lam1=c - 1.0, lam2=c + 1.0)[0].expected_sam_fraction(steps)
        lo, hi = (c, hi) if share > target else (lo, c)
    return 0.5 * (lo + hi)


def calibrate_ae(cfg: TournamentConfig, steps: int, should_stop=None) -> dict:
    """Correct the Gaussian guess on pilot runs (seed PILOT_SEED): each round moves c by the gap between the
    target's and the measured share's normal quantiles. Returns the shift and every pilot's share and cost."""
    target = 2.0 * cfg.budget - 1.0
    normal = NormalDist()
    clip = lambda q: min(max(q, 1e-3), 1 - 1e-3)  # noqa: E731 (a share of 0 or 1 has no finite quantile)
    c = ae_gaussian_shift(cfg.budget, steps)
    pilots = []
    for _ in range(PILOT_ROUNDS):
        res = train(replace(method_config(cfg, "ae_sam", steps, c), seed=PILOT_SEED, sharpness_iters=0),
                    should_stop=should_stop)
        share = res.sam_steps / max(1, res.total_steps)
        pilots.append(dict(shift=c, sam_fraction=share, grad_evals=res.grad_evals, wall_s=res.wall_s))
        if res.status != "done":
            break
        c += normal.inv_cdf(clip(1 - target)) - normal.inv_cdf(clip(1 - share))
    return dict(shift=c, target_fraction=target, pilots=pilots)


def run_tournament(cfg: TournamentConfig, progress: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> TournamentResult:
    """Train every method of `cfg` for seeds 0 … seeds−1 at the budget; see the module docstring.
    `progress` gets each finished run's summary; `should_stop` cancels (the runs so far are kept)."""

    t_start = time.perf_counter()
    steps = _steps(cfg)
    notes = []
    ae = calibrate_ae(cfg, steps, should_stop) if "ae_sam" in cfg.methods else {}
    runs, rows = [], []
    for name in cfg.methods:
        mcfg = method_config(cfg, name, steps, ae.get("shift"))
        accs, lams, walls, evals, sams = [], [], [], [], []
        for seed in range(cfg.seeds):
            if should_stop is not None and should_stop():
                notes.append("cancelled: the table holds the runs finished before")
                break
            res = train(replace(mcfg, seed=seed), should_stop=should_stop)
            d = run_summary(res) | dict(optimizer=name, seed=seed, config=asdict(res.config))
            runs.append(d)
            if progress is not None:
                progress(d)
            if res.status != "done":
                notes.append(f"{name} seed {seed}: {res.status} ({res.message})")
                continue
            accs.append(res.test_acc)
            lams.append(math.nan if res.lambda_max is None else res.lambda_max)
            walls.append(res.wall_s)
            evals.append(res.grad_evals)
            sams.append(res.sam_steps / max(1, res.total_steps))
        if accs:
            rows.append(_row(name, mcfg, accs, lams, walls, evals, sams, steps))
    sam = next((r for r in rows if r.name == "sam"), None)
    for r in rows:
        r.cost_vs_sam_wall = r.wall_s_mean / sam.wall_s_mean if sam else math.nan
    front = pareto_front([r.budget_ratio for r in rows], [r.outcome for r in rows])
    return TournamentResult(config=cfg, metric="test_acc", budget=cfg.budget, steps=steps, methods=rows,
                            pareto=[rows[i].name for i in front], runs=runs, ae_pilot=ae, notes=notes,
                            wall_s=time.perf_counter() - t_start)


def _steps(cfg: TournamentConfig) -> int:
    """T: the steps every run takes (the trainer drops the last partial batch)."""
    from core.cifar.train import prepare_data

    n = len(prepare_data(cfg.base())[1])
    batch = min(cfg.base().resolved_batch(), n)
    return cfg.epochs * max(1, n // batch)


def _row(name, mcfg: TrainConfig, accs, lams, walls, evals, sams, steps) -> MethodRow:
    acc_mean, acc_std = _mean(accs), _std(accs)
    n = len(accs)
    half = t_critical_95(n - 1) * acc_std / math.sqrt(n) if n > 1 else math.nan
    ge = float(np.mean(evals))
    schedule, _ = mcfg.schedule()
    label = schedule.label() + (f", ρ {mcfg.rho:g}" if name == "msam" else "")
    params = {k: getattr(mcfg, k) for k in _PARAM_KEYS.get(name, ())}
    return MethodRow(name=name, optimizer=name, label=label, params=params, seeds=n, grad_evals=ge,
                     budget_ratio=ge / (2.0 * steps), sam_fraction=float(np.mean(sams)), outcome=acc_mean,
                     outcome_ci=(acc_mean - half, acc_mean + half), test_acc_mean=acc_mean, test_acc_std=acc_std,
                     lambda_max_mean=_mean(lams), lambda_max_std=_std(lams), wall_s=_mean(walls),
                     wall_s_mean=_mean(walls), wall_s_std=_std(walls), cost_vs_sam_evals=ge / (2.0 * steps),
                     cost_vs_sam_wall=math.nan, per_seed=[float(a) for a in accs],
                     lambda_per_seed=[float(x) for x in lams])


_PARAM_KEYS = {"psam": ("k", "f"), "late_sam": ("late_f",), "composer": ("k", "rho"), "ss_sam": ("p", "p_end", "p_shape"),
               "looksam": ("k", "alpha"), "ae_sam": ("lam1", "lam2", "delta"), "msam": ("rho", "momentum"),
               "sam": ("rho",)}


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else math.nan


def _std(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan


__all__ = ["METHODS", "TournamentConfig", "TournamentResult", "MethodRow", "run_tournament", "method_config",
           "calibrate_ae", "ae_gaussian_shift"]
