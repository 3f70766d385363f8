"""Many particles × many steps of SGD / SAM / PSAM on a toy landscape, several ρ in one run.

All particles for all ρ values live in ONE tensor w of shape (R, N, dim): R values of ρ, N
particles each. One step of the run is, for every particle at once (theory.md §1):

    ξ  = the noise draw of this step (core.toy.noise), shared by both SAM passes
    g  = ∇L(w) + ξ
    if step t is a SAM step (core.schedules):                       one schedule module for all
        ε = ρ g / (‖g‖ + 1e-12)  per particle (core.sam.sam_perturbation, dim=-1)
        g = ∇L(w + ε) + ξ                                           second pass, same ξ
    w ← w − η g

The budget tournament's methods (core.schedules, theory.md §7) run on the particles too, each particle
being its own model with its own state:

    composer      SAM steps at t mod k = k − 1 with ρ·k (Schedule.rho_scale)
    ss_sam        SAM steps drawn with probability p(t)
    looksam       on SAM steps g_v = g_s − (⟨g, g_s⟩/‖g‖²) g is stored per particle; other steps use
                  g + α (‖g‖/‖g_v‖) g_v  (core.sam.LookSAM's rule; in 1-D g_v = 0, so it is SAM every k)
    msam          one pass at w − ρ v/‖v‖ with v the particle's momentum buffer (core.sam.MomentumSAM's rule)
    ae_sam        per particle: s = ‖g‖², running μ and σ² (core.schedules.AESAMRule, vectorised), SAM where
                  s ≥ μ + c_t σ; the second pass is computed for all and kept where taken, and the SAM
                  steps taken are counted per particle (`sam_taken`)

`momentum` μ > 0 turns every update into heavy ball, v ← μ v + g, w ← w − η v (torch.optim.SGD's rule);
Momentum-SAM needs it (it perturbs along v), the others default to μ = 0, the plain w ← w − η g. Heavy
ball with η(1 − μ) moves as fast as plain SGD with η and has about the same stationary spread, so a
Momentum-SAM run is compared with its own base (ρ = 0, the same μ and η) as well as with SGD.
`trigger_map=True` counts, per ρ, where (in w, on a grid over the landscape's bounds) the SAM steps were
taken and where all steps were taken: AE-SAM's trigger map next to a fixed schedule's.

The same noise draws are used for every ρ ("common random numbers"): particle i sees the same ξ_t
whatever ρ is, so differences between the ρ columns come from ρ, not from luck.

A particle that leaves the finite range (NaN, Inf or |w| > 1e6) is marked `diverged` and frozen at
its last good position; it never crashes the run and is left out of the means.

Recorded along the way: the first step at which each particle is in another basin than the one it started in
(`first_passage`, -1 if never; a ridge, basin -1, does not count) and its position then; the time average of w
over the steps s = burn_in + 1 … T (the first burn_in steps are discarded); and at `record_points` evenly
spaced steps the trajectories of the first `keep_paths` particles, the mean loss, and a histogram of positions
(the occupancy, steps ≥ burn_in).

Speed (bench/toy.py): the loop runs ~35 small tensor operations per step, so what costs time is torch's
per-operation overhead (~2-4 µs each), not arithmetic. Hence: one torch thread on the CPU (with 2 threads
torch spends more time splitting 20k-element tensors than computing: measured 1.5× slower with the work below,
35× before it; bench/toy.py --sweep), float32 by default, hand-written gradients with their constants as
cached 0-dim tensors and the noise added inside them (core.toy.landscapes), no torch.where in the hot loop on
the CPU (slow there), no `.item()` on the GPU (a sync), random numbers generated in chunks into reused
buffers, the next chunk drawn by a background thread while this one is used (core.toy.noise; drawing is a
third of the benchmark's work), exp floored above the slow denormal range (core.toy.landscapes.exp_: 100×
slower there), w stored coordinate-major in memory (core.toy.landscapes.stack_coords: SAM's norm over the
size-2 coordinate axis is then ~3× cheaper), each step's position written straight into a preallocated block
of K steps, and all bookkeeping (divergence, first passage, time average, recording) done once per block
instead of once per step (see `_run`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from core import methods
from core.device import pick_device
from core.jsonable import to_jsonable
from core.limits import LIMITS
from core.limits import check as check_limit
from core.methods import MethodParams
from core.sam import sam_perturbation
from core.toy.landscapes import LANDSCAPES, Landscape, coords_major, make_landscape
from core.toy.noise import KINDS as NOISE_KINDS
from core.toy.noise import Noise

DIVERGED = 1e6  # |w| above this counts as diverged
OCCUPANCY_BINS = 60
MAX_RECORD_POINTS = 1000
MAX_KEEP_PATHS = 500
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# torch threads for a run on the CPU. 1 is fastest for these small tensors (bench/toy.py --sweep
# measures it); the previous setting is restored after the run.
CPU_THREADS = 1
# positions kept per block of steps (K·R·N·d numbers, see _run)
BLOCK_ELEMENTS = 1 << 20
# numbers per batch of recorded steps measured together (see _run): 2¹⁸ keeps the loss's
# temporaries in a CPU's L2 cache (measured ~8% faster than 2²⁰ for the Zhu scene)
RECORD_BATCH_ELEMENTS = 1 << 18
TRIGGER_BINS = 40  # trigger map: bins per axis over the landscape's bounds


@dataclass(frozen=True)
class SimConfig(MethodParams):
    """One run. `landscape_params` are the landscape's keyword parameters as (name, value) pairs
    (a tuple, so the config stays hashable), e.g. (("a_left", 10.0), ("a_right", 1.0)).
    `dtype` "float64" for checks that need 1e-6 accuracy; "float32" is faster.
    The method's parameters (k, f, p, late_f, SS-SAM's p(t), AE-SAM's λ₁, λ₂, δ, LookSAM's α, …) are
    core.methods.MethodParams, shared with the CIFAR trainer's TrainConfig."""

    landscape: str = "double_well_2d"
    formula: str = ""
    optimizer: str = "sam"
    rhos: tuple[float, ...] = (0.05,)
    lr: float = 0.01
    noise: str = "isotropic"
    sigma: float = 1.0
    batch_size: int = 10
    particles: int = 1000
    steps: int = 500
    seed: int = 0
    start: tuple[float, ...] | None = None
    start_spread: float = 0.0
    burn_in: int = 0
    keep_paths: int = 50
    record_points: int = 200
    device: str = "auto"
    landscape_params: tuple[tuple[str, float], ...] = ()
    dtype: str = "float32"
    momentum: float = 0.0            # heavy ball μ for every optimizer (Momentum-SAM needs μ > 0)
    trigger_map: bool = False        # count where SAM steps happen (SimResult.trigger_*)

    def schedule(self):
        """(Schedule, adaptive) for this config's optimizer and schedule parameters."""
        return self.schedule_for(self.optimizer, self.seed)

    def __post_init__(self):
        # normalise lists to tuples so that configs built from JSON or argparse still hash
        object.__setattr__(self, "rhos", tuple(float(r) for r in self.rhos))
        if self.start is not None:
            object.__setattr__(self, "start", tuple(float(v) for v in self.start))
        object.__setattr__(self, "landscape_params", tuple((str(k), v) for k, v in self.landscape_params))
        validate(self)

    def replace(self, **changes) -> SimConfig:
        return dataclasses.replace(self, **changes)


