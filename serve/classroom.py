"""The class experiment: every student's run pools into one result (issue 14).

A lecturer opens a ROOM for an `Experiment`: what varies over a grid (ρ, or the schedule / optimizer at an equal
budget) with everything else fixed. Each student joins with the room code, is assigned a setting (round robin
over the grid, so the grid fills evenly) or picks one, and presses run. The SERVER computes the run from the
experiment and the setting, through the same core functions the pages use (core.toy.simulate + core.toy.measure,
core.cifar.train), and stores it once (serve/roomstore.py). Nothing a client sends is taken as a result: the
client sends only the room code, its student id, its run index and (in "choice" rooms) the setting's index.

What is pooled, per setting of the grid:

    escape   fraction of particles that left the sharp basin by step T     Σ escaped / Σ particles, Wilson 95%
             (theory.md §3); theory on the double wells: 1 − exp(−T/m(ρ)), m(ρ) the exact grid chain's mean escape
             time along the escape axis (theory.exact_escape_steps_1d, SGD or SAM)
    valley   mean position of the particles' time averages after burn-in    pooled mean ± t·s/√N over particles
             (theory.md §4); theory: the exact grid Markov chain's stationary mean (theory.exact_chain_valley)
    psam     fraction ending in a flat minimum, each schedule at an equal    Σ flat / Σ particles, Wilson 95%
             budget of gradient evaluations (measure.minimum_outcome); theory on the 1-D double well: the exact
             schedule chain's mass in the flat basin at step T (theory.exact_schedule_chain)
    cifar    test accuracy of the tiny CNN on the built-in mini subset        mean over runs ± t·s/√n, Student's t
             (seconds on a CPU; each student's run is one seed)

Particles are independent within a run and seeds differ between runs (each run's seed is derived from the room,
the student and the run index), so pooling particles over runs is pooling independent draws.

Who may do what: a room has a short CODE for students (8 characters from a 32-letter alphabet without 0/O/1/I:
40 bits, drawn with `secrets`) and a separate lecturer SECRET (`secrets.token_urlsafe`, only its sha256 is
stored). Closing, reopening, resetting, changing the expiry or the cap, and exporting need the secret; every
refusal is a `Refused` whose text is one line for the user.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import json
import math
import re
import secrets
import string
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from core import stats
from serve.roomstore import Room, Run, StoreUnavailable

# Room codes: a readable alphabet (no 0/O, no 1/I), 32 symbols → 5 bits each; 8 of them = 40 bits.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LEN = 8
# A student id: letters and digits first (no cell of the CSV export may start with -, =, + or @), then - and _ too.
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{5,39}$")

# Rate limit per student: a bucket of BURST runs refilled at one run every 1/RATE seconds.
RATE_PER_S = 0.25
BURST = 2.0
MAX_CAP = 20                 # runs per student at most
ROOM_MAX_RUNS = 3000         # runs per room at most: a student who keeps dropping their id cannot flood it
MAX_MINUTES = 24 * 60        # a room lives at most a day

# What a lecturer can vary, per kind: (what varies, its values by default, the default fixed settings, the
# limits of those settings: a run must take seconds, since 300 students press run within a minute).
RHO_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
SCHEDULES = ("sgd", "sam", "psam", "late_sam", "every_k", "random_sam")
CIFAR_OPTS = ("sgd", "sam", "psam", "late_sam")
KINDS = {
    "escape": "Escape lab: escaped fraction against ρ",
    "valley": "Asymmetric valley: mean position against ρ",
    "psam": "PSAM scheduler: flat-minimum share per schedule at equal budget",
    "cifar": "CIFAR-10 (CPU lane): test accuracy per optimizer",
}
DEFAULTS: dict[str, dict] = {
    # the escape lab's lecture scene (core.toy.presets.ESCAPE), fewer particles per student
    "escape": dict(landscape="double_well_2d", lr=0.05, sigma=2.5, particles=100, steps=300),
    # theory.md §4's checked example (the valley lab's defaults)
    "valley": dict(landscape="valley_1d", a_left=10.0, a_right=1.0, lr=0.05, sigma=1.0, particles=200, steps=600),
    # the PSAM scheduler's defaults
    "psam": dict(landscape="double_well_1d", rho=0.3, lr=0.05, sigma=3.0, particles=200, steps=100, k=2, f=0.6,
                 late_f=0.3, p=0.3),
    # the CIFAR page's CPU lane, made short: 1,000 images, 2 epochs, no sharpness (about 2 s on one core)
    "cifar": dict(rho=0.05, train_size=1000, epochs=2, k=2, f=0.6, late_f=0.3, p=0.3),
}
# (lo, hi) per numeric setting; text settings must be one of the listed choices.
BOUNDS = {
    "lr": (1e-4, 1.0), "sigma": (0.0, 12.0), "particles": (10, 400), "steps": (20, 1000), "rho": (0.0, 1.0),
    "a_left": (0.5, 50.0), "a_right": (0.5, 50.0), "k": (1, 10), "f": (0.0, 1.0), "late_f": (0.0, 1.0),
    "p": (0.0, 1.0), "train_size": (500, 2000), "epochs": (1, 3),
}
INTEGER = {"particles", "steps", "k", "train_size", "epochs"}
LANDSCAPES = {"escape": ("double_well_2d", "double_well_1d", "zhu"), "valley": ("valley_1d", "valley_2d"),
              "psam": ("double_well_1d", "double_well_2d", "many_wells")}


_CIFAR_LANE = threading.BoundedSemaphore(1)


class Refused(Exception):
    """A request the room turns down (closed, expired, unknown, cap, too fast, wrong secret …): str(e) is one line."""


# ---------------------------------------------------------------------------------------------
# The experiment: a frozen config
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Experiment:
    """What a class experiment runs. `values` is the grid (ρ values for escape/valley, optimizer names for
    psam/cifar); `params` the fixed settings as sorted (name, value) pairs; `assign` is "assigned" (round robin
    over the grid) or "choice" (each student picks)."""

    kind: str = "escape"
    values: tuple = RHO_GRID
    params: tuple = ()
    assign: str = "assigned"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown experiment {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not self.values:
            raise ValueError("the experiment needs at least one setting to vary")
        if self.assign not in ("assigned", "choice"):
            raise ValueError("assign must be 'assigned' or 'choice'")

    @property
    def settings(self) -> dict:
        return DEFAULTS[self.kind] | dict(self.params)

    @property
    def varies_rho(self) -> bool:
        return self.kind in ("escape", "valley")

    def value_label(self, value) -> str:
        if self.varies_rho:
            return f"ρ = {float(value):g}"
        from core.methods import for_optimizer
        s = self.settings
        return for_optimizer(str(value), k=int(s["k"]), f=float(s["f"]), p=float(s["p"]),
                             late_f=float(s["late_f"]))[0].label() if value != "sgd" else "SGD"

    @property
    def metric(self) -> str:
        return {"escape": "escaped fraction by step T", "valley": "mean position E[w] (flat side > 0)",
                "psam": "share ending in a flat minimum", "cifar": "test accuracy"}[self.kind]

    @property
    def x_title(self) -> str:
        return "ρ (SAM radius)" if self.varies_rho else ("schedule (equal budget)" if self.kind == "psam"
                                                          else "optimizer")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "values": list(self.values), "params": dict(self.params), "assign": self.assign}

    @staticmethod
    def from_dict(d: dict) -> Experiment:
        return Experiment(kind=d["kind"], values=tuple(d["values"]), params=tuple(sorted(d["params"].items())),
                          assign=d.get("assign", "assigned"))


def make_experiment(kind: str, values=None, assign: str = "assigned", **settings) -> Experiment:
    """An Experiment from a page's current settings: numbers clamped into the class limits (BOUNDS: a student's
    run must take seconds), unknown settings dropped, the grid checked. ValueError (one line) on a bad grid."""
    if kind not in KINDS:
        raise ValueError(f"unknown experiment {kind!r}; choose one of {', '.join(KINDS)}")
    fixed = dict(DEFAULTS[kind])
    for name, raw in settings.items():
        if name not in fixed or raw is None:
            continue
        if name == "landscape":
            if str(raw) in LANDSCAPES.get(kind, ()):
                fixed[name] = str(raw)
            continue
        try:
            x = float(raw)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(x):
            continue
        lo, hi = BOUNDS[name]
        x = min(max(x, lo), hi)
        fixed[name] = int(round(x)) if name in INTEGER else x
    if kind in ("escape", "valley"):
        grid = RHO_GRID if values is None else values
        try:
            grid = tuple(sorted({round(float(v), 4) for v in grid}))
        except (TypeError, ValueError):
            raise ValueError("the ρ grid must be numbers") from None
        if not grid or not all(0.0 <= v <= 1.0 for v in grid) or len(grid) > 12:
            raise ValueError("the ρ grid needs 1 to 12 values in [0, 1]")
    else:
        allowed = SCHEDULES if kind == "psam" else CIFAR_OPTS
        grid = tuple(v for v in allowed if v in (allowed if values is None else tuple(values)))
        if not grid:
            raise ValueError(f"choose at least one of {', '.join(allowed)}")
    return Experiment(kind=kind, values=grid, params=tuple(sorted(fixed.items())), assign=assign)


# ---------------------------------------------------------------------------------------------
# One student's run: config from (experiment, setting, seed), computed on the server
# ---------------------------------------------------------------------------------------------

def run_seed(code: str, epoch: int, student: str, run_index: int) -> int:
    """The seed of one run: a hash of who runs it, so every run draws different noise and a repeat of the same
    run (a reconnect) draws the same."""
    digest = hashlib.sha256(f"{code}/{epoch}/{student}/{run_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)


def run_config(exp: Experiment, value, seed: int):
    """The engine config of one run: a core.toy.simulate.SimConfig or a core.cifar.train.TrainConfig."""
    s = exp.settings
    if exp.kind == "cifar":
        from core.cifar.train import TrainConfig
        return TrainConfig(data="builtin", train_size=int(s["train_size"]), test_size=1000, model="tiny",
                           optimizer=str(value), rho=float(s["rho"]), k=int(s["k"]), f=float(s["f"]),
                           late_f=float(s["late_f"]), p=float(s["p"]), epochs=int(s["epochs"]), seed=seed,
                           device="cpu", sharpness_iters=0, trace_samples=0)
    from core.methods import for_optimizer
    from core.toy.simulate import SimConfig
    common = dict(landscape=s["landscape"], lr=float(s["lr"]), sigma=float(s["sigma"]), particles=int(s["particles"]),
                  seed=seed, keep_paths=0, record_points=2, device="cpu")
    if exp.kind == "escape":
        noise = dict(noise="minibatch", batch_size=10) if s["landscape"] == "zhu" else dict(noise="isotropic")
        return SimConfig(optimizer="sam", rhos=(float(value),), steps=int(s["steps"]), **common, **noise)
    if exp.kind == "valley":
        steps = int(s["steps"])
        return SimConfig(optimizer="sam", rhos=(float(value),), steps=steps, burn_in=int(0.2 * steps),
                         noise="isotropic", landscape_params=(("a_left", float(s["a_left"])),
                                                              ("a_right", float(s["a_right"]))), **common)
    # psam: every schedule gets full SAM's budget of 2T gradient evaluations (as on the PSAM page)
    sched = dict(k=int(s["k"]), f=float(s["f"]), p=float(s["p"]), late_f=float(s["late_f"]))
    steps = for_optimizer(str(value), seed=seed, **sched)[0].steps_within_budget(2 * int(s["steps"]))
    return SimConfig(optimizer=str(value), rhos=(0.0,) if value == "sgd" else (float(s["rho"]),), steps=steps,
                     noise="isotropic", **sched, **common)


def run_one(exp: Experiment, value, seed: int) -> tuple[dict, dict]:
    """Compute one run on the server: (the config as a dict, the result as plain numbers)."""
    cfg = run_config(exp, value, seed)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    if exp.kind == "cifar":
        from core.cifar.train import train
        with _CIFAR_LANE:  # one training at a time per server process: a hall of students queues, never thrashes
            res = train(cfg)
        if res.status != "done":
            raise Refused(f"The run did not finish ({res.status}): {res.message}")
        return config, {"value": float(res.test_acc), "n": 1, "grad_evals": int(res.grad_evals),
                        "wall_s": round(float(res.total_s), 3)}
    from core.toy import measure
    from core.toy.simulate import landscape_for, simulate
    res = simulate(cfg)
    if exp.kind == "escape":
        fp = np.asarray(res.first_passage[0])
        k, n = int((fp >= 0).sum()), int(fp.size)
        return config, {"successes": k, "n": n, "value": k / n, "grad_evals": int(res.grad_evals),
                        "wall_s": round(float(res.wall_s), 3)}
    if exp.kind == "valley":
        x = np.asarray(res.time_avg)[0, :, 0]
        ok = ~np.asarray(res.diverged[0], bool) & np.isfinite(x)
        x = x[ok]
        if x.size < 2:
            raise Refused("Every particle diverged in this run; the room's settings need a smaller learning rate.")
        return config, {"n": int(x.size), "mean": float(x.mean()), "sd": float(x.std(ddof=1)), "value": float(x.mean()),
                        "diverged": int((~ok).sum()), "grad_evals": int(res.grad_evals),
                        "wall_s": round(float(res.wall_s), 3)}
    out = measure.minimum_outcome(res, landscape_for(cfg.landscape, cfg.formula, cfg.landscape_params), "flat")
    if out.n == 0:
        raise Refused("Every particle diverged in this run; the room's settings need a smaller learning rate.")
    return config, {"successes": int(round(out.fraction * out.n)), "n": int(out.n), "value": float(out.fraction),
                    "diverged": int(out.diverged), "grad_evals": int(res.grad_evals),
                    "wall_s": round(float(res.wall_s), 3)}


# ---------------------------------------------------------------------------------------------
# Pooling: pure functions of the stored runs
# ---------------------------------------------------------------------------------------------

@dataclass
class PooledPoint:
    slot: int
    value: object             # ρ or the optimizer name
    label: str
    runs: int                 # runs pooled here
    n: int                    # particles (or runs, for CIFAR) pooled
    estimate: float           # NaN when nothing has arrived
    lo: float                 # 95% interval
    hi: float


@dataclass
class Pooled:
    experiment: Experiment
    points: list[PooledPoint]
    runs: int
    students: int
    theory: list[float | None] | None = None   # per grid value, None where undefined; None: no theory curve
    theory_label: str = ""
    per_student: dict = field(default_factory=dict)  # student → [(slot, value of that run)]

    def to_dict(self) -> dict:
        from core.jsonable import to_jsonable
        d = to_jsonable({"points": [asdict(p) for p in self.points], "runs": self.runs, "students": self.students,
                         "theory": self.theory, "theory_label": self.theory_label})
        d["experiment"] = self.experiment.to_dict()
        return d


def _pool_fraction(results: list[dict]) -> tuple[int, float, float, float]:
    k = sum(int(r["successes"]) for r in results)
    n = sum(int(r["n"]) for r in results)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    lo, hi = stats.wilson_interval(k, n)
    return n, k / n, lo, hi


def _pool_mean(results: list[dict]) -> tuple[int, float, float, float]:
    """Pooled mean and a 95% t interval over every particle of every run, from each run's (n, mean, sd):
    the pooled sum of squares is Σ (nᵢ−1)sᵢ² + Σ nᵢ(mᵢ − M)² (the within- and between-run parts)."""
    n_i = np.array([r["n"] for r in results], float)
    m_i = np.array([r["mean"] for r in results], float)
    s_i = np.array([r["sd"] for r in results], float)
    n = float(n_i.sum())
    if n < 2:
        return int(n), math.nan, math.nan, math.nan
    m = float((n_i * m_i).sum() / n)
    ss = float(((n_i - 1) * s_i**2).sum() + (n_i * (m_i - m) ** 2).sum())
    half = stats.t_critical_95(n - 1) * math.sqrt(ss / (n - 1)) / math.sqrt(n)
    return int(n), m, m - half, m + half


def _pool_runs(results: list[dict]) -> tuple[int, float, float, float]:
    """Mean over runs (seeds) with a 95% Student's t interval; one run gives no interval."""
    v = np.array([r["value"] for r in results], float)
    if v.size == 0:
        return 0, math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return 1, m, math.nan, math.nan
    half = stats.t_critical_95(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return int(v.size), m, m - half, m + half


def pool(exp: Experiment, runs: list[Run], with_theory: bool = True) -> Pooled:
    """Pool the stored runs per setting of the grid (see the module docstring for what and how)."""
    by_slot: dict[int, list[dict]] = {i: [] for i in range(len(exp.values))}
    per_student: dict[str, list] = {}
    for run in runs:
        if 0 <= run.slot < len(exp.values):
            by_slot[run.slot].append(run.result)
            per_student.setdefault(run.student, []).append((run.slot, float(run.result["value"])))
    how = {"escape": _pool_fraction, "psam": _pool_fraction, "valley": _pool_mean, "cifar": _pool_runs}[exp.kind]
    points = []
    for i, value in enumerate(exp.values):
        n, est, lo, hi = how(by_slot[i])
        points.append(PooledPoint(i, value, exp.value_label(value), len(by_slot[i]), n, est, lo, hi))
    theory, label = theory_curve(exp) if with_theory else (None, "")
    return Pooled(exp, points, runs=len(runs), students=len(per_student), theory=theory, theory_label=label,
                  per_student=per_student)


@functools.lru_cache(maxsize=64)
def theory_curve(exp: Experiment) -> tuple[list | None, str]:
    """The theory beside the pooled curve, one number per grid value (None where it has nothing to say):
    escape on the double wells: P(escaped by T) ≈ 1 − exp(−T/m(ρ)), with m(ρ) the exact mean escape step of the
    grid chain of the escape coordinate (theory.exact_escape_steps_1d; exact for the 1-D well and for SGD on the
    2-D well, whose x moves on its own; for SAM on the 2-D well it leaves out y's share in ‖g‖). The exponential
    law leaves out the first steps' relaxation; against 800 particles per ρ it was within 0.025 (both wells,
    ρ = 0 … 0.3). (The escape lab's Kramers × heuristic speed-up overshoots at large ρ: 1.0 against 0.64.)
    valley_1d: the exact chain's stationary mean (theory.exact_chain_valley); psam on the 1-D double well:
    `_psam_chain`. Others: (None, reason)."""
    from core.toy import theory
    s = exp.settings
    if exp.kind == "escape" and s["landscape"] in ("double_well_2d", "double_well_1d"):
        import torch

        from core.toy.simulate import landscape_for
        land = landscape_for(s["landscape"], "", ())
        pad = [0.0] * (land.dim - 1)

        def grad_x(x):  # ∂L/∂x along the escape axis (y = 0), as theory.double_well_escape_steps
            return land.grad(torch.stack([x] + [torch.full_like(x, v) for v in pad], dim=-1))[..., 0]

        if not float(s["sigma"]) > 0:
            return None, "no escape without noise"
        out = []
        for rho in exp.values:
            m = theory.exact_escape_steps_1d(grad_x, float(s["lr"]), float(s["sigma"]), land.minima[0].position[0],
                                             land.flat_edge, land.bounds[0][1], rho=float(rho), n=1000)
            out.append(1.0 - math.exp(-int(s["steps"]) / m) if math.isfinite(m) else 0.0)
        return out, "theory: exact chain's mean escape time m, 1 − exp(−T/m)"
    if exp.kind == "valley" and s["landscape"] == "valley_1d":
        out = [float(theory.exact_chain_valley(float(s["a_left"]), float(s["a_right"]), float(s["lr"]),
                                               float(s["sigma"]), float(rho), n=500).mean) for rho in exp.values]
        return out, "theory: exact Markov chain (stationary mean)"
    if exp.kind == "psam" and s["landscape"] == "double_well_1d":
        return _psam_chain(exp), "theory: exact Markov chain (share in the flat basin at step T)"
    return None, {"psam": "no closed form on this landscape: compare the schedules with each other",
                  "cifar": "no closed form: a real network; the intervals are over the class's seeds"}.get(
        exp.kind, "no closed form for this landscape")


def _psam_chain(exp: Experiment) -> list[float]:
    """Per schedule, at its equal-budget number of steps: the exact distribution of w_T on the 1-D double well
    (theory.exact_schedule_chain, π_{t+1} = π_t P_SAM or π_t P_SGD as the schedule says), and its mass in the flat
    minimum's basin, which is what measure.minimum_outcome counts over particles. Random SAM's steps are one seeded
    draw (seed 0) while each student draws their own; its value is then one realisation, not the average."""
    import torch

    from core.methods import for_optimizer
    from core.toy import theory
    from core.toy.simulate import landscape_for
    s = exp.settings
    land = landscape_for("double_well_1d", "", ())
    flat = [j for j, m in enumerate(land.minima) if m.label == "flat"]
    lo, hi = land.bounds[0]

    def grad_x(x):
        return land.grad(x.unsqueeze(-1))[..., 0]

    out = []
    for name in exp.values:
        sched = for_optimizer(str(name), k=int(s["k"]), f=float(s["f"]), p=float(s["p"]), late_f=float(s["late_f"]))[0]
        steps = sched.steps_within_budget(2 * int(s["steps"]))
        res = theory.exact_schedule_chain(grad_x, float(s["lr"]), float(s["sigma"]), 0.0 if name == "sgd" else
                                          float(s["rho"]), sched.mask(steps), land.default_start[0], lo=lo - 1.0,
                                          hi=hi + 1.0, n=800)
        basin = land.basin(torch.tensor(res.grid).unsqueeze(-1)).numpy()
        cell = float(res.grid[1] - res.grid[0])
        out.append(float((res.final_density * cell)[np.isin(basin, flat)].sum()))
    return out


# ---------------------------------------------------------------------------------------------
# Rooms: who may do what (the store only stores)
# ---------------------------------------------------------------------------------------------

def new_code() -> str:
    """8 letters from a 32-letter alphabet drawn with `secrets`: 2⁴⁰ ≈ 10¹² codes."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LEN))


def clean_code(text) -> str | None:
    """A room code as typed (any case, spaces, dashes) → its canonical form, or None if it cannot be one."""
    code = re.sub(r"[\s-]", "", str(text or "")).upper()
    return code if len(code) == CODE_LEN and all(c in ALPHABET for c in code) else None


def new_student_id() -> str:
    """12 letters and digits from `secrets`: 71 bits, so one student cannot guess another's id."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))


def _hash(secret: str) -> str:
    return hashlib.sha256(str(secret).encode()).hexdigest()


@dataclass
class Opened:
    code: str
    secret: str
    room: Room


def open_room(store, exp: Experiment, *, minutes: float = 90, cap: int = 3, now: float | None = None) -> Opened:
    """Create a room; the code for students and the secret for the lecturer (shown once: only its hash is kept)."""
    now = time.time() if now is None else now
    minutes = min(max(float(minutes), 1.0), MAX_MINUTES)
    cap = int(min(max(int(cap), 1), MAX_CAP))
    secret = secrets.token_urlsafe(24)
    for _ in range(10):  # a clash among 10¹² codes is practically impossible; the store refuses one anyway
        room = Room(code=new_code(), secret_hash=_hash(secret), experiment=exp.to_dict(), created=now,
                    expires=now + 60 * minutes, cap=cap)
        if store.create_room(room):
            return Opened(room.code, secret, room)
    raise StoreUnavailable("Could not find a free room code; try again.")


def find_room(store, code) -> Room:
    """The room for a code typed by a student; Refused (one line) if there is none."""
    clean = clean_code(code)
    room = store.get_room(clean) if clean else None
    if room is None:
        raise Refused(f"There is no room {str(code)[:12]!r}: check the code on the projector.")
    return room


def is_lecturer(room: Room, secret) -> bool:
    return bool(secret) and hmac.compare_digest(room.secret_hash, _hash(str(secret)))


def lecturer_room(store, code, secret) -> Room:
    room = find_room(store, code)
    if not is_lecturer(room, secret):
        raise Refused("Only the lecturer who opened this room can do that: it needs the lecturer link.")
    return room


def status(room: Room, now: float | None = None) -> str:
    """"open", "closed" or "expired"."""
    now = time.time() if now is None else now
    if room.state == "closed":
        return "closed"
    return "expired" if now >= room.expires else "open"


def set_state(store, code, secret, state: str) -> Room:
    """Close or reopen a room (lecturer only)."""
    if state not in ("open", "closed"):
        raise ValueError("state is 'open' or 'closed'")
    lecturer_room(store, code, secret)
    return store.update_room(clean_code(code), state=state)


def set_limits(store, code, secret, *, minutes_left: float | None = None, cap: int | None = None,
               now: float | None = None) -> Room:
    """Change the expiry (minutes from now) and the cap of runs per student (lecturer only)."""
    lecturer_room(store, code, secret)
    now = time.time() if now is None else now
    changes = {}
    if minutes_left is not None:
        changes["expires"] = now + 60 * min(max(float(minutes_left), 0.0), MAX_MINUTES)
    if cap is not None:
        changes["cap"] = int(min(max(int(cap), 1), MAX_CAP))
    return store.update_room(clean_code(code), **changes)


def reset_room(store, code, secret) -> Room:
    """Start the room over: a new epoch with no runs and no members (lecturer only)."""
    lecturer_room(store, code, secret)
    return store.reset_room(clean_code(code))


def _check_student(student) -> str:
    if not isinstance(student, str) or not STUDENT_ID.match(student):
        raise Refused("This link has no valid student id; open the join link again.")
    return student


@dataclass
class Assignment:
    slot: int
    value: object
    label: str


def join(store, code, student) -> Assignment:
    """Join a room (idempotent): the student's setting. In "choice" rooms the slot is only a suggestion."""
    room = find_room(store, code)
    _check_student(student)
    exp = Experiment.from_dict(room.experiment)
    slot = store.join(room.code, room.epoch, student) % len(exp.values)
    return Assignment(slot, exp.values[slot], exp.value_label(exp.values[slot]))


@dataclass
class Submitted:
    run: Run
    stored: bool              # False: this run index was stored before (double click, reconnect): nothing new


def submit_run(store, code, student, run_index, choice: int | None = None, *, replica: str = "",
               now: float | None = None) -> Submitted:
    """One student's run: checks the room (exists, open, not expired, the cap, the rate limit), computes the run
    on the server and stores it once under (room, epoch, student, run_index). Repeating the same run index returns
    the stored run and stores nothing. Refused (one line) for every refusal; StoreUnavailable if the store is down."""
    now = time.time() if now is None else now
    room = find_room(store, code)
    student = _check_student(student)
    state = status(room, now)
    if state == "closed":
        raise Refused("This room is closed: the lecturer is not taking runs now.")
    if state == "expired":
        raise Refused("This room has expired: ask the lecturer for a new code.")
    try:
        run_index = int(run_index)
    except (TypeError, ValueError):
        raise Refused("That run number is not valid; reload the page.") from None
    if run_index < 0:
        raise Refused("That run number is not valid; reload the page.")
    if store.has_run(room.code, room.epoch, student, run_index):  # a repeat: answer with the stored run
        mine = [r for r in store.runs(room.code, room.epoch) if r.student == student and r.run_index == run_index]
        if mine:
            return Submitted(mine[0], stored=False)
    if run_index >= room.cap:
        raise Refused(f"You have done your {room.cap} run{'s' if room.cap > 1 else ''} in this room "
                      "(the lecturer's cap).")
    if store.total_runs(room.code, room.epoch) >= ROOM_MAX_RUNS:
        raise Refused(f"This room is full ({ROOM_MAX_RUNS} runs): the lecturer can reset it or open a new one.")
    wait = store.take_token(room.code, student, RATE_PER_S, BURST, now=now)
    if wait > 0:
        raise Refused(f"Too fast: wait {math.ceil(wait)} s before the next run.")
    exp = Experiment.from_dict(room.experiment)
    if exp.assign == "choice" and choice is not None:
        try:
            slot = int(choice)
        except (TypeError, ValueError):
            slot = -1
        if not 0 <= slot < len(exp.values):
            raise Refused("That setting is not one of this room's.")
        store.join(room.code, room.epoch, student)  # counted as a member
    else:
        slot = store.join(room.code, room.epoch, student) % len(exp.values)
    seed = run_seed(room.code, room.epoch, student, run_index)
    try:
        config, result = run_one(exp, exp.values[slot], seed)
    except ValueError as e:  # settings the engine refuses
        raise Refused(f"This run cannot be computed: {e}") from None
    except Refused:
        raise
    except Exception as e:  # an engine failure: one line for the student, never a traceback in the hall
        raise Refused(f"The server could not compute this run ({type(e).__name__}); try again in a moment.") from None
    run = Run(student=student, run_index=run_index, slot=slot, config=config, result=result, created=time.time(),
              replica=replica)
    stored = store.add_run(room.code, room.epoch, run)
    if not stored:  # another click / replica stored this run index first: report that one
        mine = [r for r in store.runs(room.code, room.epoch) if r.student == student and r.run_index == run_index]
        run = mine[0] if mine else run
    return Submitted(run, stored)


def room_runs(store, room: Room) -> list[Run]:
    return store.runs(room.code, room.epoch)


# ---------------------------------------------------------------------------------------------
# Export (lecturer only): every run with its full config
# ---------------------------------------------------------------------------------------------

def export(store, code, secret) -> tuple[str, str]:
    """(CSV, JSON) of the room: one row per run with the setting, the result and the full config; the JSON also
    carries the experiment and the pooled points."""
    room = lecturer_room(store, code, secret)
    runs = room_runs(store, room)
    exp = Experiment.from_dict(room.experiment)
    pooled = pool(exp, runs)
    buf = io.StringIO()
    result_keys = sorted({k for r in runs for k in r.result})
    w = csv.writer(buf)
    w.writerow(["student", "run_index", "slot", "setting", *result_keys, "created", "replica", "config"])
    for r in runs:
        w.writerow([r.student, r.run_index, r.slot, exp.values[r.slot], *[r.result.get(k, "") for k in result_keys],
                    f"{r.created:.3f}", r.replica, json.dumps(r.config, sort_keys=True)])
    data = {"room": room.code, "epoch": room.epoch, "created": room.created, "expires": room.expires,
            "state": room.state, "cap": room.cap, "experiment": exp.to_dict(), "pooled": pooled.to_dict(),
            "runs": [asdict(r) for r in runs]}
    return buf.getvalue(), json.dumps(data, indent=1, sort_keys=True)
