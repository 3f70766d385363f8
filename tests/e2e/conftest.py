"""Fixtures for the real-browser tests: one Streamlit server and one headless chromium for the
whole session (starting either costs seconds on a 2-core box), a fresh browser context per test.

The helpers themselves live in bench/_browser.py, shared with bench/ui_latency.py and bench/load.py.
"""

from __future__ import annotations

import pytest

from bench._browser import REPO, Loop, StreamlitServer, browser_available, launch_browser, new_page

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def loop():
    """One event loop that owns every Playwright object of the session."""
    reason = browser_available()
    if reason:
        pytest.skip(f"browser tests need chromium and playwright: {reason}")
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="session")
def server():
    """`streamlit run app/main.py` on a free port; the process group is killed at the end."""
    srv = StreamlitServer("app/main.py")
    with srv:
        yield srv


@pytest.fixture(scope="session")
def browser(loop):
    from playwright.async_api import async_playwright

    pw = loop.run(async_playwright().start())
    b = loop.run(launch_browser(pw))
    yield b
    loop.run(b.close())
    loop.run(pw.stop())


@pytest.fixture(scope="session")
def context(loop, browser):
    """One browser context for the page tests, so Streamlit's JavaScript is fetched once (HTTP
    cache). Each page load still opens its own websocket, i.e. its own Streamlit session."""
    pg = loop.run(new_page(browser))
    yield pg.context
    loop.run(pg.context.close())


@pytest.fixture
def page(loop, context):
    """A fresh page (a new Streamlit session on load) in the shared, instrumented context."""
    pg = loop.run(context.new_page())
    yield pg
    loop.run(pg.close())


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
