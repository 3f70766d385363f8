"""The budget tournament on CIFAR-10: every way to spend a SAM budget, each at its best for the same tuning
effort, trained side by side on the same seeds at equal cost.

The toy tournament (core.toy.tournament) asks the question on particles; this one asks it on a network.
A budget b is a share of full SAM's gradient evaluations over the same T steps (SAM 2T, SGD T); a method that
spends b takes S = (2b − 1)·T second passes. The default setting is the regime where SAM beats SGD on this CPU
(data/runs/cpu_demo_label_noise.json): the tiny CNN on 1,000 training images with 40% noisy labels, 30 epochs,
no augmentation, no label smoothing, ρ 0.1.

Equal tuning effort (`search_space`, `tune_method`). The methods and their free hyperparameters are the
registry's (core.methods: `tournament_methods("cifar")`, each entry's `tune` with its grid), plus SAM every k
as the reference LookSAM is compared with. Every method with a free hyperparameter gets the same search: its
grid, turned into configurations that all spend the budget, and `pilot_runs` (4) pilot trainings, spread
round-robin over the grid and the pilot seeds (1000, 1001: no reported run uses them), scored by the accuracy
on a held-out validation set (`val_size` clean-labelled images of the 5,000-image training pool that the
pilot's own training subset does not contain; the test set is never used to choose). At a budget b (share s =
2b − 1):

    psam        k ∈ (1, 2, 3) with f = k·s ≤ 1                   the thesis: k = 2, f = 0.6 at b = 0.65
    ss_sam      p(t) constant, linear, step, trig; mean s         Zhao, Zhang, Hu 2022
    composer    ρ·k or ρ (scale_rho)                              mosaicml/composer uses ρ·k
    looksam     α ∈ (0, 0.2, 0.5, 0.7), k ≈ 1/s set by b           Liu et al., CVPR 2022 (α 0: SAM every k)
    ae_sam      thresholds (c − d, c + d), d ∈ (0.5, 1, 2)         Jiang et al., ICLR 2023
    msam        ρ ∈ (0.1, 0.3, 1, 3), heavy-ball base              Becker et al. 2024 (one pass a step: 50%)
    sgd, sam, late_sam, every_k   nothing free at a fixed budget (ρ = 0.1 is the regime's, shared): 0 pilots

Where a grid has fewer than four configurations, the spare pilot runs repeat it on the next pilot seed, so
every method with a knob gets the same number of pilot runs. A configuration whose pilot spent more than the
budget + 2 points is not eligible. AE-SAM's share of SAM steps depends on the gradients it meets: each spread
d starts from the shift c of theory.md §7's Gaussian guess (P(SAM) = 1 − Φ(c_t),
Schedule.expected_sam_fraction), and the chosen one is corrected once by its pilots' measured share, c ← c +
Φ⁻¹(1 − s) − Φ⁻¹(1 − measured). The whole search (grid, every pilot, the scores, the choice) is in the
result's `tuning`.

Paired seeds. Every method trains on seeds seed0 … seed0 + seeds − 1 (20 … 24 by default: seeds the search
that found this regime never saw); a seed fixes the initial weights, the training subset, its label noise and
the minibatch order (core.cifar.train seeds all four from it), so the seed's luck cancels in per-seed
differences. `verdicts` compares every method with SAM and with SGD by the paired t on per-seed test
accuracies (core.stats.paired_difference) with Holm's correction across the methods of each family
(core.stats.holm); `gain_share` is the share of SAM's gain over SGD a method keeps, mean(m − SGD)/mean(SAM −
SGD) over the seeds, with Fieller's paired interval (core.stats.fieller_ratio).

Outcome: test accuracy after training, mean ± std over the seeds and a 95% t interval; λ_max (the top Hessian
eigenvalue on a fixed training batch) beside it. The Pareto front is taken on (cost lower, mean accuracy
higher).

`run_tournament(TournamentConfig) -> TournamentResult` (`to_dict()`), used by `python -m core tournament
--landscape cifar` and by `python -m core cifar tournament`; `run_budgets` runs several budgets sharing what
does not depend on the budget (SGD, SAM, Momentum-SAM: the same configurations, so each trains once).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist

import numpy as np

from core import methods as registry
from core.cifar.train import TrainConfig, run_summary, train
from core.jsonable import to_jsonable
from core.methods import for_optimizer
from core.stats import fieller_ratio, holm, paired_difference, t_critical_95
from core.toy.tournament import method_params, pareto_front

# The methods and their free hyperparameters come from the registry (core.methods:
# `tournament_methods("cifar")` and each entry's `tune`); SAM every k is added as the reference LookSAM is
# compared with (LookSAM at α = 0).
REFERENCES = ("every_k",)
METHODS = tuple(registry.tournament_methods("cifar")) + tuple(
    m for m in REFERENCES if m not in registry.tournament_methods("cifar"))
BUDGET_FREE = ("sgd", "sam", "msam")   # their configurations do not depend on the budget
BUDGET_SET = {"looksam": ("k",)}       # knobs the budget fixes (LookSAM's period k ≈ 1/(2b − 1)): unsearched
MAX_SEEDS = 10
PILOT_SEEDS = (1000, 1001)             # no reported run uses them
OVERSPEND = 0.02                       # a pilot that spent more than budget + this is not eligible
VAL_SEED = 777                         # draws the validation images from what a pilot did not train on
PILOT_TEST = 100                       # test images a pilot's per-epoch test pass uses (not used to choose)


@dataclass(frozen=True)
class TournamentConfig:
    """One CIFAR tournament. The defaults are the noisy-label regime where SAM beats SGD on the CPU."""

    budget: float = 0.65               # share of SAM's gradient evaluations, in (0.5, 1)
    seeds: int = 5
    methods: tuple[str, ...] = METHODS
    train_size: int = 1000
    epochs: int = 30
    batch_size: int = 0                # 0 → the model's default (tiny: 128)
    model: str = "tiny"
    data: str = "builtin"
    rho: float = 0.1
    msam_rho: float = 0.3              # Momentum-SAM's radius when not tuned (core.sam.MomentumSAM's default)
    alpha: float = 0.7                 # LookSAM's α when not tuned
    label_noise: float = 0.4
    augment: bool = False
    label_smoothing: float = 0.0
    sharpness_iters: int = 6           # λ_max by power iteration at the end of each reported run (0 → skip)
    eval_batch: int = 128
    device: str = "auto"
    tune: bool = True                  # False: each method at the budget rule's fixed parameters, no pilots
    pilot_runs: int = 4                # per method with a free hyperparameter
    pilot_seeds: tuple[int, ...] = PILOT_SEEDS
    val_size: int = 1000               # held-out validation images the pilots are scored on
    test_pass: int = 100               # reported runs: the trainer's per-epoch test pass on this many images;
                                       # the accuracy reported is measured after training on the whole
                                       # test set (0: the trainer's own pass on it after every epoch)
    seed0: int = 20                    # the reported seeds are seed0 … seed0 + seeds − 1: seeds 0–2 found this
                                       # regime (bench/cifar_live_demo.py), 10–14 and 40–43 confirmed it; 20
                                       # on are fresh

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "pilot_seeds", tuple(self.pilot_seeds))
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
        if not (isinstance(self.pilot_runs, int) and 1 <= self.pilot_runs <= 16) or not self.pilot_seeds:
            raise ValueError(f"pilot_runs must be a whole number in [1, 16] with at least one pilot seed, "
                             f"got "
                             f"{self.pilot_runs!r} and {self.pilot_seeds!r}")
        reported = set(range(self.seed0, self.seed0 + self.seeds))
        if reported & set(self.pilot_seeds):
            raise ValueError(f"the pilot seeds {sorted(reported & set(self.pilot_seeds))} are also reported seeds: "
                             "tuning and reporting must use disjoint seeds")

    def base(self) -> TrainConfig:
        """The training settings every method shares (only the optimizer, its parameters and the seed change)."""
        return TrainConfig(data=self.data, train_size=self.train_size, model=self.model, rho=self.rho,
                           batch_size=self.batch_size,
                           epochs=self.epochs, alpha=self.alpha, label_noise=self.label_noise,
                           augment=self.augment, label_smoothing=self.label_smoothing,
                           sharpness_iters=self.sharpness_iters, trace_samples=0, eval_batch=self.eval_batch,
                           device=self.device)

    def reported_seeds(self) -> list[int]:
        return list(range(self.seed0, self.seed0 + self.seeds))


@dataclass
class MethodRow:
    """One method's line. `optimizer` = `name` and the *_mean/*_std/cost_vs_sam_* keys follow the CIFAR tables
    (core.cifar.cli.thesis_table), so app/cifar_view.py's table builders read it too. `per_seed` and
    `lambda_per_seed` are aligned with `seed_ids` (the seeds whose run finished)."""

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
    seed_ids: list[int] = field(default_factory=list)
    gain_share: float = math.nan       # mean(m − SGD) / mean(SAM − SGD) over the paired seeds
    gain_share_ci: tuple[float, float] = (math.nan, math.nan)   # Fieller's 95% interval


@dataclass
class TournamentResult:
    config: TournamentConfig
    metric: str                        # "test_acc"
    budget: float
    steps: int                         # T, the same for every method
    methods: list[MethodRow]
    pareto: list[str]
    runs: list[dict]                   # every reported training run's summary (status, accuracy, λ_max, history)
    tuning: dict = field(default_factory=dict)     # per method: grid, pilots, scores, choice (`tune_method`)
    verdicts: dict = field(default_factory=dict)   # "vs_sam", "vs_sgd": per method, paired t with Holm
    pairs: dict = field(default_factory=dict)      # named head-to-head comparisons (LookSAM vs SAM every k)
    ae_pilot: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    pilot_wall_s: float = 0.0          # training time spent in the pilot runs (the price of the search)

    def to_dict(self) -> dict:
        return to_jsonable(self)


# --- the search -----------------------------------------------------------------------------------------


def _share(budget: float) -> float:
    return round(2.0 * budget - 1.0, 9)


def tunables(name: str) -> list:
    """The registry's free hyperparameters of `name` that a search at a fixed budget can vary."""
    return [t for t in registry.get(name).tune if t.name not in BUDGET_SET.get(name, ())]


