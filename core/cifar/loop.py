"""ONE training loop for every CIFAR run: the lab's nets (core.cifar.train) and the airbench94 recipe
(core.cifar.airbench_train) both run through `run(cfg, variant)`.

Evidence: this loop replaced two (the lab's and the airbench recipe's, which had drifted apart). With the same
seeds, 14 CPU runs gave the same numbers through it as through the two old loops, to the last bit: every
epoch's train/test loss and accuracy, λ_max, Tr(H) and the counts of SGD, SAM, ASAM, PSAM, late SAM, LookSAM,
SS-SAM, Composer, AE-SAM and Momentum-SAM (on its former Nesterov base) on 500 mini-set images × 2 epochs
(batch 50, seed 5), and of SGD, SAM, Momentum-SAM and LookSAM through the airbench recipe on a narrow net (300
images, TTA level 2). Tests pin each recipe against a loop written from the equations or the recipe's pieces
without this module (tests/test_cifar_train.py::test_trainer_steps_equal_a_hand_written_loop,
tests/test_airbench.py::test_the_recipe_through_the_one_loop_equals_a_loop_written_from_its_pieces).

A `Variant` declares what differs between the two: the model it builds, its parameter groups and base
optimizer, its learning-rate schedule, the images of each epoch (airbench: alternating flips), the
augmentation per batch, a hook after each step (airbench: Lookahead) and a final evaluation (airbench: TTA).
Everything else is this loop, written once, each trick with its reason:

  * The whole subset lives on the device, as tensors: no DataLoader, no worker processes, no copies per step.
  * The last partial batch is dropped: every step sees `batch` images, so a step costs the same every time and
    "gradient evaluations" counts equal work.
  * Every method steps the same way, `optimizer.step(closure, model)` (core.sam.SAM.step: the method decides
    whether to take SAM's second pass, and freezes BatchNorm's statistics on it); the loop only counts.
  * Loss and accuracy are summed on the device and read once per epoch: a `.item()` per step would wait for
    the GPU every step.
  * Divergence (a NaN/Inf mean training loss) is a status, not an exception: the run stops with a one-line
    message and keeps its history.
  * Cancel (`should_stop()`) is checked before each step; the epoch under way is reported if it made any step.
  * `wall_s` is the training loop only, synchronised with the GPU at both ends of each epoch; it includes
    whatever a method needs to train (Momentum-SAM's BatchNorm re-estimation) but not evaluation or sharpness.
  * Out of GPU memory: the batch is halved while it is above 64, then the run moves to the CPU; each retry is
    said in `messages`, and the result names the device that really ran.
  * λ_max and Tr(H) at the end, on the eager module (double backward; compiled graphs do not support it), on
    a fixed batch of the first `eval_batch` training images; a failure there keeps the trained run.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from core import methods
from core.cifar import data as cdata
from core.cifar.models import DEFAULT_BATCH, DEFAULT_LR, count_params, make_model
from core.cifar.sharpness import hutchinson_trace, lambda_max
from core.device import pick_device
from core.methods import MethodParams


@dataclass(frozen=True)
class TrainConfig(MethodParams):
    """One training run. Frozen: it hashes (cache key), prints into exports and JSON. The method's parameters
    (k, f, p, late_f, SS-SAM's p(t), AE-SAM's λ₁, λ₂, δ, LookSAM's α, Composer's scale_rho) are
    core.methods.MethodParams, shared with the toy's SimConfig."""

    data: str = "builtin"              # "builtin" (mini subset), "full" (data/full) or a path
    train_size: int = 5000             # class-balanced subset of the training set
    test_size: int = 0                 # 0 → the whole test set
    classes: tuple[str, ...] = ()      # () → all classes
    model: str = "tiny"                # key of core.cifar.models.MODELS
    optimizer: str = "sam"             # key of core.methods.METHODS
    rho: float = 0.05
    epochs: int = 5
    batch_size: int = 0                # 0 → the model's default (tiny 128, fast 500)
    lr: float = 0.0                    # 0 → the model's default peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    msam_nesterov: bool = False        # Momentum-SAM's base: heavy ball as in its paper (False) or Nesterov
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup: float = 0.2                # fraction of steps with a linear learning-rate warm-up
    augment: bool = True
    label_noise: float = 0.0           # fraction of training labels replaced by a different random class
                                       # (symmetric, seeded by `seed`, train set only; test labels clean)
    seed: int = 0
    device: str = "auto"               # "auto" → CUDA when torch sees one, else CPU
    precision: str = "auto"            # "bf16" | "fp32" | "auto" (bf16 autocast where supported)
    compile: bool = False              # torch.compile the model: faster GPU steps after a compile (~1 min)
    sharpness_iters: int = 20          # power-iteration steps for λ_max at the end (0 → skip)
    trace_samples: int = 10            # Hutchinson samples for Tr(H) (0 → skip)
    eval_batch: int = 500              # the fixed batch for λ_max and Tr(H): the first images of the subset

    def __post_init__(self):
        # a list from JSON or a URL becomes a tuple: a config read back equals (and hashes like) the first
        object.__setattr__(self, "classes", tuple(self.classes))

    def schedule(self):
        return self.schedule_for(self.optimizer, self.seed)

    def resolved_batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH.get(self.model, 128)

    def resolved_lr(self) -> float:
        return self.lr or DEFAULT_LR.get(self.model, 0.1)


