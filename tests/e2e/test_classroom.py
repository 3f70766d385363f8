"""The class experiment in real headless chromium: a projector page and three student browsers (issue 14).

Claims checked:
- the lecture scene's link (?kind=…&open=1) opens a room at once; in presentation mode at 1280 × 800 the room code,
  the QR code and the pooled chart are all on the first screen;
- three students, each in their own browser context (their own Streamlit session), join with the room code, see
  their setting, press run, and see their own run marked on their chart;
- the projector's count goes from "0 runs from 0 students" to "3 runs from 3 students" WITHOUT a reload (a marker
  set in the projector's window survives), i.e. the live fragment redraws it.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest

from bench._browser import EXCEPTION, FIRST_LOAD_S, PAGE_LOAD_S, new_page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHART = ".st-key-main_chart .js-plotly-plot"
PROJECTOR = {"width": 1280, "height": 800}


def _query(page) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


async def _wait_text(page, text: str, timeout: float) -> None:
    try:
        await page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout * 1000)
    except Exception:
        errors = [t[:300] for t in await page.locator(EXCEPTION).all_inner_texts()]
        raise AssertionError(f"{page.url}: no {text!r} within {timeout:.0f} s; exceptions: {errors}") from None


async def _student(browser, url: str):
    page = await new_page(browser, viewport={"width": 420, "height": 860})  # a phone-sized window
    await page.goto(url, wait_until="domcontentloaded")
    await _wait_text(page, "Your setting", PAGE_LOAD_S)
    await page.get_by_role("button", name="Run (1 of 3)").click()
    await _wait_text(page, "Your run 1", PAGE_LOAD_S)
    # their own run is marked on the pooled chart (a trace named "your run")
    await page.wait_for_function(
        "(sel) => { const el = document.querySelector(sel); return el && el.data && "
        "el.data.some(t => (t.name || '').startsWith('your run')); }", arg=CHART, timeout=PAGE_LOAD_S * 1000)
    return page


def test_projector_updates_live_as_three_students_run(loop, server, browser):
    projector = loop.run(new_page(browser, viewport=PROJECTOR))
    try:
        loop.run(projector.goto(server.url("classroom", kind="escape", particles=20, steps=50, open=1, present=1),
                                wait_until="domcontentloaded", timeout=FIRST_LOAD_S * 1000))
        loop.run(_wait_text(projector, "0 runs from 0 students", FIRST_LOAD_S))
        q = _query(projector)
        code, key = q["room"], q["key"]
        assert len(code) == 8 and key and q.get("present") == "1"

        # the first screen at 1280 × 800: the code, the QR code and the chart, whole
        loop.run(projector.wait_for_selector(CHART, timeout=PAGE_LOAD_S * 1000))
        chart_box = loop.run(projector.locator(CHART).bounding_box())
        qr_box = loop.run(projector.locator('[data-testid="stImage"] img').first.bounding_box())
        assert (chart_box and chart_box["y"] >= 0
                and chart_box["y"] + chart_box["height"] <= PROJECTOR["height"]), chart_box
        assert qr_box and qr_box["y"] + qr_box["height"] <= PROJECTOR["height"], qr_box
        assert loop.run(projector.get_by_text(f"{code[:4]} {code[4:]}").first.is_visible())

        loop.run(projector.evaluate("() => { window.__noReload = 'still here'; }"))
        students = []
        t0 = time.monotonic()
        for _ in range(3):
            students.append(loop.run(_student(browser, server.url("classroom", room=code))))
        loop.run(_wait_text(projector, "3 runs from 3 students", 15))
        lag = time.monotonic() - t0
        assert loop.run(projector.evaluate("() => window.__noReload")) == "still here", "the projector reloaded"
        names = loop.run(projector.evaluate(f"() => document.querySelector('{CHART}').data.map(t => t.name)"))
        assert any(n.startswith("class, pooled") for n in names), names
        settings = sorted(loop.run(s.get_by_text("Your setting").first.inner_text()) for s in students)
        assert len(set(settings)) == 3, settings  # round robin: three different ρ
        print(f"3 students ran and the projector showed them {lag:.1f} s after the first joined")
    finally:
        loop.run(projector.context.close())
        for s in locals().get("students", []):
            loop.run(s.context.close())