def search_space(name: str, budget: float, steps: int, rho: float) -> list[dict]:
    """The configurations `name` may choose from at `budget` (TrainConfig fields): the product of the
    registry's grids (core.methods, Method.tune), each value turned into parameters that spend the budget:

        k (PSAM)          f = k(2b − 1), where that is ≤ 1
        p_shape (SS-SAM)  p(t) from lo to hi with mean 2b − 1 (constant: 2b − 1 throughout)
        spread (AE-SAM)   thresholds (c − spread, c + spread), c from the Gaussian guess (`ae_gaussian_shift`)
        others            the value itself (LookSAM's α, Composer's scale_rho, Momentum-SAM's ρ)

    on top of the budget rule's fixed parameters (core.toy.tournament.method_params). [{…}] alone means
    nothing to tune."""
    fixed = {k: v for k, v in method_params(name, budget, steps).items() if k != "momentum"}
    if name == "msam":  # heavy ball, the paper's base (and MarlonBecker/MSAM's msam.py)
        fixed[_MSAM_BASE] = False
    if name == "ae_sam":
        c = ae_gaussian_shift(budget, steps)
        fixed.update(lam1=c - 1.0, lam2=c + 1.0)
    grid = [dict(fixed)]
    for tun in tunables(name):
        grid = [dict(g) | _value(name, tun.name, v, budget, steps) for g in grid for v in tun.grid
                if _value(name, tun.name, v, budget, steps) is not None]
    seen, out = set(), []
    for g in grid:  # a value that changes nothing at this budget (e.g. twice the same f) is one configuration
        key = tuple(sorted(g.items()))
        if key not in seen:
            seen.add(key)
            out.append(g)
    return out or [dict(fixed)]