@dataclass
class TrainResult:
    config: TrainConfig
    status: str                        # "done" | "cancelled" | "diverged"
    message: str                       # one line for the user
    history: list[dict]                # one dict per finished epoch (see EPOCH_KEYS)
    test_acc: float
    train_acc: float
    grad_evals: int                    # forward-backward passes actually made
    sam_steps: int
    total_steps: int                   # planned steps T
    wall_s: float                      # the training loop only (no data loading, no sharpness)
    total_s: float                     # end to end
    images_per_s: float                # training images per second of the loop (epochs × n / wall_s)
    steady_images_per_s: float | None  # the same over epochs 2 … E: leaves out epoch 1's one-off costs
                                       # (cuDNN autotuning, compilation); None for a 1-epoch run
    device: str
    batch_size: int
    n_train: int
    n_test: int
    classes: tuple[str, ...]
    n_params: int
    lambda_max: float | None = None
    trace: float | None = None
    messages: list[str] = field(default_factory=list)   # data fallback, OOM retries …
    hardware: dict = field(default_factory=dict)
    bn_images: int = 0                 # images passed forward only to re-estimate BatchNorm (Momentum-SAM)
    cost_evals: float = 0.0            # grad_evals + bn_images / (3 · batch): a forward pass costs about
                                       # a third of a forward-backward pass: the run's cost in gradient
                                       # evaluations
    state: dict | None = field(default=None, repr=False)  # final weights (CPU tensors), not in to_dict

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(replace(self, state=None)).items() if k != "state"}
        d["config"] = asdict(self.config)
        return d


EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "sam_steps", "grad_evals",
              "wall_s", "lr")
