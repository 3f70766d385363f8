"""A soak of the lecture hall (issue 19, "an hour with nothing lost"): `make hall`'s own Hall, protocol students
for a long time, the RSS of each replica and the memory of both Redis sampled, one replica and the store Redis
killed with SIGKILL on the way, and at the end a check that every run a student was told is stored is stored.

    nice -n 10 .venv/bin/python bench/hall_soak.py --students 100 --minutes 60 --json soak.json    # the long run
    nice -n 10 .venv/bin/python bench/hall_soak.py --students 20 --minutes 3                       # a short check

What runs: serve.hall.Hall with 2 replicas (as `make hall`: the secret, the limits, the fsync-always store), on
private ports and a private store folder, without the GPU worker and without the full warm-up; serve/warm.py
warms `--warm-scenes` first, so part of the ρ changes are on warmed configs. Then each student (a thread with
its own bench/st_protocol.StreamlitClient, like a browser tab) loops until the end, with think times drawn
uniformly from [0.5, 1.5] × --think, doing one of:

* `rho_warm` (45%): move ρ one step on the warmed scene it has open (escape: its ρ chart or slider);
* `rho_cold` (20%): move ρ on the playground with a seed of its own (its ρ is a server slider: every new ρ is a
  simulation nothing cached; the escape and valley pages compute every ρ step when they open and move ρ in the
  browser, so their cold cost is a page load, which `page_load` covers);
* `page_load` (20%): open a lecture page afresh (a new session), as a student following a link;
* `class_run` (15%): join the class experiment's room as a new student and press run (bench/class_load.student);
  a student who is shown "Your run 1" has been TOLD their run is stored.

A failed action is an error (kind, time, message); the student then reconnects (re-opens its URL), as the
browser does. Between actions a student's two tabs answer the server's WebSocket pings (every few seconds, as
a browser does on its own; an idle protocol client would otherwise be closed by the server's ping timeout), and a
tab whose connection closed meanwhile (its replica was killed) reconnects at once, as the browser's does: that
is a reconnect, not an error; the action in flight when a replica dies is the rerun a student loses. Every
--sample seconds (30) the harness writes the RSS of each replica's process tree, the cache and store Redis'
INFO memory (used_memory, maxmemory), the load average and the counts so far. At
--kill-replica-at (fraction of the run) replica r1 gets SIGKILL (the hall restarts it, its students reconnect
to r2); at --kill-store-at the store Redis gets SIGKILL (the hall restarts it and it reads its append-only
file, `appendfsync always`). After the store is back, and again at the end, every run a student was told is
stored must be in the store (serve.classroom.room_runs); errors within --window seconds after a kill are
reported apart from the others.

Prints a summary (errors by kind and by window, lost reruns per student at the replica kill, RSS per replica
at each sample and its slope after --settle-min minutes in MiB/min, Redis memory, the store check) and writes
everything to --json. Exit status 0 when the targets hold: 0 errors outside the kill windows, ≤ 1 lost action
per student at the replica kill, every told run stored, RSS slope ≤ 1 MiB/min, the cache within maxmemory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.class_load import student as class_student  # noqa: E402
from bench.hall_bench import rss_mb  # noqa: E402
from bench.st_protocol import StreamlitClient  # noqa: E402

ACTIONS = (("rho_warm", 0.45), ("rho_cold", 0.20), ("page_load", 0.20), ("class_run", 0.15))
PAGES = ("escape", "valley", "psam", "home")


class Soak:
    def __init__(self, args, hall, room_code: str):
        self.args, self.hall, self.room = args, hall, room_code
        self.t0 = time.monotonic()
        self.end = self.t0 + args.minutes * 60
        self.lock = threading.Lock()
        self.errors: list[dict] = []
        self.counts = {a: 0 for a, _ in ACTIONS}
        self.told: list[tuple[float, str]] = []  # (time, student id) of runs the page said are stored
        self.samples: list[dict] = []
        self.kills: list[dict] = []
        self.store_checks: list[dict] = []
        self.reconnects = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def keepalive(self, c: StreamlitClient, i: int) -> None:
        """Answer pending pings on c's WebSocket (websocket-client answers a ping when it reads it); a closed
        connection is reopened at once, as the browser does (counted as a reconnect)."""
        import websocket

        if c.ws is None:
            return
        try:
            c.ws.settimeout(0.01)
            while True:
                c.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return
        except Exception:  # closed by the server (a killed replica): the browser reconnects at once
            with self.lock:
                self.reconnects += 1
            run = c.reopen()
            if not run.ok:
                self.error(i, "reconnect", run.error)

    def error(self, student: int, kind: str, msg: str) -> None:
        with self.lock:
            self.errors.append({"t": round(self.now(), 1), "student": student, "kind": kind, "error": msg[:200]})

    # ------------------------------------------------------------------------------------ a student
    def student(self, i: int) -> None:
        a, url = self.args, self.hall.url
        rng = random.Random(a.seed * 1000 + i)
        warm = StreamlitClient(url, run_timeout=a.run_timeout)
        cold = StreamlitClient(url, run_timeout=a.run_timeout)
        warm_params = {"preset": "escape"} if a.preset_url else {}
        cold_params = {"seed": str(50_000 + i)}
        time.sleep(rng.uniform(0, min(30.0, a.minutes * 6)))  # students arrive over the first half minute
        opened = {"warm": warm.open("escape", warm_params), "cold": cold.open("playground", cold_params)}
        for name, run in opened.items():
            if not run.ok:
                self.error(i, f"open_{name}", run.error)
        names, weights = zip(*ACTIONS)
        while time.monotonic() < self.end:
            until = time.monotonic() + rng.uniform(0.5, 1.5) * a.think
            while time.monotonic() < until:
                time.sleep(max(0.0, min(4.0, until - time.monotonic())))
                self.keepalive(warm, i)
                self.keepalive(cold, i)
            if time.monotonic() >= self.end:
                break
            action = rng.choices(names, weights)[0]
            with self.lock:
                self.counts[action] += 1
            if action in ("rho_warm", "rho_cold"):
                c = warm if action == "rho_warm" else cold
                grid, now = c.rho_chart_state()
                if not grid:
                    w = c.widget("rho")
                    if w is not None and w.kind == "slider":
                        p = w.proto
                        grid = [round(p.min + k * p.step, 10) for k in range(int(round((p.max - p.min) / p.step)) + 1)]
                now = c.rho()
                if not grid or now is None:
                    self.error(i, action, "no ρ control on the page")
                    c.reopen()
                    continue
                j = min(range(len(grid)), key=lambda k: abs(grid[k] - now))
                j = j + 1 if j + 1 < len(grid) and (j == 0 or rng.random() < 0.5) else j - 1
                run = c.set_rho(grid[j])
                if not run.ok:
                    self.error(i, action, run.error)
                    c.reopen()
            elif action == "page_load":
                c = StreamlitClient(url, run_timeout=a.run_timeout)
                run = c.open(rng.choice(PAGES), {})
                if not run.ok:
                    self.error(i, action, run.error)
                c.close()
            else:
                out = class_student(url, self.room, time.monotonic(), a.run_timeout)
                if out["ok"]:
                    with self.lock:
                        self.told.append((self.now(), out["sid"]))
                else:
                    self.error(i, action, out["error"])
        warm.close()
        cold.close()

    # ------------------------------------------------------------------------------------ the harness
    def sample(self) -> None:
        import redis

        row = {"t": round(self.now()), "load": os.getloadavg()[0]}
        for name in self.hall.cfg.replica_names():
            row[f"rss_{name}"] = round(rss_mb(self.hall.procs[name].popen.pid), 1)
        for role, url in (("cache", self.hall.cfg.cache_url), ("store", self.hall.cfg.store_url)):
            try:
                info = redis.Redis.from_url(url, socket_timeout=2).info("memory")
                row[f"{role}_used_mb"] = round(info["used_memory"] / 2**20, 1)
                row[f"{role}_maxmemory_mb"] = round(info.get("maxmemory", 0) / 2**20, 1)
            except (redis.RedisError, OSError) as e:
                row[f"{role}_used_mb"] = None
                row[f"{role}_error"] = type(e).__name__
        with self.lock:
            row["errors"] = len(self.errors)
            row["actions"] = sum(self.counts.values())
            row["told"] = len(self.told)
        self.samples.append(row)
        print("sample " + json.dumps(row), flush=True)

    def check_store(self, when: str) -> dict:
        """Every run a student was told is stored (up to now) is in the store."""
        from serve import classroom as cl
        from serve.roomstore import open_store

        with self.lock:
            told = {sid for _, sid in self.told}
        deadline = time.monotonic() + 60
        while True:
            try:
                store = open_store(self.hall.cfg.store_url, None)
                stored = {r.student for r in cl.room_runs(store, store.get_room(self.room))}
                break
            except Exception as e:  # the store is still starting
                if time.monotonic() > deadline:
                    res = {"when": when, "error": f"{type(e).__name__}: {str(e)[:200]}"}
                    self.store_checks.append(res)
                    return res
                time.sleep(0.5)
        res = {"when": when, "t": round(self.now()), "told": len(told), "missing": sorted(told - stored)[:20],
               "missing_count": len(told - stored), "stored": len(stored)}
        self.store_checks.append(res)
        print("store check " + json.dumps(res), flush=True)
        return res

    def kill(self, name: str) -> None:
        proc = self.hall.procs[name]
        told_before = len(self.told)
        os.killpg(proc.popen.pid, signal.SIGKILL)
        self.kills.append({"what": name, "t": round(self.now(), 1), "told_before": told_before})
        print(f"SIGKILL {name} at {self.now():.0f} s", flush=True)

    def run(self) -> dict:
        a = self.args
        threads = [threading.Thread(target=self.student, args=(i,), daemon=True) for i in range(a.students)]
        for t in threads:
            t.start()
        next_sample = 0.0
        plan = [(a.kill_replica_at * a.minutes * 60, "r1"), (a.kill_store_at * a.minutes * 60, "redis-store")]
        plan = [p for p in plan if p[0] > 0]
        store_killed_at = None
        while any(t.is_alive() for t in threads):
            now = self.now()
            if now >= next_sample:
                self.sample()
                next_sample += a.sample
            if plan and now >= plan[0][0]:
                _, name = plan.pop(0)
                self.kill(name)
                if name == "redis-store":
                    store_killed_at = now
            if store_killed_at is not None and now > store_killed_at + 5:
                self.check_store("after the store's restart")
                store_killed_at = None
            try:
                self.hall.watch_once()  # what `make hall` does every second: restart what died
            except Exception as e:
                self.error(-1, "hall", str(e))
            time.sleep(1.0)
        self.sample()
        self.check_store("at the end")
        return self.report()

    def report(self) -> dict:
        a = self.args
        windows = [(k["t"], k["t"] + a.window, k["what"]) for k in self.kills]

        def window(e):
            return next((w for lo, hi, w in windows if lo <= e["t"] <= hi), "")

        outside = [e for e in self.errors if not window(e)]
        lost: dict[int, int] = {}
        for e in self.errors:
            if window(e) == "r1":
                lost[e["student"]] = lost.get(e["student"], 0) + 1
        settle = a.settle_min * 60
        slopes = {}
        for name in self.hall.cfg.replica_names():
            pts = [(s["t"] / 60, s[f"rss_{name}"]) for s in self.samples if s["t"] >= settle and s.get(f"rss_{name}")]
            # r1 restarts at the kill: its series from the restart on is a new process; fit each part's slope
            if name == "r1" and self.kills:
                kt = next((k["t"] for k in self.kills if k["what"] == "r1"), None)
                if kt is not None:
                    before = [p for p in pts if p[0] * 60 < kt]
                    after = [p for p in pts if p[0] * 60 > kt + settle]
                    pts = before if len(before) >= len(after) else after
            slopes[name] = round(statistics.linear_regression(*zip(*pts)).slope, 3) if len(pts) >= 3 else None
        cache_max = max((s.get("cache_used_mb") or 0 for s in self.samples), default=0)
        cache_limit = next((s.get("cache_maxmemory_mb") for s in self.samples if s.get("cache_maxmemory_mb")), None)
        missing = sum(c.get("missing_count", 1) for c in self.store_checks)
        out = {
            "students": a.students, "minutes": a.minutes, "actions": self.counts,
            "errors": len(self.errors), "errors_outside_kill_windows": len(outside),
            "errors_by_kind": {k: sum(1 for e in self.errors if e["kind"] == k)
                               for k in {e["kind"] for e in self.errors}},
            "error_samples": [e["error"] for e in outside[:5]],
            "max_lost_per_student_at_replica_kill": max(lost.values(), default=0),
            "students_that_lost_at_replica_kill": len(lost),
            "reconnects": self.reconnects, "told_stored": len(self.told), "store_checks": self.store_checks,
            "missing_runs": missing,
            "rss_slope_mib_per_min_after_settle": slopes, "cache_max_mb": cache_max, "cache_maxmemory_mb": cache_limit,
            "store_max_mb": max((s.get("store_used_mb") or 0 for s in self.samples), default=0),
            "kills": self.kills, "samples": self.samples, "all_errors": self.errors[:500],
        }
        good = (not outside and out["max_lost_per_student_at_replica_kill"] <= 1 and missing == 0
                and all(s is None or s <= 1.0 for s in slopes.values())
                and (cache_limit is None or cache_max <= cache_limit))
        out["targets"] = "MET" if good else "NOT MET"
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--students", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--think", type=float, default=8.0, help="mean think time between a student's actions (s)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--warm-scenes", default="escape,valley", help="serve/warm.py runs these first ('' = none)")
    ap.add_argument("--kill-replica-at", type=float, default=0.4, help="fraction of the run (0 = never)")
    ap.add_argument("--kill-store-at", type=float, default=0.7, help="fraction of the run (0 = never)")
    ap.add_argument("--window", type=float, default=60.0, help="errors this long after a kill count to the kill")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--settle-min", type=float, default=10.0, help="RSS slope from this minute on")
    ap.add_argument("--run-timeout", type=float, default=90.0)
    ap.add_argument("--preset-url", action="store_true", help="warm students open /escape?preset=escape")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="", help="write the whole record here")
    a = ap.parse_args(argv)

    import subprocess

    from serve import classroom as cl
    from serve.hall import Hall, HallConfig, free_ports
    from serve.roomstore import open_store

    base = free_ports(4 + a.replicas)
    cfg = HallConfig(replicas=a.replicas, port=base, bind="127.0.0.1", replica_port=base + 4, cache_port=base + 1,
                     store_port=base + 2, store_dir=tempfile.mkdtemp(prefix="hall-soak-store-"), worker=False,
                     warm=False)
    hall = Hall(cfg, out=sys.stderr)
    print(f"soak: {a.students} students × {a.minutes:g} min against {hall.url}; load {os.getloadavg()}", flush=True)
    with hall:
        if a.warm_scenes:
            env = {**os.environ, "SAMLAB_CACHE_URL": hall.cfg.cache_url, "SAMLAB_REPLICA": "warm-up"}
            t = time.monotonic()
            subprocess.run([sys.executable, "-m", "serve.warm", "--scenes", a.warm_scenes], cwd=ROOT, env=env,
                           check=False, timeout=3600)
            print(f"warm-up of {a.warm_scenes}: {time.monotonic() - t:.0f} s", flush=True)
        store = open_store(hall.cfg.store_url, None)
        room = cl.open_room(store, cl.make_experiment("escape"), minutes=a.minutes + 60, cap=1)
        soak = Soak(a, hall, room.code)
        out = soak.run()
    out["load_end"] = os.getloadavg()
    summary = {k: v for k, v in out.items() if k not in ("samples", "all_errors", "store_checks")}
    print(json.dumps(summary, indent=1))
    print("RSS MiB per sample (t s: " + ", ".join(cfg.replica_names()) + "; cache MB, store MB):")
    for s in out["samples"]:
        print(f"  {s['t']:5d}: " + ", ".join(str(s.get(f"rss_{n}")) for n in cfg.replica_names())
              + f";  {s.get('cache_used_mb')}, {s.get('store_used_mb')}  load {s['load']:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0 if out["targets"] == "MET" else 1


if __name__ == "__main__":
    sys.exit(main())
