"""Which torch device to compute on: the one rule shared by the toy simulator and the CIFAR trainer."""

from __future__ import annotations

import torch


def has_gpu() -> bool:
    """Whether torch sees a CUDA GPU (the CIFAR page picks its lane and its defaults by it)."""
    return torch.cuda.is_available()


def pick_device(name: str) -> torch.device:
    """"auto" → CUDA when torch sees a GPU, else the CPU; "cpu", "cuda" and "cuda:N" as named.
    Raises ValueError for a GPU that is not there or a name that is no device."""
    if name == "auto":
        return torch.device("cuda" if has_gpu() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name} was asked for, but torch sees no GPU")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)
