"""Test-time augmentation (TTA): classify each test image from several views and average the logits.

The net was trained on flipped and shifted images, so the flipped or shifted test image is as good an input as
the original; averaging the logits of several views cancels part of each view's error. airbench94's levels
(Jordan 2024, arXiv:2404.00498; level 2 costs 6× the inference work; its gain here is not measured yet):

    level 0   the image alone                                   1 view
    level 1   mean of the image and its mirror image            2 views
    level 2   ½ · level 1 of the image
            + ½ · mean of level 1 of the image shifted one pixel up-left and one pixel down-right
              (reflect padding fills the uncovered edge)        6 views

The weights are those of the training augmentation: flips happen half the time, and a translation is as
likely as none. The net runs in eval mode (BatchNorm uses its running statistics), so the logits of one image
do not depend on the others in the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LEVELS = (0, 1, 2)


def views(x: torch.Tensor, level: int) -> list[tuple[float, torch.Tensor]]:
    """The (weight, view) pairs of a TTA level for a batch x (N, C, H, W); the weights sum to 1."""
    if level not in LEVELS:
        raise ValueError(f"TTA level must be one of {LEVELS}, got {level!r}")
    if level == 0:
        return [(1.0, x)]
    mirrored = [(0.5, x), (0.5, x.flip(-1))]
    if level == 1:
        return mirrored
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = (padded[..., 0:h, 0:w], padded[..., 2 : h + 2, 2 : w + 2])   # up-left, down-right by one pixel
    out = [(0.5 * a, v) for a, v in mirrored]
    for s in shifted:
        out += [(0.25 * 0.5, s), (0.25 * 0.5, s.flip(-1))]
    return out


@torch.no_grad()
def tta_logits(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, level: int = 2,
               batch: int = 2000) -> torch.Tensor:
    """The weighted mean of the model's logits (float32) over the views of `level`, batch by batch.
    The caller puts the model in eval mode (and autocast, if wanted)."""
    out = []
    for xb in x.split(batch):
        acc = None
        for weight, v in views(xb, level):
            logits = weight * model(v).float()
            acc = logits if acc is None else acc + logits
        out.append(acc)
    return torch.cat(out)


@torch.no_grad()
def tta_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, level: int = 2, autocast=None,
                 batch: int = 2000) -> float:
    """Accuracy of the TTA logits, with the model in eval mode for the duration."""
    was = model.training
    model.eval()
    try:
        if autocast is not None:
            with autocast():
                logits = tta_logits(model, x, level, batch)
        else:
            logits = tta_logits(model, x, level, batch)
    finally:
        model.train(was)
    return (logits.argmax(1) == y).float().mean().item() if len(y) else float("nan")
