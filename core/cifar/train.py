"""Train a CIFAR-10 network with any method of core.schedules.OPTIMIZERS: SGD, SAM, ASAM, PSAM, late SAM,
every-k, random SAM, SS-SAM, Composer's SAM, AE-SAM, LookSAM and Momentum-SAM.

Every method is the same loop around ONE step function, `optimization_step(model, method, x, y, loss_fn, t)`
(also used by the airbench trainer). `make_method(cfg, …)` builds the optimizer from core.sam and the rule that
says which steps are SAM steps (a schedule's mask, AE-SAM's rule on ‖g‖², LookSAM's period):

    SAM step (2 gradient evaluations):  g = ∇L_B(w);  w + ε (first_step);  ∇L_B(w + ε) with BatchNorm
                                        statistics frozen (frozen_bn_stats);  back to w, base step (second_step)
    SGD step (1 gradient evaluation):   g = ∇L_B(w);  base step (sgd_step; LookSAM: reuse_step)
    Momentum-SAM (1 evaluation):        ∇L_B(w̃) at w̃ = w − ρ v/‖v‖;  base step at w

The base optimizer is Nesterov SGD with weight decay; the loss is cross-entropy with label smoothing.
The whole subset lives on the device and is augmented there (core.cifar.data.augment). `label_noise`
replaces a fraction of the training labels by wrong ones (the regime where SAM helps most).

`train(cfg, on_epoch, should_stop)` streams one metrics dict per epoch to `on_epoch`, stops cleanly
when `should_stop()` turns true (status "cancelled") or the loss turns NaN/Inf (status "diverged"),
and on a GPU out-of-memory error retries with half the batch, then on the CPU, saying so in `messages`.
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

from core.cifar import data as cdata
from core.cifar.models import DEFAULT_BATCH, DEFAULT_LR, count_params, make_model
from core.cifar.sharpness import hutchinson_trace, lambda_max
from core.device import pick_device
from core.sam import SAM, LookSAM, MomentumSAM, frozen_bn_stats
from core.methods import OPTIMIZERS, for_optimizer
from core.schedules import AESAMRule


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Frozen: it hashes (cache key), prints into exports and JSON."""

    data: str = "builtin"              # "builtin" (mini subset), "full" (data/full) or a path
    train_size: int = 5000             # class-balanced subset of the training set
    test_size: int = 0                 # 0 → the whole test set
    classes: tuple[str, ...] = ()      # () → all classes
    model: str = "tiny"                # key of core.cifar.models.MODELS
    optimizer: str = "sam"             # key of core.schedules.OPTIMIZERS
    rho: float = 0.05
    k: int = 2                         # PSAM / every-k period
    f: float = 0.6                     # PSAM early fraction
    p: float = 0.3                     # random SAM probability
    late_f: float = 0.3                # late SAM: last fraction of steps
    p_shape: str = "constant"          # SS-SAM's p(t): "constant" | "linear" | "step" (core.schedules.Schedule)
    p_end: float | None = None         # SS-SAM: p at the end (linear) or after the switch (step)
    switch: float = 0.5                # SS-SAM "step": where p changes, as a fraction of the steps
    alpha: float = 0.7                 # LookSAM's α (core.sam.LookSAM)
    lam1: float = -1.0                 # AE-SAM's threshold at the end (core.schedules.AESAMRule)
    lam2: float = 1.0                  # AE-SAM's threshold at the start
    delta: float = 0.9                 # AE-SAM's averaging factor for the mean and variance of ‖g‖²
    epochs: int = 5
    batch_size: int = 0                # 0 → the model's default (tiny 128, fast 500)
    lr: float = 0.0                    # 0 → the model's default peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup: float = 0.2                # fraction of steps with a linear learning-rate warm-up
    augment: bool = True
    label_noise: float = 0.0           # fraction of training labels replaced by a different random class
                                       # (symmetric noise, seeded by `seed`, train set only; test labels stay clean)
    seed: int = 0
    device: str = "auto"               # "auto" → CUDA when torch sees one, else CPU
    precision: str = "auto"            # "bf16" | "fp32" | "auto" (bf16 autocast where supported)
    compile: bool = False              # torch.compile the model: faster steps on a GPU after a compile (~1 min)
    sharpness_iters: int = 20          # power-iteration steps for λ_max at the end (0 → skip)
    trace_samples: int = 10            # Hutchinson samples for Tr(H) (0 → skip)
    eval_batch: int = 500              # the fixed batch for λ_max and Tr(H): the first images of the subset

    def schedule(self):
        return for_optimizer(self.optimizer, k=self.k, f=self.f, p=self.p, seed=self.seed, late_f=self.late_f,
                             p_shape=self.p_shape, p_end=self.p_end, switch=self.switch, lam1=self.lam1,
                             lam2=self.lam2, delta=self.delta)

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
    state: dict | None = field(default=None, repr=False)  # final weights (CPU tensors), not in to_dict

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(replace(self, state=None)).items() if k != "state"}
        d["config"] = asdict(self.config)
        return d


EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "sam_steps", "grad_evals",
              "wall_s", "lr")


class Diverged(RuntimeError):
    pass


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError (one line) for a config that cannot run."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    cfg.schedule()  # validates k, f, p, SS-SAM's p(t) and AE-SAM's thresholds
    if cfg.optimizer == "msam" and not cfg.momentum > 0:
        raise ValueError("Momentum-SAM perturbs along the momentum: it needs momentum > 0")
    if cfg.optimizer == "looksam" and not (cfg.alpha >= 0 and math.isfinite(cfg.alpha)):
        raise ValueError(f"LookSAM's alpha must be a finite number ≥ 0, got {cfg.alpha!r}")
    if not (cfg.rho >= 0 and math.isfinite(cfg.rho)):
        raise ValueError(f"ρ must be a finite number ≥ 0, got {cfg.rho!r}")
    if cfg.epochs < 1 or cfg.train_size < 1:
        raise ValueError("epochs and train_size must be ≥ 1")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    if not 0.0 <= cfg.label_noise < 1.0:
        raise ValueError(f"label_noise must be a fraction in [0, 1), got {cfg.label_noise!r}")


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


# --- one optimisation step, for every method -----------------------------------------------------------
BN_IMAGES = 2000  # images that re-estimate BatchNorm's statistics after an epoch of Momentum-SAM


@dataclass
class Method:
    """How one optimizer name spends its gradient evaluations, built once per run by `make_method`.

    Which steps take the second, perturbed pass:
    * `mask` (SGD, SAM, ASAM, PSAM, late SAM, every-k, random, SS-SAM, Composer): fixed before training,
      step t is a SAM step where mask[t] (core.schedules.Schedule.mask);
    * `rule` (AE-SAM): decided after the first pass from ‖g_t‖² (core.schedules.AESAMRule.decide);
    * LookSAM decides itself (every k-th step: `optimizer.next_is_sam`); Momentum-SAM never takes one.
    """

    name: str
    optimizer: torch.optim.Optimizer    # core.sam.SAM, LookSAM or MomentumSAM around Nesterov SGD
    mask: np.ndarray | None = None
    rule: AESAMRule | None = None
    recompute_bn: bool = False  # Momentum-SAM: its only pass runs at w̃, so BatchNorm's running statistics
                                # describe w̃; they are re-estimated at w after each epoch (before evaluating)


@dataclass
class StepResult:
    loss: torch.Tensor      # the minibatch loss of the step's first pass (detached; Momentum-SAM: at w̃)
    logits: torch.Tensor    # that pass's outputs (detached), for the running training accuracy
    grad_evals: int         # forward-backward passes this step made: 1, or 2 for a SAM step
    sam: bool               # whether it made the second, perturbed pass