def validate(cfg: SimConfig) -> None:
    """Raise ValueError with a one-line message if the config is unknown or above core.limits."""
    if cfg.landscape not in LANDSCAPES:
        raise ValueError(f"unknown landscape {cfg.landscape!r}; choose one of {', '.join(LANDSCAPES)}")
    methods.get(cfg.optimizer)  # one-line ValueError naming the registry's methods
    if cfg.noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {cfg.noise!r}; choose one of {', '.join(NOISE_KINDS)}")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    if not cfg.rhos:
        raise ValueError("give at least one value of rho")
    check_limit("number of rho values", len(cfg.rhos), "n_rhos")
    for r in cfg.rhos:
        check_limit("rho", r)
    for name in ("lr", "sigma", "particles", "steps", "seed", "k", "f", "p", "late_f", "batch_size"):
        check_limit(name, getattr(cfg, name))
    total = cfg.particles * cfg.steps * len(cfg.rhos)
    cap = LIMITS["particle_steps"].hi
    if total > cap:
        raise ValueError(f"particles × steps × rho values = {total:,} is above the limit {cap:,.0f}")
    if not 0 <= cfg.burn_in < cfg.steps:
        raise ValueError(f"burn_in must lie in [0, steps), got {cfg.burn_in}")
    if not 0 <= cfg.keep_paths <= MAX_KEEP_PATHS:
        raise ValueError(f"keep_paths must lie in [0, {MAX_KEEP_PATHS}], got {cfg.keep_paths}")
    if not 2 <= cfg.record_points <= MAX_RECORD_POINTS:
        raise ValueError(f"record_points must lie in [2, {MAX_RECORD_POINTS}], got {cfg.record_points}")
    if not (math.isfinite(cfg.start_spread) and 0 <= cfg.start_spread <= 10):
        raise ValueError(f"start_spread must lie in [0, 10], got {cfg.start_spread}")
    if cfg.start is not None and not all(math.isfinite(v) and abs(v) <= 1e3 for v in cfg.start):
        raise ValueError("start must be finite numbers with |value| ≤ 1000")
    if not 0.0 <= cfg.momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {cfg.momentum!r}")
    # the method's own checks (core.methods.check): its schedule parameters, α, a momentum where it needs one
    methods.check(cfg.optimizer, cfg, 0.0, cfg.momentum)
    for key, value in cfg.landscape_params:
        if not _finite_numbers(value):
            raise ValueError(f"landscape parameter {key} must be a finite number, got {value!r}"[:200])


