"""The ρ chart as a Streamlit component: a page's charts over every step of its ρ slider, redrawn in the browser.

Why a component and not Plotly frames (issue 18 asked for the choice by measurement). Both redraw in the browser:
the issue's prototype (61 frames switched by Plotly's own `layout.sliders` inside st.plotly_chart) measured p50
41 ms / p95 59 ms on the 2-core machine (../shared/tools/inbrowser_latency.py); this component switches steps
with Plotly.react on float32 arrays decoded once (bench/rho_browser.py, BENCHMARKS.md "ρ in the browser"). What
decides is the other half of the issue: a Plotly slider inside st.plotly_chart cannot tell the server where it
was released, so the URL, the next rerun, the exports and the class experiment would keep the old ρ; and its
slider is drawn inside the chart, unlike the lab's other controls (no help text, no value box). The component
(Streamlit's components v2, bidirectional) draws a labelled slider with its value and help, reports the released
ρ as its state `rho` (one rerun of the chart's own small fragment per release, `chart_light`, none while
dragging), and carries several charts and HTML blocks at once.

No CDN: the component's JavaScript is inline (rhochart.js, the same file the offline export embeds), and
plotly.js is the copy in the installed plotly package, served by this app under /component/… (a v1 component
path used only as a static route).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components_v1

from app.components.rhochart_assets import CORE_JS, CSS, PLOTLY_JS
from app.offline import caption, offline_html
from app.rhogrid import GridView


def _plotly_dir() -> Path:
    """A folder holding a copy of the installed plotly.min.js (Streamlit's component route refuses links that
    leave the folder), made once per plotly version."""
    folder = Path(tempfile.gettempdir()) / f"samlab-plotlyjs-{plotly.__version__}"
    target = folder / "plotly.min.js"
    if not target.exists() or target.stat().st_size != PLOTLY_JS.stat().st_size:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".plotly.min.js.{id(folder)}"
        shutil.copyfile(PLOTLY_JS, tmp)
        tmp.replace(target)  # atomic: replicas starting together never serve half a file
    return folder


_SERVED = components_v1.declare_component("plotlyjs", path=str(_plotly_dir()))
PLOTLY_ROUTE = f"component/{_SERVED.name}/plotly.min.js"  # relative to the app's base URL

GLUE_JS = "const PLOTLY_ROUTE = " + json.dumps(PLOTLY_ROUTE) + ";" + """
function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__samlabPlotly) {
    window.__samlabPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = new URL(PLOTLY_ROUTE, document.baseURI).href;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { window.__samlabPlotly = null; reject(new Error("plotly.js did not load")); };
      document.head.appendChild(s);
    });
  }
  return window.__samlabPlotly;
}
export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const host = parentElement;
  host.__samlabSet = setStateValue;  // the latest run's setters (its fragment id)
  host.__samlabTrig = setTriggerValue;
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
  const text = typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes);
  const nl = text.indexOf("\\n");
  const head = JSON.parse(text.slice(0, nl));
  const prev = host.__samlabRho;
  if (prev && prev.digest === head.digest) {  // the same grid: the browser keeps its ρ unless the server moved it
    if (prev.sent !== head.index) { prev.sent = head.index; if (prev.chart) prev.chart.setIndex(head.index); }
    return;
  }
  if (nl + 1 >= text.length) return;  // a header alone answers a release of a grid this browser holds
  const mine = {digest: head.digest, sent: head.index, chart: null};
  host.__samlabRho = mine;
  loadPlotly().then(() => {
    if (host.__samlabRho !== mine) return;
    if (prev && prev.chart) prev.chart.destroy();
    host.querySelectorAll(".samlab-rho").forEach((e) => e.remove());
    const payload = JSON.parse(text.slice(nl + 1));
    mine.chart = window.SamLabRho.mount(host, payload, mine.sent, {
      onRelease: (rho) => host.__samlabSet("rho", rho),
      onClick: payload.clickable ? (x, y) => host.__samlabTrig("click", {x: x, y: y}) : null});
  });
}
"""

_COMPONENT = st.components.v2.component("samlab_rhochart", js=CORE_JS + "\n" + GLUE_JS, css=CSS,
                                        isolate_styles=False)


def released(key: str):
    """The ρ the browser last released for the component `key` (its state value), or None."""
    state = st.session_state.get(key)
    if state is None:
        return None
    try:
        return state["rho"]
    except (KeyError, TypeError):
        return getattr(state, "rho", None)


def show(view: GridView, rho: float, *, key: str, on_release: Callable[[], None] | None = None,
         on_click: Callable[[], None] | None = None, header_only: bool = False) -> None:
    """Draw `view` in the browser at the grid step nearest `rho`.

    The bytes sent are the cached payload behind a one-line header {digest, index}. While the grid (its digest) and
    the step the browser last showed stay the same, the header stays too, so a rerun re-sends byte-identical
    content (Streamlit's message cache then sends only a reference); the browser keeps the ρ it has.
    `header_only`: the browser holds this grid already (the run answers its own release), so only the header goes
    out; the component's key is its identity, so the browser keeps its chart, and the server hashes no payload."""
    i = view.slider.nearest(rho)
    memo_key = f"_rhochart_sent_{key}"
    memo = st.session_state.get(memo_key)
    header_only = header_only and memo is not None and memo[0] == view.digest  # never a header for a new grid
    if memo is None or memo[0] != view.digest or memo[2] != i:
        memo = (view.digest, i, i)
        st.session_state[memo_key] = memo
    head = json.dumps({"digest": view.digest, "index": memo[1]}).encode() + b"\n"
    body = b"" if header_only else view.data
    if on_click is not None and not header_only:  # the payload says so; the browser then reports chart clicks
        body = body[:-1] + b',"clickable":true}'
    _COMPONENT(key=key, data=head + body, default={"rho": None}, on_rho_change=on_release or (lambda: None),
               on_click_change=on_click or (lambda: None))


def browser_at(key: str, index: int) -> None:
    """Record that the browser of the component `key` now shows step `index` (after a release), so that the next
    run's header, and with it the bytes sent, stay the same."""
    memo_key = f"_rhochart_sent_{key}"
    memo = st.session_state.get(memo_key)
    if memo is not None:
        st.session_state[memo_key] = (memo[0], memo[1], index)


def _released(key: str, slider) -> None:
    """The component's on-change callback: the released ρ becomes the page's ρ (st.session_state[slider.key], which
    controls.grid_rho reads and writes to the URL) before the rerun it triggered starts."""
    rho = released(key)
    if rho is None:
        return
    try:
        i = slider.nearest(float(rho))
    except (TypeError, ValueError):  # a state value the browser did not set: ignore
        return
    st.session_state[slider.key] = slider.rhos[i]
    browser_at(key, i)


def clicked(key: str) -> tuple[float, float] | None:
    """The (x, y) clicked on a chart of the ρ chart `key` (its trigger value, read in its on_click callback)."""
    state = st.session_state.get(key)
    try:
        value = state["click"] if state is not None else None
    except (KeyError, TypeError):
        value = getattr(state, "click", None)
    try:
        return (float(value["x"]), float(value["y"])) if value else None
    except (KeyError, TypeError, ValueError):
        return None


def chart(view: GridView, rho: float, *, key: str = "main_chart", on_click: Callable[[], None] | None = None) -> None:
    """Draw `view` at `rho`; a release sets st.session_state[view.slider.key] and reruns the enclosing fragment.
    The key "main_chart" is the one the lab's page tests and browser harness look for (the first chart)."""
    show(view, rho, key=key, on_release=lambda: _released(key, view.slider), on_click=on_click)


def box(key: str = "main_chart") -> dict:
    """The session's record of the ρ chart `key`: {"rho": the page's ρ, "index": its step}. A plain dict, kept in
    st.session_state, that a release updates in place: the page's deferred downloads (built when clicked, outside
    any script run) read the released ρ from it."""
    return st.session_state.setdefault(f"_rhochart_box_{key}", {})


@st.fragment
def _release_fragment(view: GridView, key: str, rerun_page: bool, on_click: Callable[[], None] | None,
                      draw: Callable[[float, Callable[[], None]], None] | None) -> None:
    """All that a release reruns (issue 18: ≤ 10 ms of server CPU): the ρ from the session into the URL
    (app.controls.grid_rho), the component at that step (byte-identical bytes, so Streamlit sends a reference), and
    the session's box. Tables and captions at every step travel in the payload's blocks; with `rerun_page` (a
    view that shows more at this ρ than the payload holds, such as an open tab) a release reruns the page."""
    from app import controls

    flag = f"_rhochart_released_{key}"
    released_now = st.session_state.pop(flag, False)
    rho = controls.grid_rho(view.slider)
    def on_release() -> None:
        _released(key, view.slider)
        st.session_state[flag] = True

    clicked_flag = f"_rhochart_clicked_{key}"
    clicked_now = st.session_state.pop(clicked_flag, False)

    def on_chart_click() -> None:
        on_click()
        st.session_state[clicked_flag] = True

    def place() -> None:
        show(view, rho, key=key, on_release=on_release, header_only=released_now,
             on_click=on_chart_click if on_click is not None else None)

    if draw is not None:  # the page's few elements at this ρ (precomputed rows), with the chart among them
        draw(rho, place)
    else:
        place()
    record = box(key)
    record["rho"], record["index"] = rho, view.slider.nearest(rho)
    if (released_now and rerun_page) or clicked_now:  # a click moves what the whole page shows
        st.rerun(scope="app")


def chart_light(view: GridView, rho: float, *, key: str = "main_chart", rerun_page: bool = False,
                on_click: Callable[[], None] | None = None,
                draw: Callable[[float, Callable[[], None]], None] | None = None) -> float:
    """Draw `view` at `rho` in a nested fragment of its own, so that a release reruns only that fragment (the URL,
    the session's ρ and `box(key)`) and nothing else of the page; the page puts what it shows at each ρ into the
    payload (blocks) and reads the released ρ for its exports from `box(key)`. A click on a chart (`on_click`, its
    callback) reruns the page. `draw(ρ, place)`, if given, draws the few elements that must follow the released ρ
    on the server (a table picked from the grid's precomputed rows, a link) and calls `place()` where the chart
    goes; it reruns with each release. Returns the ρ shown."""
    record = box(key)
    record["rho"], record["index"] = rho, view.slider.nearest(rho)
    _release_fragment(view, key, rerun_page, on_click, draw)
    return rho


def download_view(view: GridView, rho: float, *, title: str, config: dict, file_stem: str, key: str,
                  container=None) -> None:
    """"Download this view (HTML)": the offline file (app/offline.py), built only when clicked."""

    def build() -> str:
        return offline_html(view, rho, title=title, caption_text=caption(title, config, view))

    (container or st).download_button("Download this view (HTML)", build, file_name=f"{file_stem}.html",
                                      mime="text/html", key=key, on_click="ignore", icon=":material/download:",
                                      help="One file with plotly.js inside: ρ moves as here, with no network "
                                           "(a course website, a hall with no Wi-Fi).")