def make_method(cfg: TrainConfig, params, total_steps: int, lr: float) -> Method:
    """The optimizer and the decision rule of `cfg.optimizer` over `total_steps` steps. The base optimizer is
    always Nesterov SGD with cfg's momentum and weight decay. Composer's ρ is cfg.rho × its interval k
    (Schedule.rho_scale); Momentum-SAM uses cfg.rho as its own (larger) radius."""
    base = dict(lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    schedule, adaptive = cfg.schedule()
    if schedule.kind == "looksam":
        return Method(cfg.optimizer, LookSAM(params, torch.optim.SGD, rho=cfg.rho, k=cfg.k, alpha=cfg.alpha, **base))
    if schedule.kind == "msam":
        return Method(cfg.optimizer, MomentumSAM(params, torch.optim.SGD, rho=cfg.rho, **base), recompute_bn=True)
    opt = SAM(params, torch.optim.SGD, rho=cfg.rho * schedule.rho_scale, adaptive=adaptive, **base)
    if schedule.state_dependent:
        return Method(cfg.optimizer, opt, rule=AESAMRule(cfg.lam1, cfg.lam2, cfg.delta, total_steps))
    return Method(cfg.optimizer, opt, mask=schedule.mask(total_steps))


def optimization_step(model: torch.nn.Module, method: Method, x: torch.Tensor, y: torch.Tensor,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                      t: int) -> StepResult:
    """One step of any method on the minibatch (x, y); `loss_fn(x, y)` returns (loss, logits); t counts from 0.

    A SAM step (Foret et al. 2021, eqs. 1–3; core.sam):  g = ∇L_B(w);  w + ε;  ∇L_B(w + ε) with BatchNorm's
    running statistics frozen (core.sam.frozen_bn_stats: they must describe w, not w + ε);  back to w, and the
    base step with ∇L_B(w + ε).  Otherwise one pass: g = ∇L_B(w) and the base step (LookSAM adds its stored
    direction first: LookSAM.reuse_step).  Momentum-SAM: its one pass at w̃ = w − ρ v/‖v‖, then the base step at
    w (MomentumSAM.perturb, second_step). The returned `grad_evals` counts the forward-backward passes made.
    The caller sets the learning rate in `method.optimizer.param_groups` and puts the model in training mode.
    Shared by the CIFAR trainer (`train`) and the airbench trainer.
    """
    opt = method.optimizer
    opt.zero_grad(set_to_none=True)
    if isinstance(opt, MomentumSAM):
        opt.perturb()                                 # w → w̃ (no move while the momentum is still 0)
        loss, logits = loss_fn(x, y)
        loss.backward()                               # the one pass: ∇L_B(w̃)
        opt.second_step(zero_grad=True)               # back to w, base step
        return StepResult(loss.detach(), logits.detach(), 1, False)
    loss, logits = loss_fn(x, y)
    loss.backward()                                   # pass 1: g = ∇L_B(w)
    if isinstance(opt, LookSAM):
        take = opt.next_is_sam
    elif method.rule is not None:
        take = bool(method.rule.decide(_grad_sq_norm(opt), t))
    else:
        take = bool(method.mask[t]) if t < len(method.mask) else False
    if take:
        opt.first_step(zero_grad=True)               # w → w + ε
        with frozen_bn_stats(model):                  # running stats describe w, not w + ε
            loss_fn(x, y)[0].backward()               # pass 2: ∇L_B(w + ε), the same minibatch
        opt.second_step(zero_grad=True)              # back to w, base step with ∇L_B(w + ε)
    elif isinstance(opt, LookSAM):
        opt.reuse_step(zero_grad=True)               # g + α (‖g‖/‖g_v‖) g_v
    else:
        opt.sgd_step(zero_grad=True)
    return StepResult(loss.detach(), logits.detach(), 2 if take else 1, take)


@torch.no_grad()
def _grad_sq_norm(opt: torch.optim.Optimizer) -> float:
    """‖g‖² over every parameter (one global norm, as AE-SAM's statistic)."""
    grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return 0.0
    return float(sum(g.detach().float().pow(2).sum() for g in grads))  # one device sync, at the end


@torch.no_grad()
def recompute_bn_at(model: torch.nn.Module, x: torch.Tensor, autocast=None, batch: int = 500) -> None:
    """Re-estimate BatchNorm's running statistics at the current weights from the images x
    (core.cifar.profiles.recompute_bn), then leave the model in training mode."""
    from core.cifar.profiles import recompute_bn

    with autocast() if autocast is not None else contextlib.nullcontext():
        recompute_bn(model, x, batch=batch)
    model.train()


@torch.no_grad()
def evaluate(model, x, y, batch: int = 1000, autocast=None) -> tuple[float, float]:
    """Mean cross-entropy (no smoothing) and accuracy of `model` in eval mode on (x, y)."""
    was = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch):
        with autocast():
            out = model(x[i : i + batch]).float()
        loss_sum += F.cross_entropy(out, y[i : i + batch], reduction="sum").item()
        correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    model.train(was)
    return loss_sum / max(1, len(x)), correct / max(1, len(x))


