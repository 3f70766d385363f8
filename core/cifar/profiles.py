"""1-D loss profiles of trained networks, and escape from an SGD solution on a real net.

Profiles (the asymmetric-valley view on a real network, He, Huang & Yuan, NeurIPS 2019):
    interpolation:     L(w_SGD + t (w_SAM − w_SGD)),  t ∈ [−1, 2]   (t = 0 is SGD's solution, t = 1 SAM's)
    random direction:  L(w + t d),  d filter-normalised (Li et al., NeurIPS 2018): for every filter i
                       (output channel / row) of every weight tensor, d_i ← d_i · ‖w_i‖ / ‖d_i‖; biases
                       and BatchNorm parameters get d = 0, so the step scales with the weights it moves.
At every point the BatchNorm running statistics are recomputed on training images (reset, then a cumulative
average over forward passes in train mode: core.cifar.loop.recompute_bn): the statistics stored at w are wrong
at w + t d.

Escape (claim 1 on a real network): from an SGD solution w₀, continue with SGD and with SAM at several ρ
for a few epochs, all with the same minibatches; report the distance travelled ‖w − w₀‖, the loss jump
L(w) − L(w₀) on a fixed training batch, and the drop in λ_max.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from core.cifar import data as cdata
from core.cifar.loop import prepare_data, recompute_bn  # noqa: F401  (recompute_bn: profiles' public name too)
from core.cifar.models import make_model
from core.cifar.sharpness import lambda_max
from core.cifar.train import train
from core.device import pick_device


@dataclass(frozen=True)
class ProfileConfig:
    t_min: float = -1.0
    t_max: float = 2.0
    points: int = 13
    n_eval: int = 1000        # training images for the train loss (the test loss uses the test subset)
    bn_images: int = 1000     # training images for recomputing BatchNorm statistics
    seed: int = 0             # for the random direction


@dataclass
class ProfileResult:
    kind: str                 # "interpolation" | "random"
    label: str
    ts: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    config: ProfileConfig

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "config": asdict(self.config),
                **{k: getattr(self, k).tolist() for k in ("ts", "train_loss", "test_loss", "train_acc", "test_acc")}}


@torch.no_grad()
def _eval(model, x, y, batch=1000) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch]).float()
        loss += F.cross_entropy(out, y[i : i + batch], reduction="sum").item()
        correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def _params(state: dict, model) -> dict:
    """Only the learnable tensors (BatchNorm buffers are recomputed, not interpolated)."""
    names = {n for n, _ in model.named_parameters()}
    return {k: v.float() for k, v in state.items() if k in names}


def filter_normalized_direction(state: dict, model, seed: int = 0) -> dict:
    """A Gaussian direction with each filter rescaled to the norm of the weights' filter (Li et al. 2018)."""
    gen = torch.Generator().manual_seed(seed)
    d = {}
    for k, w in _params(state, model).items():
        if w.dim() <= 1:
            d[k] = torch.zeros_like(w)  # biases, BatchNorm γ/β: not moved
            continue
        r = torch.randn(w.shape, generator=gen)
        norms_w = w.flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
        norms_r = r.flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
        d[k] = r * norms_w / (norms_r + 1e-10)
    return d


class _Data:
    def __init__(self, train_cfg, n_eval, bn_images, device):
        xtr, ytr, xte, yte, self.classes, self.message = prepare_data(train_cfg)
        self.x_bn = cdata.to_device(xtr[:bn_images], device)
        self.x_tr = cdata.to_device(xtr[:n_eval], device)
        self.y_tr = torch.from_numpy(np.ascontiguousarray(ytr[:n_eval])).to(device)
        self.x_te = cdata.to_device(xte, device)
        self.y_te = torch.from_numpy(np.ascontiguousarray(yte)).to(device)


def _profile(kind, label, train_cfg, base: dict, direction: dict, cfg: ProfileConfig, device) -> ProfileResult:
    data = _Data(train_cfg, cfg.n_eval, cfg.bn_images, device)
    model = make_model(train_cfg.model, num_classes=len(data.classes)).to(device)
    ts = np.linspace(cfg.t_min, cfg.t_max, cfg.points)
    rows = []
    for t in ts:
        point = {k: (base[k] + float(t) * direction[k]).to(device) for k in base}
        model.load_state_dict(point, strict=False)
        recompute_bn(model, data.x_bn)
        rows.append((*_eval(model, data.x_tr, data.y_tr), *_eval(model, data.x_te, data.y_te)))
    a = np.array(rows)
    return ProfileResult(kind, label, ts, a[:, 0], a[:, 2], a[:, 1], a[:, 3], cfg)


def interpolation_profile(train_cfg, state_a: dict, state_b: dict, cfg: ProfileConfig = ProfileConfig(),
                          label: str = "SGD → SAM", device: str = "cpu") -> ProfileResult:
    """L(w_a + t (w_b − w_a)) for t in [t_min, t_max], BatchNorm statistics recomputed at each t.
    `train_cfg` names the model and the data (its subset is the one evaluated)."""
    model = make_model(train_cfg.model, num_classes=len(train_cfg.classes) or 10)
    a, b = _params(state_a, model), _params(state_b, model)
    return _profile("interpolation", label, train_cfg, a, {k: b[k] - a[k] for k in a}, cfg, device)


