"""The lecture-hall layout of the escape and valley labs, in real headless chromium (issue 5).

Claims checked:
- moving ρ reruns only the ρ chart's own fragment: the browser redraws from the grid it holds, and the
  server's answer to a release is the chart's one-line header, with nothing of the page around it (its
  title, the Zhu section) and no chart re-sent;
- a hidden tab costs nothing until it is opened: the ρ sweep chart is absent, clicking its tab draws
  it and puts ?view=sweep in the URL, and ρ changes keep redrawing with the tab open;
- the particles are a still picture (inside the ρ chart, no Plotly frames anywhere) until "Animate the
  particles" is switched on; then the particle chart carries Plotly frames (play in the browser) and
  ?animate=1 is in the URL;
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
    """After two ρ releases the server has answered (the URL carries the new ρ) but sent none of the page
    around the ρ chart: not the page title, not the Zhu section's text (small texts are re-sent on every full
    rerun, so their absence shows that only the chart's fragment ran), and no chart: the answers together
    stay far below one grid payload (~0.3–0.8 MB; the header is under 200 bytes)."""
    frames: list[bytes] = []

    def on_ws(ws):
        ws.on("framereceived", lambda p: frames.append(p if isinstance(p, bytes) else p.encode()))

    page.on("websocket", on_ws)
    loop.run(open_page(page, server.url(PAGES["escape"]), timeout=FIRST_LOAD_S))
    loop.run(page.wait_for_selector(ZHU, timeout=PAGE_LOAD_S * 1000))
    title, zhu_text = b"SAM leaves sharp minima faster", b"hallucinated minimizers"
    assert any(title in f for f in frames) and any(zhu_text in f for f in frames)  # sent by the first run
    rho_before = _query(page).get("rho")
    frames.clear()
    loop.run(nudge_slider(page))
    loop.run(nudge_slider(page))
    moved = ("() => { const r = new URLSearchParams(location.search).get('rho'); "
             f"return r !== null && r !== {json.dumps(rho_before)}; }}")
    loop.run(page.wait_for_function(moved, timeout=REDRAW_S * 1000))
    sent = b"".join(frames)
    assert sent, "the server answered no release"
    assert title not in sent and zhu_text not in sent, "a ρ release reran the whole page"
    assert len(sent) < 50_000, f"a ρ release re-sent {len(sent)} bytes: a chart travelled again"


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
    loop.run(page.wait_for_selector(".st-key-animate", timeout=PAGE_LOAD_S * 1000))
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
    # ρ/4, ρ/2, ρ of the view on screen, each on the slider's 0.005 grid (every curve is a row of one ρ grid):
    # 0.15/4 = 0.0375 lies halfway between 0.035 and 0.04 (the nearest step, in floats, is 0.035); 0.15/2 = 0.075
    assert out["config"]["sam"]["rhos"] == [0.035, 0.075, 0.15]
    assert out["config"]["sgd"]["optimizer"] == "sgd"
    labels = [r["label"] for r in out["data"]["runs"]]
    assert labels == ["SGD", "SAM ρ=0.035", "SAM ρ=0.075", "SAM ρ=0.15"]
