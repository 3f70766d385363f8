"""Helpers for pages whose ρ moves in the browser (app/components/rhochart): read the grid a page shipped, and the
figure of one of its charts at one step, from an AppTest run."""

from __future__ import annotations

import base64
import json

import pytest
from streamlit.testing.v1 import AppTest

from app.rhogrid import layout_at


def shipped(at: AppTest, key: str = "main_chart") -> tuple[dict, dict]:
    """(header, payload) of the one ρ chart whose key is `key`: header {digest, index} says the step shown first,
    payload is app/rhogrid.py's JSON."""
    comps = [c for c in at.get("bidi_component") if c.proto.id.endswith(f"-{key}")]
    assert len(comps) == 1, f"expected one ρ chart {key!r}, got {len(comps)}"
    data = comps[0].proto.bytes
    head, _, body = data.partition(b"\n")
    return json.loads(head), json.loads(body)


def figure(at: AppTest, chart: int = 0, step: int | None = None, key: str = "main_chart") -> dict:
    """Chart number `chart` of the ρ chart at grid step `step` (default: the step shown first), as Plotly JSON
    {"data", "layout"}, typed arrays left as {"dtype", "bdata"} (tests.pagetest.trace_array reads them)."""
    head, payload = shipped(at, key)
    c = payload["charts"][chart]
    i = head["index"] if step is None else step
    return {"data": [c["traces"][t] for t in c["steps"][i][1]], "layout": layout_at(c, i)}


def rho_shown(at: AppTest, key: str = "main_chart") -> float:
    """The ρ the browser shows first."""
    head, payload = shipped(at, key)
    return payload["slider"]["rhos"][head["index"]]


def block(at: AppTest, number: int = 0, step: int | None = None, key: str = "main_chart") -> str:
    """HTML block `number` at grid step `step` (default: the step shown first)."""
    head, payload = shipped(at, key)
    b = payload["blocks"][number]
    return b["pool"][b["steps"][head["index"] if step is None else step]]


def decoded_bytes(v) -> int:
    """Bytes of a typed array spec (for payload accounting in tests)."""
    return len(base64.b64decode(v["bdata"])) if isinstance(v, dict) and "bdata" in v else 0


def assert_snapped(at: AppTest, shown: float, words: str) -> None:
    """A hostile ρ in the URL: one notice about ρ that says why (`words`), and the ρ chart opens at the nearest
    step `shown`; the page ran without an exception."""
    assert not at.exception, at.exception
    warnings = " | ".join(w.value for w in at.warning)
    assert "ρ" in warnings and words in warnings, warnings
    assert rho_shown(at) == pytest.approx(shown)
