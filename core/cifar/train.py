"""Train a CIFAR-10 network with any method of the registry (core.methods): SGD, SAM, ASAM, PSAM, late SAM,
every-k, random SAM, SS-SAM, Composer's SAM, AE-SAM, LookSAM and Momentum-SAM.

`train(cfg, on_epoch, should_stop, init_state)` is the entry point of every CIFAR run. It runs the ONE loop of
core/cifar/loop.py with a recipe: the lab's nets (core.cifar.models: "tiny", "fast") with the recipe below, or
the airbench94 net with its own (core.cifar.airbench_train), chosen by `cfg.model`.

The lab's recipe (core.cifar.loop.Variant's defaults): SGD with Nesterov momentum 0.9 and weight decay 5e-4 (a
heavy-ball base for Momentum-SAM, as in its paper), a linear warm-up over the first 20% of the steps then a
linear decay to 0 (lr_at), cross-entropy with label smoothing 0.2, random translation by 2 pixels and random
flips per image and step, all on the device (core.cifar.data.augment). `label_noise` replaces a fraction of
the training labels by wrong ones (the regime where SAM helps most).

Every method steps the same way: its optimizer's own `step(closure, model)` (core.sam.SAM.step). A SAM step is
g = ∇L_B(w); w + ε; ∇L_B(w + ε) with BatchNorm's statistics frozen; back to w, base step (2 gradient
evaluations); any other step one pass (LookSAM adds its stored direction; Momentum-SAM's pass is at w̃ = w − ρ
v/‖v‖).

`train` streams one metrics dict per epoch to `on_epoch`, stops cleanly when `should_stop()` turns true
(status "cancelled") or the loss turns NaN/Inf (status "diverged"), and on a GPU out-of-memory error retries
with half the batch, then on the CPU, saying so in `messages`.
"""

from __future__ import annotations

from collections.abc import Callable

from core.cifar.airbench_train import AirbenchVariant
from core.cifar.loop import (  # noqa: F401  (the trainer's public names, one import for callers)
    EPOCH_KEYS,
    LAB,
    Method,
    StepResult,
    TrainConfig,
    TrainResult,
    Variant,
    check_config,
    common_hardware,
    evaluate,
    hardware_info,
    lr_at,
    make_method,
    noisy_labels,
    optimization_step,
    prepare_data,
    run,
    run_summary,
)
from core.device import pick_device  # noqa: F401


def variant_for(cfg: TrainConfig) -> Variant:
    """The recipe of cfg.model: airbench94's for "airbench", the lab's for the others."""
    return AirbenchVariant() if cfg.model == "airbench" else LAB


def train(cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, init_state: dict | None = None) -> TrainResult:
    """Train as configured; see the module docstring. Raises ValueError only for a bad config."""
    return run(cfg, variant_for(cfg), on_epoch, should_stop, init_state)
