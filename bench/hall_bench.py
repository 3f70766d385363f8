"""Hall measurements for issue 12 (BENCHMARKS.md, "A whole lecture hall"): server CPU per ρ change, and
the load runs with protocol students (bench/hall_load.py) against one server or a hall behind HAProxy.

    .venv/bin/python bench/hall_bench.py cpu [--pages escape,valley] [--changes 40] [--profile] [--uncached]
    .venv/bin/python bench/hall_bench.py validate          # bench/load.py's phase 1, without browsers
    .venv/bin/python bench/hall_bench.py baseline --old DIR  # the issue's table, before/after the CPU cuts
    .venv/bin/python bench/hall_bench.py capacity          # uncached configs, 1 and 2 replicas, interleaved
    .venv/bin/python bench/hall_bench.py hall --warm-scenes escape,valley,zhu_breaks,valley_schedules --then-failover

`cpu`: one `streamlit run app/main.py` (as `make app`), one protocol student (bench/st_protocol.py).
For each page: open it at its default view, move ρ over `--warm` slider steps once (so each config
is computed and cached), then make `--changes` ρ changes among those cached steps, reading the
server's CPU time (/proc/<pid>/stat, 10 ms ticks) around each block of 4 changes. Prints the median
over the blocks of the CPU ms per change, per page (and the mean). This is the server's
work for one student's redraw of a cached config: running the page script (fragment), building the
figures, serialising them, sending them. `--profile` also samples the server with py-spy during the
changes and prints the functions with the most samples (inclusive), to see where the time goes.
`--uncached`: every change goes to a ρ step not visited before (a computation per change).

`capacity`, `hall`: halls of serve/hall.py (`make hall`) on private ports and a private store folder,
without the GPU worker, so they can run beside another hall.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench._browser import REPO, StreamlitServer, _process_tree, percentile  # noqa: E402
from bench.st_protocol import StreamlitClient  # noqa: E402

RHO_PAGES = ("escape", "valley", "playground", "psam", "sam_step", "cifar")


TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far, in nanoseconds.

    From /proc/<pid>/stat, which counts the threads that have already exited (Streamlit starts a new
    ScriptRunner thread for many reruns; per-thread counters would lose them). Its unit is a clock tick
    (10 ms), so `page_cpu` reads it around blocks of changes, not single ones."""
    total = 0.0
    for p in _process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * TICK_NS  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total


def grid_of(client: StreamlitClient) -> list[float]:
    w = client.widget("rho")
    p = w.proto
    n = int(round((p.max - p.min) / p.step))
    return [round(p.min + i * p.step, 10) for i in range(n + 1)]


