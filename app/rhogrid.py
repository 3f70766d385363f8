"""ρ in the browser: every step of a page's ρ slider, computed at once and shipped with the page (issue 18).

A page with a ρ grid builds its figures for EVERY step of its ρ slider from one batched engine call (the toy
engine runs all ρ of the grid in one `simulate_grid`; the exact chains are cheap), and `payload` packs them:

    slider   the control: URL key, label, help text, the steps ρ_0 < … < ρ_{n−1}, digits shown
    charts   per chart, a pool of distinct traces (a trace that does not change with ρ, such as the landscape or
             SGD's curve, is stored once), the first step's layout and a pool of layout patches (the top-level
             keys that differ from it), and per step which patch and which traces it shows
    blocks   per step, small HTML blocks (a caption or a table that names numbers at that ρ), pooled the same way

Numeric arrays travel as Plotly's base64 typed arrays (float32 where the figure module made them float32), the
format plotly.js reads natively. The browser (app/components/rhochart) switches between steps with
`Plotly.react`, without asking the server; the offline file (app/offline.py) embeds the same payload and the same
JavaScript. Everything here is pure: figures in, bytes out.

`snap` reads a ρ from a URL against the grid: off-grid, outside, NaN or text gives the nearest step (or the
default) and a one-line notice, never an exception.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
import plotly.io as pio

PAYLOAD_LIMIT = 2_000_000  # bytes per page grid (issue 18: ≤ 2 MB)


@dataclass(frozen=True)
class Slider:
    """The ρ control drawn in the browser: URL key, label, help text and the grid of steps."""

    key: str
    label: str
    help: str
    rhos: tuple[float, ...]
    default: float
    digits: int = 3

    def nearest(self, rho: float) -> int:
        return min(range(len(self.rhos)), key=lambda i: abs(self.rhos[i] - rho))

    def as_dict(self) -> dict:
        return dict(key=self.key, label=self.label, help=self.help, rhos=list(self.rhos), digits=self.digits)


def steps(lo: float, hi: float, step: float) -> tuple[float, ...]:
    """The values of a slider from lo to hi in steps of `step`, rounded as the slider shows them."""
    n = int(round((hi - lo) / step))
    return tuple(round(lo + i * step, 10) for i in range(n + 1))


def snap(raw, rhos: Sequence[float], default: float, label: str = "ρ") -> tuple[float, str | None]:
    """A URL's ρ on the grid `rhos`: (value, notice or None). Absent → default, no notice; not a finite number
    → default; outside the grid's range → the nearest end; between two steps → the nearest step; each with a
    one-line notice that says what is shown instead. Never raises."""
    if isinstance(raw, (list, tuple)):
        raw = raw[-1] if raw else None
    if raw is None:
        return float(default), None
    try:
        x = float(str(raw).strip())
    except (TypeError, ValueError, OverflowError):
        x = math.nan
    shown = str(raw) if len(str(raw)) <= 40 else str(raw)[:37] + "..."
    if not math.isfinite(x):
        return float(default), f"{label}: {shown!r} is not a finite number; showing the default {default:g}."
    nearest = min(rhos, key=lambda r: abs(r - x))
    if math.isclose(nearest, x, rel_tol=1e-9, abs_tol=1e-12):  # a step as written ("0.20", "2e-1", "-0")
        return nearest, None
    if x < rhos[0] or x > rhos[-1]:
        return nearest, f"{label}: {x:g} is outside [{rhos[0]:g}, {rhos[-1]:g}]; showing {nearest:g}."
    return nearest, f"{label}: {x:g} is between the slider's steps; showing the nearest step, {nearest:g}."


class _Pool:
    """Distinct JSON values, each stored once; `add` returns its index."""

    def __init__(self):
        self.items: list = []
        self._index: dict[str, int] = {}

    def add(self, value) -> int:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        if text not in self._index:
            self._index[text] = len(self.items)
            self.items.append(value)
        return self._index[text]


def _figure_json(fig: go.Figure | dict) -> dict:
    """The figure as plotly.js reads it (numpy arrays as base64 typed arrays), frames dropped."""
    d = json.loads(pio.to_json(fig, validate=False, engine="json"))
    d.pop("frames", None)
    return d


def chart_steps(figures: Sequence[go.Figure | dict]) -> dict:
    """One chart over the grid: `figures[i]` is the chart at step i (a Figure, or plotly.js JSON as a dict).
    Returns the pooled chart of the payload: the first step's layout as `layout`, and per step the pooled patch of
    the top-level layout keys that differ from it (None: the key is absent at that step)."""
    traces, patches, per_step, template, base = _Pool(), _Pool(), [], None, None
    for fig in figures:
        d = _figure_json(fig)
        layout = d.get("layout", {})
        template = layout.pop("template", template)  # the same theme at every step: sent once per chart
        if base is None:
            base = layout
        patch = {k: layout.get(k) for k in set(layout) | set(base) if layout.get(k) != base.get(k)}
        per_step.append([patches.add(patch), [traces.add(t) for t in d.get("data", [])]])
    return dict(traces=traces.items, layout=base or {}, patches=patches.items, steps=per_step, template=template)


def layout_at(chart: dict, step: int) -> dict:
    """The layout of a pooled chart at `step` (what the browser draws; tests use it)."""
    out = dict(chart["layout"]) | chart["patches"][chart["steps"][step][0]]
    return {k: v for k, v in out.items() if v is not None}


def block_steps(htmls: Sequence[str]) -> dict:
    """One HTML block over the grid (the server escapes what it puts in): pooled like the traces."""
    pool = _Pool()
    return dict(pool=pool.items, steps=[pool.add(h) for h in htmls])


def html_block(table=None, *notes: str) -> str:
    """A step's HTML block: a table (a pandas DataFrame, drawn as the lab's static tables, cells escaped) and
    notes (plain text, escaped), for the statistics a page shows at each ρ without asking the server."""
    import html

    parts = [f'<p class="samlab-rho-note">{html.escape(n)}</p>' for n in notes if n]
    if table is not None:
        parts.insert(0, table.to_html(index=False, border=0, escape=True))
    return "".join(parts)


def payload(slider: Slider, charts: Sequence[dict], blocks: Sequence[dict] = (), *,
            plotly_config: dict | None = None, caption: str = "") -> bytes:
    """The grid as the browser receives it: UTF-8 JSON (see the module docstring)."""
    body = dict(version=1, slider=slider.as_dict(), charts=list(charts), blocks=list(blocks),
                config=plotly_config or {}, caption=caption)
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class GridView:
    """A page's grid, ready to ship: the payload bytes, their digest (the browser keeps its ρ while the digest
    stays), and per step whatever the server itself needs at that ρ (the export rows), in slider order."""

    slider: Slider
    data: bytes
    per_step: tuple = ()

    @functools.cached_property  # hashed once per view (a release reads it: ~1 ms per MB each time otherwise)
    def digest(self) -> str:
        return hashlib.blake2b(self.data, digest_size=12).hexdigest()

    @property
    def nbytes(self) -> int:
        return len(self.data)


def build(slider: Slider, figures_at: Callable[[int], Sequence[go.Figure]], *,
          blocks_at: Callable[[int], Sequence[str]] | None = None, per_step_at: Callable[[int], object] | None = None,
          plotly_config: dict | None = None, caption: str = "") -> GridView:
    """Call `figures_at(i)` (the page's own figure functions at step i: one implementation of each figure) for
    every step, and pack the charts, the HTML blocks and the server's per-step values into a GridView."""
    n = len(slider.rhos)
    per_fig = list(zip(*[list(figures_at(i)) for i in range(n)]))
    charts = [chart_steps(figs) for figs in per_fig]
    blocks = []
    if blocks_at is not None:
        per_block = list(zip(*[list(blocks_at(i)) for i in range(n)]))
        blocks = [block_steps(b) for b in per_block]
    extra = tuple(per_step_at(i) for i in range(n)) if per_step_at is not None else ()
    return GridView(slider, payload(slider, charts, blocks, plotly_config=plotly_config, caption=caption), extra)
