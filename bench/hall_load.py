"""A lecture hall without browsers: Locust students that speak Streamlit's WebSocket protocol (issue 12).

Each simulated student (`Student`, a Locust `User`) is one `bench.st_protocol.StreamlitClient`: its own
cookie jar (a proxy's sticky cookie keeps it on one replica), its own WebSocket, its own Streamlit
session. It opens a page from a lecture-scene URL (or `--url` itself), waits until the script
finished, and when every student has opened their page (a barrier, as in bench/load.py: page loads
are timed on their own) it changes ρ `--changes` times through a widget-state rerun of the ρ slider,
each after a think time drawn uniformly from [0.5, 1.5] × T. A change is timed from sending the rerun
until `script_finished` arrived (the rerun finished and its last delta is in).

    .venv/bin/python bench/hall_load.py --url http://127.0.0.1:8501/escape --students 20 --changes 6 --think 4 --json

prints p50, p95, max, errors, changes/s and the generator's own CPU (process CPU time / wall time; 100%
is one core busy). Errors: exception elements, timeouts, disconnects, runs without a successful
script_finished. After a disconnect a student reconnects and re-opens its URL (the URL holds ρ), as a
browser does; a student then has lost the one rerun that failed ("lost reruns" per student).

Which ρ: `--rho-mode step` (default) moves the slider one step to the right (to the left at its top)
from where the student started, as a keyboard arrow does; students start spread over the slider's steps
(`--same-start` starts all at the URL's ρ). `--rho-mode random` draws each new ρ uniformly from the
slider's steps (a hall playing with a warmed scene). `--uncached` gives every student its own seed
(URL parameter `seed`, where the page has one), so no two students share a config and nothing is cached.

Scenes: `--scenes lecture` spreads the students over the lecture scenes of app/presets.py (those whose
page has a ρ slider); `--scenes escape,valley` names them. Without `--scenes` every student opens `--url`.

Locust itself: `Student` is an ordinary Locust User, so `locust -f bench/hall_load.py --host URL` (its web
UI, `--processes N`, master/worker over several machines) runs the same students; settings then come from
the environment (HALL_CHANGES, HALL_THINK, HALL_RHO_MODE, HALL_SCENES, HALL_UNCACHED) and the numbers from
Locust's own statistics (request "rho change"). This script runs Locust as a library in one process and
adds what Locust's statistics do not give: per-student errors, replicas, and its own CPU.
"""

from __future__ import annotations

# Locust patches the standard library for gevent on import; it must come before anything that
# opens sockets (requests, websocket-client).
from locust import User, events, task  # isort: skip
from locust.env import Environment  # isort: skip
from locust.exception import StopUser  # isort: skip

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import parse_qsl, urlencode, urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench._browser import percentile  # noqa: E402  (standard library only: safe beside gevent)
from bench.st_protocol import Run, StreamlitClient  # noqa: E402

RHO_KEY = "rho"
OPEN_TRIES = 3


@dataclass
class Plan:
    """What every student of one run does."""

    changes: int = 6
    think: float = 4.0
    rho_mode: str = "step"  # "step" | "random"
    spread: bool = True  # students start at different ρ (slider steps)
    uncached: bool = False  # a seed of its own per student
    seed_base: int = 0  # added to the per-student seed, so two uncached runs do not share configs
    urls: list[str] = field(default_factory=list)  # page URLs (path + query); student i opens urls[i % n]
    students: int = 1
    open_timeout: float = 120.0
    raw: bool = False  # put every change's latency into the summary (to pool runs)
    run_timeout: float = 60.0
    seed: int = 0

    @classmethod
    def from_env(cls) -> Plan:
        """The plan when Locust's own command line runs this file."""
        p = cls(changes=int(os.environ.get("HALL_CHANGES", "6")), think=float(os.environ.get("HALL_THINK", "4")),
                rho_mode=os.environ.get("HALL_RHO_MODE", "step"), uncached=os.environ.get("HALL_UNCACHED") == "1")
        p.urls = scene_urls(os.environ.get("HALL_SCENES", "")) or ["/escape"]
        p.students = 10**9  # unknown: no barrier
        return p


@dataclass
class StudentLog:
    """What one student saw."""

    index: int
    url: str = ""
    opens: list[float] = field(default_factory=list)  # seconds per successful page open
    changes: list[float] = field(default_factory=list)  # seconds per successful ρ change
    last_delta: list[float] = field(default_factory=list)  # seconds to the last delta, per change
    errors: list[str] = field(default_factory=list)
    lost: int = 0  # ρ changes that did not come back
    replicas: list[str] = field(default_factory=list)  # replica after each run (when the proxy names it)
    reconnects: int = 0
    rhos: list[float] = field(default_factory=list)


