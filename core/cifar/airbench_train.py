"""The airbench94 training recipe, for every optimizer of core.schedules.OPTIMIZERS.

Evidence and what is not yet measured: see core/cifar/airbench.py (the net). In short: the recipe is Keller
Jordan's (94.01% in 9.9 epochs, 3.83 s on an A100); this write-up has run on the CPU only (tests/test_airbench.py);
its H100 figures are open until bench/gpu_session.sh runs on a device.

`train_airbench(cfg)` takes the same TrainConfig as core.cifar.train.train and returns the same TrainResult;
`train(cfg)` hands every cfg with model "airbench" to it. Each optimisation step is
core.cifar.train.optimization_step, the ONE step function of every method (SGD, SAM, PSAM, LookSAM, …): it
freezes BatchNorm's running statistics on perturbed passes and counts the gradient evaluations. What the recipe
adds around that step, each trick with its reason:

  * Whitening first (core/cifar/whiten.py): the frozen first layer is computed from the first 5,000 training
    images before step 1 (part of the timed run, as in airbench). Its filters never train and SAM never perturbs
    them (requires_grad False: no gradient, so core.sam leaves them alone). Its bias trains for the first 3
    epochs only, then freezes (airbench: later updates only add noise to every feature of the net at once).
  * Decoupled hyperparameters (airbench's "per 1024 examples" form): lr 11.5 and weight decay 0.0153 per 1024
    examples, Nesterov momentum 0.85. Written for PyTorch's SGD on the MEAN loss of a batch B:
        lr_sgd = lr · B / (1024 · (1 + 1/(1 − μ)))      (the 1 + 1/(1 − μ) undoes Nesterov momentum's gain)
        weight_decay_sgd · lr_sgd = wd · B / (1024 · (1 + 1/(1 − μ)))   (the decay per step is fixed, whatever lr)
    so at B = 1024: lr_sgd ≈ 1.50, decay 0.2% of the weights per step.
  * Scaled BatchNorm biases: the BatchNorm biases β get 64× the learning rate but the same decay per step.
    With γ frozen at 1 (airbench.batch_norm), β alone shifts each channel before the GELU; a large rate lets it
    keep up with the convolutions' much larger weight vectors.
  * Learning-rate schedule: a linear warm-up from 0.2× to 1× over the first 23% of the steps, then linear to
    0.07× at the end (the large rate is only safe once BatchNorm's statistics and the whitened features settle).
  * Label smoothing 0.2 (cfg.label_smoothing, the trainer's default too): targets 0.82 / 0.02 instead of 1 / 0,
    which keeps the tiny logit scale (1/9) from being driven to saturation.
  * Alternating flips (Jordan 2024, arXiv:2404.00498): each image is flipped at random ONCE, then the whole set is mirrored
    on every odd epoch. Every image is seen both ways in any two consecutive epochs, where independent coin
    flips would show some images the same way twice (the paper measures it as epochs saved; not measured here).
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
(the recipe's values above are used). cfg.lr, when > 0, replaces the peak lr_sgd (≈ 1.50 at batch 1024) in the
generic trainer's units (PyTorch SGD on the mean loss); the decay per step stays the recipe's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from core.cifar import data as cdata
from core.cifar import train as ctrain
from core.cifar.airbench import AirbenchNet, trainable
from core.cifar.lookahead import Lookahead
from core.cifar.sharpness import hutchinson_trace, lambda_max
from core.cifar.tta import tta_accuracy
from core.device import pick_device


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
    """Two groups for SGD: the BatchNorm biases at bias_scaler × lr, everything else trainable at lr; both with
    weight_decay = decay / lr, so the decay per step (lr · weight_decay) is the same `decay` for both.
    The frozen whitening filters and BatchNorm weights (requires_grad False) are in neither group."""
    norm_ids = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    params = trainable(model)
    norm = [p for p in params if id(p) in norm_ids]
    other = [p for p in params if id(p) not in norm_ids]
    return [dict(params=norm, lr=lr * bias_scaler, weight_decay=decay / (lr * bias_scaler), initial_lr=lr * bias_scaler),
            dict(params=other, lr=lr, weight_decay=decay / lr, initial_lr=lr)]


def alternating_flip(x: torch.Tensor, epoch: int) -> torch.Tensor:
    """The images of epoch `epoch` (0-based) under the alternating-flip scheme: x as pre-flipped on even
    epochs, all of x mirrored on odd ones (x was flipped at random once, by `random_flip`)."""
    return x.flip(-1) if epoch % 2 else x


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image mirrored with probability 1/2, once, before the first epoch."""
    flip = torch.rand(len(x), device=x.device, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def train_airbench(cfg: ctrain.TrainConfig, on_epoch: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, init_state: dict | None = None,
                   recipe: Recipe = RECIPE) -> ctrain.TrainResult:
    """Train the airbench net with the recipe; same contract as core.cifar.train.train (statuses, messages,
    a GPU out-of-memory error retries with half the batch). With `init_state` (an escape continuation) the
    weights, whitening filters included, come from that state instead of a fresh init."""
    ctrain.check_config(cfg)
    t_start = time.perf_counter()
    xtr, ytr, xte, yte, classes, data_msg = ctrain.prepare_data(cfg)
    messages = [data_msg] if data_msg else []
    device = pick_device(cfg.device)
    batch = min(cfg.batch_size or 1024, len(xtr))
    while True:
        try:
            return _train(cfg, recipe, device, batch, xtr, ytr, xte, yte, classes, on_epoch, should_stop,
                          init_state, messages, t_start)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if device.type != "cuda" or batch <= 64:
                raise
            messages.append(f"GPU out of memory at batch {batch}; retrying with batch {batch // 2}")
            batch //= 2


def _train(cfg, recipe, device, batch, xtr, ytr, xte, yte, classes, on_epoch, should_stop, init_state,
           messages, t_start) -> ctrain.TrainResult:
    torch.manual_seed(cfg.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True   # fixed shapes: cuDNN picks its fastest kernels once
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)  # noqa: E731
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)

    x_train = cdata.to_device(xtr, device, channels_last=use_bf16)
    y_train = torch.from_numpy(np.ascontiguousarray(ytr)).to(device)
    x_test = cdata.to_device(xte, device, channels_last=use_bf16)
    y_test = torch.from_numpy(np.ascontiguousarray(yte)).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    model = AirbenchNet(len(classes), recipe.widths).to(device)
    if use_bf16:
        model = model.to(memory_format=torch.channels_last)
    sync()
    t0 = time.perf_counter()
    if init_state is not None:
        model.load_state_dict(init_state)
    else:
        model.init_whitening(x_train[: recipe.whiten_images])
    sync()
    whiten_s = time.perf_counter() - t0
    net = torch.compile(model) if cfg.compile else model   # same parameters; λ_max uses `model` (double backward)

    n = len(x_train)
    steps_per_epoch = max(1, n // batch)   # the last partial batch is dropped: every step sees `batch` images
    total = cfg.epochs * steps_per_epoch
    lr, decay = recipe.sgd_hyper(batch)
    lr = cfg.lr or lr
    groups = param_groups(model, lr, decay, recipe.bias_scaler)
    # the recipe's momentum; lr and weight decay are set per group above (the defaults here are unused)
    method = ctrain.make_method(replace(cfg, momentum=recipe.momentum, nesterov=True), groups, total, lr=lr)
    opt = method.optimizer
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    lookahead = Lookahead(model)

    def loss_on(xb, yb):
        with autocast():
            out = net(xb)
        return criterion(out.float(), yb), out

    x_flipped = random_flip(x_train, gen) if cfg.augment else x_train
    history: list[dict] = []
    grad_evals = sam_steps = t = 0
    status, message = "done", ""
    train_time = 0.0   # the training loop only, as the generic trainer's wall_s (run_s adds whitening and TTA)
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        # the bias of the whitening layer trains in the first epochs only
        model.whiten.bias.requires_grad_(epoch <= recipe.whiten_bias_epochs and init_state is None)
        sync()
        t0 = time.perf_counter()
        images = alternating_flip(x_flipped, epoch - 1) if cfg.augment else x_train
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for s in range(steps_per_epoch):
            if should_stop is not None and should_stop():
                status, message = "cancelled", f"cancelled after {t} of {total} steps"
                break
            idx = perm[s * batch : (s + 1) * batch]
            xb, yb = images[idx], y_train[idx]
            if cfg.augment and recipe.translate > 0:
                xb = cdata.augment(xb, gen, pad=recipe.translate, flip=False)
            factor = recipe.lr_factor(t, total)
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
            step = ctrain.optimization_step(model, method, xb, yb, loss_on, t)
            grad_evals += step.grad_evals
            sam_steps += int(step.sam)
            loss_sum += step.loss * len(yb)
            correct += (step.logits.argmax(1) == yb).sum()
            seen += len(yb)
            t += 1
            lookahead.maybe_update(model, t, total, recipe.lookahead_every)
        if t == total:
            lookahead.finish(model, t, total, recipe.lookahead_every)   # the final weights are the average
        sync()
        train_time += time.perf_counter() - t0
        if status == "cancelled" and seen == 0:
            break
        train_loss = loss_sum.item() / max(1, seen)
        if not math.isfinite(train_loss):
            status = "diverged"
            message = f"training diverged in epoch {epoch} (loss is {train_loss}); try a smaller learning rate or ρ"
            break
        if method.recompute_bn:   # its passes ran at w̃, not w: re-estimate BatchNorm's statistics at w
            ctrain.recompute_bn_at(model, x_train[: min(n, ctrain.BN_IMAGES)], autocast)
        test_loss, test_acc = ctrain.evaluate(model, x_test, y_test, autocast=autocast)
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=correct.item() / max(1, seen),
                   test_loss=test_loss, test_acc=test_acc, sam_steps=sam_steps, grad_evals=grad_evals,
                   wall_s=train_time, lr=opt.param_groups[-1]["lr"])
        history.append(row)
        if on_epoch is not None and not (epoch == cfg.epochs and status == "done"):
            on_epoch(dict(row))
        if status == "cancelled":
            break

    tta_acc = math.nan
    tta_s = 0.0
    if status == "done" and history:
        sync()
        t0 = time.perf_counter()
        tta_acc = tta_accuracy(model, x_test, y_test, recipe.tta_level, autocast=autocast)
        sync()
        tta_s = time.perf_counter() - t0
        # the last row says both, and how the whole run's time splits (airbench times whitening + training + TTA)
        history[-1].update(tta_test_acc=tta_acc, tta_level=recipe.tta_level, whiten_s=whiten_s, tta_s=tta_s,
                           run_s=whiten_s + train_time + tta_s)
        if on_epoch is not None:
            on_epoch(dict(history[-1]))

    lam = tr = None
    if status == "done" and (cfg.sharpness_iters > 0 or cfg.trace_samples > 0):
        xe, ye = x_train[: cfg.eval_batch].contiguous(), y_train[: cfg.eval_batch]
        model = model.to(memory_format=torch.contiguous_format)
        try:
            if cfg.sharpness_iters > 0:
                lam = lambda_max(model, xe, ye, iters=cfg.sharpness_iters, seed=cfg.seed)
            if cfg.trace_samples > 0:
                tr = hutchinson_trace(model, xe, ye, samples=cfg.trace_samples, seed=cfg.seed)
        except RuntimeError as e:   # e.g. out of memory in double backward: keep the trained run, say why
            if cuda:
                torch.cuda.empty_cache()
            messages.append(f"sharpness not measured: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")
    if status == "done":
        message = f"finished {cfg.epochs} epochs" + (f" ({'; '.join(messages)})" if messages else "")
    last = history[-1] if history else {}
    n_images = len(history) * steps_per_epoch * batch
    return ctrain.TrainResult(
        config=cfg, status=status, message=message, history=history,
        test_acc=tta_acc if status == "done" else last.get("test_acc", math.nan),
        train_acc=last.get("train_acc", math.nan), grad_evals=grad_evals, sam_steps=sam_steps, total_steps=total,
        wall_s=train_time, total_s=time.perf_counter() - t_start,
        images_per_s=n_images / train_time if train_time > 0 else 0.0,
        steady_images_per_s=ctrain._steady_rate(history, steps_per_epoch * batch),
        device=str(device), batch_size=batch, n_train=n, n_test=len(x_test), classes=classes,
        n_params=sum(p.numel() for p in trainable(model)), lambda_max=lam, trace=tr, messages=list(messages),
        hardware=ctrain.hardware_info(device),
        state={k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()},
    )