def _finite_numbers(v) -> bool:
    """A finite number, or a (nested) tuple of them (e.g. a formula's plotting bounds)."""
    if isinstance(v, tuple):
        return all(_finite_numbers(x) for x in v)
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class SimResult:
    """Everything a page or a measurement needs; see core/README.md for the shapes."""

    config: SimConfig
    rhos: np.ndarray
    steps_recorded: np.ndarray
    paths: np.ndarray
    mean_loss: np.ndarray
    first_passage: np.ndarray
    escape_position: np.ndarray
    final: np.ndarray
    final_loss: np.ndarray
    time_avg: np.ndarray
    occupancy: np.ndarray
    occupancy_edges: np.ndarray
    diverged: np.ndarray
    sam_mask: np.ndarray
    grad_evals: int
    wall_s: float
    device: str
    sam_taken: np.ndarray | None = None       # (R, N) SAM steps (second passes) each particle took
    trigger_sam: np.ndarray | None = None     # (R, B, B') with trigger_map: SAM steps per cell of w
    trigger_all: np.ndarray | None = None     # (R, B, B') all steps per cell (B' = 1 in 1-D)
    trigger_edges: list | None = None         # one array of B+1 edges per axis

    def to_dict(self) -> dict:
        """JSON-able: arrays become lists, NaN becomes None, the config is echoed."""
        return to_jsonable(self)