def _value(name: str, knob: str, v, budget: float, steps: int) -> dict | None:
    s = _share(budget)
    if name == "psam" and knob == "k":
        return dict(k=int(v), f=round(v * s, 9)) if v * s <= 1.0 + 1e-9 else None
    if knob == "p_shape":
        lo, hi = (0.0, round(2 * s, 9)) if s <= 0.5 else (round(2 * s - 1, 9), 1.0)
        return dict(p=s, p_shape="constant", p_end=None) if v == "constant" else \
            dict(p=lo, p_end=hi, p_shape=v, switch=0.5)
    if knob == "spread":
        c = ae_gaussian_shift(budget, steps, float(v))
        return dict(lam1=c - v, lam2=c + v)
    return {knob: v}


def method_config(cfg: TournamentConfig, name: str, steps: int, params: dict | None = None) -> TrainConfig:
    """The TrainConfig of `name` (seed 0; the caller sets the seed): `params` (from `search_space`), or
    without them the budget rule's fixed parameters (cfg.alpha, cfg.msam_rho, AE-SAM at the Gaussian
    guess)."""
    if params is None:
        params = {k: v for k, v in method_params(name, cfg.budget, steps).items() if k != "momentum"}
        if name == "msam":
            params.update(rho=cfg.msam_rho, **{_MSAM_BASE: False})
        if name == "ae_sam":
            c = ae_gaussian_shift(cfg.budget, steps)
            params.update(lam1=c - 1.0, lam2=c + 1.0)
    params = dict(params)
    if "scale_rho" in params and "scale_rho" not in TrainConfig.__dataclass_fields__:
        # a trainer without Composer's switch scales ρ by k itself: ρ/k there is a radius of ρ
        if not params.pop("scale_rho"):
            params["rho"] = params.get("rho", cfg.rho) / params.get("k", 1)
    return replace(cfg.base(), optimizer=name, **params)