def page_cpu(server: StreamlitServer, page: str, changes: int, warm: int, rng: random.Random, block: int = 4,
             profile_s: float = 0.0, uncached: bool = False) -> dict:
    """Server CPU ms per ρ change on `page` for cached configs (see the module docstring)."""
    c = StreamlitClient(server.base_url, run_timeout=120)
    run = c.open(page)
    if not run.ok:
        return {"page": page, "error": run.error}
    if c.widget("rho") is None:
        return {"page": page, "error": "no ρ slider"}
    grid = grid_of(c)
    start = c.slider_value("rho")
    i0 = min(range(len(grid)), key=lambda j: abs(grid[j] - start))
    steps = [grid[(i0 + k) % len(grid)] for k in range(1, warm + 1)]
    fresh = [grid[(i0 + k) % len(grid)] for k in range(warm + 1, len(grid))]  # never visited: uncached
    if uncached:
        changes = min(changes, len(fresh) // block * block)
    for rho in [] if uncached else steps:  # compute and cache each config once
        r = c.set_widget("rho", rho)
        if not r.ok:
            return {"page": page, "error": f"warm-up ρ={rho}: {r.error}"}
    ms, wall, errors = [], [], 0  # ms: mean CPU per change of each block of `block` changes
    spy = pyspy_start(server.proc.pid, profile_s) if profile_s > 0 else None
    prev = steps[-1]
    for _ in range(max(1, changes // block)):
        time.sleep(0.1)  # let the server finish the previous run's bookkeeping
        a = cpu_ns(server.proc.pid)
        for _ in range(block):
            rho = fresh.pop(0) if uncached else rng.choice([s for s in steps if s != prev])
            prev = rho
            r = c.set_widget("rho", rho)
            if not r.ok:
                errors += 1
            wall.append(1000 * r.seconds)
        time.sleep(0.05)
        ms.append((cpu_ns(server.proc.pid) - a) / 1e6 / block)
    c.close()
    if profile_s > 0:
        for f, share in pyspy_top(spy):
            print(f"    {share:5.1f}%  {f}", flush=True)
    return {"page": page, "changes": len(wall), "errors": errors,
            "cpu_median_ms": round(statistics.median(ms), 1) if ms else None,  # median over the blocks
            "cpu_mean_ms": round(statistics.fmean(ms), 1) if ms else None,
            "cpu_block_max_ms": round(max(ms), 1) if ms else None,
            "wall_median_ms": round(statistics.median(wall), 1) if wall else None}


def pyspy_start(pid: int, seconds: float) -> tuple[subprocess.Popen, Path] | None:
    """Start sampling `pid` with py-spy for `seconds` (200 samples/s) into a raw (folded) file."""
    exe = shutil.which("py-spy", path=str(REPO / ".venv" / "bin")) or shutil.which("py-spy")
    if exe is None:
        return None
    out = Path(tempfile.mkdtemp()) / "profile.txt"
    proc = subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "-f", "raw",
                             "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, out


def pyspy_top(started, top: int = 40) -> list[tuple[str, float]]:
    """Wait for py-spy; the functions present in the most busy samples (inclusive share). A sample is
    busy when the stack runs the app's own code (pages/, app/, core/) or a script run's serialisation."""
    if started is None:
        return [("py-spy not installed (requirements-dev.txt)", 0.0)]
    proc, out = started
    proc.wait(timeout=600)
    if not out.exists():
        return [("py-spy wrote no profile (ptrace not allowed?)", 0.0)]
    counts: Counter[str] = Counter()
    busy = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        if not any(("pages/" in f or "app/" in f or "core/" in f or "ScriptRunner" in f or "serialize" in f)
                   for f in frames):
            continue  # idle threads (the event loop waiting)
        busy += int(n)
        for f in set(frames):
            counts[f] += int(n)
    return [(f, round(100 * n / busy, 1)) for f, n in counts.most_common(top) if n < busy] if busy else []


def cmd_cpu(args) -> dict:
    rng = random.Random(args.seed)
    pages = [p for p in args.pages.split(",") if p]
    results = []
    server = (StreamlitServer(Path(args.code) / "app" / "main.py", cwd=Path(args.code)) if args.code
              else StreamlitServer())
    with server:
        for page in pages:
            res = page_cpu(server, page, args.changes, args.warm, rng, profile_s=args.profile_seconds * args.profile,
                           uncached=args.uncached)
            res["uncached"] = args.uncached
            results.append(res)
            print(json.dumps(res), flush=True)
    return {"bench": "hall_cpu", "pages": results, "load_avg": os.getloadavg()[0]}


# --------------------------------------------------------------------------------------------------
# Load runs: bench/hall_load.py (a subprocess: Locust patches gevent) against one server or a hall
# --------------------------------------------------------------------------------------------------

def uptime() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def hall_load(url: str, students: int, *extra: str, timeout: float = 1800) -> dict:
    """One bench/hall_load.py run; its JSON summary (with the load average before it)."""
    load = uptime()
    cmd = [sys.executable, str(REPO / "bench" / "hall_load.py"), "--url", url, "--students", str(students),
           "--json", *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not lines:
        return {"error": f"hall_load failed (exit {out.returncode}): {out.stderr[-600:]}", "students": students}
    res = json.loads(lines[-1])
    res["load_before"] = load
    return res


def rss_mb(pid: int) -> float:
    total = 0
    for p in _process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class RssSampler:
    """Samples the RSS of named processes every `every` seconds in a thread."""

    def __init__(self, pids: dict[str, int], every: float = 5.0):
        import threading

        self.pids, self.every, self.series = pids, every, []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.series.append([round(time.perf_counter() - self._t0)]
                               + [round(rss_mb(p)) for p in self.pids.values()])
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def start_hall(replicas: int, port: int, cache_port: int, store_port: int, replica_port: int, warm: bool = False):
    """serve/hall.py's Hall on private ports and a private store folder (other halls may run beside it)."""
    from serve.hall import Hall, HallConfig

    cfg = HallConfig(replicas=replicas, port=port, bind="127.0.0.1", replica_port=replica_port, cache_port=cache_port,
                     store_port=store_port, store_dir=tempfile.mkdtemp(prefix="hall-bench-store-"), worker=False,
                     warm=warm)
    return Hall(cfg, out=sys.stderr)


def row(tag: str, r: dict) -> str:
    keys = ("students", "p50_ms", "p95_ms", "max_ms", "errors", "changes", "changes_per_s", "open_p50_ms",
            "generator_cpu_pct", "generator_cpu_changes_pct", "max_lost_per_student", "load_before")
    return f"{tag}: " + json.dumps({k: r.get(k) for k in keys} | ({"error": r["error"]} if "error" in r else {}))


def warm_single(base_url: str, page: str = "escape") -> None:
    """Visit every step of the page's ρ slider once (default view), so the configs are cached."""
    c = StreamlitClient(base_url, run_timeout=300)
    c.open(page)
    for rho in grid_of(c):
        c.set_widget("rho", rho)
    c.close()


def cmd_baseline(args) -> dict:
    """The issue's table: one process (`make app`), the escape page, 6 changes, T = 4 s, for the code before
    the CPU cuts (`--old DIR`, an export of that commit) and now, interleaved, configs cached beforehand."""
    servers = {"now": StreamlitServer()}
    if args.old:
        servers = {"before": StreamlitServer(Path(args.old) / "app" / "main.py", cwd=Path(args.old))} | servers
    rows = []
    try:
        for s in servers.values():
            s.start()
        for name, s in servers.items():
            warm_single(s.base_url)
            print(f"{name}: warmed, RSS {s.rss_mb():.0f} MiB", flush=True)
        for n in [int(x) for x in args.students.split(",")]:
            for name, s in servers.items():
                r = hall_load(f"{s.base_url}/escape", n, "--changes", str(args.changes), "--think", str(args.think))
                r["code"] = name
                rows.append(r)
                print(row(f"{name} {n}", r), flush=True)
    finally:
        for s in servers.values():
            s.stop()
    return {"bench": "hall_baseline", "rows": rows}


def cmd_capacity(args) -> dict:
    """Uncached configs (a seed per student): 1 and 2 replicas behind HAProxy, interleaved, for rising
    numbers of students at think time T; the offered rate is about students / T."""
    halls = {1: start_hall(1, 8701, 6701, 6702, 8711), 2: start_hall(2, 8801, 6801, 6802, 8811)}
    rows = []
    try:
        for h in halls.values():
            h.start()
        for h in halls.values():  # the first page load imports torch: not part of the measurement
            for name in h.cfg.replica_names():
                port = h.cfg.replica_ports()[h.cfg.replica_names().index(name)]
                StreamlitClient(f"http://127.0.0.1:{port}").open("escape")
        for n in [int(x) for x in args.students.split(",")]:
            for reps, h in halls.items():
                r = hall_load(f"{h.url}/escape", n, "--changes", str(args.changes), "--think", str(args.think),
                              "--uncached")
                r["replicas"] = reps
                rows.append(r)
                print(row(f"{reps} replica(s) {n}", r), flush=True)
    finally:
        for h in halls.values():
            h.stop()
    best = {}
    for reps in halls:
        ok = [r for r in rows if r.get("replicas") == reps and r.get("p95_ms") and r["p95_ms"] <= 1000
              and r["errors"] == 0]
        best[reps] = max((r["changes_per_s"] for r in ok), default=None)
    print(f"capacity (changes/s at p95 ≤ 1 s): {best}", flush=True)
    return {"bench": "hall_capacity", "rows": rows, "best": best}


def cmd_hall(args) -> dict:
    """200 students on the lecture scenes, T = 4 s, 2 replicas, ρ on slider steps; RSS of each replica
    sampled; with --kill-after S one replica is killed S seconds into the changes (failover)."""
    h = start_hall(args.replicas, 8901, 6901, 6902, 8911)
    res = {}
    try:
        h.start()
        if args.warm_scenes:
            env = dict(os.environ, SAMLAB_CACHE_URL=h.cfg.cache_url)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "serve.warm", "--scenes", args.warm_scenes], cwd=REPO, env=env,
                           capture_output=True, timeout=1800)
            print(f"warm-up of {args.warm_scenes}: {time.perf_counter() - t:.0f} s", flush=True)
        pids = {n: h.procs[n].popen.pid for n in h.cfg.replica_names()}
        runs = [args.kill_after] if not args.then_failover else [0.0, args.kill_after]
        res = {"runs": []}
        for i, kill_after in enumerate(runs):
            if i == 1 and not kill_after:  # ~10 s into the changes: the first run's page-open phase, plus 10 s
                kill_after = res["runs"][0].get("open_phase_s", 30.0) + 10.0
            killer = None
            if kill_after:
                import signal
                import threading

                victim_name = h.cfg.replica_names()[0]

                def kill(victim_name=victim_name):
                    victim = h.procs[victim_name].popen.pid
                    print(f"killing replica {victim_name} (pid {victim})", flush=True)
                    os.killpg(victim, signal.SIGKILL)
                # the students open their pages first (spawn rate 10/s), then change ρ: kill during the changes
                killer = threading.Timer(kill_after, kill)
            with RssSampler(pids, every=5) as rss:
                if killer:
                    killer.start()
                r = hall_load(h.url + "/", args.students, "--changes", str(args.changes), "--think", str(args.think),
                              "--scenes", args.scenes, "--rho-mode", "random", "--spawn-rate", "10")
            r["killed_after_s"] = kill_after
            r["rss_mb_series"] = {"columns": ["s", *pids], "rows": rss.series}
            res["runs"].append({k: v for k, v in r.items() if k != "latencies_ms"})
            print(row(f"hall {args.students}{' with a replica killed' if kill_after else ''}", r), flush=True)
            print(f"  replicas {r.get('students_on_replica')}, switched {r.get('students_that_switched_replica')}, "
                  f"reconnects {r.get('reconnects')}, errors {r.get('error_samples')}", flush=True)
            print(f"  RSS (MiB) every 5 s, columns {['s', *pids]}: {rss.series}", flush=True)
    finally:
        h.stop()
    return {"bench": "hall_run", **res}


def cmd_validate(args) -> dict:
    """bench/load.py's phase 1 without browsers: the same students (10), pages (escape, then valley, all
    students together on each), changes and think time, on a fresh `make app` server; latencies of both
    pages pooled. Compare with bench/load.py's 'until the server's last message' column."""
    out = {}
    with StreamlitServer() as server:
        for page in ("escape", "valley"):  # the first load imports torch: not part of the measurement
            StreamlitClient(server.base_url, run_timeout=300).open(page)
        lat = []
        for page in ("escape", "valley"):
            r = hall_load(f"{server.base_url}/{page}", args.students, "--changes", str(args.changes), "--think",
                          str(args.think), "--raw")
            print(row(page, r), flush=True)
            lat += r.get("latencies_ms") or []
            out[page] = {k: v for k, v in r.items() if k != "latencies_ms"}
    out["pooled"] = {"n": len(lat), "p50_ms": round(percentile(lat, 50), 1), "p95_ms": round(percentile(lat, 95), 1)}
    print(f"pooled: {out['pooled']}", flush=True)
    return {"bench": "hall_validate", **out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cpu", help="server CPU per ρ change of a cached config, per page")
    c.add_argument("--pages", default=",".join(RHO_PAGES))
    c.add_argument("--changes", type=int, default=40)
    c.add_argument("--warm", type=int, default=6, help="slider steps visited first (the cached configs)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--profile", action="store_true", help="sample the server with py-spy during the changes")
    c.add_argument("--uncached", action="store_true", help="every change to a ρ step not visited before")
    c.add_argument("--code", default="", help="run another copy of the code (a git archive of an older commit)")
    c.add_argument("--profile-seconds", type=float, default=6.0)
    b = sub.add_parser("baseline", help="the issue's table: one process, escape page, cached configs")
    b.add_argument("--students", default="20,40,80,120,200")
    b.add_argument("--changes", type=int, default=6)
    b.add_argument("--think", type=float, default=4.0)
    b.add_argument("--old", default="", help="a folder with the code before the CPU cuts (git archive)")
    k = sub.add_parser("capacity", help="uncached configs, 1 and 2 replicas behind HAProxy")
    k.add_argument("--students", default="4,8,12,16,24")
    k.add_argument("--changes", type=int, default=6)
    k.add_argument("--think", type=float, default=2.0)
    h = sub.add_parser("hall", help="200 students, lecture scenes, 2 replicas (--kill-after: failover)")
    h.add_argument("--students", type=int, default=200)
    h.add_argument("--changes", type=int, default=6)
    h.add_argument("--think", type=float, default=4.0)
    h.add_argument("--replicas", type=int, default=2)
    h.add_argument("--scenes", default="escape,valley,zhu_breaks,valley_schedules")
    h.add_argument("--warm-scenes", default="", help="run serve/warm.py for these scenes first")
    h.add_argument("--kill-after", type=float, default=0.0, help="kill replica r1 this many seconds into the run")
    h.add_argument("--then-failover", action="store_true", help="a second run in the same hall, killing r1")
    v = sub.add_parser("validate", help="bench/load.py's phase 1 (10 students) with protocol students")
    v.add_argument("--students", type=int, default=10)
    v.add_argument("--changes", type=int, default=10)
    v.add_argument("--think", type=float, default=0.0)
    args = ap.parse_args(argv)
    if args.cmd == "validate":
        out = cmd_validate(args)
    elif args.cmd == "cpu":
        out = cmd_cpu(args)
    elif args.cmd == "baseline":
        out = cmd_baseline(args)
    elif args.cmd == "capacity":
        out = cmd_capacity(args)
    else:
        out = cmd_hall(args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
