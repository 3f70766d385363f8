"""SAM Lab: the Streamlit entry point.

    streamlit run app/main.py

It sets up the page, the navigation over the pages in pages/ (app/pagelist.py), and the sidebar: lecture
scenes (each loads a page with its URL parameters), the presentation toggle (?present=1: hides the
sidebar and the expanders, enlarges the text) and the compute device. Pages never call
st.set_page_config; they are run by `st.navigation` below.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/, not the repo root, on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import controls, replica, theme  # noqa: E402
from app.cache import device_info  # noqa: E402
from app.pagelist import HOME_ALIAS_PATH, HOME_PATH, PAGE_LIST  # noqa: E402
from app.presets import scenes  # noqa: E402

st.set_page_config(page_title="SAM Lab", page_icon=":material/landscape:", layout="wide",
                   initial_sidebar_state="auto")  # collapsed on a phone

PAGES = {
    p.key: st.Page(str(ROOT / "pages" / p.file), title=p.title, icon=p.icon,
                   url_path=HOME_PATH if p.key == "home" else p.key, default=(p.key == "home"))
    for p in PAGE_LIST
}
HOME_ALIAS = st.Page(lambda: None, title="Home", url_path=HOME_ALIAS_PATH, visibility="hidden")

present = theme.is_presentation()
st.markdown(theme.css(present), unsafe_allow_html=True)
nav = st.navigation([*PAGES.values(), HOME_ALIAS], position="top" if present else "sidebar")
if nav.url_path == HOME_ALIAS_PATH:  # /home?rho=… → /?rho=… (every value of a repeated key kept)
    st.switch_page(PAGES["home"], query_params={k: st.query_params.get_all(k) for k in st.query_params})

# Notices about URL values (clamped, defaulted, unknown) appear here, at the top of every page.
controls.begin_run(st.container())


# --- lecture scenes ----------------------------------------------------------------------------
SCENES = scenes()


def _on_scene():
    name = st.session_state.get("scene")
    if name in SCENES:
        st.session_state["_scene_pending"] = name
    st.session_state["scene"] = None  # the menu resets, so the same scene can be loaded again


def _scene_menu(container) -> None:
    # on the projector the menu sits above the page: no label, its placeholder says what it is (saves a line of
    # the first screen, which is for the chart)
    container.selectbox("Load a lecture scene", list(SCENES), index=None, key="scene",
                        placeholder="Load a lecture scene…" if present else "choose a scene…",
                        label_visibility="collapsed" if present else "visible",
                        format_func=lambda n: SCENES[n].title, on_change=_on_scene,
                        help="Each scene switches to its page with its parameters in the URL; copy the URL to "
                             "share it.")


if present:  # the sidebar is hidden on the projector: the menu sits at the top of the page
    top_scene, top_toggle = st.columns([3, 1], vertical_alignment="bottom")
    _scene_menu(top_scene)
else:
    with st.sidebar:
        st.markdown("### :material/school: Lecture scenes")
        _scene_menu(st)

pending = st.session_state.pop("_scene_pending", None)
if pending:
    scene = SCENES[pending]
    # Forget the widget values of the page on screen and of the scene's keys, so the scene's page
    # starts from its defaults plus the scene's URL parameters (the same view a copied URL gives).
    controls.forget_page_keys(extra=scene.params)
    params = dict(scene.params) | {"preset": scene.name}  # ?preset= shows the scene's claim, in shared links too
    if present:
        params["present"] = "1"
    st.switch_page(PAGES[scene.page], query_params=params)

# The claim of the scene on screen goes above the page (what the students should see in it), filled in after
# the page ran: only while the URL still holds the scene's settings.
shown_scene = SCENES.get(str(st.query_params.get("preset", "")))
if shown_scene is None or shown_scene.page != nav.url_path or not shown_scene.claim:
    shown_scene = None
    if "preset" in st.query_params:  # another page, or no such scene: the link no longer shows it
        del st.query_params["preset"]
scene_banner = st.container()
st.session_state[controls.SCENE_KEY] = dict(shown_scene.params) if shown_scene else None  # for controls._sync

# --- a new page starts from its own defaults and its URL ----------------------------------------
# Pages share widget keys (ρ, η, σ, particles, steps) with different ranges and defaults. A widget value
# left over from the page before would make the new page's slider start at its minimum (Streamlit resets
# a widget whose range changed), and that value would then be written into the URL. So when the page
# changes, the previous page's values are forgotten, as for a scene: the new page reads its own URL.
if st.session_state.get("_sl_page") not in (None, nav.url_path):
    controls.forget_page_keys()
st.session_state["_sl_page"] = nav.url_path

# --- presentation toggle: in the sidebar, or at the top of the page while the sidebar is hidden --
if present:
    controls.toggle("present", "Presentation mode", container=top_toggle,
                    help="Projector view: hides the side bar and the extra controls, enlarges text.")
else:
    with st.sidebar:
        controls.toggle("present", "Presentation mode",
                        help="Projector view: hides the side bar and the extra controls, enlarges text (?present=1).")

with st.sidebar:
    info = device_info()
    st.caption(f"Computing on **{info['device']}** ({info['name']}), torch {info['torch']}"
               + (f", lecture-hall replica {replica.name()}" if replica.name() else ""))
replica.rerun_after_reconnect()  # make hall: after a replica dies, the page comes back on another one

nav.run()
controls.check_unknown_params()


# controls._sync drops ?preset= as soon as a widget leaves the scene's settings (or one it does not set leaves its
# default): then the claim no longer describes the view.
if shown_scene is not None and "preset" in st.query_params:
    scene_banner.info(f"**Scene: {shown_scene.title}.** {shown_scene.claim}", icon=":material/school:")
    if present:  # on the projector the scene's banner is the heading: the page's title makes way for its chart
        scene_banner.markdown('<style>[data-testid="stMain"] [data-testid="stElementContainer"]:has(h1) '
                              '{display: none;}</style>', unsafe_allow_html=True)
