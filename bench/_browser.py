"""Shared real-browser harness for the end-to-end tests and the UI benchmarks.

One place for the things the browser tests (`tests/e2e/`), `bench/ui_latency.py` and `bench/load.py`
all need:

- `StreamlitServer`: runs `streamlit run app/main.py` on a free port as a subprocess in its own
  process group, waits for `/_stcore/health`, reads the server's memory (VmRSS), and always kills
  the whole group at the end.
- `launch_browser`: headless chromium through Playwright's async API: Debian's /usr/bin/chromium where it
  is installed, else the chromium that `playwright install chromium` downloaded (macOS, other Linuxes).
- `open_page`, `wait_chart`, `chart_hash`, `nudge_slider`: load a page, wait until its main chart
  (`st.plotly_chart(..., key="main_chart")`) has data, and time a ρ-slider change until the chart's
  data changes ("slider-to-redraw latency").

Everything is async (one chromium, many contexts, as the load test needs). Synchronous callers
(pytest, the latency bench) drive it with `Loop().run(coroutine)`.

Every wait has a bounded timeout and fails with a message that says what did not appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from app.pagelist import PAGE_LIST

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# url path of each page ("" is the default page, home), from the one page list (app/pagelist.py). The generic
# page tests wait for a Plotly chart; the tournament page draws Altair and has a browser test of its own
# (tests/e2e/test_tournament_page.py), so PAGES leaves it out and ALL_PAGES keeps it.
ALL_PAGES: dict[str, str] = {p.key: p.url_path for p in PAGE_LIST}
PAGES: dict[str, str] = {k: v for k, v in ALL_PAGES.items() if k != "tournament"}

# Timeouts in seconds. The first page load imports torch and runs the first simulation on a busy
# 2-core box, so it gets much longer than a redraw.
SERVER_START_S = 60.0
FIRST_LOAD_S = 120.0
PAGE_LOAD_S = 45.0
REDRAW_S = 20.0
# How often the wait for a redraw looks at the chart: every animation frame (exact to ~16 ms) for
# one session; every 50 ms in the load test, where ten pages polling at 60 frames a second would
# add their own work to the machine under test (50 ms polling can only make a latency look longer).
POLL_EXACT = "raf"
POLL_LOAD_MS = 50

MAIN_CHART = ".st-key-main_chart .js-plotly-plot"
EXCEPTION = '[data-testid="stException"]'
ALERT = '[data-testid="stAlert"]'
# The app's notices (clamped / defaulted / unknown URL values, capped requests) are st.warning boxes.
NOTICE = '[data-testid="stAlertContentWarning"]'


class HarnessError(AssertionError):
    """A page did not reach the expected state in time (an AssertionError, so pytest reports it plainly)."""


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


def free_port(lo: int = 8580, hi: int = 8599) -> int:
    """A port nobody listens on: first try the project's range, then ask the OS."""
    for port in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _streamlit_exe() -> str:
    exe = REPO / ".venv" / "bin" / "streamlit"
    return str(exe) if exe.exists() else "streamlit"


