"""Failover in a real browser: a student's replica dies while the page is open, and the page comes back on the
other replica with the same ρ (issue 12, item 1).

The hall is started by serve.hall's own code (two replicas behind HAProxy, the two Redis). Chromium opens the
escape page through HAProxy at a ρ that is not the default; the test reads the SERVERID cookie (the
replica HAProxy pinned this browser to), kills that replica's whole process group with SIGKILL, and waits:
- for the browser to carry the OTHER replica's cookie (HAProxy re-dispatched it),
- for that replica to have run the page (its shared-cache counters moved: it computed or fetched the runs),
- for the ρ control to show the same ρ and the main chart to have data, with no exception on the page.
It also records how long that took (BENCHMARKS.md, "Lecture hall: failover"). Both replicas have served a page
before (as in a running hall), so the time is the reconnect, not a replica's first imports.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from bench._browser import MAIN_CHART, exception_texts
from serve.hall import binary
from tests.halltest import running_hall

pytestmark = [
    pytest.mark.skipif(binary("redis-server") is None or binary("haproxy") is None,
                       reason="haproxy and redis-server are not installed (make services)"),
    pytest.mark.timeout(600),
]
RHO = "0.155"  # not the page's default (0.2), and a step of its slider
RECOVER_S = 90.0  # the browser's reconnect back-off plus a first run on a busy 2-core machine


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    with running_hall(tmp_path_factory, worker=False) as h:
        yield h


def counters(hall, name: str) -> int:
    import redis

    r = redis.Redis.from_url(hall.cfg.cache_url)
    return sum(int(v) for k, v in r.hgetall("samlab:stats").items() if k.decode().endswith(f":{name}"))


async def server_id(ctx) -> str:
    return next((c["value"] for c in await ctx.cookies() if c["name"] == "SERVERID"), "")


async def slider_shows(page, value: str) -> bool:
    """The page's ρ control (a Streamlit slider or the ρ chart's, both with aria values under .st-key-rho)
    shows `value`."""
    from bench._browser import rho_thumb

    thumb = rho_thumb(page, "rho")
    if not await thumb.count():
        return False
    now = await thumb.evaluate("el => Number(el.getAttribute('aria-valuenow') ?? el.value)")
    return abs(now - float(value)) < 1e-9


def prime(hall) -> None:
    """Open a page once on every replica (another config than the browser's), as a hall's students would have:
    a replica's first run imports torch and the pages, which is not what failover costs in a running hall."""
    from bench.st_protocol import StreamlitClient

    for name in hall.cfg.replica_names():
        c = StreamlitClient(hall.url, run_timeout=180)
        c.http.cookies.set("SERVERID", name)
        run = c.open("escape", {"rho": "0.05", "particles": "50"})
        assert run.ok and c.replica == name, run.error
        c.close()


async def scenario(browser, hall) -> dict:
    prime(hall)
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await ctx.new_page()
        await page.goto(f"{hall.url}/escape?rho={RHO}&particles=100", timeout=120_000)
        await page.locator(MAIN_CHART).first.wait_for(state="attached", timeout=180_000)
        end = time.monotonic() + 60
        while not await slider_shows(page, RHO):
            assert time.monotonic() < end, "the page never showed ρ = " + RHO
            await page.wait_for_timeout(200)
        first = await server_id(ctx)
        assert first in ("r1", "r2"), await ctx.cookies()
        other = "r2" if first == "r1" else "r1"
        before = counters(hall, other)

        t_kill = time.monotonic()
        os.killpg(hall.procs[first].popen.pid, signal.SIGKILL)  # the replica and anything it started
        hall.procs[first].popen.wait(10)

        end = t_kill + RECOVER_S
        while True:
            moved = await server_id(ctx) == other and counters(hall, other) > before
            if moved and await slider_shows(page, RHO) and await page.locator(MAIN_CHART).count():
                break
            assert time.monotonic() < end, (f"no recovery in {RECOVER_S:.0f} s: cookie {await server_id(ctx)!r}, "
                                            f"{other}'s counters {before} → {counters(hall, other)}")
            await page.wait_for_timeout(200)
        recovered_s = time.monotonic() - t_kill
        assert await exception_texts(page) == []
        assert f"rho={RHO}" in page.url  # the URL, which holds every control, is unchanged
        return {"first": first, "other": other, "recovered_s": recovered_s}
    finally:
        await ctx.close()


def test_the_page_recovers_on_the_other_replica_with_the_same_rho(loop, browser, hall):
    out = loop.run(scenario(browser, hall))
    print(f"\nfailover: replica {out['first']} killed; the page was back on {out['other']} with ρ = {RHO} "
          f"after {out['recovered_s']:.1f} s")
    assert hall.procs[out["other"]].alive()
