"""The app on the screens it is used on, in real headless chromium (issues 12 and 14).

Claims checked:
- `/home`, bookmarked or typed, shows Home (no "Page not found") and keeps its query parameters: the browser
  ends up at `/?present=1`.
- On a phone (390 × 844 CSS px, touch, a mobile User-Agent), every page: nothing is wider than the screen (no
  horizontal scrolling of the page), and in every chart drawn the legend overlaps neither the chart's title nor
  an x-axis title, and lies inside the chart. On the contour pages (SAM step, playground) the landscape gets at
  least 60% of the chart's width: at 390 px the desktop layout squeezed it into 52% (188 of 358 px) of it.
- On a projector (1280 × 800, `?present=1`), each page with a ρ slider (the toy pages and CIFAR-10) shows
  the ρ slider and the top FIRST_SCREEN_CHART_PX px of its main chart on the first screen, without scrolling;
  and nothing is wider than the screen. The same with a lecture scene's banner above the page (the pages
  nearest the limit: the Zhu toy on the escape lab, the valley, PSAM, CIFAR-10).
Screenshots go to test-artifacts/ (phone_<page>.png, projector_<page>.png) for a human to look at.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from app.presets import scenes
from bench._browser import (
    FIRST_LOAD_S,
    PAGES,
    PROJECTOR,
    new_page,
    open_page,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# Pages with a ρ slider and a main chart that a lecture shows.
PROJECTOR_PAGES = ("sam_step", "playground", "escape", "valley", "psam", "cifar")
PROJECTOR_SCENES = ("zhu_breaks", "valley", "psam", "cifar_label_noise")
CONTOUR_PAGES = ("sam_step", "playground")
FIRST_SCREEN_CHART_PX = 150  # at least this much of the main chart shows on the first screen
CONTOUR_SHARE = 0.6  # the landscape's share of the chart's width on a phone
SETTLE_MS = 1500  # Plotly lays a chart out after its data arrives (fonts, legend, margins)

# Every Plotly chart on the page: its widget key, its box, and the boxes of its legend, title and x-axis titles
# (null where absent), in CSS px relative to the viewport. Charts in closed tabs or expanders have no size.
_JS_CHARTS = """() => {
  const box = e => { if (!e) return null; const r = e.getBoundingClientRect();
                     return r.width > 0 && r.height > 0 ? [r.left, r.top, r.right, r.bottom] : null; };
  return [...document.querySelectorAll('.js-plotly-plot')].map(p => {
    const holder = p.closest('[class*="st-key-"]');
    const key = holder ? [...holder.classList].find(c => c.startsWith('st-key-')).slice(7) : '';
    return {key, chart: box(p.querySelector('.main-svg')), legend: box(p.querySelector('g.legend')),
            title: box(p.querySelector('text.gtitle')),
            xtitles: [...p.querySelectorAll('text[class^="x"][class$="title"]')].map(box).filter(b => b),
            landscape: box(p.querySelector('.heatmaplayer image'))};
  });
}"""

# How far the page's content reaches to the right, against the viewport's width.
_JS_WIDTH = """() => ({doc: document.documentElement.scrollWidth, view: window.innerWidth,
  main: (document.querySelector('[data-testid=stMain]') || document.body).scrollWidth})"""


def _overlap(a, b, slack: float = 2.0) -> bool:
    """Two boxes [left, top, right, bottom] overlap by more than `slack` px in both directions."""
    return (min(a[2], b[2]) - max(a[0], b[0]) > slack) and (min(a[3], b[3]) - max(a[1], b[1]) > slack)


def _inside(inner, outer, slack: float = 2.0) -> bool:
    return (inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack and inner[2] <= outer[2] + slack
            and inner[3] <= outer[3] + slack)


def _box_of(page, key: str):
    return page.evaluate(
        "(k) => { const e = document.querySelector('.st-key-' + k); if (!e) return null;"
        " const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }", key)


def _shot(loop, page, artifacts, name: str) -> None:
    loop.run(page.screenshot(path=str(artifacts / name)))


def test_home_path_shows_home_with_its_query(loop, server, page):
    loop.run(page.goto(server.url("home", present="1"), wait_until="domcontentloaded"))
    title = page.get_by_text("SAM Lab: when does sharpness-aware")
    loop.run(title.first.wait_for(timeout=FIRST_LOAD_S * 1000))
    loop.run(page.wait_for_timeout(SETTLE_MS))
    assert loop.run(page.get_by_text("Page not found").count()) == 0
    url = urlparse(page.url)
    assert url.path == "/", f"/home should land on Home at /, not {page.url}"
    assert parse_qs(url.query).get("present") == ["1"], f"the query was lost on the way: {page.url}"


@pytest.mark.parametrize("name", list(PAGES))
def test_phone_layout(name, loop, server, browser, artifacts):
    page = loop.run(new_page(browser, phone=True))
    try:
        loop.run(open_page(page, server.url(PAGES[name]), timeout=FIRST_LOAD_S))
        loop.run(page.wait_for_timeout(SETTLE_MS))
        _shot(loop, page, artifacts, f"phone_{name}.png")
        width = loop.run(page.evaluate(_JS_WIDTH))
        assert width["doc"] <= width["view"] + 1 and width["main"] <= width["view"] + 1, (
            f"{name}: the page is wider than the phone: {width}")
        charts = [c for c in loop.run(page.evaluate(_JS_CHARTS)) if c["chart"]]
        assert any(c["key"] == "main_chart" for c in charts), f"{name}: no main chart drawn"
        for c in charts:
            where = f"{name}, chart {c['key'] or '(no key)'}"
            assert c["chart"][2] <= width["view"] + 1, f"{where} is wider than the phone: {c['chart']}"
            if not c["legend"]:
                continue
            assert _inside(c["legend"], c["chart"]), f"{where}: legend {c['legend']} cut off by {c['chart']}"
            if c["title"]:
                assert not _overlap(c["legend"], c["title"]), (
                    f"{where}: legend {c['legend']} covers the title {c['title']}")
            for xt in c["xtitles"]:
                assert not _overlap(c["legend"], xt), f"{where}: legend {c['legend']} covers an x-axis title {xt}"
        if name in CONTOUR_PAGES:
            main = next(c for c in charts if c["key"] == "main_chart")
            land, chart = main["landscape"], main["chart"]
            assert land, f"{name}: no landscape drawn in the main chart"
            share = (land[2] - land[0]) / (chart[2] - chart[0])
            assert share >= CONTOUR_SHARE, f"{name}: the landscape gets only {share:.0%} of the chart's width"
    finally:
        loop.run(page.context.close())


@pytest.mark.parametrize("name, scene", [(p, None) for p in PROJECTOR_PAGES]
                         + [(scenes()[s].page, s) for s in PROJECTOR_SCENES])
def test_projector_first_screen_shows_chart_and_rho(name, scene, loop, server, browser, artifacts):
    page = loop.run(new_page(browser, PROJECTOR))
    params = {"present": "1"} | (dict(scenes()[scene].params) | {"preset": scene} if scene else {})
    try:
        loop.run(open_page(page, server.url(PAGES[name], **params), timeout=FIRST_LOAD_S))
        if scene:  # the scene's banner is on screen (it is drawn after the page ran)
            loop.run(page.get_by_text(f"Scene: {scenes()[scene].title}").first.wait_for(timeout=FIRST_LOAD_S * 1000))
        loop.run(page.wait_for_timeout(SETTLE_MS))
        _shot(loop, page, artifacts, f"projector_{scene or name}.png")
        width = loop.run(page.evaluate(_JS_WIDTH))
        assert width["doc"] <= width["view"] + 1, f"{name}: the page is wider than the projector: {width}"
        chart, rho = loop.run(_box_of(page, "main_chart")), loop.run(_box_of(page, "rho"))
        assert chart and rho, f"{name}: main chart {chart}, ρ slider {rho}"
        screen = PROJECTOR["height"]
        assert chart[1] + FIRST_SCREEN_CHART_PX <= screen, (
            f"{name}: the main chart starts at {chart[1]:.0f} px; less than {FIRST_SCREEN_CHART_PX} px of it "
            f"on the {screen}-px first screen")
        assert rho[3] <= screen, f"{name}: the ρ slider ends at {rho[3]:.0f} px, below the first screen"
    finally:
        loop.run(page.context.close())
