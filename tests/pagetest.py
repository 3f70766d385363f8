"""Shared helpers for the AppTest page tests (tests/test_page_*.py): run a page with URL query
parameters and read a chart's Plotly JSON by its widget key."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # the first run imports torch and simulates on a shared 2-core machine


def run_page(script: str, **params) -> AppTest:
    """Run `script` (relative to the repo, e.g. "pages/escape.py" or "app/main.py") with the given
    query parameters; the run must raise no exception."""
    at = AppTest.from_file(str(REPO / script), default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart(at: AppTest, key: str = "main_chart") -> dict:
    """The Plotly JSON of the one chart whose widget key is `key`."""
    charts = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert len(charts) == 1, f"expected one chart {key!r}, got {len(charts)}"
    return json.loads(charts[0].proto.spec)


def trace_array(v) -> np.ndarray:
    """A trace array from Plotly JSON as floats: a list (None → NaN), or a typed array {"dtype", "bdata"}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).astype(float)
    return np.asarray([np.nan if x is None else x for x in v], dtype=float)
