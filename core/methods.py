"""The registry of methods: every way of training the lab knows, each declared ONCE.

A method is a name (the key users type: `--optimizer psam`, `?opts=sgd,psam`) and one `Method` entry that says
everything the engines and the pages need:

    kind, adaptive     its schedule (core.schedules.Schedule: which steps take SAM's second pass), ASAM's |w|
    optimizer          its torch optimizer for a run's parameters (core.sam: SAM, LookSAM, MomentumSAM)
    toy                its update rule on the particles (a ToyRule: hooks into core.toy.simulate's step)
    label, color, marker, dash   how every chart draws it (app/theme.py reads them from here)
    tune               its free hyperparameters with their defaults and search grids (the tournaments' tuning)
    needs_momentum, recompute_bn, on_pages, in_tournament   what the engines and pages must know about it

Who reads the registry: core.toy.simulate (SimConfig.optimizer), core.cifar.train (TrainConfig.optimizer, one
loop for every method: `Method.optimizer(spec).step(closure, model)`), the CLIs (`--optimizer` choices), the
tournaments (`tournament_methods`), app/theme.py (labels, colours, markers) and the pages' optimizer pickers
(`page_methods`). Adding a method touches at most two files: this one (its entry), and core/sam.py when its
update rule is new (core/README.md, "Adding a method").

The schedule parameters (`MethodParams`: k, f, p, late_f, p_shape, p_end, switch, lam1, lam2, delta, alpha,
scale_rho) are declared once too: core.schedules.ScheduleParams plus LookSAM's α and late SAM's own fraction;
SimConfig and TrainConfig inherit them, so a URL or a JSON record names them as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from core.sam import SAM, LookSAM, MomentumSAM, looksam_gradient, orthogonal_part, sam_perturbation
from core.schedules import KINDS, AESAMRule, Schedule, ScheduleParams


@dataclass(frozen=True, kw_only=True)
class MethodParams(ScheduleParams):
    """Every method's parameters, shared by the toy's SimConfig and the CIFAR trainer's TrainConfig (they
    inherit it). ScheduleParams' fields, and: `late_f`, late SAM's fraction (the last 30% by default, kept
    apart from PSAM's early `f` so both can be set in one URL); `alpha`, LookSAM's α (core.sam.LookSAM)."""

    late_f: float = 0.3
    alpha: float = 0.7

    def schedule_for(self, name: str, seed: int = 0) -> tuple[Schedule, bool]:
        """The schedule and the ASAM flag of method `name` with these parameters (one-line ValueError if
        bad)."""
        return for_optimizer(name, seed=seed, params=self)


# --- the toy engine's update rules --------------------------------------------------------------------------


class ToyRule:
    """A method's step on the particles (core.toy.simulate._run), as hooks around the one loop:

        g = rule.grad(noise, w, xi, rho, v)            pass 1 (Momentum-SAM: at w − ρ v/‖v‖)
        take = rule.decide(g, t, mask[t])              AE-SAM: from ‖g‖² per particle; else the mask
        if take: g_s = pass 2 at w + ε;  rule.after_second_pass(g, g_s);  g = g_s (where taken)
        else:    g = rule.one_pass(g)                  LookSAM: g + α (‖g‖/‖g_v‖) g_v
        heavy ball (v ← μ v + g) if momentum, then w ← w − η g

    One object per run, holding the per-particle state. This base class is a plain schedule (SGD, SAM, ASAM,
    PSAM, late SAM, every-k, random, SS-SAM, Composer): every hook is the identity."""

    state_dependent = False

    def __init__(self, params: MethodParams, total_steps: int):
        self.params = params

    def grad(self, noise, w: torch.Tensor, xi, rho: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        return noise.grad(w, xi)

    def decide(self, g: torch.Tensor, t: int, take: bool):
        return take

    def after_second_pass(self, g: torch.Tensor, g_s: torch.Tensor) -> None:
        pass

    def one_pass(self, g: torch.Tensor) -> torch.Tensor:
        return g


class LookSAMToyRule(ToyRule):
    """core.sam.LookSAM per particle: g_v stored on SAM steps, reused (× α) between them."""

    def __init__(self, params: MethodParams, total_steps: int):
        super().__init__(params, total_steps)
        self.g_v = None

    def after_second_pass(self, g, g_s):
        (self.g_v,) = orthogonal_part([g], [g_s], dim=-1)

    def one_pass(self, g):
        if self.g_v is None or self.params.alpha <= 0:
            return g
        (g,) = looksam_gradient([g], [self.g_v], self.params.alpha, dim=-1)
        return g


class MomentumSAMToyRule(ToyRule):
    """core.sam.MomentumSAM per particle: the one pass at w − ρ v/‖v‖ (no move while v = 0)."""

    def grad(self, noise, w, xi, rho, v):
        (eps,) = sam_perturbation([v.neg()], rho, dim=-1)
        return noise.grad(eps.add_(w), xi)


class AESAMToyRule(ToyRule):
    """core.schedules.AESAMRule per particle: s = ‖g‖², each particle its own running μ and σ²."""

    state_dependent = True

    def __init__(self, params: MethodParams, total_steps: int):
        super().__init__(params, total_steps)
        self.rule = AESAMRule(params.lam1, params.lam2, params.delta, total_steps)

    def decide(self, g, t, take):
        return self.rule.decide((g * g).sum(-1, keepdim=True), t)  # (R, N, 1) bool


# --- the torch optimizers -----------------------------------------------------------------------------------


@dataclass
class OptimizerSpec:
    """What a method's optimizer factory gets: the parameters (or parameter groups) to train, ρ, the schedule
    and its parameters, the number of steps T, and the base optimizer with its keyword arguments."""

    params: Iterable
    rho: float
    schedule: Schedule
    adaptive: bool
    method_params: MethodParams
    total_steps: int
    base: type[torch.optim.Optimizer] = torch.optim.SGD
    base_kwargs: dict = field(default_factory=dict)


def scheduled_sam(spec: OptimizerSpec) -> torch.optim.Optimizer:
    """SAM/ASAM on the steps of the schedule (its mask; AE-SAM: its rule on ‖g‖²), the base step on the
    others. Composer's ρ is ρ · Schedule.rho_scale."""
    s = spec.schedule
    if s.state_dependent:
        when = dict(rule=AESAMRule(s.lam1, s.lam2, s.delta, spec.total_steps))
    elif s.kind == "always":
        when = {}
    else:
        when = dict(mask=s.mask(spec.total_steps))
    return SAM(spec.params, spec.base, rho=spec.rho * s.rho_scale, adaptive=spec.adaptive, **when,
               **spec.base_kwargs)


def looksam(spec: OptimizerSpec) -> torch.optim.Optimizer:
    return LookSAM(spec.params, spec.base, rho=spec.rho, k=spec.schedule.k, alpha=spec.method_params.alpha,
                   **spec.base_kwargs)


def momentum_sam(spec: OptimizerSpec) -> torch.optim.Optimizer:
    return MomentumSAM(spec.params, spec.base, rho=spec.rho, **spec.base_kwargs)


# --- the registry -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tunable:
    """A free hyperparameter of a method: the config field, its default, and the values a tuning search tries
    (the same number of pilot runs per method: issue 21). `note` says where the default comes from."""

    name: str
    default: object
    grid: tuple
    note: str = ""


@dataclass(frozen=True)
class Method:
    """One method, declared once (module docstring). `budget` says how the tournaments set the method's
    parameters from a budget b (a share of SAM's gradient evaluations); `reference` where its rule comes
    from."""

    key: str
    label: str
    kind: str
    color: str
    marker: str
    dash: str = "solid"
    adaptive: bool = False
    optimizer: Callable[[OptimizerSpec], torch.optim.Optimizer] = scheduled_sam
    toy: type[ToyRule] = ToyRule
    tune: tuple[Tunable, ...] = ()
    budget: str = ""
    reference: str = ""
    needs_momentum: bool = False   # Momentum-SAM perturbs along the momentum: refuses μ = 0
    recompute_bn: bool = False     # its passes run away from w: BatchNorm re-estimated at w at the end
    on_pages: bool = False         # offered by the playground's and the CIFAR page's optimizer pickers
    in_tournament: tuple[str, ...] = ()   # "toy", "cifar": the tournaments that run it


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add (or replace) a method. Its schedule kind must exist; its colour must differ from the others'."""
    if method.kind not in KINDS:
        raise ValueError(f"method {method.key!r}: unknown schedule kind {method.kind!r}")
    taken = [k for k, m in METHODS.items() if k != method.key and m.color.lower() == method.color.lower()]
    if taken:
        raise ValueError(f"method {method.key!r}: colour {method.color} is already {taken[0]}'s")
    METHODS[method.key] = method
    return method


def unregister(key: str) -> None:
    METHODS.pop(key, None)


def get(name: str) -> Method:
    """The entry of `name`, or a one-line ValueError naming the choices."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(METHODS)}") from None


class _Names(Sequence):
    """A live, read-only list of registry keys that satisfy a predicate: a method registered later (a test, a
    plug-in) shows up in every list built from it (`in`, iteration, `tuple(...)`, `",".join(...)`)."""

    def __init__(self, keep: Callable[[Method], bool]):
        self._keep = keep

    def _now(self) -> tuple[str, ...]:
        return tuple(k for k, m in METHODS.items() if self._keep(m))

    def __getitem__(self, i):
        return self._now()[i]

    def __len__(self) -> int:
        return len(self._now())

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __contains__(self, name) -> bool:
        return name in self._now()

    def __repr__(self) -> str:
        return repr(self._now())


class _Kinds(Mapping):
    """name → (schedule kind, adaptive), live over the registry (the old core.schedules.OPTIMIZERS view)."""

    def __getitem__(self, name):
        m = METHODS[name]
        return (m.kind, m.adaptive)

    def __iter__(self):
        return iter(tuple(METHODS))

    def __len__(self):
        return len(METHODS)


OPTIMIZERS: Mapping[str, tuple[str, bool]] = _Kinds()


def tournament_methods(which: str) -> Sequence[str]:
    """The methods a tournament runs ("toy" or "cifar"), live over the registry, in registry order."""
    return _Names(lambda m: which in m.in_tournament)


def page_methods() -> Sequence[str]:
    """The methods the pages' optimizer pickers offer (Method.on_pages)."""
    return _Names(lambda m: m.on_pages)


def for_optimizer(name: str, k: int = 2, f: float = 0.6, p: float = 0.3, seed: int = 0, late_f: float = 0.3,
                  *, params: MethodParams | None = None, **more) -> tuple[Schedule, bool]:
    """The schedule and the ASAM flag of method `name`. Either `params` (a MethodParams, e.g. a SimConfig or a
    TrainConfig) or the parameters one by one (k, f, p, late_f and, by keyword, p_shape, p_end, switch, lam1,
    lam2, delta, scale_rho). PSAM uses the early fraction f, late SAM its own `late_f`. Composer's ρ is
    ρ · schedule.rho_scale."""
    m = get(name)
    if params is None:
        params = MethodParams(k=k, f=f, p=p, late_f=late_f, **more)
    fields = {n: getattr(params, n) for n in ScheduleParams.__dataclass_fields__}
    if m.kind == "late":
        fields["f"] = params.late_f
    return Schedule(kind=m.kind, seed=seed, **fields), m.adaptive


def check(name: str, params: MethodParams, rho: float, momentum: float) -> None:
    """One-line ValueError for a method that cannot run with these parameters (both engines call it)."""
    m = get(name)
    params.schedule_for(name)  # k, f, p, SS-SAM's p(t), AE-SAM's thresholds
    if not (isinstance(rho, (int, float)) and rho >= 0 and math.isfinite(rho)):
        raise ValueError(f"ρ must be a finite number ≥ 0, got {rho!r}")
    if m.needs_momentum and not momentum > 0:
        raise ValueError(f"{m.label} perturbs along the momentum: give momentum > 0 (e.g. 0.9)")
    if not (0.0 <= params.alpha <= 10.0):
        raise ValueError(f"LookSAM's alpha must lie in [0, 10], got {params.alpha!r}")
    if not 0.0 <= params.late_f <= 1.0:
        raise ValueError(f"late SAM's fraction late_f must lie in [0, 1], got {params.late_f!r}")


def build_optimizer(name: str, params: Iterable, method_params: MethodParams, *, rho: float, total_steps: int,
                    seed: int = 0, base: type[torch.optim.Optimizer] = torch.optim.SGD,
                    **base_kwargs) -> torch.optim.Optimizer:
    """The torch optimizer of method `name` over `params` for `total_steps` steps (its factory,
    Method.optimizer). Every one of them steps with `opt.step(closure, model)` (core.sam.SAM.step)."""
    schedule, adaptive = for_optimizer(name, seed=seed, params=method_params)
    spec = OptimizerSpec(params, rho, schedule, adaptive, method_params, total_steps, base, dict(base_kwargs))
    return get(name).optimizer(spec)


# The defaults and grids below: the defaults are what the code used before any tuning (theory.md §7's values
# where the paper's were not available); the grids are the values a tuning search tries per method.
_PERIOD = Tunable("k", 2, (2, 3, 4), "the period; at a budget b the tournaments take k ≈ 1/(2b − 1)")
for _m in (
    Method("sgd", "SGD", "never", "#0072B2", "circle", "solid", on_pages=True, in_tournament=("toy", "cifar"),
           budget="50%: one pass a step", reference="the base optimizer"),
    Method("sam", "SAM", "always", "#D55E00", "square", "solid", on_pages=True,
           in_tournament=("toy", "cifar"), budget="100%: two passes a step",
           reference="Foret et al., ICLR 2021; checked against davda54/sam"),
    Method("asam", "ASAM", "always", "#CC79A7", "diamond", "dash", adaptive=True, on_pages=True,
           reference="Kwon et al., ICML 2021 (T = |w|; ρ about 10× SAM's); checked against davda54/sam"),
    Method("psam", "PSAM", "psam", "#009E73", "triangle-up", "dot", on_pages=True,
           in_tournament=("toy", "cifar"),
           tune=(Tunable("k", 2, (1, 2, 3), "the thesis: k = 2; f = k(2b − 1) spends the budget"),),
           budget="k = 2, f = 2(2b − 1)", reference="the thesis (Parsimonious SAM)"),
    Method("late_sam", "late SAM", "late", "#E69F00", "triangle-down", "dashdot", on_pages=True,
           in_tournament=("toy", "cifar"), budget="the last 2b − 1 of the steps (late_f)",
           reference="Zhou et al., ICLR 2025"),
    Method("every_k", "SAM every k", "every_k", "#56B4E9", "cross", "longdash", on_pages=True,
           in_tournament=("toy",), budget="k = round(1/(2b − 1))", reference="SAM-k throughout"),
    Method("composer", "Composer SAM", "composer", "#8C564B", "hexagon", "longdash",
           in_tournament=("toy", "cifar"),
           tune=(Tunable("scale_rho", True, (True, False), "its README: ρ in proportion to the interval"),),
           budget="SAM on the last step of every k = round(1/(2b − 1)), ρ·k",
           reference="mosaicml/composer, algorithms/sam"),
    Method("random_sam", "random SAM", "random", "#7F7F7F", "x", "longdashdot", on_pages=True,
           in_tournament=("toy",), budget="p = 2b − 1", reference="RST / SS-SAM with a constant p"),
    Method("ss_sam", "SS-SAM", "ss", "#332288", "star", "longdashdot", in_tournament=("toy", "cifar"),
           tune=(Tunable("p_shape", "linear", ("constant", "linear", "step", "trig"),
                         "the paper's four families of p(t), each with mean 2b − 1"),),
           budget="p(t) with mean 2b − 1", reference="Zhao, Zhang, Hu 2022 (arXiv 2203.09962)"),
    Method("looksam", "LookSAM", "looksam", "#882255", "pentagon", "dash", optimizer=looksam,
           toy=LookSAMToyRule, in_tournament=("toy", "cifar"),
           tune=(Tunable("alpha", 0.7, (0.0, 0.2, 0.5, 0.7), "0.7: theory.md §7; 0.2: MarlonBecker/MSAM"),
                 _PERIOD),
           budget="a SAM step every k = round(1/(2b − 1))",
           reference="Liu et al., CVPR 2022, Algorithm 1; checked against MarlonBecker/MSAM "
                     "optimizer/looksam.py"),
    Method("ae_sam", "AE-SAM", "ae", "#9467BD", "star-diamond", "dashdot", toy=AESAMToyRule,
           in_tournament=("toy", "cifar"),
           tune=(Tunable("spread", 1.0, (0.5, 1.0, 2.0),
                         "λ₁ = c − spread, λ₂ = c + spread; the shift c is calibrated to the budget on pilot "
                         "runs. The defaults λ = (−1, 1), δ = 0.9 are not the paper's (not confirmed): "
                         "marked calibrated"),),
           budget="thresholds (c − 1, c + 1), c calibrated on pilot runs (recorded in the run)",
           reference="Jiang, Yang, Zhang, Kwok, ICLR 2023 (arXiv 2304.14647)"),
    Method("msam", "Momentum-SAM", "msam", "#333333", "triangle-left", "dot", optimizer=momentum_sam,
           toy=MomentumSAMToyRule, needs_momentum=True, recompute_bn=True, in_tournament=("toy", "cifar"),
           tune=(Tunable("rho", 0.3, (0.1, 0.3, 1.0, 3.0),
                         "its own radius, ~15× SAM's in the paper (ρ = 3 against 0.2 on CIFAR-100)"),),
           budget="50% whatever b: one pass a step, plus one forward-only pass over the training set "
                  "at the end "
                  "(BatchNorm re-estimation, counted in TrainResult.cost_evals)",
           reference="Becker, Altrock, Risse 2024 (arXiv 2401.12033); checked against MarlonBecker/MSAM "
                     "optimizer/msam.py"),
):
    METHODS[_m.key] = _m
del _m
