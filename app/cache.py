"""Cached wrappers around core functions, shared by every session of the server.

`st.cache_data` keys each entry by the frozen config (hashable, immutable), returns a fresh copy
of the result to every caller (so one session can never change another's result), and keeps at
most `max_entries` entries, so memory levels off however many configs a lecture hall requests.
`landscape` is an `st.cache_resource`: one shared Landscape object per (name, formula), which the
pages only read (loss, grad, basin), never modify.

Under `make hall` (several replicas, `SAMLAB_CACHE_URL` set) `shared(name, max_entries)` puts the hall's
shared Redis cache (serve.sharedcache) behind st.cache_data: the process's own cache is the first level,
Redis the second, so a config is computed once for the whole hall. Without the variable it is exactly
st.cache_data.
"""

from __future__ import annotations

import functools

import streamlit as st

from core.methods import for_optimizer
from serve.sharedcache import shared_call

# Bounded caches: a toy SimResult with the default display sizes is well under 1 MB.
SIM_ENTRIES = 128


@st.cache_resource(show_spinner=False)
def device_info() -> dict:
    """Which device the app computes on: CUDA when torch sees a GPU, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return {"device": "cuda", "name": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import platform

    return {"device": "cpu", "name": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def shared(name: str, max_entries: int, *, copy: bool = True):
    """st.cache_data(max_entries) whose misses go to the hall's shared cache (serve.sharedcache) under the key
    `name` + the arguments. `name` must be unique across the app: the hall's warm-up (serve/warm.py) runs the
    pages and fills the same keys.

    `copy=False` keeps ONE object per key in the process (st.cache_resource) instead of a fresh copy per call:
    for results nobody modifies that are read on every rerun, such as a page's ρ grid (app/rhogrid.GridView, ~1 MB:
    unpickling a copy on each release of the ρ slider would be most of that rerun's cost)."""
    def decorate(fn):
        @functools.wraps(fn)
        def second_level(*args, **kwargs):
            return shared_call(name, fn, *args, **kwargs)

        first_level = st.cache_data if copy else st.cache_resource
        return first_level(max_entries=max_entries, show_spinner=False)(second_level)

    return decorate


@shared("simulate", max_entries=SIM_ENTRIES)
def simulate(cfg):
    """core.toy.simulate.simulate(cfg), cached by the frozen SimConfig."""
    from core.toy.simulate import simulate as _simulate

    return _simulate(cfg)


def simulate_many(cfgs) -> list:
    """Several configs (one per optimizer), each cached on its own, so adding an optimizer to the
    comparison recomputes only the new one."""
    return [simulate(c) for c in cfgs]


@st.cache_data(max_entries=256, show_spinner=False)
def schedule_mask(optimizer: str, steps: int, k: int, f: float, p: float, late_f: float, seed: int = 0):
    """The boolean SAM-step mask of an optimizer's schedule (core.schedules) and its cost
    relative to full SAM, (T + S)/(2T)."""
    sched, _ = for_optimizer(optimizer, k=k, f=f, p=p, late_f=late_f, seed=seed)
    return sched.mask(steps), sched.relative_cost(steps), sched.label()


def landscape(name: str, formula: str = "", params: tuple = ()):
    """The landscape `name` (or the user's formula) with its (name, value) parameters, built once and shared
    read-only: the very instance simulate() uses (core.toy.simulate.landscape_for), so its critical points are
    searched once, not twice. Raises ValueError / FormulaError on bad input (pages show the message)."""
    from core.toy.simulate import landscape_for

    return landscape_for(name, formula if name == "formula" else "", tuple(params))


@st.cache_data(max_entries=4, show_spinner=False)
def recorded_runs(kinds: tuple[str, ...] = ("table",)) -> list[dict]:
    """The recorded CIFAR runs shipped in data/runs/ (app.cifar_view.load_recorded), read once per
    server, not on every rerun (the CIFAR page's live view reruns every second while a job waits)."""
    from app.cifar_view import load_recorded

    return load_recorded(kinds=kinds)


@st.cache_data(max_entries=64, show_spinner=False)
def grid(name: str, formula: str = "", n: int = 70):
    """The landscape sampled on an n×n grid over its plotting window (app.charts.Grid)."""
    from app.charts import landscape_grid

    land = landscape(name, formula)
    return landscape_grid(land.loss, land.bounds, n=n)


@st.cache_data(max_entries=128, show_spinner=False)
def grid_window(name: str, bounds: tuple, formula: str = "", n: int = 70):
    """The landscape sampled on an n×n grid over `bounds` ((x_lo, x_hi), (y_lo, y_hi)), for
    zoomed views. Callers round the bounds so nearby views share an entry."""
    from app.charts import landscape_grid

    return landscape_grid(landscape(name, formula).loss, bounds, n=n)