class StreamlitServer:
    """`streamlit run <app>` in its own process group; use as a context manager.

    It is started exactly as `make app` starts it (same executable, repo root as working
    directory, no extra PYTHONPATH), so an import problem a user would hit shows up here too.
    """

    def __init__(self, app: str | Path = "app/main.py", port: int | None = None, cwd: Path = REPO):
        self.app = str(app)
        self.cwd = Path(cwd)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="streamlit-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, page: str = "", **params) -> str:
        """URL of a page by url path ("" = home), with query parameters."""
        q = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url}/{page}{q}"

    def start(self, timeout: float = SERVER_START_S) -> StreamlitServer:
        last = ""
        for _ in range(3):  # another process may grab the port between our check and the bind
            port = self.port or free_port()
            cmd = [
                _streamlit_exe(), "run", self.app,
                "--server.port", str(port),
                "--server.headless", "true",
                "--browser.gatherUsageStats", "false",
                # No file watcher: other people edit the tree while tests run; a reload mid-test
                # would show up as a flaky redraw.
                "--server.fileWatcherType", "none",
            ]
            self.proc = subprocess.Popen(
                cmd, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.port = port
            ok, last = self._wait_healthy(timeout)
            if ok:
                return self
            self.stop()
            if "already in use" not in self.log_tail():
                break
            self.port = None
        raise HarnessError(f"streamlit did not become healthy within {timeout:.0f} s ({last}); log:\n{self.log_tail()}")

    def _wait_healthy(self, timeout: float) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"server exited with code {self.proc.returncode}"
            try:
                with urllib.request.urlopen(f"{self.base_url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return True, "ok"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.25)
        return False, f"timed out: {last}"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the whole process group (TERM, then KILL after 5 s)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def rss_mb(self) -> float:
        """Resident memory (VmRSS) of the server and all its descendants, in MiB."""
        if self.proc is None:
            return 0.0
        return sum(_vmrss_kb(pid) for pid in _process_tree(self.proc.pid)) / 1024

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


def _process_tree(root: int) -> list[int]:
    """root and all its descendants, from the ppid field of /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name field may contain spaces
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _vmrss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------------


class Loop:
    """A private event loop, so synchronous code (pytest fixtures, simple benches) can call the
    async helpers below and keep Playwright objects alive between calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


def _playwright_chromium() -> str | None:
    """The chromium that `playwright install chromium` downloaded, or None when there is none."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as pw:
            path = pw.chromium.executable_path
    except Exception:  # no driver, or called inside a running event loop
        return None
    return path if path and Path(path).exists() else None


def chromium_path() -> str | None:
    """The browser the tests drive: Debian's chromium (`make browser` installs it with apt-get) where it exists,
    else Playwright's own download (`make browser` runs `playwright install chromium` where apt-get is missing);
    None when neither is installed."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return _playwright_chromium()


def browser_available() -> str | None:
    """None when the browser tests can run here, else the reason they cannot."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (requirements-dev.txt)"
    if chromium_path() is None:
        return f"no chromium: neither {CHROMIUM} nor Playwright's own (`make browser` installs one)"
    return None


async def launch_browser(pw):
    """Headless chromium: Debian's where it is installed, else Playwright's own download."""
    path = CHROMIUM if Path(CHROMIUM).exists() else None  # None: Playwright's own chromium
    return await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)


# Installed in every page before Streamlit's own scripts: timestamps (browser clock) of each key
# press and of each websocket message from the server. With them a redraw splits into the part
# until the server's last message arrived (debounce, rerun, transfer) and the browser's part after
# it (React + Plotly drawing).
_JS_INIT = """
(() => {
  const rec = window.__samlab = {key: null, msgs: []};
  document.addEventListener('keydown', () => { rec.key = performance.now(); rec.msgs = []; }, true);
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => { if (rec.msgs.length < 10000) rec.msgs.push(performance.now()); });
    }
  };
})();
"""

VIEWPORT = {"width": 1400, "height": 1000}
# A phone as the students' browsers present it: 390 × 844 CSS px (iPhone 12-15), touch, and a mobile User-Agent,
# which is what the app reads to lay its charts out for a phone (app/theme.is_phone).
PHONE = {"width": 390, "height": 844}
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36")
PROJECTOR = {"width": 1280, "height": 800}


async def new_page(browser, viewport: dict | None = None, *, phone: bool = False):
    """A fresh browser context (= its own Streamlit session) with one instrumented page; `phone`: a phone's
    viewport, touch and User-Agent. Close it with `await page.context.close()`."""
    if phone:
        ctx = await browser.new_context(viewport=viewport or PHONE, user_agent=PHONE_UA, is_mobile=True,
                                        has_touch=True)
    else:
        ctx = await browser.new_context(viewport=viewport or VIEWPORT)
    await ctx.add_init_script(_JS_INIT)
    return await ctx.new_page()


# JS run in the page. `el.data` of a `.js-plotly-plot` div is Plotly's list of traces as drawn;
# a 32-bit FNV-1a hash of its JSON changes exactly when the plotted data changes.
_JS_HASH = """
(sel) => {
  const el = document.querySelector(sel);
  if (!el || !el.data || el.data.length === 0) return null;
  const s = JSON.stringify(el.data, (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v);
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return (h >>> 0).toString(16) + ':' + s.length + ':' + el.data.length;
}
"""

# Resolves when the chart has data (optionally different from `old`) or an exception box shows.
# Polled every animation frame, so it must be cheap: hashing a big figure every frame would eat
# the CPU the server needs (10 sessions on 2 cores). Plotly.react replaces `el.data` by a new array
# when new props arrive, so the hash is recomputed only when that reference (or the element)
# changes; the hash then decides whether the plotted data really differs.
_JS_WAIT = (
    "([sel, exc, old]) => { if (document.querySelector(exc)) return 'exception';"
    " const el = document.querySelector(sel);"
    " if (!el || !el.data) return false;"
    " const w = window.__samlabWait || (window.__samlabWait = {el: null, data: null, hash: null});"
    " if (w.el !== el || w.data !== el.data) {"
    "   w.el = el; w.data = el.data; w.hash = (" + _JS_HASH + ")(sel); }"
    " if (w.hash !== null && w.hash !== old) { w.t = performance.now(); return w.hash; }"
    " return false; }"
)


async def chart_hash(page, selector: str = MAIN_CHART) -> str | None:
    """Hash of the main chart's plotted data, or None when there is no chart with data."""
    return await page.evaluate(_JS_HASH, selector)


async def exception_texts(page) -> list[str]:
    """Text of every Streamlit exception box on the page (empty list: no exception)."""
    return [t.strip()[:500] for t in await page.locator(EXCEPTION).all_inner_texts()]


async def alert_texts(page) -> list[str]:
    """Text of every st.info / st.warning / st.error box on the page."""
    return [t.strip() for t in await page.locator(ALERT).all_inner_texts()]


async def notice_texts(page) -> list[str]:
    """Text of every st.warning box: the app's notices about URL values and capped requests."""
    return [t.strip() for t in await page.locator(NOTICE).all_inner_texts()]


async def wait_notice(page, text: str, timeout: float = REDRAW_S) -> list[str]:
    """Wait until a notice (st.warning) containing `text` shows; return all notice texts.

    Some notices (e.g. unknown URL keys) are only known after the page ran, so they arrive after
    the chart; reading the alerts right when the chart appears would miss them.
    """
    try:
        await page.locator(NOTICE).filter(has_text=text).first.wait_for(state="visible", timeout=timeout * 1000)
    except Exception:
        raise HarnessError(
            f"{page.url}: no notice containing {text!r} within {timeout:.0f} s; alerts: {await alert_texts(page)}"
        ) from None
    return await notice_texts(page)


async def wait_chart(page, timeout: float = PAGE_LOAD_S, old: str | None = None, what: str = "",
                     poll: str | int = POLL_EXACT) -> str:
    """Wait until the main chart has data (different from `old` when given); return its hash.

    Raises HarnessError when an exception box appears instead or when `timeout` runs out.
    """
    try:
        handle = await page.wait_for_function(
            _JS_WAIT, arg=[MAIN_CHART, EXCEPTION, old], polling=poll, timeout=timeout * 1000
        )
    except Exception as e:  # playwright's TimeoutError
        if "Timeout" not in type(e).__name__ and "Timeout" not in str(e):
            raise
        state = "did not change" if old else "did not render (no .st-key-main_chart with plotly data)"
        raise HarnessError(f"{what or page.url}: main chart {state} within {timeout:.0f} s") from None
    value = await handle.json_value()
    if value == "exception":
        raise HarnessError(f"{what or page.url}: exception shown: {await exception_texts(page)}")
    return value


async def open_page(page, url: str, timeout: float = PAGE_LOAD_S) -> str:
    """Load `url` and wait for its main chart; return the chart's hash."""
    await page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
    return await wait_chart(page, timeout=timeout, what=url)


async def screenshot(page, path: str, max_height: int = 5000) -> None:
    """A screenshot of the whole page. Streamlit scrolls inside its main container, so
    `full_page=True` alone shows only the viewport: grow the viewport to the content's height,
    give the charts a moment to re-layout, shoot, and put the viewport back."""
    size = page.viewport_size or VIEWPORT
    height = await page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], section.main, body')]"
        ".map(e => e.scrollHeight))"
    )
    await page.set_viewport_size({"width": size["width"], "height": int(min(max(height, size["height"]), max_height))})
    await page.wait_for_timeout(800)
    await page.screenshot(path=path, full_page=True)
    await page.set_viewport_size(size)


