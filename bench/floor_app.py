"""The load test's floor: the smallest Streamlit app the load harness can drive.

    .venv/bin/python bench/load.py --app bench/floor_app.py --configs 0

Two pages at the URL paths of the escape and valley labs, each with a ρ slider (key "rho") and one
Plotly line of 200 points (key "main_chart") that ρ changes. No simulation, no other element. What
bench/load.py measures on it is the cost of the harness itself (ten headless chromiums on the same
two cores) plus Streamlit's own rerun and redraw: no page of SAM Lab can be faster than this, so it
is run next to the real app, in the same sitting, to tell the app's share from the machine's.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st


def one_chart_page() -> None:
    rho = st.slider("ρ", 0.0, 0.5, 0.1, 0.005, key="rho")
    t = np.linspace(0.0, 300.0, 200)
    fig = go.Figure(go.Scatter(x=t, y=np.exp(-t * (rho + 0.01) / 100), name="S(t)"))
    st.plotly_chart(fig, key="main_chart")


st.set_page_config(page_title="load-test floor", layout="wide")
st.navigation([
    st.Page(lambda: st.write("floor app"), title="home", url_path="home", default=True),
    st.Page(one_chart_page, title="escape", url_path="escape"),
    st.Page(one_chart_page, title="valley", url_path="valley"),
]).run()