def train(cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, init_state: dict | None = None) -> TrainResult:
    """Train as configured; see the module docstring. Raises ValueError only for a bad config."""
    if cfg.model == "airbench":  # the airbench94 net trains with its own recipe around the same step function
        from core.cifar.airbench_train import train_airbench

        return train_airbench(cfg, on_epoch, should_stop, init_state)
    check_config(cfg)
    t_start = time.perf_counter()
    xtr, ytr, xte, yte, classes, data_msg = prepare_data(cfg)
    messages = [data_msg] if data_msg else []
    device = pick_device(cfg.device)
    batch = min(cfg.resolved_batch(), len(xtr))
    while True:
        try:
            res = _train_on(cfg, device, batch, xtr, ytr, xte, yte, classes, on_epoch, should_stop,
                            init_state, messages, t_start)
            return res
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


def _train_on(cfg, device, batch, xtr, ytr, xte, yte, classes, on_epoch, should_stop, init_state,
              messages, t_start) -> TrainResult:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and (device.type == "cuda" or _cpu_bf16_ok()))
    channels_last = use_bf16  # NHWC is what the bf16 convolution kernels (tensor cores, oneDNN AMX) want
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    model = make_model(cfg.model, num_classes=len(classes))
    if init_state is not None:
        model.load_state_dict(init_state)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # `net` runs the training passes. With cfg.compile it is torch.compile's wrapper around
    # the same module (same parameters): it fuses BatchNorm, GELU and pooling into fewer GPU kernels. λ_max
    # and Tr(H) use `model` itself: they need double backward, which compiled graphs do not support.
    net = torch.compile(model) if cfg.compile else model
    x_train = cdata.to_device(xtr, device, channels_last=channels_last)
    y_train = torch.from_numpy(np.ascontiguousarray(ytr)).to(device)
    x_test = cdata.to_device(xte, device, channels_last=channels_last)
    y_test = torch.from_numpy(np.ascontiguousarray(yte)).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    n = len(x_train)
    steps_per_epoch = max(1, n // batch)  # drop the last partial batch: every step sees `batch` images
    total = cfg.epochs * steps_per_epoch
    peak = cfg.resolved_lr()
    method = make_method(cfg, model.parameters(), total, lr=peak)
    opt = method.optimizer
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def loss_on(xb, yb):
        with autocast():
            out = net(xb)
        return criterion(out.float(), yb), out

    history: list[dict] = []
    grad_evals = sam_steps = 0
    status, message = "done", ""
    train_time = 0.0
    t = 0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for s in range(steps_per_epoch):
            if should_stop is not None and should_stop():
                status, message = "cancelled", f"cancelled after {t} of {total} steps"
                break
            idx = perm[s * batch : (s + 1) * batch]
            xb, yb = x_train[idx], y_train[idx]
            if cfg.augment:
                xb = cdata.augment(xb, gen)
            for group in opt.param_groups:
                group["lr"] = lr_at(t, total, peak, cfg.warmup)
            step = optimization_step(model, method, xb, yb, loss_on, t)
            grad_evals += step.grad_evals
            sam_steps += step.sam
            loss, out = step.loss, step.logits
            loss_sum += loss.detach() * len(yb)
            correct += (out.detach().argmax(1) == yb).sum()
            seen += len(yb)
            t += 1
        if method.recompute_bn and seen:  # its passes ran at w̃: BatchNorm's statistics re-estimated at w
            recompute_bn_at(model, x_train[: min(n, BN_IMAGES)], autocast)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - t0
        if status == "cancelled" and seen == 0:
            break
        train_loss = loss_sum.item() / max(1, seen)
        if not math.isfinite(train_loss):
            status = "diverged"
            message = f"training diverged in epoch {epoch} (loss is {train_loss}); try a smaller learning rate or ρ"
            break
        # the eager module (same weights): a compiled one would compile again for eval mode and batch 1000
        test_loss, test_acc = evaluate(model, x_test, y_test, autocast=autocast)
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=correct.item() / max(1, seen),
                   test_loss=test_loss, test_acc=test_acc, sam_steps=sam_steps, grad_evals=grad_evals,
                   wall_s=train_time, lr=lr_at(max(0, t - 1), total, peak, cfg.warmup))
        history.append(row)
        if on_epoch is not None:
            on_epoch(dict(row))
        if status == "cancelled":
            break

    lam = tr = None
    if status == "done" and (cfg.sharpness_iters > 0 or cfg.trace_samples > 0):
        xe, ye = x_train[: cfg.eval_batch].contiguous(), y_train[: cfg.eval_batch]
        model = model.to(memory_format=torch.contiguous_format)
        try:
            if cfg.sharpness_iters > 0:
                lam = lambda_max(model, xe, ye, iters=cfg.sharpness_iters, seed=cfg.seed)
            if cfg.trace_samples > 0:
                tr = hutchinson_trace(model, xe, ye, samples=cfg.trace_samples, seed=cfg.seed)
        except RuntimeError as e:  # e.g. out of memory in double backward: keep the trained run, say why
            if device.type == "cuda":
                torch.cuda.empty_cache()
            messages.append(f"sharpness not measured: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")
    if status == "done":
        message = f"finished {cfg.epochs} epochs" + (f" ({'; '.join(messages)})" if messages else "")
    last = history[-1] if history else {}
    return TrainResult(
        config=cfg, status=status, message=message, history=history,
        test_acc=last.get("test_acc", math.nan), train_acc=last.get("train_acc", math.nan),
        grad_evals=grad_evals, sam_steps=sam_steps, total_steps=total, wall_s=train_time,
        total_s=time.perf_counter() - t_start,
        images_per_s=(len(history) * steps_per_epoch * batch) / train_time if train_time > 0 else 0.0,
        steady_images_per_s=_steady_rate(history, steps_per_epoch * batch),
        device=str(device), batch_size=batch, n_train=n, n_test=len(x_test), classes=classes,
        n_params=count_params(model), lambda_max=lam, trace=tr, messages=list(messages),
        hardware=hardware_info(device),
        state={k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()},
    )


def _steady_rate(history: list[dict], images_per_epoch: int) -> float | None:
    """Images per second over epochs 2 … E (history's wall_s is cumulative)."""
    if len(history) < 2 or history[-1]["wall_s"] <= history[0]["wall_s"]:
        return None
    return (len(history) - 1) * images_per_epoch / (history[-1]["wall_s"] - history[0]["wall_s"])


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


def _cpu_bf16_ok() -> bool:
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
            "total_s", "images_per_s", "steady_images_per_s", "lambda_max", "trace", "device", "batch_size", "n_train", "messages", "hardware")
    out = {k: getattr(res, k) for k in keys}
    out["history"] = res.history
    return out