def rho_thumb(page, key: str = "rho"):
    """The thumb of the Streamlit slider with widget key `key`.

    Streamlit 1.67 draws it as a visually hidden `<input type="range">` (implicit ARIA role
    "slider"); older versions used a `div[role=slider]`. The role query finds either.
    """
    return page.locator(f".st-key-{key}").get_by_role("slider").first


_JS_SLIDER = """el => [Number(el.getAttribute('aria-valuenow') ?? el.value),
                       Number(el.getAttribute('aria-valuemax') ?? el.max)]"""


async def slider_state(page, key: str = "rho", timeout: float = PAGE_LOAD_S) -> tuple[float, float]:
    """(current value, maximum) of the slider as the browser shows it."""
    thumb = rho_thumb(page, key)
    try:
        await thumb.wait_for(state="attached", timeout=timeout * 1000)
    except Exception:
        raise HarnessError(f"{page.url}: no slider with key {key!r} within {timeout:.0f} s") from None
    now, hi = await thumb.evaluate(_JS_SLIDER)
    return now, hi


async def slider_value(page, key: str = "rho") -> float:
    """The slider's current value as the browser shows it."""
    return (await slider_state(page, key))[0]


async def has_slider(page, key: str = "rho") -> bool:
    return await page.locator(f".st-key-{key}").get_by_role("slider").count() > 0


