"""The lecture hall end to end: real HAProxy, two Streamlit replicas, the two Redis and the RQ workers, started
by serve.hall's own code (Hall), then students that speak Streamlit's WebSocket protocol (bench/st_protocol.py,
bench/hall_load.py).

Claims:
1. a short protocol load (20 students × 5 ρ changes on the escape scene) through HAProxy has 0 errors, every
   student stays on one replica, and both replicas serve students;
2. a config computed on one replica is a cache hit on the other (the shared cache's counters in the cache
   Redis), and the second replica does not compute it;
3. HAProxy's answer names the replica (header X-SamLab-Replica, the SERVERID cookie), and a student who sends
   a replica's cookie is kept on it;
4. `python -m serve.hall` prints the students' URL, and Ctrl-C (SIGINT) stops everything it started: no
   process of it is left; a part that fails at start (a port in use, a Redis that refuses its settings) ends
   it with a one-line message and nothing left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from serve.hall import REPO, binary, free_ports
from tests.halltest import running_hall

pytestmark = [
    pytest.mark.skipif(binary("redis-server") is None or binary("haproxy") is None,
                       reason="haproxy and redis-server are not installed (make services)"),
    pytest.mark.timeout(600),
]
# A seed no lecture scene uses: the config is computed for this test only.
UNIQUE = {"landscape": "double_well_2d", "rho": "0.145", "seed": "424242", "particles": "100"}


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    with running_hall(tmp_path_factory, worker=True) as h:
        yield h


def stats(hall) -> dict[str, int]:
    import redis

    r = redis.Redis.from_url(hall.cfg.cache_url)
    return {k.decode(): int(v) for k, v in r.hgetall("samlab:stats").items()}


def test_every_part_is_up_and_the_proxy_names_the_replica(hall):
    assert all(p.alive() for p in hall.procs.values()), {n: p.log_tail() for n, p in hall.procs.items()}
    seen = set()
    for _ in range(4):  # fresh clients (no cookie): leastconn/round robin spreads them
        with urllib.request.urlopen(hall.url + "/") as r:
            name = r.headers["X-SamLab-Replica"]
            assert f"SERVERID={name}" in r.headers["Set-Cookie"]
            seen.add(name)
    assert seen == {"r1", "r2"}
    for name in ("r1", "r2"):  # a cookie keeps its replica
        req = urllib.request.Request(hall.url + "/_stcore/health", headers={"Cookie": f"SERVERID={name}"})
        for _ in range(3):
            with urllib.request.urlopen(req) as r:
                assert r.headers["X-SamLab-Replica"] == name


def test_a_config_computed_on_one_replica_is_a_hit_on_the_other(hall):
    from bench.st_protocol import StreamlitClient

    before = stats(hall)
    runs = {}
    for name in ("r1", "r2"):
        c = StreamlitClient(hall.url, run_timeout=120)
        c.http.cookies.set("SERVERID", name)  # this student's replica, as HAProxy's cookie would pin it
        run = c.open("escape", UNIQUE)
        assert run.ok, run.error
        assert c.replica == name
        runs[name] = (c.rho(), c.rho_chart_state()[0])  # the ρ shown and the grid shipped
        c.close()
        if name == "r1":
            middle = stats(hall)
    after = stats(hall)
    delta = lambda a, b, k: b.get(k, 0) - a.get(k, 0)  # noqa: E731
    assert delta(before, middle, "computed:r1") >= 2  # r1 computed the page's runs (the ρ grid and more)
    assert delta(middle, after, "computed:r2") == 0  # r2 computed nothing …
    # … what it asked for were hits (a hit on the ρ grid skips the runs nested in it, so fewer hits than r1's
    # computations), and nothing either replica computed was left out of the cache as unstorable
    assert 2 <= delta(middle, after, "hit:r2") <= delta(before, middle, "computed:r1")
    assert not any(k.startswith("unstorable:") for k in after), after
    assert runs["r2"] == runs["r1"] and runs["r2"][0] == pytest.approx(0.145)  # the same page and grid came back


def test_a_short_protocol_load_through_the_proxy(hall):
    """20 students on the escape page (its default view is the escape scene's physics), 5 ρ changes each, 1.5 s
    think time, through HAProxy. (Opened without ?preset=: leaving a scene makes the app rerun itself, which
    bench/st_protocol.py counts as a failed run; see the hall's report.)"""
    cmd = [sys.executable, str(REPO / "bench" / "hall_load.py"), "--url", hall.url + "/escape",
           "--students", "20", "--changes", "5", "--think", "1.5", "--run-timeout", "90",
           "--json"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=500)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, out.stderr[-2000:]
    res = json.loads(lines[-1])
    assert res["errors"] == 0, res["error_samples"]
    assert res["changes"] == 20 * 5
    assert res["students_that_switched_replica"] == 0  # sticky: every student stayed on its replica
    assert sum(res["students_on_replica"].values()) == 20  # every student was seen on a named replica
    assert set(res["students_on_replica"]) == {"r1", "r2"}  # and both replicas served
    assert all(p.alive() for n, p in hall.procs.items()), "a part of the hall died under the load"


# -------------------------------------------------------------------------------------------------
# The command itself: python -m serve.hall
# -------------------------------------------------------------------------------------------------

def _hall_cmd(base: int, tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "serve.hall", "--replicas", "1", "--port", str(base), "--bind", "127.0.0.1",
            "--replica-port", str(base + 1), "--cache-port", str(base + 2), "--store-port", str(base + 3),
            "--no-warm", "--no-worker", *extra]


def _processes_mentioning(port: int | str) -> list[str]:
    """Command lines of running processes started with this port (`--port N`, `--server.port N`)."""
    pattern = re.compile(rf"port {port}( |$)")
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pattern.search(cmd) and "serve.hall" not in cmd:
                found.append(cmd)
    return found


def _kill_leftovers(ports) -> None:
    """After a failed assertion: stop what the hall under test left behind (matched by its unique ports)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(re.search(rf"port {p}( |$)", cmd) for p in ports):
                with contextlib.suppress(OSError):
                    os.kill(int(d.name), signal.SIGKILL)


@pytest.fixture
def hall_ports():
    base = free_ports(4)
    yield base
    _kill_leftovers([base + 1, base + 2, base + 3])


def test_ctrl_c_stops_everything(tmp_path, hall_ports):
    base = hall_ports
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(_hall_cmd(base, tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env)
    lines, end = [], time.monotonic() + 180
    while time.monotonic() < end:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Give the students this address" in line:
            break
    text = "".join(lines)
    assert f"http://127.0.0.1:{base}/" in text, text
    assert _processes_mentioning(base + 1), "the replica is not running"
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=60)
    assert p.returncode == 0, rest
    assert "Everything the hall started is stopped" in rest
    for port in (base + 1, base + 2, base + 3):  # replica, cache Redis, store Redis: all gone
        assert _processes_mentioning(port) == [], port
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{base}/_stcore/health", timeout=2)


def test_a_port_in_use_is_one_line_and_nothing_starts(tmp_path):
    import socket

    base = free_ports(4)
    with socket.socket() as s:
        s.bind(("0.0.0.0", base))
        s.listen()
        out = subprocess.run(_hall_cmd(base, tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"port {base} (for HAProxy) is in use" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_a_part_that_fails_at_start_stops_the_others(tmp_path, hall_ports):
    base = hall_ports
    out = subprocess.run(_hall_cmd(base, tmp_path, "--cache-maxmemory", "lots"), cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1
    assert "the cache Redis" in out.stdout and "exited at start" in out.stdout, out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    for port in (base + 1, base + 2, base + 3):
        assert _processes_mentioning(port) == [], port


def test_a_replica_that_dies_is_restarted(tmp_path, hall_ports):
    base = hall_ports
    p = subprocess.Popen(_hall_cmd(base, tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in p.stdout:
            if "Give the students this address" in line:
                break
        (pid,) = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                  and re.search(rf"server.port {base + 1}( |$)",
                                _cmdline(d))]
        os.kill(pid, signal.SIGKILL)
        for line in p.stdout:
            if "r1 exited" in line:
                assert "restarting it" in line
                break
        end = time.monotonic() + 120
        while not _healthy(f"http://127.0.0.1:{base}/_stcore/health"):  # back in HAProxy's rotation
            assert time.monotonic() < end, "the restarted replica never came back"
            time.sleep(0.5)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
    assert p.returncode == 0


def _cmdline(d: Path) -> str:
    try:
        return (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
