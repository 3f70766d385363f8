"""A bookmarked or typed /home shows Home (issue 12), checked with AppTest; tests/e2e/test_viewports.py checks the
same in a real browser.

A browser that opens /home asks the server for the page whose url path is "home" (Streamlit resolves a typed
path by url path; the default page's is "", it is served at /). Before the fix no page answered to "home", and
Streamlit showed "Page not found". Here: some registered page answers to "home", it is not in the menu, and
running it shows Home's title with the URL's query parameters kept.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.pagetest import REPO, TIMEOUT

HOME_TITLE = "SAM Lab: when does sharpness-aware minimization pay off?"


def test_home_path_resolves_to_home_and_keeps_the_query():
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=TIMEOUT)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # what st.navigation registered (AppTest keeps it to resolve switch_page; no public accessor)
    pages = at._registered_pages
    answering = [h for h, info in pages.items() if info.get("url_pathname") == "home"]
    assert answering, f"no page answers to /home: {[p.get('url_pathname') for p in pages.values()]}"
    at._page_hash = answering[0]  # what the browser's request for /home resolves to
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title][:1] == [HOME_TITLE]
    assert at.query_params.get("present") == "1"
