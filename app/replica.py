"""What the app does differently when it is one replica of a lecture hall (`make hall`, serve/hall.py).

A hall's replica has `SAMLAB_REPLICA` (r1, r2, …) in its environment. When a replica dies, HAProxy sends its
students' browsers to a live replica, and the browser reconnects its WebSocket there. But Streamlit's
frontend reruns the page after a reconnect only if the page has a timed fragment (`st.fragment(run_every=…)`),
or was running, or last ran a fragment: a student who had just opened a page would keep looking at a page
that no server holds any more, until they touched a control. `rerun_after_reconnect` registers one empty
fragment with an hourly timer, which is enough for the frontend to rerun the page as soon as it is
reconnected; the URL holds every control (ρ included), so the new replica draws the same view.
The timer itself costs one empty fragment run per student per hour.
"""

from __future__ import annotations

import os

import streamlit as st

ENV = "SAMLAB_REPLICA"


def name() -> str:
    """This replica's name in the hall, '' outside a hall (`make app`)."""
    return os.environ.get(ENV, "")


@st.fragment(run_every=3600)
def _hourly() -> None:
    """Empty: only its timer matters (see the module docstring)."""


def rerun_after_reconnect() -> None:
    """In a hall, make the browser rerun the page when it reconnects to another replica; nothing otherwise."""
    if name():
        _hourly()