FORWARD_SHARE = 1 / 3  # a forward pass's share of a forward-backward pass (backward ≈ 2 forwards)


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError (one line) for a config that cannot run."""
    methods.check(cfg.optimizer, cfg, cfg.rho, cfg.momentum)
    if cfg.epochs < 1 or cfg.train_size < 1:
        raise ValueError("epochs and train_size must be ≥ 1")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    if not 0.0 <= cfg.label_noise < 1.0:
        raise ValueError(f"label_noise must be a fraction in [0, 1), got {cfg.label_noise!r}")


# --- data ------------------------------------------------------------------------------------------------


def prepare_data(cfg: TrainConfig):
    """Load the data (falling back to the built-in subset with a message), draw the balanced subsets.
    Returns (x_train, y_train, x_test, y_test uint8/int64 numpy, class names, message or None)."""
    d, msg = cdata.load_or_fallback(cfg.data)
    if cfg.classes:
        unknown = [c for c in cfg.classes if c not in d.classes]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; the data has {', '.join(d.classes)}")
        keep = tuple(d.classes.index(c) for c in cfg.classes)
    else:
        keep = tuple(range(len(d.classes)))
    remap = np.full(len(d.classes), -1, dtype=np.int64)
    remap[list(keep)] = np.arange(len(keep))
    n_avail = int(np.isin(d.y_train, keep).sum())
    tr = cdata.balanced_subset(d.y_train, min(cfg.train_size, n_avail), keep, seed=cfg.seed)
    n_test_avail = int(np.isin(d.y_test, keep).sum())
    te = cdata.balanced_subset(d.y_test, min(cfg.test_size or n_test_avail, n_test_avail), keep, seed=12345)
    te = np.sort(te)  # the test set is a fixed set, independent of the training seed
    if cfg.train_size > n_avail:
        note = f"the data has only {n_avail} training images of the chosen classes; using all of them"
        msg = f"{msg}; {note}" if msg else note
    classes = tuple(d.classes[i] for i in keep)
    ytr = noisy_labels(remap[d.y_train[tr]], len(classes), cfg.label_noise, cfg.seed)
    return d.x_train[tr], ytr, d.x_test[te], remap[d.y_test[te]], classes, msg


def noisy_labels(y: np.ndarray, n_classes: int, fraction: float, seed: int) -> np.ndarray:
    """Symmetric label noise (the setting of Foret et al. 2021, Table 4, where SAM is most robust): exactly
    round(fraction · n) training labels, chosen at random, are replaced by a class drawn uniformly from the
    OTHER classes, so every chosen label really is wrong. Seeded by `seed` (its own generator: the subset and
    the training order do not change with the noise). `fraction` 0 returns `y` unchanged."""
    if fraction <= 0.0 or n_classes < 2 or len(y) == 0:
        return y
    rng = np.random.default_rng([seed, 0x4E015E])
    flip = rng.choice(len(y), size=int(round(fraction * len(y))), replace=False)
    out = y.copy()
    out[flip] = (y[flip] + rng.integers(1, n_classes, size=len(flip))) % n_classes  # never the true class
    return out


def lr_at(t: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup`·T steps to `peak`, then linear decay to 0 at step T."""
    w = max(1, int(round(warmup * total)))
    if t < w:
        return peak * (t + 1) / w
    return peak * max(0.0, (total - t) / max(1, total - w))


# --- one optimisation step, for every method
# -----------------------------------------------------------------


@dataclass
class Method:
    """A method's optimizer for one run (core.methods builds it: `make_method`). The optimizer itself decides
    which steps take SAM's second pass (its mask, AE-SAM's rule, LookSAM's period; core.sam.SAM.step)."""

    name: str
    optimizer: torch.optim.Optimizer
    recompute_bn: bool = False  # Momentum-SAM: its passes run at w̃; BatchNorm re-estimated at w at the end

    @property
    def rule(self):
        """AE-SAM's decision rule (core.schedules.AESAMRule, with its count `taken`); None for the others."""
        return getattr(self.optimizer, "rule", None)


@dataclass
class StepResult:
    loss: torch.Tensor      # the minibatch loss of the step's first pass (detached; Momentum-SAM: at w̃)
    logits: torch.Tensor    # that pass's outputs (detached), for the running training accuracy
    grad_evals: int         # forward-backward passes this step made: 1, or 2 for a SAM step
    sam: bool               # whether it made the second, perturbed pass


def base_kwargs(cfg: TrainConfig, lr: float) -> dict:
    """The base SGD's arguments: cfg's momentum and weight decay, Nesterov unless the method runs on heavy
    ball (Momentum-SAM as in its paper, Algorithm 1 and MarlonBecker/MSAM's default nesterov=False;
    cfg.msam_nesterov chooses Nesterov for it)."""
    nesterov = cfg.msam_nesterov if cfg.optimizer == "msam" else cfg.nesterov
    return dict(lr=lr, momentum=cfg.momentum, nesterov=nesterov, weight_decay=cfg.weight_decay)


