"""Results as plain JSON: one converter for every result object's `to_dict()` and every export.

Dataclasses become dicts, numpy arrays and scalars become lists and numbers, tuples become lists, and
NaN or ±Inf become None (JSON has no NaN; None reads as "undefined" in the CLI's and the pages' output).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np


def to_jsonable(v):
    """A structure of dicts, lists, str, int, float (finite) and None, equal in content to v."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: to_jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, Mapping):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return to_jsonable(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v