def ae_gaussian_shift(budget: float, steps: int, spread: float = 1.0) -> float:
    """The shift c for which thresholds (c − spread, c + spread) take SAM on a share 2b − 1 of the steps if
    ‖g‖² were Gaussian (Schedule.expected_sam_fraction): bisection, the share falls as c grows."""
    target = 2.0 * budget - 1.0
    lo, hi = -6.0, 6.0
    for _ in range(40):
        c = 0.5 * (lo + hi)
        share = for_optimizer("ae_sam", lam1=c - spread, lam2=c + spread)[0].expected_sam_fraction(steps)
        lo, hi = (c, hi) if share > target else (lo, c)
    return 0.5 * (lo + hi)


def ae_correct(params: dict, budget: float, measured_share: float) -> dict:
    """Move AE-SAM's thresholds by the gap between the target's and the measured share's normal quantiles."""
    normal = NormalDist()
    clip = lambda q: min(max(q, 1e-3), 1 - 1e-3)  # noqa: E731 (a share of 0 or 1 has no finite quantile)
    shift = normal.inv_cdf(clip(1 - _share(budget))) - normal.inv_cdf(clip(1 - measured_share))
    return dict(params, lam1=params["lam1"] + shift, lam2=params["lam2"] + shift)


class RunCache:
    """Training runs by TrainConfig (frozen, so hashable): a configuration trained once is reused, e.g. SGD's
    and SAM's runs at every budget of `run_budgets`. With `path`, every finished run is also appended there
    (one JSON line) and read back on the next start, so a long tournament that was stopped resumes where it
    was."""

    def __init__(self, path: str | None = None):
        self.done: dict[TrainConfig, dict] = {}
        self.fresh_s = 0.0
        self.path = path
        self._by_json: dict[str, dict] = {}
        if path:
            import json
            import os

            if os.path.exists(path):
                with open(path) as f:
                    for line in f:
                        try:
                            d = json.loads(line)
                        except ValueError:
                            continue  # a line cut short when the run was stopped
                        self._by_json[json.dumps(d["config"], sort_keys=True)] = d

    def _stored(self, tcfg: TrainConfig) -> dict | None:
        if not self._by_json:
            return None
        import json

        return self._by_json.get(json.dumps(to_jsonable(asdict(tcfg)), sort_keys=True))

    def _store(self, d: dict) -> None:
        if self.path:
            import json

            with open(self.path, "a") as f:
                f.write(json.dumps(to_jsonable(d)) + "\n")

    def get(self, tcfg: TrainConfig, validate: int = 0, should_stop=None, progress=None, phase="run",
            final_test: bool = False) -> dict:
        """Train `tcfg` (or return its earlier run). `validate`: score it on that many validation images
        (`val_acc`); `final_test`: measure its test accuracy afterwards on the whole test set (`test_acc`; the
        trainer's per-epoch pass on tcfg's smaller test set stays in `test_acc_pass` and the history)."""
        if tcfg in self.done:
            return self.done[tcfg]
        stored = self._stored(tcfg)
        if stored is not None:
            self.done[tcfg] = stored
            return stored
        res = train(tcfg, should_stop=should_stop)
        d = run_summary(res) | dict(optimizer=tcfg.optimizer, seed=tcfg.seed, phase=phase,
                                    config=asdict(res.config))
        if phase == "pilot":
            d.pop("history", None)
        if validate and res.status == "done":
            d["val_acc"] = validation_accuracy(res, validate)
        if final_test and res.status == "done":
            d["test_acc_pass"] = d["test_acc"]
            d["test_acc"], d["n_test"] = final_test_accuracy(res)
        self.fresh_s += res.wall_s
        if res.status == "done":  # a cancelled run is not kept (a later call trains it again)
            self.done[tcfg] = d
            self._store(d)
        if progress is not None:
            progress(d)
        return d