def make_method(cfg: TrainConfig, params, total_steps: int, lr: float) -> Method:
    """The optimizer of `cfg.optimizer` over `total_steps` steps, around SGD (base_kwargs). Composer's ρ is
    cfg.rho × its interval k (Schedule.rho_scale); Momentum-SAM uses cfg.rho as its own (larger) radius."""
    opt = methods.build_optimizer(cfg.optimizer, params, cfg, rho=cfg.rho, total_steps=total_steps,
                                  seed=cfg.seed, **base_kwargs(cfg, lr))
    return Method(cfg.optimizer, opt, recompute_bn=methods.get(cfg.optimizer).recompute_bn)


def optimization_step(model: torch.nn.Module, method: Method, x: torch.Tensor, y: torch.Tensor,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                      t: int | None = None) -> StepResult:
    """One step of any method on the minibatch (x, y); `loss_fn(x, y)` returns (loss, logits). The optimizer's
    own `step(closure, model)` does the rest (core.sam.SAM.step: pass 1, and SAM's pass 2 at w + ε with
    BatchNorm's running statistics frozen where its schedule says so); `grad_evals` counts the passes it made.
    The step index is the optimizer's (`steps_taken`); `t` is accepted for callers that count their own. The
    caller sets the learning rate in `method.optimizer.param_groups` and puts the model in training mode."""
    opt = method.optimizer
    first: list[tuple[torch.Tensor, torch.Tensor]] = []

    def closure():
        opt.zero_grad(set_to_none=True)
        loss, logits = loss_fn(x, y)
        loss.backward()
        if not first:
            first.append((loss.detach(), logits.detach()))
        return loss

    before = opt.grad_evals
    opt.step(closure, model=model)
    loss, logits = first[0]
    opt.zero_grad(set_to_none=True)
    return StepResult(loss, logits, opt.grad_evals - before, opt.last_was_sam)


@torch.no_grad()
def recompute_bn(model, x: torch.Tensor, batch: int = 500) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them on x (cumulative average), at the
    current weights; the model is left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # None → cumulative moving average: every batch counts equally
    model.train()
    for i in range(0, len(x), batch):
        model(x[i : i + batch])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


@torch.no_grad()
def evaluate(model, x, y, batch: int = 1000, autocast=None) -> tuple[float, float]:
    """Mean cross-entropy (no smoothing) and accuracy of `model` in eval mode on (x, y)."""
    was = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch):
        with autocast() if autocast is not None else contextlib.nullcontext():
            out = model(x[i : i + batch]).float()
        loss_sum += F.cross_entropy(out, y[i : i + batch], reduction="sum").item()
        correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    model.train(was)
    return loss_sum / max(1, len(x)), correct / max(1, len(x))


# --- what a variant changes
# -----------------------------------------------------------------------------------


@dataclass
class RunContext:
    """One attempt of one run: the config, the variant, the device and batch it runs with, the data on that
    device, and the callbacks. Built by `run`, handed to the variant's hooks."""

    cfg: TrainConfig
    variant: Variant
    device: torch.device
    batch: int
    data: tuple                       # prepare_data's numpy arrays (x_train, y_train, x_test, y_test)
    classes: tuple[str, ...]
    on_epoch: Callable[[dict], None] | None
    should_stop: Callable[[], bool] | None
    init_state: dict | None
    messages: list[str]
    t_start: float
    use_bf16: bool = False
    autocast: Callable = contextlib.nullcontext
    gen: torch.Generator | None = None
    x_train: torch.Tensor | None = None
    y_train: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    total: int = 0
    extra: dict = field(default_factory=dict)   # the variant's own state (airbench: Lookahead, flips)


