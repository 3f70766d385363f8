"""The airbench94 training recipe, for every method of the registry (core.methods).

Evidence and what is not yet measured: see core/cifar/airbench.py (the net). In short: the recipe is Keller
Jordan's (94.01% in 9.9 epochs, 3.83 s on an A100); on the CPU its pieces are
checked one by one (tests/test_airbench.py); its GPU figures are those bench/gpu_session.sh records in
BENCHMARKS.md.

`train_airbench(cfg)` takes the same TrainConfig as core.cifar.train.train and returns the same TrainResult;
`train(cfg)` hands every cfg with model "airbench" to it. Both run the ONE loop of core/cifar/loop.py (its
epoch loop, divergence, cancel, out-of-memory fallback, sharpness and cost accounting, every method's
`optimizer.step(closure, model)`); the recipe is a `Variant` of it (`AirbenchVariant`), which declares only
what differs, each trick with its reason:

  * Whitening first (core/cifar/whiten.py): the frozen first layer is computed from the first 5,000 training
    images before step 1 (part of the timed run, as in airbench). Its filters never train and SAM never
    perturbs them (requires_grad False: no gradient, so core.sam leaves them alone). Its bias trains for the
    first 3 epochs only, then freezes (airbench: later updates only add noise to every feature of the net at
    once).
  * Decoupled hyperparameters (airbench's "per 1024 examples" form): lr 11.5 and weight decay 0.0153 per 1024
    examples, Nesterov momentum 0.85. Written for PyTorch's SGD on the MEAN loss of a batch B:
        lr_sgd = lr · B / (1024 · (1 + 1/(1 − μ)))      (the 1 + 1/(1 − μ) undoes Nesterov momentum's gain)
        weight_decay_sgd · lr_sgd = wd · B / (1024 · (1 + 1/(1 − μ)))   (a fixed decay per step, whatever lr)
    so at B = 1024: lr_sgd ≈ 1.50, decay 0.2% of the weights per step.
  * Scaled BatchNorm biases: the BatchNorm biases β get 64× the learning rate but the same decay per step.
    With γ frozen at 1 (airbench.batch_norm), β alone shifts each channel before the GELU; a large rate lets
    it keep up with the convolutions' much larger weight vectors.
  * Learning-rate schedule: a linear warm-up from 0.2× to 1× over the first 23% of the steps, then linear to
    0.07× at the end (the large rate is only safe once BatchNorm's statistics and the whitened features
    settle).
  * Label smoothing 0.2 (cfg.label_smoothing, the trainer's default too): targets 0.82 / 0.02 instead of
    1 / 0, which keeps the tiny logit scale (1/9) from being driven to saturation.
  * Alternating flips (Jordan 2024, arXiv:2404.00498): each image is flipped at random ONCE, then the whole
    set is mirrored on every odd epoch. Every image is seen both ways in any two consecutive epochs, where
    independent coin flips would show some images the same way twice (the paper measures it as epochs saved;
    not measured here).
  * Random translation by up to 2 pixels (reflect padding), per image and per epoch (core.cifar.data.augment).
  * Lookahead with a growing EMA of the weights every 5 steps; the final weights are the average
    (core/cifar/lookahead.py).
  * Multi-crop TTA for the final accuracy, 6 views (core/cifar/tta.py). `TrainResult.test_acc` is the TTA
    accuracy; the per-epoch `history` keeps the plain single-view accuracy (and the last row both).
  * A batch of 1,024: big enough that an H100 is busy with arithmetic, not with launching kernels.
  * bf16 autocast and channels_last on CUDA; torch.compile when cfg.compile (CUDA only: on the CPU eager is
    faster for runs this short). CUDA graphs are not used: with SAM's data-dependent schedules (AE-SAM) and a
    Python-side Lookahead, a graph would capture only part of a step.

cfg.momentum, cfg.nesterov, cfg.weight_decay and cfg.warmup belong to the generic trainer and are ignored here
(the recipe's values above are used; Momentum-SAM runs on heavy ball with the recipe's momentum unless
cfg.msam_nesterov). cfg.lr, when > 0, replaces the peak lr_sgd (≈ 1.50 at batch 1024) in the
generic trainer's units (PyTorch SGD on the mean loss); the decay per step stays the recipe's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from core.cifar import data as cdata
from core.cifar.airbench import AirbenchNet, trainable
from core.cifar.lookahead import Lookahead
from core.cifar.loop import RunContext, TrainConfig, TrainResult, Variant, make_method, run
from core.cifar.tta import tta_accuracy


@dataclass(frozen=True)
class Recipe:
    """airbench94's hyperparameters (legacy/airbench94.py), decoupled as in the module docstring."""

    lr: float = 11.5                 # per 1024 examples
    momentum: float = 0.85           # Nesterov
    weight_decay: float = 0.0153     # per 1024 examples, decoupled from the learning rate
    bias_scaler: float = 64.0        # BatchNorm biases: × learning rate, same decay per step
    warmup: float = 0.23             # fraction of steps of the warm-up
    lr_start: float = 0.2            # factor at step 0
    lr_end: float = 0.07             # factor at the last step
    whiten_bias_epochs: int = 3      # the whitening bias trains for this many epochs
    whiten_images: int = 5000        # training images that set the whitening filters
    translate: int = 2               # pixels of random translation
    lookahead_every: int = 5
    tta_level: int = 2               # 0 none, 1 mirror, 2 mirror + translate (core/cifar/tta.py)
    widths: tuple[int, int, int] | None = None   # None: the net's own, airbench.WIDTHS (64, 256, 256)

    def sgd_hyper(self, batch: int) -> tuple[float, float]:
        """(lr_sgd, decay per step) for PyTorch's SGD on the mean loss of a batch (module docstring)."""
        kilostep = 1024 * (1 + 1 / (1 - self.momentum))
        return self.lr * batch / kilostep, self.weight_decay * batch / kilostep

    def lr_factor(self, t: int, total: int) -> float:
        """The schedule's factor for step t of T: linear 0.2 → 1 over the warm-up, then linear 1 → 0.07."""
        warm = max(1, int(total * self.warmup))
        if t < warm:
            return self.lr_start + (1.0 - self.lr_start) * t / warm
        return 1.0 + (self.lr_end - 1.0) * (t - warm) / max(1, total - warm)