class Hall:
    """State shared by the students of one run (greenlets of one process)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.logs: list[StudentLog] = []
        self.opened = 0
        self.all_open = Event()
        self.done = 0
        self.all_done = Event()
        self.first_change = None
        self.last_change = None

    def mark_open(self) -> None:
        self.opened += 1
        if self.opened >= self.plan.students:
            self.all_open.set()

    def mark_done(self) -> None:
        self.done += 1
        if self.done >= self.plan.students:
            self.all_done.set()


def scene_urls(spec: str) -> list[str]:
    """URLs (path?query) of the lecture scenes named in `spec` ("lecture" = every scene whose page has
    a ρ slider; else comma-separated scene names or page names)."""
    if not spec:
        return []
    from app.presets import scenes

    all_scenes = scenes()
    with_rho = {n: s for n, s in all_scenes.items() if "rho" in s.params and s.page not in ("home", "cifar")}
    names = list(with_rho) if spec == "lecture" else [x.strip() for x in spec.split(",") if x.strip()]
    urls = []
    for name in names:
        s = all_scenes.get(name)
        if s is None:  # a page name: its default view
            urls.append(f"/{name}")
            continue
        urls.append(f"/{s.page}?{urlencode(dict(s.params) | {'preset': s.name})}")
    return urls


def slider_grid(client: StreamlitClient, key: str = RHO_KEY) -> list[float]:
    """The values the ρ slider can take (its min, max and step, as the browser's slider snaps). A page whose ρ
    moves in the browser (the ρ chart component, key `rho_chart`): the grid its payload carries."""
    w = client.widget(key)
    if w is None or w.kind != "slider":
        grid, _ = rho_chart_state(client)
        return grid
    p = w.proto
    n = int(round((p.max - p.min) / p.step)) if p.step > 0 else 0
    return [round(p.min + i * p.step, 10) for i in range(n + 1)]


def rho_chart_state(client: StreamlitClient) -> tuple[list[float], float | None]:
    return client.rho_chart_state()


def rho_value(client: StreamlitClient) -> float | None:
    return client.rho()


def set_rho(client: StreamlitClient, rho: float):
    return client.set_rho(rho)


def next_rho(grid: list[float], now: float, mode: str, rng: random.Random, direction: int) -> tuple[float, int]:
    """The student's next ρ and direction: one step along the grid (reversing at its ends), or a
    different random grid value."""
    if not grid:
        return now, direction
    i = min(range(len(grid)), key=lambda j: abs(grid[j] - now))
    if mode == "random":
        choices = [g for j, g in enumerate(grid) if j != i]
        return rng.choice(choices), direction
    if not 0 <= i + direction < len(grid):
        direction = -direction
    return grid[i + direction], direction


class Student(User):
    """One student: open a scene's page, then change ρ `plan.changes` times with think time."""

    abstract = False
    plan: Plan | None = None  # set by run(); Plan.from_env() under Locust's own command line
    hall: Hall | None = None
    _counter = 0

    def __init__(self, environment):
        super().__init__(environment)
        cls = type(self)
        if cls.plan is None:
            cls.plan = Plan.from_env()
        if cls.hall is None:
            cls.hall = Hall(cls.plan)
        self.index = cls._counter
        cls._counter += 1
        self.rng = random.Random(self.plan.seed * 100003 + self.index)
        self.log = StudentLog(self.index)
        self.hall.logs.append(self.log)
        self.client = StreamlitClient(self.host, run_timeout=self.plan.run_timeout)

    # --------------------------------------------------------------- helpers
    def _fire(self, name: str, run: Run) -> None:
        self.environment.events.request.fire(
            request_type="WS", name=name, response_time=1000 * (run.seconds if run.ok else 0.0),
            response_length=run.bytes, exception=None if run.ok else RuntimeError(run.error), context={},
        )

    def _url(self) -> str:
        plan = self.plan
        base = plan.urls[self.index % len(plan.urls)] if plan.urls else "/"
        parts = urlsplit(base)
        params = dict(parse_qsl(parts.query))
        if plan.uncached:
            params["seed"] = str(plan.seed_base + self.index + 1)
        return f"{parts.path}?{urlencode(params)}" if params else parts.path

    def _open(self, url: str) -> bool:
        for _ in range(OPEN_TRIES):
            run = self.client.open(url)
            self._fire("open", run)
            self._note(run)
            if run.ok:
                self.log.opens.append(run.seconds)
                return True
            self.log.errors.append(f"open {url}: {run.error}")
            gevent.sleep(1.0)
        return False

    def _note(self, run: Run) -> None:
        if self.client.replica and (not self.log.replicas or self.log.replicas[-1] != self.client.replica):
            self.log.replicas.append(self.client.replica)

    # --------------------------------------------------------------- the lecture
    @task
    def lecture(self) -> None:
        plan, hall, log = self.plan, self.hall, self.log
        log.url = self._url()
        ok = self._open(log.url)
        grid = slider_grid(self.client) if ok else []
        if ok and not grid:
            log.errors.append(f"open {log.url}: no ρ slider (key {RHO_KEY!r}) on the page")
            ok = False
        if ok and plan.spread:  # start at a ρ of its own: students spread over the slider's steps
            start = grid[(self.index * 7) % len(grid)]  # 7 is prime to the grid sizes (61, 101): all steps used
            run = set_rho(self.client, start)
            self._note(run)
            if not run.ok:
                log.errors.append(f"start at ρ={start:g}: {run.error}")
        hall.mark_open()
        if plan.students < 10**9:
            hall.all_open.wait(timeout=plan.open_timeout * 3)
        direction = 1
        rho = rho_value(self.client) or 0.0
        changes = plan.changes if ok else 0
        for _ in range(changes):
            gevent.sleep(self.rng.uniform(0.5, 1.5) * plan.think)
            if self.client.ws is None:  # disconnected at the last change: come back as a browser does
                log.reconnects += 1
                run = self.client.reopen()
                self._note(run)
                if not run.ok:
                    log.errors.append(f"reconnect: {run.error}")
                    log.lost += 1
                    continue
                rho = rho_value(self.client) or rho
            rho, direction = next_rho(grid, rho, plan.rho_mode, self.rng, direction)
            t = time.perf_counter()
            hall.first_change = t if hall.first_change is None else min(hall.first_change, t)
            run = set_rho(self.client, rho)
            hall.last_change = time.perf_counter()
            self._fire("rho change", run)
            self._note(run)
            if run.ok:
                log.changes.append(run.seconds)
                log.last_delta.append(run.last_delta_s)
                log.rhos.append(rho)
            else:
                log.errors.append(f"ρ={rho:g}: {run.error}")
                log.lost += 1
                if self.client.ws is None:  # the browser reconnects at once, not at the next change
                    log.reconnects += 1
                    again = self.client.reopen()
                    self._note(again)
                    if not again.ok:
                        log.errors.append(f"reconnect: {again.error}")
        self.client.close()
        hall.mark_done()
        raise StopUser()


# --------------------------------------------------------------------------------------------------
# Running it as a script
# --------------------------------------------------------------------------------------------------


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(base_url: str, plan: Plan, spawn_rate: float = 20.0) -> dict:
    """Run `plan.students` students against `base_url` in this process; return the summary."""
    Student.plan, Student.hall, Student._counter = plan, Hall(plan), 0
    hall = Student.hall
    env = Environment(user_classes=[Student], host=base_url, events=events)
    runner = env.create_local_runner()
    wall0, cpu0 = time.perf_counter(), _cpu_s()
    runner.start(plan.students, spawn_rate=spawn_rate)
    hall.all_open.wait(timeout=plan.open_timeout + plan.students / spawn_rate)
    t_open = time.perf_counter() - wall0
    cpu_open = _cpu_s()
    budget = plan.changes * (1.5 * plan.think + plan.run_timeout) + 60
    hall.all_done.wait(timeout=budget)
    wall1, cpu1 = time.perf_counter(), _cpu_s()
    runner.quit()
    return summarize(hall, plan, wall=wall1 - wall0, t_open=t_open, cpu_total=cpu1 - cpu0,
                     cpu_changes=cpu1 - cpu_open, wall_changes=(wall1 - wall0) - t_open)


def summarize(hall: Hall, plan: Plan, *, wall: float, t_open: float, cpu_total: float, cpu_changes: float,
              wall_changes: float) -> dict:
    logs = hall.logs
    ch = [x for lg in logs for x in lg.changes]
    opens = [x for lg in logs for x in lg.opens]
    errors = [f"student {lg.index}: {e}" for lg in logs for e in lg.errors]
    span = (hall.last_change - hall.first_change) if hall.first_change and hall.last_change else float("nan")
    replicas: dict[str, int] = {}
    for lg in logs:
        for r in lg.replicas[:1]:
            replicas[r] = replicas.get(r, 0) + 1
    ms = lambda x: round(1000 * x, 1)  # noqa: E731
    return {
        "bench": "hall_load", "url": Student.host if hasattr(Student, "host") else "", "students": plan.students,
        "changes_per_student": plan.changes, "think_s": plan.think, "rho_mode": plan.rho_mode,
        "uncached": plan.uncached, "scenes": len(plan.urls),
        "changes": len(ch), "p50_ms": ms(percentile(ch, 50)), "p95_ms": ms(percentile(ch, 95)),
        "max_ms": ms(max(ch)) if ch else None,
        "errors": len(errors), "error_samples": errors[:10],
        "changes_per_s": round(len(ch) / span, 2) if span == span and span > 0 else None,
        "opens": len(opens), "open_p50_ms": ms(percentile(opens, 50)), "open_p95_ms": ms(percentile(opens, 95)),
        "open_phase_s": round(t_open, 1), "change_phase_s": round(wall_changes, 1), "wall_s": round(wall, 1),
        "generator_cpu_pct": round(100 * cpu_total / wall, 1) if wall > 0 else None,
        "generator_cpu_changes_pct": round(100 * cpu_changes / wall_changes, 1) if wall_changes > 0 else None,
        "generator_cpu_s": round(cpu_total, 1),
        "max_lost_per_student": max((lg.lost for lg in logs), default=0),
        "reconnects": sum(lg.reconnects for lg in logs),
        "students_on_replica": replicas,
        "students_that_switched_replica": sum(1 for lg in logs if len(lg.replicas) > 1),
        "students_that_switched_without_reconnect": sum(1 for lg in logs
                                                        if len(lg.replicas) > 1 and lg.reconnects == 0),
        "students_that_lost_more_than_one": {lg.index: lg.errors for lg in logs if lg.lost > 1},
        "load_avg": os.getloadavg()[0],
        "latencies_ms": [ms(x) for x in ch] if plan.raw else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8501/escape",
                    help="server URL; its path and query are the page every student opens unless --scenes is given")
    ap.add_argument("--students", type=int, default=20)
    ap.add_argument("--changes", type=int, default=6, help="ρ changes per student (default 6)")
    ap.add_argument("--think", type=float, default=4.0, help="mean think time T; pauses uniform in [0.5, 1.5]·T")
    ap.add_argument("--rho-mode", choices=("step", "random"), default="step")
    ap.add_argument("--same-start", action="store_true", help="all students start at the URL's ρ")
    ap.add_argument("--uncached", action="store_true", help="a seed of its own per student: every config is new")
    ap.add_argument("--seed-base", type=int, default=None,
                    help="first per-student seed with --uncached (default: from the clock, so runs differ)")
    ap.add_argument("--scenes", default="", help="'lecture' (every scene with a ρ slider) or comma-separated names")
    ap.add_argument("--spawn-rate", type=float, default=20.0, help="students that open their page per second")
    ap.add_argument("--run-timeout", type=float, default=60.0, help="seconds before a run counts as timed out")
    ap.add_argument("--seed", type=int, default=0, help="seed of the think times and random ρ")
    ap.add_argument("--json", action="store_true", help="print one JSON line (else a short report)")
    ap.add_argument("--raw", action="store_true", help="add every change's latency (ms) to the JSON")
    args = ap.parse_args(argv)

    parts = urlsplit(args.url)
    base = f"{parts.scheme}://{parts.netloc}"
    urls = scene_urls(args.scenes) or [parts.path + (f"?{parts.query}" if parts.query else "") or "/"]
    plan = Plan(changes=args.changes, think=args.think, rho_mode=args.rho_mode, spread=not args.same_start,
                uncached=args.uncached, urls=urls, students=args.students, run_timeout=args.run_timeout,
                seed=args.seed, raw=args.raw,
                seed_base=args.seed_base if args.seed_base is not None else int(time.time()) % 1_000_000 * 1000)
    out = run(base, plan, spawn_rate=args.spawn_rate)
    out["url"] = args.url
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['students']} students × {out['changes_per_student']} changes (think {out['think_s']:g} s) "
              f"on {args.url}: p50 {out['p50_ms']} ms, p95 {out['p95_ms']} ms, max {out['max_ms']} ms, "
              f"errors {out['errors']}, {out['changes_per_s']} changes/s; opens p50 {out['open_p50_ms']} ms; "
              f"generator CPU {out['generator_cpu_pct']}% of a core")
        for e in out["error_samples"]:
            print("  ", e)
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
