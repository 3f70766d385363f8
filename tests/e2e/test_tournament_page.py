"""The Budget tournament page in chromium: moving the budget slider with the keyboard redraws the Altair chart
(its drawn image changes), the URL follows, and no exception box shows. Helpers: bench/tournament_page.py.

Every wait is on state, not on a time: before a key press, the app has finished its run (Streamlit's status
widget is gone) and the slider has focus; after it, the slider shows the new value, the URL carries it, and the
chart's image differs from the one before. The timeouts (STATE_S) are only a safety net for a page that never
gets there; under a 2-core CPU hog a redraw that took 20 s is slow, not wrong.
"""

from __future__ import annotations

from bench._browser import FIRST_LOAD_S, exception_texts, rho_thumb, slider_value
from bench.tournament_page import chart_hash, open_tournament, wait_redraw

STATE_S = FIRST_LOAD_S  # the safety net for each wait below
_IDLE = "() => !document.querySelector('[data-testid=stStatusWidget]')"  # no 'Running…' in the app's header
_AT = ("([key, v]) => { const el = document.querySelector(`.st-key-${key} [role=slider], .st-key-${key} input`);"
       " if (!el) return false; const now = Number(el.getAttribute('aria-valuenow') ?? el.value);"
       " return Math.abs(now - v) < 1e-9 && location.search.includes(`${key}=${v}`); }")


async def move(page, before: str, direction: int, want: float) -> str:
    """One keyboard step of the budget slider once the app is idle; waits until the slider and the URL show
    `want` and the chart has redrawn; returns the chart's new hash."""
    await page.wait_for_function(_IDLE, timeout=STATE_S * 1000)
    thumb = rho_thumb(page, "budget")
    await thumb.focus()
    await page.keyboard.press("ArrowRight" if direction > 0 else "ArrowLeft")
    await page.wait_for_function(_AT, arg=["budget", want], timeout=STATE_S * 1000)
    return await wait_redraw(page, before, timeout=STATE_S)


def test_moving_the_budget_slider_redraws_the_chart(loop, server, page):
    first = loop.run(open_tournament(page, server.url("tournament", budget="0.7")))
    assert loop.run(slider_value(page, "budget")) == 0.7
    after = loop.run(move(page, first, +1, 0.75))
    assert after != first
    assert loop.run(slider_value(page, "budget")) == 0.75
    assert "budget=0.75" in page.url
    back = loop.run(move(page, after, -1, 0.7))  # and back: it redraws again
    assert back != after and loop.run(slider_value(page, "budget")) == 0.7 and "budget=0.7" in page.url
    loop.run(page.wait_for_function(_IDLE, timeout=STATE_S * 1000))
    assert loop.run(chart_hash(page)) == back
    assert not loop.run(exception_texts(page))
