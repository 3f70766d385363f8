"""ρ moves in the browser (issue 18), in real headless chromium against `streamlit run app/main.py`.

Claims checked, on every page whose ρ is a browser grid (GRID_PAGES):
- dragging the ρ slider with the mouse redraws the chart while the browser sends the server nothing (no
  WebSocket frame: no script run can start); after the release the URL carries the new ρ, and a reload of that
  URL shows the same ρ and the same chart data;
- the keyboard steps ρ one slider step per key press, and the chart follows;
- on a phone (390 px wide, touch, a phone's User-Agent) a finger drag moves ρ and the chart, sending nothing
  until the finger lifts;
- "Download this view (HTML)" gives one file that Chromium opens from file:// with every request other than
  file:// refused; in it ρ moves, the chart changes, and the caption names the config.
Timings are not asserted here (bench/rho_browser.py measures them).
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlparse

import pytest

from bench._browser import FIRST_LOAD_S, PAGES, chart_hash, exception_texts, new_page, open_page, slider_value

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GRID_PAGES = ("escape", "valley", "sam_step", "psam")
INPUT = "[data-testid=rho-input]"
WAIT_MS = 20_000


def _url_rho(page) -> float | None:
    values = parse_qs(urlparse(page.url).query).get("rho")
    return float(values[-1]) if values else None


class Frames:
    """WebSocket frames the page sends to the server (every rerun request is one)."""

    def __init__(self, page):
        self.n = 0
        page.on("websocket", lambda ws: ws.on("framesent", self._sent))

    def _sent(self, _frame) -> None:
        self.n += 1


async def _x_of(page, index: int) -> tuple[float, float]:
    """Page coordinates of the ρ slider's thumb at grid step `index`."""
    box = await page.locator(INPUT).bounding_box()
    n = int(await page.locator(INPUT).get_attribute("max"))
    thumb = 16  # px: chromium's range thumb; its centre runs from thumb/2 to width − thumb/2
    x = box["x"] + thumb / 2 + (box["width"] - thumb) * index / n
    return x, box["y"] + box["height"] / 2


async def _index(page) -> int:
    return int(await page.locator(INPUT).input_value())


async def _wait_chart_change(page, old: str) -> str:
    await page.wait_for_function(
        "old => { const el = document.querySelector('.st-key-main_chart .js-plotly-plot');"
        " return el && el.data && JSON.stringify(el.data, (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v)"
        ".length > 0 && window.__samlabHashNow && window.__samlabHashNow() !== old; }", arg=old, timeout=WAIT_MS)
    return await chart_hash(page)


async def _install_hash(page) -> None:
    await page.evaluate("""() => { window.__samlabHashNow = () => {
        const el = document.querySelector('.st-key-main_chart .js-plotly-plot');
        const s = JSON.stringify(el.data, (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v);
        let h = 0x811c9dc5; for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193); }
        return (h >>> 0).toString(16) + ':' + s.length + ':' + el.data.length; }; }""")


async def _wait_url(page, rho: float) -> None:
    await page.wait_for_function(
        "r => { const v = new URLSearchParams(location.search).getAll('rho').pop();"
        " return v !== undefined && Math.abs(Number(v) - r) < 1e-9; }", arg=rho, timeout=WAIT_MS)


@pytest.mark.parametrize("name", GRID_PAGES)
def test_mouse_drag_moves_rho_in_the_browser_and_the_url_follows_on_release(name, loop, server, page):
    frames = Frames(page)
    before = loop.run(open_page(page, server.url(PAGES[name]), timeout=FIRST_LOAD_S))
    loop.run(page.wait_for_selector(INPUT))
    loop.run(page.locator(INPUT).scroll_into_view_if_needed())  # the mouse reaches only what is on screen
    loop.run(_install_hash(page))
    start = loop.run(_index(page))
    n = int(loop.run(page.locator(INPUT).get_attribute("max")))
    target = max(0, start - 30) if start >= 30 else min(n, start + 30)  # a 30-step drag
    x0, y = loop.run(_x_of(page, start))
    x1, _ = loop.run(_x_of(page, target))
    loop.run(page.wait_for_timeout(300))  # let the page's own start-up messages finish before counting
    sent = frames.n
    loop.run(page.mouse.move(x0, y))
    loop.run(page.mouse.down())
    for k in range(1, 31):
        loop.run(page.mouse.move(x0 + (x1 - x0) * k / 30, y))
    mid = loop.run(_wait_chart_change(page, before))
    assert frames.n == sent, f"{name}: {frames.n - sent} frames sent to the server during the drag"
    assert loop.run(_index(page)) == target
    loop.run(page.mouse.up())
    rho = loop.run(slider_value(page))
    loop.run(_wait_url(page, rho))
    assert frames.n > sent  # the release told the server
    assert loop.run(exception_texts(page)) == []
    assert float(loop.run(page.inner_text("[data-testid=rho-value]"))) == pytest.approx(rho)
    # the server's answer to the release (a header alone, app/components/rhochart) leaves the chart as it is
    loop.run(page.wait_for_timeout(500))
    assert loop.run(chart_hash(page)) == mid and loop.run(_index(page)) == target
    # a copied link reproduces the view: reload shows the same ρ and the same chart data
    url = page.url
    loop.run(page.reload())
    again = loop.run(open_page(page, url, timeout=FIRST_LOAD_S))
    assert math.isclose(loop.run(slider_value(page)), rho, abs_tol=1e-9) and _url_rho(page) == pytest.approx(rho)
    assert again == mid, f"{name}: {url} reloaded draws other data"


