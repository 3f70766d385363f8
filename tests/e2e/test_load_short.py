"""A short version of bench/load.py (issue 5): several students at once on one real server.

Claim: 3 concurrent browser sessions, each changing ρ 3 times on the escape and valley pages,
all see their chart redraw, with no exception and no timeout, and the slowest redraws stay
within a bound a lecture can live with.

The bound, P95_BOUND_S = 6 s: the issue's target is p95 ≤ 2 s with 10 sessions on a quiet 2-core
machine (measured by bench/load.py, recorded in BENCHMARKS.md). This test runs inside the test
suite, where the same 2 cores also run pytest, chromium and, in CI or on a shared box, other jobs,
so it allows 3× that target. It still fails when redraws serialise badly (e.g. a page recomputing
an uncached heavy scene each time, which takes several seconds per change under contention).
The students open both pages first and change ρ together (bench/_browser.many_students' barrier).
"""

from __future__ import annotations

import pytest

from bench._browser import REPO, Summary, many_students

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SESSIONS, CHANGES = 3, 3
P95_BOUND_S = 6.0


def test_three_students_at_once(loop, server, browser):
    for name in ("escape", "valley"):
        if "This page is being built." in (REPO / "pages" / f"{name}.py").read_text():
            pytest.skip(f"pages/{name}.py is still the placeholder stub")
    rss_before = server.rss_mb()
    res = loop.run(many_students(browser, server, SESSIONS, CHANGES))
    rss_after = server.rss_mb()
    s = Summary.of(res.latencies)
    print(f"{SESSIONS} sessions × {CHANGES} changes × 2 pages: n={s.n} median={s.median_ms:.0f} ms "
          f"p95={s.p95_ms:.0f} ms, RSS {rss_before:.0f} → {rss_after:.0f} MiB")
    assert res.errors == []
    assert s.n == SESSIONS * CHANGES * 2
    assert s.p95_ms <= 1000 * P95_BOUND_S, f"p95 {s.p95_ms:.0f} ms > {P95_BOUND_S} s"