def validation_set(tcfg: TrainConfig, size: int):
    """Clean-labelled images of the training pool that a run with `tcfg` (its seed's subset) did not train on:
    a class-balanced `size` of them (fewer if the pool is short), drawn with VAL_SEED. (x uint8, y int64) or
    None."""
    from core.cifar import data as cdata

    d, _ = cdata.load_or_fallback(tcfg.data)
    keep = tuple(range(len(d.classes)))
    used = cdata.balanced_subset(d.y_train, min(tcfg.train_size, len(d.y_train)), keep, seed=tcfg.seed)
    rest = np.setdiff1d(np.arange(len(d.y_train)), used)
    if rest.size == 0:
        return None
    pick = rest[cdata.balanced_subset(d.y_train[rest], min(size, rest.size), keep, seed=VAL_SEED)]
    return d.x_train[pick], d.y_train[pick]


def _accuracy(res, x, y) -> float:
    """The accuracy of a finished run's final weights on (x uint8, y) (CPU, fp32, eval mode)."""
    import torch

    from core.cifar import data as cdata
    from core.cifar.models import make_model
    from core.cifar.train import evaluate

    model = make_model(res.config.model, num_classes=len(res.classes))
    model.load_state_dict(res.state)
    yt = torch.from_numpy(np.ascontiguousarray(y))
    return float(evaluate(model, cdata.to_device(x, "cpu"), yt, autocast=contextlib.nullcontext)[1])


def final_test_accuracy(res) -> tuple[float, int]:
    """A finished run's accuracy on its config's whole test set (test_size 0), measured once after training:
    what the trainer's last per-epoch pass gives with test_size 0 (tests/test_cifar_tournament.py checks),
    without paying for that pass after every epoch. (accuracy, number of test images)."""
    from core.cifar.train import prepare_data

    _, _, xte, yte, _, _ = prepare_data(replace(res.config, test_size=0))
    return _accuracy(res, xte, yte), len(yte)


def validation_accuracy(res, size: int) -> float:
    """The trained model's accuracy on `validation_set` (NaN if the pool has nothing left over)."""
    if res.state is None or res.config.classes:
        return math.nan
    val = validation_set(res.config, size)
    return math.nan if val is None else _accuracy(res, *val)