class Variant:
    """The lab's nets (core.cifar.models): the defaults of every hook. A variant overrides what it changes
    (core.cifar.airbench_train.AirbenchVariant)."""

    name = "lab"
    final_eval = False   # True: the variant's `final` replaces the last plain test accuracy (airbench: TTA)

    def default_batch(self, cfg: TrainConfig) -> int:
        return cfg.resolved_batch()

    def bf16(self, cfg: TrainConfig, device: torch.device) -> bool:
        """bf16 autocast: asked for, or "auto" on a GPU or a CPU with native bf16 units (cpu_bf16_ok)."""
        auto = device.type == "cuda" or cpu_bf16_ok()
        return cfg.precision == "bf16" or (cfg.precision == "auto" and auto)

    def model(self, ctx: RunContext) -> torch.nn.Module:
        """The model on the device (its init draws from torch's global generator, seeded by `run`)."""
        model = make_model(ctx.cfg.model, num_classes=len(ctx.classes))
        if ctx.init_state is not None:
            model.load_state_dict(ctx.init_state)
        return model.to(ctx.device)

    def method(self, ctx: RunContext, model: torch.nn.Module) -> Method:
        """The optimizer: every parameter in one group at the model's peak rate."""
        return make_method(ctx.cfg, model.parameters(), ctx.total, lr=ctx.cfg.resolved_lr())

    def set_lr(self, ctx: RunContext, opt: torch.optim.Optimizer, t: int) -> None:
        """Linear warm-up, then linear decay to 0 (lr_at)."""
        lr = lr_at(t, ctx.total, ctx.cfg.resolved_lr(), ctx.cfg.warmup)
        for group in opt.param_groups:
            group["lr"] = lr

    def start(self, ctx: RunContext, model: torch.nn.Module) -> None:
        """Before the first epoch (after the optimizer is built)."""

    def epoch_images(self, ctx: RunContext, model: torch.nn.Module, epoch: int) -> torch.Tensor:
        """The training images of epoch `epoch` (1-based), indexed by that epoch's permutation."""
        return ctx.x_train

    def augment(self, ctx: RunContext, xb: torch.Tensor) -> torch.Tensor:
        """Random crop by translation (2 pixels, reflect padding) and a random flip, per image and step."""
        return cdata.augment(xb, ctx.gen) if ctx.cfg.augment else xb

    def after_step(self, ctx: RunContext, model: torch.nn.Module, t: int) -> None:
        """After step t (1 … T)."""

    def end_of_epoch(self, ctx: RunContext, model: torch.nn.Module, t: int) -> None:
        """After an epoch's last step (t steps made so far)."""

    def final(self, ctx: RunContext, model: torch.nn.Module, train_time: float) -> tuple[float, dict]:
        """The final evaluation (only with final_eval): (test accuracy, fields added to the last history
        row)."""
        raise NotImplementedError

    def n_params(self, model: torch.nn.Module) -> int:
        return count_params(model)


LAB = Variant()


# --- the loop
# --------------------------------------------------------------------------------------------------


def run(cfg: TrainConfig, variant: Variant = LAB, on_epoch: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None, init_state: dict | None = None) -> TrainResult:
    """Train `cfg` with `variant`; see the module docstring. Raises ValueError only for a bad config."""
    check_config(cfg)
    t_start = time.perf_counter()
    xtr, ytr, xte, yte, classes, data_msg = prepare_data(cfg)
    messages = [data_msg] if data_msg else []
    device = pick_device(cfg.device)
    batch = min(variant.default_batch(cfg), len(xtr))
    while True:
        ctx = RunContext(cfg, variant, device, batch, (xtr, ytr, xte, yte), classes, on_epoch, should_stop,
                         init_state, messages, t_start)
        try:
            return _attempt(ctx)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if device.type == "cuda" and batch > 64:
                messages.append(f"GPU out of memory at batch {batch}; retrying with batch {batch // 2}")
                batch //= 2
            elif device.type == "cuda":
                messages.append("GPU out of memory even at a small batch; retrying on the CPU")
                device = torch.device("cpu")
            else:
                raise


