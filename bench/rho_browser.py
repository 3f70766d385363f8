"""ρ in the browser (issue 18): what a ρ move costs, in the browser and on the server. Prints the figures that
BENCHMARKS.md, "ρ in the browser (issue 18)", quotes; one command per measurement:

    python bench/rho_browser.py redraw [--old /tmp/old] [--pages escape valley sam_step] [--n 30]
        Per page, headless chromium against `streamlit run app/main.py` (this tree): input → painted chart
        (p50/p95, ms) for mouse clicks along the ρ slider, ArrowRight/Left keys and, at 390 px with a phone's
        User-Agent, touch taps; the WebSocket frames the browser sent during a 30-step mouse drag (a frame is a
        rerun request: 0 means the server ran no script); the server's CPU per release (its process's
        utime + stime over 10 releases, ÷ 10). With --old DIR (the previous tree: `git archive
        b2d777e | tar -x -C /tmp/old; ln -s "$PWD/.venv" /tmp/old/.venv`), the same keyboard measurement of
        today's server round trip there, in the same run.
    python bench/rho_browser.py cost [--old /tmp/old] [--pages psam]
        Per lecture scene of the grid pages (app/presets.py), the server CPU of a page load with empty caches:
        the whole ρ grid here against one ρ in the old tree (its page as it was), their ratio (target ≤ 2), and
        the bytes the grid adds to the page (target ≤ 2 MB), and the offline file's size (target ≤ 6 MB).

Input → painted is measured in the page as ../shared/tools/inbrowser_latency.py does: the input event's
timestamp, then the next animation frame after the first DOM change inside the main chart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._browser import (  # noqa: E402
    FIRST_LOAD_S,
    PAGES,
    Loop,
    StreamlitServer,
    launch_browser,
    new_page,
    open_page,
    percentile,
)

GRID_PAGES = ("escape", "valley", "sam_step", "psam")
CHART = ".st-key-main_chart .js-plotly-plot"
INPUT = "[data-testid=rho-input]"

SETUP = """([chart]) => { window.__lat = []; if (window.__latOn) return !!document.querySelector(chart);
  window.__latOn = true; let t0 = null;
  const start = e => { t0 = e.timeStamp; };
  for (const ev of ['pointerdown', 'keydown', 'touchstart']) document.addEventListener(ev, start, true);
  new MutationObserver(ms => { if (t0 === null) return;
      const el = m => (m.target.nodeType === 1 ? m.target : m.target.parentElement);
      if (!ms.some(m => el(m) && el(m).closest(chart))) return;
      const s = t0; t0 = null; requestAnimationFrame(() => window.__lat.push(performance.now() - s)); })
    .observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  return !!document.querySelector(chart); }"""


def _cpu_s(pid: int) -> float:
    """utime + stime of a process and its children so far, in seconds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid] + _children(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _stats(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(percentile(ms, 95), 1),
            "max_ms": round(max(ms), 1)}


async def _latencies(page, control, n: int, how: str) -> dict:
    """n inputs on `control` (a selector or a locator: clicks, keys or taps), each waited for (10 s) before the
    next."""
    await page.evaluate(SETUP, [CHART])
    ctl = (page.locator(control) if isinstance(control, str) else control).first
    box = None
    if how != "keys":
        await ctl.scroll_into_view_if_needed()
        box = await ctl.bounding_box()
    if how == "keys":
        await ctl.focus()
    unchanged = 0
    for i in range(n):
        count = await page.evaluate("() => window.__lat.length")
        if how == "keys":
            await page.keyboard.press("ArrowRight" if (i // 10) % 2 == 0 else "ArrowLeft")
        else:
            frac = 0.05 + 0.9 * ((i * 7) % 40) / 40
            x, y = box["x"] + frac * box["width"], box["y"] + box["height"] / 2
            await (page.touchscreen.tap(x, y) if how == "touch" else page.mouse.click(x, y))
        try:
            await page.wait_for_function(f"() => window.__lat.length > {count}", timeout=10_000)
        except Exception:
            unchanged += 1
        await page.wait_for_timeout(150)
    return _stats(await page.evaluate("() => window.__lat")) | {"unchanged": unchanged}


async def _drag_frames(page, frames: list) -> dict:
    """A 30-step mouse drag along the ρ slider: frames sent while the button is down, and after the release."""
    await page.locator(INPUT).scroll_into_view_if_needed()
    box = await page.locator(INPUT).bounding_box()
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + 0.8 * box["width"], y)
    await page.wait_for_timeout(500)
    n0 = len(frames)
    await page.mouse.down()
    for k in range(1, 31):
        await page.mouse.move(box["x"] + (0.8 - 0.02 * k) * box["width"], y)
        await page.wait_for_timeout(16)
    during = len(frames) - n0
    await page.mouse.up()
    await page.wait_for_timeout(1500)
    return {"frames_during_drag": during, "frames_after_release": len(frames) - n0 - during}


async def _release_cpu(page, server: StreamlitServer, releases: int = 10) -> float:
    """Server CPU per release: ArrowLeft/Right on the ρ control (each key is a release), each waited for in the URL."""
    await page.locator(INPUT).focus()
    await page.wait_for_timeout(1000)
    c0 = _cpu_s(server.proc.pid)
    for i in range(releases):
        await page.keyboard.press("ArrowLeft" if i % 2 == 0 else "ArrowRight")
        want = await page.locator(INPUT).get_attribute("aria-valuenow")
        await page.wait_for_function(
            "r => { const v = new URLSearchParams(location.search).get('rho');"
            " return v === null ? false : Math.abs(Number(v) - Number(r)) < 1e-9; }", arg=want, timeout=20_000)
        await page.wait_for_timeout(300)
    return (_cpu_s(server.proc.pid) - c0) / releases


async def _page_new(browser, server, name: str, n: int) -> dict:
    out = {}
    page = await new_page(browser)
    frames: list = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: frames.append(time.time())))
    await open_page(page, server.url(PAGES[name]), timeout=FIRST_LOAD_S)
    await page.wait_for_timeout(1500)
    n0 = len(frames)
    out["mouse"] = await _latencies(page, INPUT, n, "mouse")
    out["keys"] = await _latencies(page, INPUT, n, "keys")
    out["frames_per_input"] = round((len(frames) - n0) / (2 * n), 2)  # one release per click or key
    out |= await _drag_frames(page, frames)
    out["server_cpu_ms_per_release"] = round(1000 * await _release_cpu(page, server), 1)
    await page.context.close()
    phone = await new_page(browser, phone=True)
    await open_page(phone, server.url(PAGES[name]), timeout=FIRST_LOAD_S)
    await phone.wait_for_timeout(1500)
    out["touch_390px"] = await _latencies(phone, INPUT, n, "touch")
    await phone.context.close()
    return out