def random_direction_profile(train_cfg, state: dict, cfg: ProfileConfig = ProfileConfig(),
                             label: str = "random direction", device: str = "cpu") -> ProfileResult:
    """L(w + t d) along a filter-normalised random direction d (seeded by cfg.seed)."""
    model = make_model(train_cfg.model, num_classes=len(train_cfg.classes) or 10)
    return _profile("random", label, train_cfg, _params(state, model),
                    filter_normalized_direction(state, model, cfg.seed), cfg, device)


# ------------------------------------------------------------------------------------------------
# Escape from an SGD solution
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EscapeConfig:
    rhos: tuple[float, ...] = (0.05, 0.1, 0.2)
    continue_epochs: int = 2
    lr: float = 0.02          # constant-ish small learning rate for the continuation (no warm-up)
    eval_images: int = 500    # fixed training batch for the loss jump and λ_max


@dataclass
class EscapeResult:
    rows: list[dict]          # one per continuation: optimizer, rho, distance, loss_jump, lambda_max, lambda_drop …
    start_loss: float
    start_lambda_max: float
    base: dict                # the SGD pre-training's summary
    hardware: list[dict] = field(default_factory=list)  # each training run's own (start, then continuations)

    def to_dict(self) -> dict:
        return asdict(self)


def escape(base_cfg, cfg: EscapeConfig = EscapeConfig(), should_stop=None, init: object = None,
           on_stage=None) -> EscapeResult:
    """Train `base_cfg` with SGD (or take `init`, a TrainResult with .state), then continue from its
    weights w₀ with SGD and with SAM at each ρ in cfg.rhos, same seed so the same minibatches.
    `on_stage(dict)` is called after the starting point is measured and after each continuation
    (1 + 1 + len(rhos) calls in all), for progress bars. A stop request ends it early with the rows so far
    (none if it came during the SGD start, or if that start diverged: base["status"] says which)."""
    base_cfg = replace(base_cfg, optimizer="sgd")
    # The starting point's sharpness is measured below, on the escape's own evaluation batch: skip the trainer's.
    start = init if init is not None else train(replace(base_cfg, sharpness_iters=0, trace_samples=0),
                                                should_stop=should_stop)
    summary = {k: getattr(start, k) for k in ("test_acc", "grad_evals", "wall_s")}
    if (should_stop is not None and should_stop()) or getattr(start, "status", "done") != "done":
        # cancelled, or the SGD start diverged: there is no solution to escape from
        return EscapeResult([], math.nan, math.nan, summary | {"lambda_max": None, "status": start.status},
                            [getattr(start, "hardware", {})])
    state0 = start.state
    device = pick_device(base_cfg.device)
    data = _Data(base_cfg, cfg.eval_images, cfg.eval_images, device)
    model = make_model(base_cfg.model, num_classes=len(data.classes)).to(device)

    def measure(state):
        model.load_state_dict(state)  # copies the CPU tensors onto the model's device
        loss, _ = _eval(model, data.x_tr, data.y_tr)
        lam = lambda_max(model, data.x_tr, data.y_tr, iters=base_cfg.sharpness_iters or 20, seed=0)
        return loss, lam

    loss0, lam0 = measure(state0)
    if on_stage is not None:
        on_stage({"stage": "start", "loss": loss0, "lambda_max": lam0})
    p0 = _params(state0, model)
    rows, hardware = [], [getattr(start, "hardware", {})]
    for opt, rho in [("sgd", 0.0)] + [("sam", r) for r in cfg.rhos]:
        if should_stop is not None and should_stop():
            break
        res = train(replace(base_cfg, optimizer=opt, rho=rho, epochs=cfg.continue_epochs, lr=cfg.lr, warmup=0.0,
                            sharpness_iters=0, trace_samples=0), init_state=state0, should_stop=should_stop)
        p = _params(res.state, model)  # CPU copies: ‖w − w₀‖ over all learnable parameters
        dist = float(torch.sqrt(sum(((p[k] - p0[k]) ** 2).sum() for k in p0)))
        loss, lam = measure(res.state)
        rows.append(dict(optimizer=opt, rho=rho, distance=dist, loss=loss, loss_jump=loss - loss0, lambda_max=lam,
                         lambda_drop=lam0 - lam, test_acc=res.test_acc, grad_evals=res.grad_evals,
                         device=res.device, history=res.history))
        hardware.append(res.hardware)
        if on_stage is not None:
            on_stage({"stage": "continue", **{k: v for k, v in rows[-1].items() if k != "history"}})
    summary |= {"lambda_max": lam0, "status": "done"}
    return EscapeResult(rows, loss0, lam0, summary, hardware)
