"""The Budget tournament page in chromium: moving the budget slider with the keyboard redraws the Altair chart
(its drawn image changes), the URL follows, and no exception box shows. Helpers: bench/tournament_page.py."""

from __future__ import annotations

from bench._browser import exception_texts, slider_value
from bench.tournament_page import chart_hash, move_budget, open_tournament


def test_moving_the_budget_slider_redraws_the_chart(loop, server, page):
    first = loop.run(open_tournament(page, server.url("tournament", budget="0.7")))
    assert loop.run(slider_value(page, "budget")) == 0.7
    seconds, _, after = loop.run(move_budget(page, first, +1))  # raises if the chart does not change in 20 s
    assert after != first and seconds < 20
    assert loop.run(slider_value(page, "budget")) == 0.75
    assert "budget=0.75" in page.url
    _, _, back = loop.run(move_budget(page, after, -1))   # and back: it redraws again
    assert back != after and loop.run(slider_value(page, "budget")) == 0.7 and "budget=0.7" in page.url
    assert loop.run(chart_hash(page)) == back
    assert not loop.run(exception_texts(page))