def _attempt(ctx: RunContext) -> TrainResult:
    cfg, variant, device, batch = ctx.cfg, ctx.variant, ctx.device, ctx.batch
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    ctx.use_bf16 = use_bf16 = variant.bf16(cfg, device)
    # NHWC is what the bf16 convolution kernels (tensor cores, oneDNN AMX) want
    ctx.autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)

    xtr, ytr, xte, yte = ctx.data
    ctx.x_train = cdata.to_device(xtr, device, channels_last=use_bf16)
    ctx.y_train = torch.from_numpy(np.ascontiguousarray(ytr)).to(device)
    ctx.x_test = cdata.to_device(xte, device, channels_last=use_bf16)
    ctx.y_test = torch.from_numpy(np.ascontiguousarray(yte)).to(device)
    ctx.gen = torch.Generator(device=device).manual_seed(cfg.seed)

    model = variant.model(ctx)
    if use_bf16:
        model = model.to(memory_format=torch.channels_last)
    # `net` runs the training passes. With cfg.compile it is torch.compile's wrapper around the same module
    # (same parameters): it fuses BatchNorm, GELU and pooling into fewer GPU kernels. Evaluation, λ_max and
    # Tr(H) use `model` itself: double backward is not supported by compiled graphs, and eval mode would
    # compile again.
    net = torch.compile(model) if cfg.compile else model

    n = len(ctx.x_train)
    steps_per_epoch = max(1, n // batch)  # the last partial batch is dropped: every step sees `batch` images
    ctx.total = total = cfg.epochs * steps_per_epoch
    method = variant.method(ctx, model)
    opt = method.optimizer
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    variant.start(ctx, model)

    def loss_on(xb, yb):
        with ctx.autocast():
            out = net(xb)
        return criterion(out.float(), yb), out

    history: list[dict] = []
    grad_evals = sam_steps = bn_images = 0
    status, message = "done", ""
    train_time = 0.0
    t = 0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        sync()
        t0 = time.perf_counter()
        images = variant.epoch_images(ctx, model, epoch)
        perm = torch.randperm(n, device=device, generator=ctx.gen)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for s in range(steps_per_epoch):
            if ctx.should_stop is not None and ctx.should_stop():
                status, message = "cancelled", f"cancelled after {t} of {total} steps"
                break
            idx = perm[s * batch : (s + 1) * batch]
            xb, yb = variant.augment(ctx, images[idx]), ctx.y_train[idx]
            variant.set_lr(ctx, opt, t)
            step = optimization_step(model, method, xb, yb, loss_on)
            grad_evals += step.grad_evals
            sam_steps += int(step.sam)
            loss_sum += step.loss * len(yb)
            correct += (step.logits.argmax(1) == yb).sum()
            seen += len(yb)
            t += 1
            variant.after_step(ctx, model, t)
        variant.end_of_epoch(ctx, model, t)
        if method.recompute_bn and t == total:
            # Momentum-SAM's passes run at w̃ = w − ρ v/‖v‖, so BatchNorm's running statistics describe w̃,
            # not the final w. As its paper's code does (MarlonBecker/MSAM, main.py: one forward-only epoch
            # over the training set after the last one), they are re-estimated once at w after the last step,
            # from the whole training subset; the epochs before are evaluated with the statistics the passes
            # gathered, as there. It is work the method needs: in wall_s, and in the cost (bn_images →
            # cost_evals).
            with ctx.autocast():
                recompute_bn(model, ctx.x_train)
            model.train()
            bn_images += n
        sync()
        train_time += time.perf_counter() - t0
        if status == "cancelled" and seen == 0:
            break
        train_loss = loss_sum.item() / max(1, seen)
        if not math.isfinite(train_loss):
            status = "diverged"
            message = (f"training diverged in epoch {epoch} (loss is {train_loss}); "
                       "try a smaller learning rate or ρ")
            break
        test_loss, test_acc = evaluate(model, ctx.x_test, ctx.y_test, autocast=ctx.autocast)
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=correct.item() / max(1, seen),
                   test_loss=test_loss, test_acc=test_acc, sam_steps=sam_steps, grad_evals=grad_evals,
                   wall_s=train_time, lr=opt.param_groups[-1]["lr"])
        history.append(row)
        # a variant with a final evaluation reports the last row once that is in it
        if ctx.on_epoch is not None and not (variant.final_eval and epoch == cfg.epochs and status == "done"):
            ctx.on_epoch(dict(row))
        if status == "cancelled":
            break

    test_final = history[-1]["test_acc"] if history else math.nan
    if variant.final_eval and status == "done" and history:
        test_final, fields = variant.final(ctx, model, train_time)
        history[-1].update(fields)
        if ctx.on_epoch is not None:
            ctx.on_epoch(dict(history[-1]))

    lam = tr = None
    if status == "done" and (cfg.sharpness_iters > 0 or cfg.trace_samples > 0):
        xe, ye = ctx.x_train[: cfg.eval_batch].contiguous(), ctx.y_train[: cfg.eval_batch]
        model = model.to(memory_format=torch.contiguous_format)
        try:
            if cfg.sharpness_iters > 0:
                lam = lambda_max(model, xe, ye, iters=cfg.sharpness_iters, seed=cfg.seed)
            if cfg.trace_samples > 0:
                tr = hutchinson_trace(model, xe, ye, samples=cfg.trace_samples, seed=cfg.seed)
        except RuntimeError as e:  # e.g. out of memory in double backward: keep the trained run, say why
            if cuda:
                torch.cuda.empty_cache()
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            ctx.messages.append(f"sharpness not measured: {first}")
    if status == "done":
        message = f"finished {cfg.epochs} epochs" + (f" ({'; '.join(ctx.messages)})" if ctx.messages else "")
    last = history[-1] if history else {}
    return TrainResult(
        config=cfg, status=status, message=message, history=history,
        test_acc=test_final if status == "done" else last.get("test_acc", math.nan),
        train_acc=last.get("train_acc", math.nan), grad_evals=grad_evals, sam_steps=sam_steps,
        total_steps=total,
        wall_s=train_time, total_s=time.perf_counter() - ctx.t_start,
        images_per_s=(len(history) * steps_per_epoch * batch) / train_time if train_time > 0 else 0.0,
        steady_images_per_s=steady_rate(history, steps_per_epoch * batch),
        device=str(device), batch_size=batch, n_train=n, n_test=len(ctx.x_test), classes=ctx.classes,
        n_params=variant.n_params(model), lambda_max=lam, trace=tr, messages=list(ctx.messages),
        hardware=hardware_info(device), bn_images=bn_images,
        cost_evals=grad_evals + FORWARD_SHARE * bn_images / batch,
        state={k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()},
    )