RECIPE = Recipe()


def param_groups(model: AirbenchNet, lr: float, decay: float, bias_scaler: float) -> list[dict]:
    """Two groups for SGD: the BatchNorm biases at bias_scaler × lr, everything else trainable at lr; both
    with weight_decay = decay / lr, so the decay per step (lr · weight_decay) is the same `decay` for both.
    The frozen whitening filters and BatchNorm weights (requires_grad False) are in neither group."""
    norm_ids = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    params = trainable(model)
    norm = [p for p in params if id(p) in norm_ids]
    other = [p for p in params if id(p) not in norm_ids]
    lr_norm = lr * bias_scaler
    return [dict(params=norm, lr=lr_norm, weight_decay=decay / lr_norm, initial_lr=lr_norm),
            dict(params=other, lr=lr, weight_decay=decay / lr, initial_lr=lr)]


def alternating_flip(x: torch.Tensor, epoch: int) -> torch.Tensor:
    """The images of epoch `epoch` (0-based) under the alternating-flip scheme: x as pre-flipped on even
    epochs, all of x mirrored on odd ones (x was flipped at random once, by `random_flip`)."""
    return x.flip(-1) if epoch % 2 else x


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image mirrored with probability 1/2, once, before the first epoch."""
    flip = torch.rand(len(x), device=x.device, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


class AirbenchVariant(Variant):
    """The airbench94 recipe as a variant of the one loop (core.cifar.loop): each hook is one trick of the
    module docstring, with the hyperparameters of `recipe`."""

    name = "airbench"
    final_eval = True   # TTA replaces the last plain test accuracy

    def __init__(self, recipe: Recipe = RECIPE):
        self.recipe = recipe

    def default_batch(self, cfg: TrainConfig) -> int:
        return cfg.batch_size or 1024

    def bf16(self, cfg: TrainConfig, device: torch.device) -> bool:
        """bf16 on CUDA only: on the CPU eager fp32 is faster for runs this short."""
        return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")

    def model(self, ctx: RunContext) -> torch.nn.Module:
        """The net, its whitening filters set from the first training images (or from `init_state`); the time
        this takes is the run's `whiten_s` (airbench times it as part of the run)."""
        model = AirbenchNet(len(ctx.classes), self.recipe.widths).to(ctx.device)
        if ctx.use_bf16:
            model = model.to(memory_format=torch.channels_last)
        sync = (lambda: torch.cuda.synchronize(ctx.device)) if ctx.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        if ctx.init_state is not None:
            model.load_state_dict(ctx.init_state)
        else:
            model.init_whitening(ctx.x_train[: self.recipe.whiten_images])
        sync()
        ctx.extra["whiten_s"] = time.perf_counter() - t0
        return model

    def method(self, ctx: RunContext, model: torch.nn.Module):
        """Two parameter groups (BatchNorm biases at 64× the rate, the same decay per step), the recipe's
        decoupled lr and decay, Nesterov momentum 0.85; cfg.lr > 0 replaces the peak lr_sgd."""
        cfg = ctx.cfg
        lr, decay = self.recipe.sgd_hyper(ctx.batch)
        lr = cfg.lr or lr
        groups = param_groups(model, lr, decay, self.recipe.bias_scaler)
        # the recipe's momentum; lr and weight decay are set per group above (the defaults here are unused)
        cfg = replace(cfg, momentum=self.recipe.momentum, nesterov=True)
        return make_method(cfg, groups, ctx.total, lr=lr)

    def set_lr(self, ctx: RunContext, opt: torch.optim.Optimizer, t: int) -> None:
        factor = self.recipe.lr_factor(t, ctx.total)
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def start(self, ctx: RunContext, model: torch.nn.Module) -> None:
        """Lookahead's slow weights; each image flipped at random once (alternating flips start from
        there)."""
        ctx.extra["lookahead"] = Lookahead(model)
        ctx.extra["flipped"] = random_flip(ctx.x_train, ctx.gen) if ctx.cfg.augment else ctx.x_train

    def epoch_images(self, ctx: RunContext, model: torch.nn.Module, epoch: int) -> torch.Tensor:
        # the bias of the whitening layer trains in the first epochs only (a fresh net; a continuation never)
        model.whiten.bias.requires_grad_(epoch <= self.recipe.whiten_bias_epochs and ctx.init_state is None)
        return alternating_flip(ctx.extra["flipped"], epoch - 1) if ctx.cfg.augment else ctx.x_train

    def augment(self, ctx: RunContext, xb: torch.Tensor) -> torch.Tensor:
        """Translation only (the flips are the alternating ones)."""
        if ctx.cfg.augment and self.recipe.translate > 0:
            return cdata.augment(xb, ctx.gen, pad=self.recipe.translate, flip=False)
        return xb

    def after_step(self, ctx: RunContext, model: torch.nn.Module, t: int) -> None:
        ctx.extra["lookahead"].maybe_update(model, t, ctx.total, self.recipe.lookahead_every)

    def end_of_epoch(self, ctx: RunContext, model: torch.nn.Module, t: int) -> None:
        if t == ctx.total:   # the final weights are the average
            ctx.extra["lookahead"].finish(model, t, ctx.total, self.recipe.lookahead_every)

    def final(self, ctx: RunContext, model: torch.nn.Module, train_time: float) -> tuple[float, dict]:
        """Multi-crop TTA; the last row says both accuracies and how the run's time splits (airbench times
        whitening + training + TTA)."""
        cuda = ctx.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(ctx.device)
        t0 = time.perf_counter()
        acc = tta_accuracy(model, ctx.x_test, ctx.y_test, self.recipe.tta_level, autocast=ctx.autocast)
        if cuda:
            torch.cuda.synchronize(ctx.device)
        tta_s = time.perf_counter() - t0
        whiten_s = ctx.extra["whiten_s"]
        return acc, dict(tta_test_acc=acc, tta_level=self.recipe.tta_level, whiten_s=whiten_s, tta_s=tta_s,
                         run_s=whiten_s + train_time + tta_s)

    def n_params(self, model: torch.nn.Module) -> int:
        return sum(p.numel() for p in trainable(model))


def train_airbench(cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, init_state: dict | None = None,
                   recipe: Recipe = RECIPE) -> TrainResult:
    """Train the airbench net with the recipe; same contract as core.cifar.train.train (statuses, messages, a
    GPU out-of-memory error retries with half the batch, then on the CPU). With `init_state` (an escape
    continuation) the weights, whitening filters included, come from that state instead of a fresh init."""
    return run(cfg, AirbenchVariant(recipe), on_epoch, should_stop, init_state)