@pytest.mark.parametrize("name", GRID_PAGES)
def test_keyboard_steps_rho_one_step_per_key(name, loop, server, page):
    frames = Frames(page)
    chart = loop.run(open_page(page, server.url(PAGES[name]), timeout=FIRST_LOAD_S))
    loop.run(_install_hash(page))
    rho0 = loop.run(slider_value(page))
    i0 = loop.run(_index(page))
    loop.run(page.locator(INPUT).focus())
    for k in range(1, 4):
        loop.run(page.keyboard.press("ArrowLeft"))
        chart = loop.run(_wait_chart_change(page, chart))
        assert loop.run(_index(page)) == i0 - k
    rho = loop.run(slider_value(page))
    assert rho < rho0
    loop.run(_wait_url(page, rho))
    assert frames.n >= 1 and loop.run(exception_texts(page)) == []


@pytest.mark.parametrize("name", GRID_PAGES)
def test_touch_drag_on_a_phone(name, loop, server, browser):
    page = loop.run(new_page(browser, phone=True))
    try:
        frames = Frames(page)
        before = loop.run(open_page(page, server.url(PAGES[name]), timeout=FIRST_LOAD_S))
        loop.run(page.locator(INPUT).scroll_into_view_if_needed())
        loop.run(_install_hash(page))
        assert loop.run(page.evaluate("() => window.innerWidth")) == 390
        start = loop.run(_index(page))
        target = max(0, start - 12)
        x0, y = loop.run(_x_of(page, start))
        x1, _ = loop.run(_x_of(page, target))
        cdp = loop.run(page.context.new_cdp_session(page))
        loop.run(page.wait_for_timeout(300))
        sent = frames.n
        touch = lambda kind, x: cdp.send("Input.dispatchTouchEvent", {  # noqa: E731
            "type": kind, "touchPoints": [] if kind == "touchEnd" else [{"x": x, "y": y}]})
        loop.run(touch("touchStart", x0))
        for k in range(1, 13):
            loop.run(touch("touchMove", x0 + (x1 - x0) * k / 12))
        loop.run(_wait_chart_change(page, before))
        assert frames.n == sent, f"{name}: {frames.n - sent} frames sent while the finger was down"
        loop.run(touch("touchEnd", x1))
        assert loop.run(_index(page)) < start
        loop.run(_wait_url(page, loop.run(slider_value(page))))
        assert loop.run(exception_texts(page)) == []
    finally:
        loop.run(page.context.close())


@pytest.mark.parametrize("name", GRID_PAGES)
def test_offline_file_moves_rho_with_the_network_blocked(name, loop, server, page, browser, tmp_path):
    loop.run(open_page(page, server.url(PAGES[name], rho="0.15"), timeout=FIRST_LOAD_S))
    button = page.get_by_role("button", name="Download this view (HTML)")

    async def download():
        async with page.expect_download(timeout=60_000) as info:
            await button.click()
        d = await info.value
        path = tmp_path / f"{name}.html"
        await d.save_as(path)
        return path

    path = loop.run(download())
    size = path.stat().st_size
    assert size <= 6_000_000, f"{name}: offline file is {size:,} bytes"
    ctx = loop.run(browser.new_context())
    try:
        blocked = []

        async def refuse(route):
            if route.request.url.startswith("file://"):
                await route.continue_()
            else:
                blocked.append(route.request.url)
                await route.abort()

        off = loop.run(ctx.new_page())
        loop.run(off.route("**/*", refuse))
        loop.run(off.goto(path.as_uri()))
        loop.run(off.wait_for_function("() => document.querySelectorAll('.samlab-rho-chart .main-svg').length > 0",
                                       timeout=WAIT_MS))
        caption = loop.run(off.inner_text("[data-testid=offline-caption]"))
        assert "Config:" in caption and "lr = " in caption and "ρ from 0 to " in caption and "SAM Lab" in caption
        assert loop.run(off.inner_text("[data-testid=rho-value]")) == "0.150"
        first = ".samlab-rho-chart.js-plotly-plot"  # the chart div is the plot
        before = loop.run(chart_hash(off, first))
        loop.run(off.locator(INPUT).focus())
        loop.run(off.keyboard.press("ArrowRight"))
        loop.run(off.wait_for_function(
            "([sel, old]) => { const el = document.querySelector(sel);"
            " const s = JSON.stringify(el.data, (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v);"
            " let h = 0x811c9dc5; for (let i = 0; i < s.length; i++) {"
            " h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193); }"
            " return ((h >>> 0).toString(16) + ':' + s.length + ':' + el.data.length) !== old; }",
            arg=[first, before], timeout=WAIT_MS))
        assert float(loop.run(off.inner_text("[data-testid=rho-value]"))) > 0.15  # one step up
        print(f"{name}: offline file {size:,} bytes; requests refused: {blocked}")
    finally:
        loop.run(ctx.close())