# --- hardware and summaries
# --------------------------------------------------------------------------------------


def steady_rate(history: list[dict], images_per_epoch: int) -> float | None:
    """Images per second over epochs 2 … E (history's wall_s is cumulative)."""
    if len(history) < 2 or history[-1]["wall_s"] <= history[0]["wall_s"]:
        return None
    return (len(history) - 1) * images_per_epoch / (history[-1]["wall_s"] - history[0]["wall_s"])


def hardware_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def common_hardware(runs: list[dict], requested: dict) -> dict:
    """The hardware of a set of runs (each run's `hardware`), for a record that covers them all.

    After a GPU out-of-memory fallback some runs of a table may have run on the CPU: then the
    requested device's hardware is returned with `mixed` listing the devices the runs really used,
    so a record never claims a GPU for a run that did not have one."""
    runs = [h for h in runs if h]
    if not runs:
        return dict(requested)
    if all(h == runs[0] for h in runs):
        return dict(runs[0])
    return dict(requested) | {"mixed": sorted({h.get("gpu") or h.get("device", "?") for h in runs})}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_BF16_OK: bool | None = None


def cpu_bf16_ok() -> bool:
    """bf16 autocast on the CPU pays off only with native bf16 matrix units (AMX / AVX512-BF16);
    elsewhere it is emulated and slower than fp32. Detected once from /proc/cpuinfo."""
    global _BF16_OK
    if _BF16_OK is None:
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
            _BF16_OK = "amx_bf16" in flags or "avx512_bf16" in flags
        except OSError:
            _BF16_OK = False
    return _BF16_OK


def run_summary(res) -> dict:
    """The fields the CLI prints for one run."""
    keys = ("status", "message", "test_acc", "train_acc", "grad_evals", "sam_steps", "total_steps", "wall_s",
            "total_s", "images_per_s", "steady_images_per_s", "lambda_max", "trace", "device", "batch_size",
            "n_train", "messages", "hardware", "bn_images", "cost_evals")
    out = {k: getattr(res, k, None) for k in keys}
    out["history"] = res.history
    return out
