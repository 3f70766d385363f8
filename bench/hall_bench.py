"""Hall measurements for issue 12: server CPU per ρ change, and the load runs behind a proxy.

    .venv/bin/python bench/hall_bench.py cpu [--pages escape,valley] [--changes 24] [--profile]

`cpu`: one `streamlit run app/main.py` (as `make app`), one protocol student (bench/st_protocol.py).
For each page: open it at its default view, move ρ over `--warm` slider steps once (so each config
is computed and cached), then make `--changes` ρ changes among those cached steps, reading the
server's CPU time (/proc/<pid>/stat, 10 ms ticks) around each block of 4 changes. Prints the median
over the blocks of the CPU ms per change, per page (and the mean). This is the server's
work for one student's redraw of a cached config: running the page script (fragment), building the
figures, serialising them, sending them. `--profile` also samples the server with py-spy during the
changes and prints the functions with the most samples (inclusive), to see where the time goes.

The load runs (`baseline`, `capacity`, `hall`, `failover`) drive bench/hall_load.py against
`make hall` (serve/hall.py) or a single server; see `--help` of each.
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

from bench._browser import REPO, StreamlitServer, _process_tree  # noqa: E402
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
             profile_s: float = 0.0) -> dict:
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
    for rho in steps:  # compute and cache each config once
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
            rho = rng.choice([s for s in steps if s != prev])
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
    with StreamlitServer() as server:
        for page in pages:
            res = page_cpu(server, page, args.changes, args.warm, rng, profile_s=args.profile_seconds * args.profile)
            results.append(res)
            print(json.dumps(res), flush=True)
    return {"bench": "hall_cpu", "pages": results, "load_avg": os.getloadavg()[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cpu", help="server CPU per ρ change of a cached config, per page")
    c.add_argument("--pages", default=",".join(RHO_PAGES))
    c.add_argument("--changes", type=int, default=40)
    c.add_argument("--warm", type=int, default=6, help="slider steps visited first (the cached configs)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--profile", action="store_true", help="sample the server with py-spy during the changes")
    c.add_argument("--profile-seconds", type=float, default=6.0)
    args = ap.parse_args(argv)
    if args.cmd == "cpu":
        out = cmd_cpu(args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