@contextmanager
def cpu_threads(n: int | None):
    """Use n torch threads inside the block and restore the previous number after, so that other
    work in the same process (the CIFAR trainer) keeps its own setting. None: leave as is."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def record_steps(steps: int, points: int) -> np.ndarray:
    """Step indices 0 … T at which positions are recorded (0 is the start), evenly spaced."""
    return np.unique(np.round(np.linspace(0, steps, min(points, steps + 1))).astype(np.int64))


@lru_cache(maxsize=32)
def landscape_for(name: str, formula: str, params: tuple) -> Landscape:
    """make_landscape, cached: finding the critical points costs more than a small run, and a
    landscape does not change once built."""
    return make_landscape(name, formula=formula, **dict(params))


def simulate(cfg: SimConfig, progress: Callable[[float], None] | None = None) -> SimResult:
    """Run cfg; `progress(fraction)` is called now and then with a number in [0, 1]."""
    validate(cfg)
    return _simulate(cfg, progress)


# A ρ grid is the app's own list (every step of a page's ρ slider), not a user's request: it may hold more values
# than LIMITS["n_rhos"], within this many values and particles × steps × #ρ ≤ GRID_PARTICLE_STEPS.
GRID_MAX_RHOS = 256
GRID_PARTICLE_STEPS = 20_000_000


def grid_fits(cfg: SimConfig, n_rhos: int) -> bool:
    """Whether `cfg` can run over a grid of n_rhos values of ρ in one call (simulate_grid)."""
    return 1 <= n_rhos <= GRID_MAX_RHOS and cfg.particles * cfg.steps * n_rhos <= GRID_PARTICLE_STEPS


def simulate_grid(cfg: SimConfig, rhos, progress: Callable[[float], None] | None = None) -> SimResult:
    """cfg run at every ρ of `rhos` in ONE batched run: the R axis of w (module docstring) holds the whole grid,
    so the cost is one run's per-step overhead plus the arithmetic of R·N particles. With common random numbers
    row i equals simulate(cfg.replace(rhos=(rhos[i],))) (same start, same noise draws). `cfg.rhos` is ignored;
    raises ValueError when the grid does not fit (grid_fits) or a ρ is outside LIMITS["rho"]."""
    validate(cfg)
    rhos = tuple(float(r) for r in rhos)
    if not grid_fits(cfg, len(rhos)):
        raise ValueError(f"a grid of {len(rhos)} values of ρ × {cfg.particles} particles × {cfg.steps} steps is "
                         f"above {GRID_MAX_RHOS} values or {GRID_PARTICLE_STEPS:,} particle-steps")
    for r in rhos:
        check_limit("rho", r)
    grid_cfg = copy.copy(cfg)  # a frozen config with more ρ than a request may hold; validated above
    object.__setattr__(grid_cfg, "rhos", rhos)
    return _simulate(grid_cfg, progress)


def _simulate(cfg: SimConfig, progress: Callable[[float], None] | None) -> SimResult:
    t_start = time.perf_counter()
    land = landscape_for(cfg.landscape, cfg.formula, cfg.landscape_params)
    device = pick_device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    schedule, adaptive = cfg.schedule()
    # AE-SAM decides while it runs: every step is a candidate, the rule keeps the ones it takes
    mask = np.ones(cfg.steps, dtype=bool) if schedule.state_dependent else schedule.mask(cfg.steps)
    R, N, d, T = len(cfg.rhos), cfg.particles, land.dim, cfg.steps
    start = cfg.start if cfg.start is not None else land.default_start
    if len(start) != d:
        raise ValueError(f"start has {len(start)} coordinates but {cfg.landscape} is {d}-D")

    # One thread on the CPU for tensors this small (see the module docstring); restored after.
    threads = CPU_THREADS if device.type == "cpu" else None
    with cpu_threads(threads), torch.no_grad():
        gen = torch.Generator(device=device).manual_seed(int(cfg.seed))
        w0 = torch.tensor(start, dtype=dtype, device=device).expand(N, d).clone()
        if cfg.start_spread > 0:
            w0 += cfg.start_spread * torch.randn(N, d, generator=gen, dtype=dtype, device=device)
        w = coords_major(w0.expand(R, N, d))  # the same starting points for every ρ
        rhos = [r * schedule.rho_scale for r in cfg.rhos]  # Composer: ρ·k
        rho = torch.tensor(rhos, dtype=dtype, device=device).view(R, 1, 1)
        noise = Noise(cfg.noise, land, (1, N), cfg.sigma, cfg.batch_size, gen, dtype, device,
                      start=start if cfg.start is not None else None, steps=T)
        rule = methods.get(cfg.optimizer).toy(cfg, T)  # the method's update rule (core.methods.ToyRule)
        out = _run(cfg, land, noise, w, rho, mask, adaptive, progress, rule)
    if device.type == "cuda":
        torch.cuda.synchronize()
    if schedule.state_dependent:  # counted from the decisions taken; the mask says "any particle took it"
        mask = out.pop("any_taken")
        grad_evals = int(round(T + float(out["sam_taken"].mean())))
    else:
        out["sam_taken"] = np.full((R, N), int(mask.sum()), dtype=np.int64)
        grad_evals = int(schedule.grad_evals(T))
    return SimResult(config=cfg, rhos=np.array(cfg.rhos), sam_mask=mask, grad_evals=grad_evals,
                     wall_s=time.perf_counter() - t_start, device=str(device), **out)


class _TriggerMap:
    """Counts, per ρ, the steps taken in each cell of a grid over the landscape's bounds, and how many of
    them were SAM steps: the trigger map (AE-SAM's decisions in w, or a fixed schedule's)."""

    def __init__(self, land: Landscape, R: int, like: torch.Tensor):
        B = TRIGGER_BINS
        self.axes = [(float(lo), float(hi)) for lo, hi in land.bounds[: land.dim]]
        self.shape = (R, B, B if land.dim == 2 else 1)
        self.group = (torch.arange(R, device=like.device) * (B * self.shape[2])).view(R, 1)
        self.sam = torch.zeros(R * B * self.shape[2], dtype=torch.float64, device=like.device)
        self.all = torch.zeros_like(self.sam)

    def add(self, w: torch.Tensor, take) -> None:
        """w: (R, N, d) positions at the start of the step; take: bool, or (R, N, 1) per particle."""
        B = TRIGGER_BINS
        idx = torch.zeros(w.shape[:2], dtype=torch.long, device=w.device)
        ok = torch.ones(w.shape[:2], dtype=torch.bool, device=w.device)
        for axis, (lo, hi) in enumerate(self.axes):
            b = ((w[..., axis] - lo) * (B / (hi - lo))).floor()
            ok &= (b >= 0) & (b < B)  # outside the window (or NaN): not counted
            idx = idx * B + b.clamp(0, B - 1).nan_to_num(0).long()
        idx = (idx + self.group).flatten()
        weight = ok.flatten().to(self.all.dtype)
        self.all.add_(torch.bincount(idx, weights=weight, minlength=self.all.numel()))
        if isinstance(take, bool):
            if take:
                self.sam.add_(torch.bincount(idx, weights=weight, minlength=self.sam.numel()))
        else:
            weight = weight * take[..., 0].flatten().to(weight.dtype)
            self.sam.add_(torch.bincount(idx, weights=weight, minlength=self.sam.numel()))

    def result(self) -> dict:
        edges = [np.linspace(lo, hi, TRIGGER_BINS + 1) for lo, hi in self.axes]
        return dict(trigger_sam=self.sam.view(self.shape).cpu().numpy(),
                    trigger_all=self.all.view(self.shape).cpu().numpy(), trigger_edges=edges)


def _run(cfg, land, noise, w, rho, mask, adaptive, progress, rule) -> dict:
    R, N, d = w.shape
    T, lr, P = cfg.steps, float(cfg.lr), min(cfg.keep_paths, N)
    rec = record_steps(T, cfg.record_points)
    rec_set = set(rec.tolist())
    on_cpu = w.device.type == "cpu"

    # Escape bookkeeping. All particles usually start in one basin; then `start` is a plain int
    # and the landscape can test "arrived elsewhere" with one comparison.
    track_escape = len(land.minima) >= 2  # with one basin nobody can leave it
    start = land.basin(w)
    if bool((start == start.flatten()[0]).all()):
        start = int(start.flatten()[0])
    home = torch.ones(R, N, dtype=torch.bool, device=w.device)  # not yet arrived elsewhere
    first_passage = torch.full((R, N), -1, dtype=torch.long, device=w.device)
    escape_pos = torch.full_like(w, math.nan)
    alive = torch.ones(R, N, 1, dtype=torch.bool, device=w.device)
    any_diverged = False
    sum_w = torch.zeros_like(w)

    lo, hi = land.bounds[0]
    edges = torch.linspace(lo, hi, OCCUPANCY_BINS + 1, dtype=torch.float64)
    occupancy = torch.zeros(R * OCCUPANCY_BINS, dtype=torch.float64, device=w.device)
    group = (torch.arange(R, device=w.device) * OCCUPANCY_BINS).view(R, 1)
    paths, losses = [], []

    # Recorded steps are buffered and measured (loss, histogram) a batch at a time: a few large
    # operations instead of a dozen small ones per recorded step. The loss of a batch has about
    # RECORD_BATCH_ELEMENTS terms (the Zhu toy and the many wells have one per data point or well).
    batch = max(1, RECORD_BATCH_ELEMENTS // (R * N * max(d, land.loss_terms)))
    buffer: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []

    def record(s: int, w_s: torch.Tensor, alive_s: torch.Tensor | None):
        buffer.append((s, w_s.clone(), alive_s))
        if len(buffer) >= batch:
            flush()

    def flush():
        if not buffer:
            return
        ws = torch.stack([b[1] for b in buffer])  # (k, R, N, d)
        paths.append(ws[:, :, :P])
        loss = land.loss(ws)  # (k, R, N)
        if all(b[2] is None for b in buffer):  # no divergence yet: plain means
            live = None
            losses.append(loss.mean(-1))
        else:
            live = torch.stack([b[2][..., 0] if b[2] is not None else torch.ones_like(loss[0], dtype=torch.bool)
                                for b in buffer])
            loss = torch.where(live, loss, 0.0)
            n_live = live.sum(-1)
            # mean over the particles still alive; NaN once none is (a 0 would read as the lowest loss on a chart)
            losses.append(torch.where(n_live > 0, loss.sum(-1) / n_live.clamp(min=1), torch.nan))
        after = torch.tensor([b[0] > cfg.burn_in for b in buffer], device=w.device)  # the time average's steps
        if bool(after.any()):
            x = ws[after][..., 0]  # (k', R, N)
            if live is None:  # no divergence: one histc per ρ (drops values outside)
                for r in range(R):
                    occupancy[r * OCCUPANCY_BINS:(r + 1) * OCCUPANCY_BINS] += torch.histc(
                        x[:, r], OCCUPANCY_BINS, lo, hi).to(occupancy.dtype)
            else:  # positions outside the window, and diverged particles, are not counted
                bins = ((x - lo) * (OCCUPANCY_BINS / (hi - lo))).floor()
                ok = (bins >= 0) & (bins < OCCUPANCY_BINS) & live[after]
                idx = (bins.clamp(0, OCCUPANCY_BINS - 1).long() + group).flatten()
                occupancy.add_(torch.bincount(idx, weights=ok.flatten().to(occupancy.dtype),
                                              minlength=R * OCCUPANCY_BINS))
        buffer.clear()

    # Steps run in blocks of K. Each step writes its new position straight into slot k of a
    # preallocated block (`out=`: no new tensor, no copy), and the per-particle bookkeeping
    # (divergence, first passage, time average, recording) runs once per block on all K steps
    # together: ~20 operations per block instead of ~10 per step. Particles never interact, so
    # checking a block after the fact gives exactly what checking every step would.
    K = max(1, min(64, BLOCK_ELEMENTS // (R * N * d)))
    block = torch.empty((K, d, R, N), dtype=w.dtype, device=w.device)  # coordinate-major, like w
    slots = [block[k].movedim(0, -1) for k in range(K)]  # slot k as an (R, N, d) view
    countdown = torch.arange(K, 0, -1, dtype=torch.uint8, device=w.device).view(K, 1, 1)  # K … 1

    def finish_block(t0: int, n: int) -> torch.Tensor:
        """Bookkeeping for the steps s = t0 + 1 … t0 + n, whose positions are in block[:n]."""
        nonlocal any_diverged
        pos = block[:n].permute(0, 2, 3, 1)  # (n, R, N, d): position after step t0 + 1 + k
        # Divergence: NaN compares False, so one test catches NaN, Inf and |w| > 1e6. While no
        # particle has diverged, one aminmax over the whole block (a CPU read, no sync to wait
        # for) usually says all is well. Otherwise (and always on a GPU, where .item() would stall
        # the queue) replay the block step by step: a particle that leaves the range is frozen at
        # its last good position from that step on. Particles never interact, so what a diverged
        # particle computed after its divergence is simply overwritten.
        alive_at: dict[int, torch.Tensor] = {}
        lo_hi = torch.aminmax(block[:n]) if on_cpu and not any_diverged else None
        if lo_hi is None or not (float(lo_hi[1]) <= DIVERGED and float(lo_hi[0]) >= -DIVERGED):
            any_diverged = True
            for k in range(n):
                alive.logical_and_(pos[k].abs().amax(-1, keepdim=True) <= DIVERGED)
                pos[k] = torch.where(alive, pos[k], pos[k - 1] if k else before)
                if t0 + 1 + k in rec_set:
                    alive_at[k] = alive.clone()
        if track_escape:
            # The first step of the block at which each particle is elsewhere, for particles still
            # at home. Reductions over the step axis are fast in uint8 and slow in bool or with
            # argmax (measured 100×), so: score = max over k of elsewhere[k]·(n − k), which is
            # n − k_first for the first k elsewhere, and 0 if never.
            elsewhere = land.escaped(pos, start).view(torch.uint8)  # (n, R, N), bool as bytes
            score = (elsewhere * countdown[-n:]).amax(0)
            arrived = home & (score > 0)
            # on the CPU skip the updates (~0.2 ms) in blocks where nobody arrived; a GPU does
            # them anyway (cheap there, and asking would wait for the GPU)
            if not on_cpu or bool(arrived.any()):
                k_first = (n - score.long()).clamp_(max=n - 1)
                first_passage.copy_(torch.where(arrived, k_first + (t0 + 1), first_passage))
                at = pos.gather(0, k_first.view(1, R, N, 1).expand(1, R, N, d))[0]
                escape_pos.copy_(torch.where(arrived.unsqueeze(-1), at, escape_pos))
                home.logical_and_(arrived.logical_not_())
        k_avg = max(0, cfg.burn_in - t0)  # steps s > burn_in go into the time average
        if k_avg < n:  # summed over the contiguous block (fast), then viewed like w
            sum_w.add_(block[k_avg:n].sum(0).movedim(0, -1))
        for k in range(n):
            if t0 + 1 + k in rec_set:
                record(t0 + 1 + k, pos[k], alive_at.get(k))
        return pos[n - 1]

    # The method's per-particle state lives in its rule (core.methods.ToyRule: LookSAM's g_v, AE-SAM's μ, σ²)
    v = torch.zeros_like(w) if cfg.momentum > 0 else None  # heavy-ball buffer, one per particle
    adaptive_rule = rule.state_dependent
    any_taken = torch.zeros(T, dtype=torch.bool, device=w.device) if adaptive_rule else None
    triggers = _TriggerMap(land, R, w) if cfg.trigger_map else None

    record(0, w, None)
    every = max(1, T // 50)
    t0 = 0
    while t0 < T:
        n = min(K, T - t0)
        before = w.clone()  # the position before the block (slot K-1 is about to be overwritten)
        for k in range(n):
            t = t0 + k
            xi = noise.draw(t)
            g = rule.grad(noise, w, xi, rho, v)  # pass 1 (Momentum-SAM: at w − ρ v/‖v‖)
            take = rule.decide(g, t, bool(mask[t]))  # AE-SAM: a (R, N, 1) bool, each particle from its ‖g‖²
            if adaptive_rule:
                any_taken[t] = take.any()
            if take is not False:
                (eps,) = sam_perturbation([g], rho, weights=[w] if adaptive else None, adaptive=adaptive, dim=-1)
                g_s = noise.grad(eps.add_(w), xi)  # at w + ε (in place: eps is not needed again)
                rule.after_second_pass(g, g_s)  # LookSAM stores g_v
                # AE-SAM keeps the second pass only where it was taken (arithmetic: no torch.where on the CPU)
                g = g_s if take is True else g.add_((g_s - g) * take)
            else:
                g = rule.one_pass(g)  # LookSAM: g + α (‖g‖/‖g_v‖) g_v
            if triggers is not None:
                triggers.add(w, take)
            if v is not None:  # heavy ball: v ← μ v + g, w ← w − η v
                g = v.mul_(cfg.momentum).add_(g)
            w = torch.add(w, g, alpha=-lr, out=slots[k])  # w − η g, written into the block
            if progress is not None and t % every == 0:
                progress(t / T)
        w = finish_block(t0, n)
        t0 += n
    w = w.clone()  # out of the block buffer
    flush()
    if progress is not None:
        progress(1.0)

    if not track_escape:
        first_passage = torch.full((R, N), -1, dtype=torch.int32)
        escape_pos = torch.full((R, N, d), math.nan)
    live = alive[..., 0]
    final_loss = torch.where(live, land.loss(w), math.nan)

    def np64(x):
        return x.detach().to("cpu", torch.float64).numpy()

    extra = triggers.result() if triggers is not None else {}
    if adaptive_rule:
        extra["sam_taken"] = rule.rule.taken[..., 0].cpu().numpy().astype(np.int64)
        extra["any_taken"] = any_taken.cpu().numpy()
    return dict(
        **extra,
        steps_recorded=rec,
        paths=np64(torch.cat(paths).permute(1, 2, 0, 3)),  # (K, R, P, d) → (R, P, K, d)
        mean_loss=np64(torch.cat(losses).T),  # (K, R) → (R, K)
        first_passage=first_passage.cpu().numpy().astype(np.int64),
        escape_position=np64(escape_pos),
        final=np64(w),
        final_loss=np64(final_loss),
        time_avg=np64(sum_w / (T - cfg.burn_in)),
        occupancy=occupancy.view(R, OCCUPANCY_BINS).cpu().numpy(),
        occupancy_edges=edges.numpy(),
        diverged=~live.cpu().numpy(),
    )
