"""Built figures, kept per config: a ρ change to a config the server has seen redraws without rebuilding.

Why: a figure here is a pure function of frozen configs (the simulation's results are themselves cached
by config), yet building it with Plotly's graph objects (every trace and layout key goes through a
validator) cost more server CPU than anything else in a cached ρ change: ~60% of the escape page's
45 ms (py-spy, `bench/hall_bench.py cpu --profile`). In a lecture hall 200 students moving ρ over
the same 61 slider steps ask for the same few hundred figures again and again.

How: `kept(name, key, build)` returns the figure that `build()` made the first time for (name, key) and
the look of the page (presentation mode and phone width change fonts and sizes; app/theme.py), from an
`st.cache_resource`: ONE figure object per key, shared by every session of the server, never copied.
That is safe because nothing changes a figure after it is built: `st.plotly_chart` only reads it
(`to_dict`, `to_json`). A page that wants to change a figure must build a new one.

`key` must name everything the figure depends on (the configs, ρ, display switches): a key that misses
an input would show a stale figure. The cache is bounded (FIGURE_ENTRIES, least recently used go first).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import plotly.graph_objects as go
import streamlit as st

from . import theme

# Two lecture pages × 61 slider steps × (a few figures) × (screen, projector), with room for other scenes.
# A figure is ~50–200 kB in memory.
FIGURE_ENTRIES = 1024


@st.cache_resource(max_entries=FIGURE_ENTRIES, show_spinner=False)
def _kept(name: str, key: Hashable, look: tuple, _build: Callable[[], go.Figure]) -> go.Figure:
    # `_build` starts with an underscore: Streamlit does not hash it; (name, key, look) is the key.
    return _build()


def look() -> tuple[bool, bool]:
    """What of the viewer changes a figure: presentation mode (larger fonts) and a phone-width screen."""
    return bool(theme.is_presentation()), bool(theme.is_phone())


def kept(name: str, key: Hashable, build: Callable[[], go.Figure]) -> go.Figure:
    """The figure `build()` makes for `key`, built once per (name, key, look) and then shared. Read only."""
    return _kept(name, key, look(), build)