def tune_method(cfg: TournamentConfig, name: str, steps: int, runs: RunCache, should_stop=None,
                progress=None) -> dict:
    """The search for one method (module docstring): its grid, `cfg.pilot_runs` pilots round-robin over the
    grid and the pilot seeds (no λ_max), each scored on held-out validation images; the eligible configuration
    with the best mean validation accuracy is chosen (AE-SAM's then corrected to the budget by its pilot's
    share)."""
    grid = search_space(name, cfg.budget, steps, cfg.rho) if cfg.tune else [None]
    if not cfg.tune or len(grid) == 1:
        params = grid[0] if cfg.tune else None
        mcfg = method_config(cfg, name, steps, params)
        chosen = {k: getattr(mcfg, k) for k in _PARAM_KEYS.get(name, ()) if hasattr(mcfg, k)}
        return dict(grid=[chosen], pilots=[], scores=[], chosen=chosen, chosen_index=0, runs=0,
                    criterion="nothing to tune" if cfg.tune
                    else "not tuned (the budget rule's fixed parameters)")
    pilots = []
    budget_bound = None if name in BUDGET_FREE else cfg.budget + OVERSPEND
    for j in range(cfg.pilot_runs):
        i = j % len(grid)
        seed = cfg.pilot_seeds[(j // len(grid)) % len(cfg.pilot_seeds)]
        # no λ_max, and a small test set (PILOT_TEST images): a pilot is scored on validation images, and the
        # trainer's test pass after every epoch would cost a third of the pilot's time on the whole test set
        tcfg = replace(method_config(cfg, name, steps, grid[i]), seed=seed, sharpness_iters=0,
                       test_size=PILOT_TEST)
        d = runs.get(tcfg, validate=cfg.val_size, should_stop=should_stop, progress=progress, phase="pilot")
        ratio = d["grad_evals"] / (2.0 * steps) if d["status"] == "done" else math.nan
        pilots.append(dict(config=i, seed=seed, status=d["status"], val_acc=d.get("val_acc", math.nan),
                           test_acc=d.get("test_acc"), budget_ratio=ratio,
                           sam_fraction=d["sam_steps"] / max(1, d["total_steps"]), wall_s=d["wall_s"]))
        if should_stop is not None and should_stop():
            break
    scores, spent = [], []
    for i in range(len(grid)):
        mine = [p for p in pilots if p["config"] == i and p["status"] == "done"]
        vals = [p["val_acc"] for p in mine if p["val_acc"] is not None and math.isfinite(p["val_acc"])]
        scores.append(float(np.mean(vals)) if vals else math.nan)
        spent.append(float(np.mean([p["budget_ratio"] for p in mine])) if mine else math.nan)
    eligible = [i for i in range(len(grid)) if math.isfinite(scores[i])
                and (budget_bound is None or spent[i] <= budget_bound)]
    if not eligible:  # nothing within the budget: the cheapest that ran
        eligible = [min((i for i in range(len(grid)) if math.isfinite(spent[i])), key=lambda i: spent[i],
                        default=0)]
    best = max(eligible, key=lambda i: (scores[i] if math.isfinite(scores[i]) else -1.0, -i))
    chosen = dict(grid[best])
    if name == "ae_sam":
        shares = [p["sam_fraction"] for p in pilots if p["config"] == best and p["status"] == "done"]
        if shares:
            chosen = ae_correct(chosen, cfg.budget, float(np.mean(shares)))
    return dict(grid=grid, pilots=pilots, scores=scores, spent=spent, eligible=eligible, chosen=chosen,
                chosen_index=best, runs=len(pilots),
                criterion=f"mean validation accuracy of the pilots ({cfg.val_size} held-out clean images)"
                          + (f", among configurations spending ≤ {cfg.budget + OVERSPEND:.0%}"
                             if budget_bound else ""))


# --- the tournament -------------------------------------------------------------------------------------


def run_tournament(cfg: TournamentConfig, progress: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None,
                   runs: RunCache | None = None) -> TournamentResult:
    """Tune every method of `cfg` on the pilot seeds, then train it on the reported seeds at the budget; see
    the module docstring. `progress` gets each finished run's summary (pilots too: `phase`); `should_stop`
    cancels (the runs so far are kept). `runs` shares trained configurations between calls (`run_budgets`)."""
    t_start = time.perf_counter()
    runs = runs or RunCache()
    steps = _steps(cfg)
    notes: list[str] = []
    tuning: dict = {}
    rows, reported = [], []
    pilot_s = 0.0
    for name in cfg.methods:
        before = runs.fresh_s
        tuning[name] = tune_method(cfg, name, steps, runs, should_stop, progress)
        pilot_s += runs.fresh_s - before
        mcfg = method_config(cfg, name, steps, tuning[name]["chosen"] if cfg.tune else None)
        accs, lams, walls, evals, sams, ids = [], [], [], [], [], []
        for seed in cfg.reported_seeds():
            if should_stop is not None and should_stop():
                notes.append("cancelled: the table holds the runs finished before")
                break
            tcfg = replace(mcfg, seed=seed)
            if cfg.test_pass:
                tcfg = replace(tcfg, test_size=cfg.test_pass)
            d = runs.get(tcfg, should_stop=should_stop, progress=progress, final_test=bool(cfg.test_pass))
            reported.append(d)
            if d["status"] != "done":
                notes.append(f"{name} seed {seed}: {d['status']} ({d['message']})")
                continue
            accs.append(d["test_acc"])
            lams.append(math.nan if d["lambda_max"] is None else d["lambda_max"])
            walls.append(d["wall_s"])
            evals.append(d["grad_evals"])
            sams.append(d["sam_steps"] / max(1, d["total_steps"]))
            ids.append(seed)
        if accs:
            rows.append(_row(name, mcfg, accs, lams, walls, evals, sams, ids, steps))
        if should_stop is not None and should_stop():
            break
    sam = next((r for r in rows if r.name == "sam"), None)
    sgd = next((r for r in rows if r.name == "sgd"), None)
    for r in rows:
        r.cost_vs_sam_wall = r.wall_s_mean / sam.wall_s_mean if sam else math.nan
        if sam and sgd:
            r.gain_share, lo, hi = gain_share(r, sgd, sam)
            r.gain_share_ci = (lo, hi)
    front = pareto_front([r.budget_ratio for r in rows], [r.outcome for r in rows])
    ae = tuning.get("ae_sam", {})
    return TournamentResult(config=cfg, metric="test_acc", budget=cfg.budget, steps=steps, methods=rows,
                            pareto=[rows[i].name for i in front], runs=reported, tuning=tuning,
                            verdicts=paired_verdicts(rows), pairs=_pairs(rows),
                            ae_pilot=dict(chosen=ae.get("chosen"), pilots=ae.get("pilots", [])) if ae else {},
                            notes=notes, wall_s=time.perf_counter() - t_start, pilot_wall_s=pilot_s)


def run_budgets(cfg: TournamentConfig, budgets=(0.55, 0.65, 0.75), progress=None,
                should_stop=None) -> list[TournamentResult]:
    """The same tournament at several budgets; SGD's, SAM's and Momentum-SAM's runs (pilots included) are the
    same configurations at every budget and train once."""
    runs = RunCache()
    out = []
    for b in budgets:
        out.append(run_tournament(replace(cfg, budget=b), progress, should_stop, runs))
        if should_stop is not None and should_stop():
            break
    return out


def gain_share(row: MethodRow, sgd: MethodRow, sam: MethodRow) -> tuple[float, float, float]:
    """The share of SAM's gain over SGD that `row` keeps, paired by seed: mean(m − SGD)/mean(SAM − SGD) with
    Fieller's 95% interval (core.stats.fieller_ratio); ∓inf bounds when SAM's own gain is not clear of
    zero."""
    seeds = [s for s in row.seed_ids if s in sgd.seed_ids and s in sam.seed_ids]
    pick = lambda r: np.array([r.per_seed[r.seed_ids.index(s)] for s in seeds])  # noqa: E731
    if len(seeds) < 2:
        return math.nan, math.nan, math.nan
    base = pick(sgd)
    return fieller_ratio(pick(row) - base, pick(sam) - base)


def paired_verdicts(rows: list[MethodRow], alpha: float = 0.05) -> dict:
    """Every method against SAM and against SGD: the paired t on per-seed test accuracies (in points), with
    Holm's correction across the methods of each family. {"vs_sam": {name: {...}}, "vs_sgd": {...}}."""
    out = {}
    for ref in ("sam", "sgd"):
        r0 = next((r for r in rows if r.name == ref), None)
        if r0 is None:
            continue
        tests = {}
        for r in rows:
            if r.name == ref:
                continue
            d = paired_difference([100 * x for x in r.per_seed], [100 * x for x in r0.per_seed], r.seed_ids,
                                  r0.seed_ids)
            tests[r.name] = d
        names = list(tests)
        adj, rej = holm([tests[n].p if tests[n] else math.nan for n in names], alpha)
        out[f"vs_{ref}"] = {n: (dict(tests[n].to_dict(), p_holm=a, clear_holm=bool(c)) if tests[n] else None)
                            for n, a, c in zip(names, adj, rej)}
    return out


def _pairs(rows: list[MethodRow]) -> dict:
    """Head-to-head paired comparisons the issue asks about: LookSAM against SAM every k at the same k."""
    by = {r.name: r for r in rows}
    out = {}
    for a, b in (("looksam", "every_k"), ("composer", "every_k"), ("psam", "late_sam")):
        if a in by and b in by:
            d = paired_difference([100 * x for x in by[a].per_seed], [100 * x for x in by[b].per_seed],
                                  by[a].seed_ids, by[b].seed_ids)
            out[f"{a} − {b}"] = d.to_dict() if d else None
    return out


def _steps(cfg: TournamentConfig) -> int:
    """T: the steps every run takes (the trainer drops the last partial batch)."""
    from core.cifar.train import prepare_data

    n = len(prepare_data(cfg.base())[1])
    batch = min(cfg.base().resolved_batch(), n)
    return cfg.epochs * max(1, n // batch)


def _row(name, mcfg: TrainConfig, accs, lams, walls, evals, sams, ids, steps) -> MethodRow:
    acc_mean, acc_std = _mean(accs), _std(accs)
    n = len(accs)
    half = t_critical_95(n - 1) * acc_std / math.sqrt(n) if n > 1 else math.nan
    ge = float(np.mean(evals))
    schedule, _ = mcfg.schedule()
    label = schedule.label() + (f", ρ {mcfg.rho:g}" if name in ("msam", "sam", "late_sam", "every_k") else
                                f", α {mcfg.alpha:g}" if name == "looksam" else "")
    if name == "msam":
        label += ", Nesterov base" if getattr(mcfg, _MSAM_BASE) else ", heavy-ball base"
    if name == "composer":
        label += f", radius {mcfg.rho * (mcfg.k if getattr(mcfg, 'scale_rho', True) else 1):g}"
    params = {k: getattr(mcfg, k) for k in _PARAM_KEYS.get(name, ()) if hasattr(mcfg, k)}
    return MethodRow(name=name, optimizer=name, label=label, params=params, seeds=n, grad_evals=ge,
                     budget_ratio=ge / (2.0 * steps), sam_fraction=float(np.mean(sams)), outcome=acc_mean,
                     outcome_ci=(acc_mean - half, acc_mean + half), test_acc_mean=acc_mean,
                     test_acc_std=acc_std,
                     lambda_max_mean=_mean(lams), lambda_max_std=_std(lams), wall_s=_mean(walls),
                     wall_s_mean=_mean(walls), wall_s_std=_std(walls), cost_vs_sam_evals=ge / (2.0 * steps),
                     cost_vs_sam_wall=math.nan, per_seed=[float(a) for a in accs],
                     lambda_per_seed=[float(x) for x in lams], seed_ids=list(ids))


# the TrainConfig field of Momentum-SAM's base (a trainer with `msam_nesterov` keeps the others' `nesterov`)
_MSAM_BASE = "msam_nesterov" if "msam_nesterov" in TrainConfig.__dataclass_fields__ else "nesterov"
_PARAM_KEYS = {"psam": ("k", "f"), "late_sam": ("late_f", "rho"), "every_k": ("k", "rho"),
               "composer": ("k", "rho", "scale_rho"), "random_sam": ("p", "rho"),
               "ss_sam": ("p", "p_end", "p_shape", "switch"), "looksam": ("k", "alpha", "rho"),
               "ae_sam": ("lam1", "lam2", "delta"), "msam": ("rho", "momentum", _MSAM_BASE), "sam": ("rho",)}


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else math.nan


def _std(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan


__all__ = ["METHODS", "TournamentConfig", "TournamentResult", "MethodRow", "RunCache", "run_tournament",
           "run_budgets", "method_config", "search_space", "tune_method", "ae_gaussian_shift", "ae_correct",
           "paired_verdicts", "gain_share", "validation_set", "validation_accuracy", "final_test_accuracy"]