async def _page_old(browser, server, name: str, n: int) -> dict:
    page = await new_page(browser)
    await open_page(page, server.url(PAGES[name]), timeout=FIRST_LOAD_S)
    await page.wait_for_timeout(1500)
    # the old page's server slider (bench/_browser.rho_thumb: a visually hidden input with the role slider)
    out = {"keys_round_trip": await _latencies(page, page.locator(".st-key-rho").get_by_role("slider"), n, "keys")}
    await page.context.close()
    return out


def redraw(args) -> None:
    from playwright.async_api import async_playwright

    loop = Loop()
    pw = loop.run(async_playwright().start())
    browser = loop.run(launch_browser(pw))
    results = {}
    try:
        with StreamlitServer("app/main.py") as server:
            for name in args.pages:
                results[name] = {"in_browser": loop.run(_page_new(browser, server, name, args.n))}
                print(json.dumps({name: results[name]}), flush=True)
        if args.old:
            with StreamlitServer("app/main.py", cwd=Path(args.old)) as old:
                for name in args.pages:
                    results[name]["today"] = loop.run(_page_old(browser, old, name, args.n))
                    print(json.dumps({name: {"today": results[name]["today"]}}), flush=True)
    finally:
        loop.run(browser.close())
        loop.run(pw.stop())
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| page | input | p50 ms | p95 ms | today's round trip p95 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        today = r.get("today", {}).get("keys_round_trip", {}).get("p95_ms", "—")
        for how in ("mouse", "keys", "touch_390px"):
            s = r["in_browser"][how]
            print(f"| {name} | {how} | {s.get('p50_ms')} | {s.get('p95_ms')} | {today if how == 'keys' else ''} |")
    print("| page | frames sent in a 30-step drag | server CPU per release (ms) |")
    print("| --- | --- | --- |")
    for name, r in results.items():
        b = r["in_browser"]
        print(f"| {name} | {b['frames_during_drag']} | {b['server_cpu_ms_per_release']} |")


