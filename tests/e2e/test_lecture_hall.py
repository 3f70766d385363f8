"""The lecture-hall layout of the escape and valley labs, in real headless chromium (issue 5).

Claims checked:
- moving ρ reruns only the ρ fragment: the server re-sends the main chart but nothing of the page
  around the fragment (its title, the Zhu section);
- a hidden tab costs nothing until it is opened: the ρ sweep chart is absent, clicking its tab draws
  it and puts ?view=sweep in the URL, and ρ changes keep redrawing with the tab open;
- the particles are a still picture until "Animate the particles" is switched on; then the chart
  carries Plotly frames (play in the browser) and ?animate=1 is in the URL;
- the data downloads are built on click and hold the chart's data with its config.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from bench._browser import FIRST_LOAD_S, PAGE_LOAD_S, PAGES, REDRAW_S, nudge_slider, open_page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ZHU = ".st-key-zhu_chart .js-plotly-plot"
SWEEP = ".st-key-rho_sweep .js-plotly-plot"
PARTICLES = ".st-key-escape_animation .js-plotly-plot"


def _query(page) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_rho_change_reruns_only_the_fragment(loop, server, page):
    """After a ρ change the server sends the ρ section (the main chart's title "Survival in the sharp
    minimum") but none of the page around it: not the page title, not the Zhu section's text. (Big
    unchanged elements would travel as cache references anyway; small ones, like these texts, are
    re-sent on every full rerun, so their absence shows that only the fragment ran.)"""
    frames: list[bytes] = []

    def on_ws(ws):
        ws.on("framereceived", lambda p: frames.append(p if isinstance(p, bytes) else p.encode()))

    page.on("websocket", on_ws)
    loop.run(open_page(page, server.url(PAGES["escape"]), timeout=FIRST_LOAD_S))
    loop.run(page.wait_for_selector(ZHU, timeout=PAGE_LOAD_S * 1000))
    title, zhu_text = b"SAM leaves sharp minima faster", b"hallucinated minimizers"
    assert any(title in f for f in frames) and any(zhu_text in f for f in frames)  # sent by the first run
    frames.clear()
    loop.run(nudge_slider(page))
    loop.run(nudge_slider(page))
    sent = b"".join(frames)
    assert b"Survival in the sharp minimum" in sent  # the ρ section was re-sent
    assert title not in sent and zhu_text not in sent, "a ρ change reran the whole page: the ρ fragment does not hold"


def test_hidden_tab_is_drawn_when_opened(loop, server, page):
    loop.run(open_page(page, server.url(PAGES["escape"]), timeout=FIRST_LOAD_S))
    assert loop.run(page.locator(SWEEP).count()) == 0  # the statistics tab is open by default
    loop.run(page.get_by_role("tab", name="ρ sweep").click())
    loop.run(page.wait_for_selector(SWEEP, timeout=PAGE_LOAD_S * 1000))
    loop.run(page.wait_for_function("() => location.search.includes('view=sweep')", timeout=REDRAW_S * 1000))
    assert _query(page).get("view") == "sweep"
    loop.run(nudge_slider(page))  # ρ still redraws the main chart with the tab open
    assert loop.run(page.locator(SWEEP).count()) == 1


def test_animate_toggle_adds_frames(loop, server, page):
    loop.run(open_page(page, server.url(PAGES["escape"]), timeout=FIRST_LOAD_S))
    frames = "(sel) => { const el = document.querySelector(sel); " \
             "return el && el._transitionData ? el._transitionData._frames.length : -1; }"
    loop.run(page.wait_for_selector(PARTICLES, timeout=PAGE_LOAD_S * 1000))
    assert loop.run(page.evaluate(frames, PARTICLES)) <= 0  # a still picture: no frames
    loop.run(page.locator(".st-key-animate").get_by_text("Animate the particles").click())
    loop.run(page.wait_for_function(f"() => ({frames})('{PARTICLES}') >= 10", timeout=REDRAW_S * 1000))
    assert _query(page).get("animate") == "1"


def test_download_is_built_on_click(loop, server, page):
    loop.run(open_page(page, server.url(PAGES["escape"], rho="0.15"), timeout=FIRST_LOAD_S))

    async def download():
        async with page.expect_download(timeout=REDRAW_S * 1000) as info:
            await page.get_by_role("button", name="escape data (JSON)").click()
        d = await info.value
        return await d.path()

    path = loop.run(download())
    out = json.loads(open(path, encoding="utf-8").read())
    assert out["config"]["sam"]["rhos"] == [0.0375, 0.075, 0.15]  # ρ/4, ρ/2, ρ of the view on screen
    assert out["config"]["sgd"]["optimizer"] == "sgd"
    labels = [r["label"] for r in out["data"]["runs"]]
    assert labels == ["SGD", "SAM ρ=0.0375", "SAM ρ=0.075", "SAM ρ=0.15"]