@dataclass
class Redraw:
    """One slider change. total_s: key press → chart data changed (Python clock, what a user
    waits). server_s: key press → the server's last message before the redraw (browser clock;
    includes the widget's debounce, the rerun and the transfer); NaN if not instrumented."""

    total_s: float
    server_s: float
    chart: str | None = None  # hash of the main chart's data after the redraw


_JS_SPLIT = """() => {
  const rec = window.__samlab, w = window.__samlabWait;
  if (!rec || rec.key === null || !w || !w.t) return null;
  const before = rec.msgs.filter(t => t >= rec.key && t <= w.t);
  return before.length ? (before[before.length - 1] - rec.key) / 1000 : null;
}"""


async def nudge_slider(page, key: str = "rho", timeout: float = REDRAW_S, direction: int = 0,
                       before: str | None = None, poll: str | int = POLL_EXACT) -> Redraw:
    """Move the slider one step with the keyboard and wait for the main chart to redraw.

    Returns the slider-to-redraw latency: from the key press to the moment the chart's plotted
    data differs from before. `direction` +1 / -1 forces ArrowRight / ArrowLeft; 0 moves right
    unless the slider is at its maximum. `before`: the chart's hash when already known (the
    previous Redraw's `chart`), which spares the browser one hash of the whole figure per change.
    """
    thumb = rho_thumb(page, key)
    before = before or await chart_hash(page)
    if before is None:
        raise HarnessError(f"{page.url}: no main chart before moving {key}")
    if direction == 0:
        now, hi = await slider_state(page, key)
        direction = -1 if now >= hi else 1
    await thumb.focus()
    t0 = time.perf_counter()
    await page.keyboard.press("ArrowRight" if direction > 0 else "ArrowLeft")
    after = await wait_chart(page, timeout=timeout, old=before, what=f"{page.url} after moving {key}", poll=poll)
    total = time.perf_counter() - t0
    server = await page.evaluate(_JS_SPLIT)
    return Redraw(total, float("nan") if server is None else server, after)


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------