# --------------------------------------------------------------------------------------------------
# Grid cost, bytes, offline file
# --------------------------------------------------------------------------------------------------
COST_SCRIPT = r"""
import json, sys, time
from streamlit.testing.v1 import AppTest
import streamlit as st
scenes = json.loads(sys.argv[1])
out = {}
for name, (page, params) in scenes.items():
    warm = AppTest.from_file(f"pages/{page}.py", default_timeout=600)
    warm.query_params["seed"] = "977"  # imports and first-use costs, on another config
    warm.run()
    st.cache_data.clear(); st.cache_resource.clear()
    at = AppTest.from_file(f"pages/{page}.py", default_timeout=600)
    for k, v in params.items():
        at.query_params[k] = v
    t0 = time.process_time()
    at.run()
    cpu = time.process_time() - t0
    comps = at.get("bidi_component")
    grid = comps[0].proto.bytes if comps else b""
    row = {"cpu_s": round(cpu, 3), "grid_bytes": len(grid), "exception": [e.value for e in at.exception]}
    if grid:
        from app.offline import caption, offline_html
        from app.rhogrid import GridView, Slider
        head, _, body = grid.partition(b"\n")
        s = json.loads(body)["slider"]
        view = GridView(Slider(s["key"], s["label"], s["help"], tuple(s["rhos"]), s["rhos"][0], s["digits"]), body)
        html = offline_html(view, s["rhos"][json.loads(head)["index"]], title=name,
                            caption_text=caption(name, params, view))
        row["offline_bytes"] = len(html.encode())
    out[name] = row
print("RESULT " + json.dumps(out))
"""


def _scenes(pages=GRID_PAGES) -> dict:
    from app.presets import scenes

    return {n: (s.page, dict(s.params)) for n, s in scenes().items() if s.page in pages}


def _cost_in(tree: Path, scenes: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", COST_SCRIPT, json.dumps(scenes)], cwd=tree,
                       capture_output=True, text=True, env=env, timeout=3600)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"cost run in {tree} failed:\n{r.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def cost(args) -> None:
    scenes = _scenes(args.pages)
    new = _cost_in(REPO, scenes)
    old = _cost_in(Path(args.old), scenes) if args.old else {}
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| scene | page | CPU, grid (s) | CPU, one ρ before (s) | ratio | grid bytes | offline file bytes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (page, _) in scenes.items():
        n, o = new[name], old.get(name, {})
        ratio = f"{n['cpu_s'] / o['cpu_s']:.1f}×" if o.get("cpu_s") else "—"
        print(f"| {name} | {page} | {n['cpu_s']} | {o.get('cpu_s', '—')} | {ratio} | {n['grid_bytes']:,} | "
              f"{n.get('offline_bytes', 0):,} |")
    print(json.dumps({"new": new, "old": old}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("redraw")
    r.add_argument("--old", help="the previous tree, for today's round trip in the same run")
    r.add_argument("--pages", nargs="+", default=list(GRID_PAGES), choices=GRID_PAGES)
    r.add_argument("--n", type=int, default=30, help="inputs per kind and page")
    c = sub.add_parser("cost")
    c.add_argument("--old", help="the previous tree, for one ρ's CPU as the pages computed it")
    c.add_argument("--pages", nargs="+", default=list(GRID_PAGES), choices=GRID_PAGES)
    args = ap.parse_args()
    (redraw if args.cmd == "redraw" else cost)(args)


if __name__ == "__main__":
    main()
