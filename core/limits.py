"""Caps on what one request may ask for, so no single user can take a shared server down.

Every entry point (pages, CLI, jobs) passes user numbers through `clamp` before building a config;
configs and the CLI refuse out-of-range numbers with `check`.
Numbers outside a range are pulled to its edge; NaN, Inf and text that is not a number fall back to
the default. The caller gets a notice string for each change, to show the user.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    default: float
    integer: bool = False


# One table for every user-facing number. Pages and the CLI read their slider ranges from here.
LIMITS: dict[str, Range] = {
    "rho": Range(0.0, 2.0, 0.05),
    "lr": Range(1e-5, 1.0, 0.01),
    "sigma": Range(0.0, 50.0, 1.0),
    "particles": Range(1, 20_000, 1000, integer=True),
    "steps": Range(1, 5_000, 500, integer=True),
    "particle_steps": Range(1, 20_000_000, 500_000, integer=True),  # particles × steps × #ρ
    "seed": Range(0, 2**31 - 1, 0, integer=True),
    "k": Range(1, 100, 2, integer=True),
    "f": Range(0.0, 1.0, 0.6),
    "p": Range(0.0, 1.0, 0.3),
    "late_f": Range(0.0, 1.0, 0.3),
    "batch_size": Range(1, 100, 10, integer=True),
    "n_rhos": Range(1, 12, 4, integer=True),
    "train_size": Range(100, 50_000, 5_000, integer=True),
    "epochs": Range(1, 200, 5, integer=True),
}


def clamp(name: str, value) -> tuple[float | int, str | None]:
    """Return (a safe value, a notice or None). Never raises on user input."""
    r = LIMITS[name]
    try:
        x = float(value)
    except (TypeError, ValueError):
        return _cast(r, r.default), f"{name}: {str(value)[:40]!r} is not a number; using {r.default:g}"
    if math.isnan(x) or math.isinf(x):
        return _cast(r, r.default), f"{name}: {value!r} is not a finite number; using {r.default:g}"
    if x < r.lo or x > r.hi:
        y = min(max(x, r.lo), r.hi)
        return _cast(r, y), f"{name}: {x:g} is outside [{r.lo:g}, {r.hi:g}]; using {y:g}"
    return _cast(r, x), None


def check(name: str, value, limit: str | None = None) -> None:
    """Raise ValueError unless `value` is a finite number inside LIMITS[limit or name] (a whole number
    where the range is integer). The strict twin of `clamp`, for configs and the CLI, which refuse
    instead of correcting."""
    r = LIMITS[limit or name]
    if not isinstance(value, numbers.Real) or isinstance(value, bool):  # numpy scalars are Real too
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not r.lo <= value <= r.hi:
        raise ValueError(f"{name} = {value:g} is outside [{r.lo:g}, {r.hi:g}]")
    if r.integer and value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value:g}")


def _cast(r: Range, x: float) -> float | int:
    return int(round(x)) if r.integer else float(x)