def percentile(xs: list[float], q: float) -> float:
    """q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Summary:
    n: int
    median_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Summary:
        ms = [1000 * s for s in seconds]
        return cls(len(ms), percentile(ms, 50), percentile(ms, 95), max(ms) if ms else float("nan"))


# --------------------------------------------------------------------------------------------------
# A student session (the load test and its short version in the test suite)
# --------------------------------------------------------------------------------------------------


@dataclass
class SessionResult:
    redraws: list[Redraw]  # one per ρ change that redrew
    errors: list[str]  # exception boxes, timeouts, pages that never rendered
    loads: list[float] = field(default_factory=list)  # seconds from opening a page to its first chart

    @property
    def latencies(self) -> list[float]:
        return [r.total_s for r in self.redraws]

    @property
    def server_latencies(self) -> list[float]:
        return [r.server_s for r in self.redraws if r.server_s == r.server_s]  # drop NaN


async def student_session(browser, server: StreamlitServer, pages=("escape", "valley"), changes: int = 10,
                          start_rho: float | None = None, redraw_timeout: float = REDRAW_S,
                          load_timeout: float = FIRST_LOAD_S, think: float = 0.0,
                          barrier: asyncio.Barrier | None = None, seed: int = 0) -> SessionResult:
    """One student in their own browser context: open every page in its own tab first (optionally at
    ?rho=start_rho), then, page after page, change ρ `changes` times with the keyboard and record each
    slider-to-redraw latency. `think` seconds (on average) pass between a redraw and the next change
    (a student reading the chart): each pause is drawn uniformly from [0.5, 1.5] × think, and the first
    change of a page comes after a pause from [0, think], so students drift apart as real ones do
    (seeded by `seed`). think = 0 is the worst case: every student changes ρ at the same moment and
    again the moment their chart is back.

    With a `barrier` (shared by all students), everyone has opened their pages before anyone moves ρ,
    and everyone starts each page's changes together. Why: opening a page costs a headless chromium
    ~5 CPU-seconds (parsing Streamlit's and Plotly's JavaScript), on the same two cores as the server;
    in a lecture that work happens on the students' laptops. Page loads are timed separately
    (`loads`), so they are reported, not hidden.

    Never raises on a page problem: a timeout or an exception box is recorded as an error and the
    session carries on, so one bad page cannot hide the others' numbers.
    """
    res = SessionResult([], [])
    rng = random.Random(seed)
    first = None
    tabs = {}
    try:
        first = await new_page(browser, {"width": 1280, "height": 900})
        for i, name in enumerate(pages):
            page = first if i == 0 else await first.context.new_page()
            tabs[name] = page
            params = {} if start_rho is None else {"rho": f"{start_rho:g}"}
            t0 = time.perf_counter()
            try:
                await open_page(page, server.url(PAGES[name], **params), timeout=load_timeout)
                res.loads.append(time.perf_counter() - t0)
            except HarnessError as e:
                res.errors.append(str(e))
            except Exception as e:  # a playwright error (page crashed, navigation failed): also an error
                res.errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        for name, page in tabs.items():
            if barrier is not None:
                try:
                    await barrier.wait()  # every student calls it once per page, errors or not
                except asyncio.BrokenBarrierError:  # a student crashed: go on without waiting for them
                    pass
            await page.bring_to_front()
            try:
                await asyncio.sleep(think * rng.uniform(0.0, 1.0))
                chart = None  # hashed afresh before the first change of each page
                for i in range(changes):
                    redraw = await nudge_slider(page, timeout=redraw_timeout, before=chart, poll=POLL_LOAD_MS)
                    chart = redraw.chart
                    res.redraws.append(redraw)
                    if i < changes - 1:
                        await asyncio.sleep(think * rng.uniform(0.5, 1.5))
            except HarnessError as e:
                res.errors.append(str(e))
            except Exception as e:
                res.errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            exc = await exception_texts(page)
            if exc:
                res.errors.append(f"{name}: exception shown: {exc}")
    except BaseException:
        if barrier is not None:
            await barrier.abort()  # never leave the other students waiting for this one
        raise
    finally:
        if first is not None:
            await first.context.close()
    return res


async def many_students(browser, server: StreamlitServer, sessions: int, changes: int,
                        pages=("escape", "valley"), together: bool = True, **kw) -> SessionResult:
    """`sessions` students at once, each starting at a different ρ (0.05, 0.09, 0.13, ...), so
    their configs differ and the shared cache cannot answer everyone from one computation.
    `together`: all pages open before the first ρ change, each page's changes start together."""
    barrier = asyncio.Barrier(sessions) if together else None
    results = await asyncio.gather(*[
        student_session(browser, server, pages, changes, start_rho=round(0.05 + 0.04 * (i % 10), 3),
                        barrier=barrier, seed=i, **kw)
        for i in range(sessions)
    ])
    return SessionResult([x for r in results for x in r.redraws], [e for r in results for e in r.errors],
                         [t for r in results for t in r.loads])
