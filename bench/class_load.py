"""Class experiment under load (issue 14): N students join one room and each submits one run within a window,
while a projector refreshes its live chart. Prints its figures; BENCHMARKS.md quotes them.

    .venv/bin/python bench/class_load.py                       # starts `streamlit run app/main.py` itself (make app)
    .venv/bin/python bench/class_load.py --url http://127.0.0.1:8501 --store-url redis://:SECRET@127.0.0.1:6392/0
    .venv/bin/python bench/class_load.py --hall 2 --students 300 --window 60   # starts its own `make hall` (2 replicas)

Every student is a `bench/st_protocol.StreamlitClient` (the browser's own WebSocket protocol, no browser): it
opens /classroom?room=CODE (a new Streamlit session; the page puts the student id into the URL), presses the run
button (a trigger, as a click sends it), and waits for the run's last message. Students start at random times
spread over the first 60% of the window, 200 of them at most in flight together.

The projector is a client on /classroom?room=CODE&show=1 that reruns the live fragment every 1.5 s, as the
browser's fragment timer does; its refresh time is request → the fragment's last message ("projector refresh").
Staleness: the time from the last student's result to the projector showing every run.

The lecturer's room is opened through serve.classroom on the server's own store (the SQLite file this script
gives the server it starts, or --store-url / --sqlite for a running server). At the end the script reads the
store: every student who was told "Your run 1" must have exactly one stored run, and nothing else is stored.

Targets (issue 14): every result stored exactly once, projector p95 refresh ≤ 2 s, 0 errors.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.st_protocol import FINISHED_OK, StreamlitClient  # noqa: E402
from serve import classroom as cl  # noqa: E402
from serve.roomstore import open_store  # noqa: E402

COUNT = re.compile(r"\*\*(\d+) runs? from (\d+) students?\*\*")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(x for x in xs if x == x)  # NaN (a run that never answered) is counted as an error, not a time
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def click(c: StreamlitClient, label_prefix: str):
    """Press the button whose label starts with `label_prefix`, as a browser click does (a trigger value in the
    rerun's widget states, sent once)."""
    buttons = [el.button for el in c.elements("button") if el.button.label.startswith(label_prefix)]
    if not buttons:
        return None
    wid = buttons[0].id
    c.widget_values[wid] = ("trigger_value", True)
    try:
        return c.rerun()
    finally:
        c.widget_values.pop(wid, None)


def watch(c: StreamlitClient, out: dict, stop: threading.Event, every: float) -> None:
    """After their run a student keeps the page open: their chart's fragment reruns every `every` seconds (the
    page's STUDENT_REFRESH_S), as the browser's timer does, until the benchmark ends."""
    frag = next((f for _, (el, f, _) in c._elements.items() if el is not None
                 and el.WhichOneof("type") == "plotly_chart" and f), "")
    while frag and not stop.wait(every):
        r = c._rerun(fragment_id=frag)
        out["watch_s"].append(r.seconds)
        if not r.ok:  # counted; then the browser reconnects to the same URL and goes on watching
            out["watch_errors"] += 1
            if not c.reopen().ok:
                return
            frag = next((f for _, (el, f, _) in c._elements.items() if el is not None
                         and el.WhichOneof("type") == "plotly_chart" and f), "")


def student(base: str, code: str, start_at: float, timeout: float, stop: threading.Event | None = None,
            every: float = 5.0) -> dict:
    """One student: open the room, press run, read the result. A dropped connection is what a browser would
    see when a replica goes away: like the browser, the student reconnects to the same URL (the student id is
    in it) up to 3 times, and presses run again only if the page still offers it (no stored run)."""
    out = {"ok": False, "error": "", "sid": "", "join_s": float("nan"), "run_s": float("nan"), "done_at": 0.0,
           "reconnects": 0, "watch_s": [], "watch_errors": 0}
    time.sleep(max(0.0, start_at - time.monotonic()))
    c = StreamlitClient(base, run_timeout=timeout)
    try:
        run = c.open("classroom", {"room": code})
        out["join_s"] = run.seconds
        for attempt in range(4):
            if run.ok:
                out["sid"] = c.query_params().get("sid", out["sid"])
                texts = c.texts()
                if any(t.startswith("Your run 1") or t.startswith("You have done your") for t in texts):
                    out["ok"], out["done_at"], out["error"] = True, time.monotonic(), ""
                    if stop is not None:
                        watch(c, out, stop, every)
                    return out
                if out["run_s"] == out["run_s"] and not out["reconnects"]:  # pressed, answered, and no result
                    out["error"] = "no result: " + " | ".join(t for t in texts if "run" in t.lower())[:200]
                    return out
                pressed = click(c, "Run (1 of")
                if pressed is None:
                    out["error"] = "no run button: " + " | ".join(t for t in texts if t)[:200]
                    return out
                if out["run_s"] != out["run_s"]:  # NaN: the first press
                    out["run_s"] = pressed.seconds
                run = pressed
                if run.ok:
                    continue  # read the result above
            out["error"] = f"{'join' if out['sid'] == '' else 'run'}: {run.error}"
            if attempt == 3 or not any(w in run.error for w in ("disconnected", "timeout", "connect")):
                return out
            out["reconnects"] += 1
            time.sleep(1.0)
            run = c.reopen()
        return out
    finally:
        c.close()


def projector(base: str, code: str, every: float, stop: threading.Event, log: list, want: int) -> None:
    """Rerun the live fragment every `every` seconds (the browser's timer); log (time, refresh s, runs, ok)."""
    c = StreamlitClient(base, run_timeout=30)

    def chart_fragment() -> str:
        return next((f for _, (el, f, _) in c._elements.items() if el is not None
                     and el.WhichOneof("type") == "plotly_chart" and f), "")

    run = c.open("classroom", {"room": code, "show": "1"})
    for _ in range(5):  # a refused or dropped first load is retried, as the browser does
        if run.ok:
            break
        log.append((time.monotonic(), run.seconds, -1, False))
        time.sleep(1.0)
        run = c.reopen()
    frag = chart_fragment()
    while not stop.is_set():
        t = time.monotonic()
        r = c._rerun(fragment_id=frag)
        runs = next((int(m.group(1)) for m in map(COUNT.search, c.texts()) if m), -1)
        log.append((time.monotonic(), r.seconds, runs, r.ok and r.status in FINISHED_OK))
        if not r.ok and c.reopen().ok:  # counted above; the browser reconnects and the timer goes on
            frag = chart_fragment()
        stop.wait(max(0.0, every - (time.monotonic() - t)))
    c.close()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (/proc)."""
    from bench._browser import _process_tree
    total = 0
    for p in _process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cost(server, code: str, n: int = 30) -> None:
    """Server CPU per action, one client at a time (no queueing in it): a student's page load + run, and a
    refresh of the projector's and of a student's live chart (once the room holds n runs)."""
    base = server.base_url
    c0 = _cpu_s(server.proc.pid)
    for _ in range(n):
        c = StreamlitClient(base)
        c.open("classroom", {"room": code})
        click(c, "Run (1 of")
        c.close()
    join_run = (_cpu_s(server.proc.pid) - c0) / n
    out = {}
    for who, params in (("projector", {"room": code, "show": "1"}), ("student", {"room": code})):
        c = StreamlitClient(base)
        c.open("classroom", params)
        frag = next(f for _, (el, f, _) in c._elements.items() if el is not None
                    and el.WhichOneof("type") == "plotly_chart" and f)
        for _ in range(5):
            c._rerun(fragment_id=frag)
        c0 = _cpu_s(server.proc.pid)
        for _ in range(40):
            c._rerun(fragment_id=frag)
        out[who] = (_cpu_s(server.proc.pid) - c0) / 40
        c.close()
    print(f"server CPU per student page load + run   {1000 * join_run:.0f} ms (mean of {n})")
    print(f"server CPU per projector chart refresh   {1000 * out['projector']:.1f} ms "
          f"(mean of 40, {n} runs in the room)")
    print(f"server CPU per student chart refresh     {1000 * out['student']:.1f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--students", type=int, default=200)
    ap.add_argument("--window", type=float, default=60.0, help="seconds in which every student joins and runs")
    ap.add_argument("--kind", default="escape", choices=list(cl.KINDS))
    ap.add_argument("--url", default="", help="a running app (default: start `streamlit run app/main.py` here)")
    ap.add_argument("--store-url", default="", help="the running app's Redis store (SAMLAB_STORE_URL)")
    ap.add_argument("--sqlite", default="", help="the running app's SQLite file (SAMLAB_CLASSROOM_DB)")
    ap.add_argument("--refresh", type=float, default=1.5, help="the projector's fragment period (the page's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-watch", dest="watch", action="store_false",
                    help="students close the page after their run (default: they keep it open, as in a lecture)")
    ap.add_argument("--watch-every", type=float, default=5.0, help="a student's chart refresh (the page's)")
    ap.add_argument("--cost", action="store_true", help="only measure server CPU per action (starts its own server)")
    ap.add_argument("--hall", type=int, default=0,
                    help="start serve/hall.py's Hall with this many replicas (private ports, its own store, the "
                         "health checks and limits of serve/haproxy.cfg.tmpl) and run against it")
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)

    server = hall = None
    if args.hall:
        from serve.hall import Hall, HallConfig, free_ports

        base = free_ports(4 + args.hall)
        hall = Hall(HallConfig(replicas=args.hall, port=base, bind="127.0.0.1", replica_port=base + 4,
                               cache_port=base + 1, store_port=base + 2, worker=False, warm=False,
                               store_dir=tempfile.mkdtemp(prefix="class-load-store-")), out=sys.stderr).start()
        args.url, args.store_url = hall.url, hall.cfg.store_url
    if not args.url:
        from bench._browser import StreamlitServer
        args.sqlite = args.sqlite or tempfile.mktemp(prefix="class-load-", suffix=".sqlite")
        os.environ["SAMLAB_CLASSROOM_DB"] = args.sqlite  # the server inherits it
        os.environ.pop("SAMLAB_STORE_URL", None)
        server = StreamlitServer("app/main.py").start()
        args.url = server.base_url
    try:
        store = open_store(args.store_url or "", args.sqlite or None)
        exp = cl.make_experiment(args.kind)
        room = cl.open_room(store, exp, minutes=30, cap=1)
        print(f"room {room.code} ({args.kind}) on {store.describe()}; {args.students} students within "
              f"{args.window:.0f} s against {args.url}" + (f" (a hall of {args.hall} replicas)" if hall else ""),
              flush=True)
        warm = StreamlitClient(args.url)  # the first page load imports the page's modules: not the students' cost
        warm.open("classroom", {"room": room.code, "show": "1"})
        warm.close()
        if args.cost:
            if server is None:
                raise SystemExit("--cost measures the server this script starts: leave out --url")
            cost(server, room.code)
            return 0

        stop, log = threading.Event(), []
        proj = threading.Thread(target=projector, args=(args.url, room.code, args.refresh, stop, log, args.students))
        proj.start()
        t0 = time.monotonic()
        starts = sorted(t0 + rnd.uniform(0, 0.6 * args.window) for _ in range(args.students))
        watching = threading.Event()  # set at the end: the students who keep their page open stop watching
        with ThreadPoolExecutor(args.students) as pool:
            futures = [pool.submit(student, args.url, room.code, s, args.window,
                                   watching if args.watch else None, args.watch_every) for s in starts]
            # every student has run (or failed) when the store holds a run per student or the window is over
            while time.monotonic() < t0 + args.window + 30 and not all(f.done() for f in futures):
                if store.total_runs(room.code, 0) >= args.students:
                    break
                time.sleep(0.5)
            time.sleep(2 * args.refresh)  # the projector's next refresh shows the last run
            stored_now = store.total_runs(room.code, 0)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not (log and log[-1][2] >= stored_now):
                time.sleep(0.2)
            watching.set()
            stop.set()
            results = [f.result() for f in futures]
        t_students = max((r["done_at"] for r in results if r["ok"]), default=time.monotonic()) - t0
        last_done = t0 + t_students
        proj.join(30)

        stored = cl.room_runs(store, store.get_room(room.code))
        keys = [(r.student, r.run_index) for r in stored]
        ok_sids = {r["sid"] for r in results if r["ok"]}
        errors = [r["error"] for r in results if not r["ok"]]
        dupes = len(keys) - len(set(keys))
        missing = ok_sids - {s for s, _ in keys}
        extra = {s for s, _ in keys} - ok_sids
        seen_all = next((t for t, _, n, ok in log if ok and n >= len(ok_sids)), None)
        refresh = [s for _, s, _, ok in log if ok]
        proj_errors = sum(1 for _, _, _, ok in log if not ok)
        runs_s = [r["run_s"] for r in results if r["ok"] and r["run_s"] == r["run_s"]]
        joins_s = [r["join_s"] for r in results if r["ok"] and r["join_s"] == r["join_s"]]

        print(f"students ok            {len(ok_sids)} / {args.students} in {t_students:.1f} s "
              f"(window {args.window:.0f} s)")
        print(f"student errors         {len(errors)}" + (f"  e.g. {errors[0]}" if errors else ""))
        dropped = [r for r in results if r["reconnects"]]
        print(f"dropped connections    {len(dropped)} students reconnected ({sum(r['ok'] for r in dropped)} of them "
              "then saw their stored run)")
        print(f"stored runs            {len(stored)}  distinct {len(set(keys))}  duplicates {dupes}  "
              f"missing {len(missing)}  unexpected {len(extra)}")
        by_replica: dict[str, int] = {}
        for r in stored:
            by_replica[r.replica or "-"] = by_replica.get(r.replica or "-", 0) + 1
        print("runs by replica        " + ", ".join(f"{k} {v}" for k, v in sorted(by_replica.items()))
              + ("  (- = no SAMLAB_REPLICA: a single server)" if "-" in by_replica else ""))
        print(f"join  (page load) s    p50 {pct(joins_s, 50):.2f}  p95 {pct(joins_s, 95):.2f}  "
              f"max {max(joins_s, default=0):.2f}")
        print(f"run   (click→result) s p50 {pct(runs_s, 50):.2f}  p95 {pct(runs_s, 95):.2f}  "
              f"max {max(runs_s, default=0):.2f}")
        watch_s = [x for r in results for x in r["watch_s"]]
        watch_err = sum(r["watch_errors"] for r in results)
        if args.watch:
            print(f"student chart refresh  p50 {pct(watch_s, 50):.2f}  p95 {pct(watch_s, 95):.2f}  ({len(watch_s)} "
                  f"refreshes by students keeping the page open, every {args.watch_every:g} s; {watch_err} errors)")
        print(f"projector refresh s    p50 {pct(refresh, 50):.2f}  p95 {pct(refresh, 95):.2f}  max "
              f"{max(refresh, default=0):.2f}  ({len(refresh)} refreshes, {proj_errors} errors)")
        if seen_all is not None:
            print(f"projector staleness    {max(0.0, seen_all - last_done):.2f} s from the last result to "
                  f"'{len(ok_sids)} runs' on the projector")
        else:
            print("projector staleness    the projector never showed every run")
        if refresh:
            print(f"mean refresh           {statistics.mean(refresh):.2f} s")
        load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
        print(f"load average           {' '.join(load)}")
        good = (not errors and not dupes and not missing and not extra and proj_errors == 0 and watch_err == 0
                and pct(refresh, 95) <= 2.0 and seen_all is not None)
        print("targets                " + ("MET" if good else "NOT MET"))
        return 0 if good else 1
    finally:
        if server is not None:
            server.stop()
        if hall is not None:
            hall.stop()


if __name__ == "__main__":
    raise SystemExit(main())
