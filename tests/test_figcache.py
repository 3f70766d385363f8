"""Figures kept per config (app/figcache.py) and the valley's drift chart that no longer moves with ρ.

The figure cache trades rebuilding for a key: these tests check that the key names everything the
figures depend on (a different config, ρ or look gives a different figure; the same ones give the very
same figure, not a stale one) and that the pages still draw what they drew before.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

from app import figcache
from tests.gridtest import block
from tests.pagetest import chart, run_page


def test_kept_builds_once_per_key_and_look(monkeypatch):
    figcache._kept.clear()
    built = []

    def build(tag):
        built.append(tag)
        return go.Figure(layout=dict(title=tag))

    a1 = figcache.kept("t", ("cfg", 1), lambda: build("a"))
    a2 = figcache.kept("t", ("cfg", 1), lambda: build("a again"))
    assert a1 is a2 and built == ["a"], "the same key must return the figure built the first time"
    b = figcache.kept("t", ("cfg", 2), lambda: build("b"))
    assert b is not a1 and built == ["a", "b"]
    other_name = figcache.kept("u", ("cfg", 1), lambda: build("u"))
    assert other_name is not a1
    monkeypatch.setattr(figcache, "look", lambda: (True, False))  # presentation mode: larger fonts
    projector = figcache.kept("t", ("cfg", 1), lambda: build("a on the projector"))
    assert projector is not a1 and built[-1] == "a on the projector"


def test_escape_main_chart_follows_the_config_not_the_cache():
    """Kept figures (server slider: ?animate=1) and kept grids (ρ in the browser, the default) follow the config."""
    from tests.gridtest import figure

    for params, draw in (({"animate": "1"}, chart), ({}, lambda at: figure(at, 0))):
        first = draw(run_page("pages/escape.py", rho="0.1", **params))
        other_seed = draw(run_page("pages/escape.py", rho="0.1", seed="3", **params))
        other_rho = draw(run_page("pages/escape.py", rho="0.15", **params))
        again = draw(run_page("pages/escape.py", rho="0.1", **params))
        assert first != other_seed and first != other_rho, "a kept figure was shown for another config"
        assert again == first


def _drift_and_captions(rho: str):
    """The drift chart's spec, and the texts shown beside it: the page's captions and, where ρ moves in the
    browser, the ρ chart's block at the step shown (it carries the drift tab's ρ line at every step)."""
    at = run_page("pages/valley.py", rho=rho)
    texts = [c.value for c in at.caption]
    if [c for c in at.get("bidi_component") if c.proto.id.endswith("-main_chart")]:
        texts.append(html.unescape(block(at, 0)))
    return chart(at, "drift_chart"), texts


def test_valley_drift_chart_is_the_same_element_whatever_the_slider():
    spec_a, captions_a = _drift_and_captions("0.1")
    spec_b, captions_b = _drift_and_captions("0.25")
    # The same chart at both ρ: the server sends it as a reference and no browser redraws it.
    assert spec_a == spec_b
    vertical = [s for s in spec_a["layout"].get("shapes", []) if s.get("xref") == "x" and s.get("x0") == s.get("x1")]
    assert not vertical, f"a ρ marker line in the drift chart: {vertical}"
    # ... and the slider's ρ is still shown, beside it, with SAM's mean there
    assert any("The slider's ρ = 0.1" in c and "E[w] = +" in c for c in captions_a), captions_a
    assert any("The slider's ρ = 0.25" in c for c in captions_b), captions_b
