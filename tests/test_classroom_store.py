"""The class store (serve/roomstore.py) against the REAL backends: a SQLite file and a redis-server started here.

Claims checked, for both backends through the one interface:
- a run is stored exactly once per (room, epoch, student, run index): a repeat returns False and stores nothing;
- joining hands out slots 0, 1, 2 … once each, and a re-join keeps the slot;
- many threads (and, on SQLite, many processes) writing at once, with deliberate duplicates: every distinct run is
  stored once, nothing lost, nothing doubled; concurrent joins never hand out a slot twice (no lost update);
- the token bucket lets exactly `burst` runs through at once, then one per 1/rate seconds, also under threads;
- a reset starts an empty epoch, and a late write into the old epoch does not show in the new one;
- a store that is down or not writable raises StoreUnavailable with a one-line message.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve.roomstore import RedisStore, Room, Run, SqliteStore, StoreUnavailable

REDIS = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port, no persistence, stopped (by pid) at the end."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    port = _free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "class.sqlite")
    url = request.getfixturevalue("redis_url")
    s = RedisStore(url)
    s.r.flushdb()
    return s


def _room(code="ROOMAAAA", **kw) -> Room:
    return Room(code=code, secret_hash="h", experiment={"kind": "escape", "values": [0.0], "params": {}},
                created=0.0, expires=1e12, **kw)


def _run(student: str, i: int, slot: int = 0) -> Run:
    return Run(student=student, run_index=i, slot=slot, config={"seed": i}, result={"value": 0.5, "successes": 1,
                                                                                     "n": 2}, created=time.time())


def test_room_roundtrip_and_code_taken(store):
    assert store.create_room(_room())
    assert not store.create_room(_room())  # the code is taken: the caller draws another
    room = store.get_room("ROOMAAAA")
    assert room.code == "ROOMAAAA" and room.state == "open" and room.epoch == 0
    assert store.get_room("NOSUCHRM") is None
    assert store.update_room("ROOMAAAA", state="closed", cap=5).state == "closed"
    assert store.get_room("ROOMAAAA").cap == 5
    assert store.update_room("NOSUCHRM", state="closed") is None


def test_long_expired_rooms_go(tmp_path):
    """The SQLite store drops rooms (and their runs) that expired more than two weeks ago, as Redis expires keys."""
    s = SqliteStore(tmp_path / "class.sqlite")
    s.create_room(Room(code="OLDROOMA", secret_hash="h", experiment={}, created=0.0, expires=1000.0))
    s.add_run("OLDROOMA", 0, _run("alice01", 0))
    s.create_room(_room(code="RECENTAA"))
    s.create_room(_room(code="NEWROOMA"))
    assert s.get_room("OLDROOMA") is None and s.runs("OLDROOMA", 0) == []
    assert s.get_room("RECENTAA") is not None


def test_a_run_is_stored_once(store):
    store.create_room(_room())
    assert store.add_run("ROOMAAAA", 0, _run("alice01", 0))
    assert not store.add_run("ROOMAAAA", 0, _run("alice01", 0))  # double click / reconnect / other replica
    assert store.add_run("ROOMAAAA", 0, _run("alice01", 1))
    assert store.add_run("ROOMAAAA", 0, _run("bobby01", 0))
    assert store.has_run("ROOMAAAA", 0, "alice01", 1) and not store.has_run("ROOMAAAA", 0, "alice01", 2)
    assert store.count_runs("ROOMAAAA", 0, "alice01") == 2 and store.total_runs("ROOMAAAA", 0) == 3
    assert sorted((r.student, r.run_index) for r in store.runs("ROOMAAAA", 0)) == [
        ("alice01", 0), ("alice01", 1), ("bobby01", 0)]


def test_join_keeps_the_slot(store):
    store.create_room(_room())
    slots = [store.join("ROOMAAAA", 0, f"student{i}") for i in range(5)]
    assert slots == [0, 1, 2, 3, 4]
    assert store.join("ROOMAAAA", 0, "student2") == 2
    assert store.members("ROOMAAAA", 0) == 5


def test_many_threads_write_at_once(store):
    """40 students × 3 runs, each run submitted twice by different threads (a double click landing on two replicas):
    exactly 120 rows, exactly 120 True returns, and 40 distinct slots from concurrent joins."""
    store.create_room(_room())
    jobs = [(f"student{s:03d}", i) for s in range(40) for i in range(3)] * 2

    def go(job):
        student, i = job
        slot = store.join("ROOMAAAA", 0, student)
        return slot, store.add_run("ROOMAAAA", 0, _run(student, i, slot))

    with ThreadPoolExecutor(16) as pool:
        out = list(pool.map(go, jobs))
    assert sum(new for _, new in out) == 120
    runs = store.runs("ROOMAAAA", 0)
    assert len(runs) == 120 and len({(r.student, r.run_index) for r in runs}) == 120
    slots = {store.join("ROOMAAAA", 0, f"student{s:03d}") for s in range(40)}
    assert slots == set(range(40))  # no slot handed out twice, none skipped


def _writer(path: str, offset: int, out) -> None:
    """A separate process: 25 students × 2 runs (every process writes the SAME keys, from a different start)."""
    s = SqliteStore(path)
    new = 0
    for k in range(50):
        j = (k + offset) % 50
        student, i = f"student{j // 2:03d}", j % 2
        s.join("ROOMAAAA", 0, student)
        new += s.add_run("ROOMAAAA", 0, _run(student, i))
    out.put(new)


def test_many_processes_write_one_sqlite_file(tmp_path):
    """6 processes write the same 50 runs into one SQLite file at once: 50 rows, 50 successful inserts in total
    (each key won by exactly one process), 25 members with slots 0 … 24."""
    path = str(tmp_path / "class.sqlite")
    SqliteStore(path).create_room(_room())
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, 9 * p, out)) for p in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert sum(out.get(timeout=5) for _ in procs) == 50
    s = SqliteStore(path)
    assert len(s.runs("ROOMAAAA", 0)) == 50
    assert {s.join("ROOMAAAA", 0, f"student{j:03d}") for j in range(25)} == set(range(25))


def test_token_bucket(store):
    store.create_room(_room())
    t0 = 1000.0
    assert store.take_token("ROOMAAAA", "alice01", 0.25, 2.0, now=t0) == 0
    assert store.take_token("ROOMAAAA", "alice01", 0.25, 2.0, now=t0) == 0
    wait = store.take_token("ROOMAAAA", "alice01", 0.25, 2.0, now=t0 + 1)
    assert wait == pytest.approx(3.0)  # 1 s refilled 0.25 token; 0.75 more at 0.25/s
    assert store.take_token("ROOMAAAA", "bobby01", 0.25, 2.0, now=t0 + 1) == 0  # per student
    assert store.take_token("ROOMAAAA", "alice01", 0.25, 2.0, now=t0 + 5) == 0


def test_token_bucket_under_threads(store):
    """20 threads press at the same instant: exactly `burst` (3) get through."""
    store.create_room(_room())
    with ThreadPoolExecutor(10) as pool:
        waits = list(pool.map(lambda _: store.take_token("ROOMAAAA", "alice01", 0.01, 3.0, now=5000.0), range(20)))
    assert sum(w == 0 for w in waits) == 3


def test_reset_starts_an_empty_epoch(store):
    store.create_room(_room())
    store.join("ROOMAAAA", 0, "alice01")
    store.add_run("ROOMAAAA", 0, _run("alice01", 0))
    room = store.reset_room("ROOMAAAA")
    assert room.epoch == 1 and store.get_room("ROOMAAAA").epoch == 1
    assert store.runs("ROOMAAAA", 1) == [] and store.members("ROOMAAAA", 1) == 0
    store.add_run("ROOMAAAA", 0, _run("late0001", 0))  # a run that was computing during the reset
    assert store.runs("ROOMAAAA", 1) == []
    assert store.join("ROOMAAAA", 1, "bobby01") == 0  # slots start again


def test_store_down_is_one_line():
    s = RedisStore(f"redis://127.0.0.1:{_free_port()}/0", timeout_s=0.5)  # nothing listens there
    with pytest.raises(StoreUnavailable) as e:
        s.get_room("ROOMAAAA")
    assert "class store is unavailable" in str(e.value) and "\n" not in str(e.value)


def test_unwritable_sqlite_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable) as e:
        SqliteStore(blocker / "class.sqlite")  # its folder would have to be a file
    assert "class store is unavailable" in str(e.value) and "\n" not in str(e.value)


def test_wal_mode(tmp_path):
    s = SqliteStore(tmp_path / "class.sqlite")
    assert s._do(lambda con: con.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"


def test_threads_share_nothing(tmp_path):
    """The SQLite store is used from Streamlit's script threads: one store object, many threads, no shared
    connection errors."""
    s = SqliteStore(tmp_path / "class.sqlite")
    s.create_room(_room())
    errors = []

    def go(i):
        try:
            for j in range(10):
                s.add_run("ROOMAAAA", 0, _run(f"t{i:02d}xxxx", j))
                s.runs("ROOMAAAA", 0)
        except Exception as e:  # noqa: BLE001 - any error fails the test below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(s.runs("ROOMAAAA", 0)) == 80


def test_a_room_of_300_joining_at_once_loses_nothing(store):
    """Issue 14: 300 students join and submit at once through serve.classroom (32 threads; 60 of them click twice),
    with real runs (the escape lab, 20 particles × 50 steps): 300 stored runs, one per student, each slot of the
    7-value ρ grid filled 42 or 43 times (round robin), and the double clicks stored nothing."""
    from serve import classroom as cl

    exp = cl.make_experiment("escape", particles=20, steps=50)
    room = cl.open_room(store, exp, cap=1, now=0.0)
    jobs = [f"student{i:03d}" for i in range(300)] + [f"student{i:03d}" for i in range(0, 300, 5)]

    def go(sid):
        return cl.submit_run(store, room.code, sid, 0, now=1.0).stored

    with ThreadPoolExecutor(32) as pool:
        stored = list(pool.map(go, jobs))
    assert sum(stored) == 300
    runs = store.runs(room.code, 0)
    assert len(runs) == 300 and len({r.student for r in runs}) == 300
    per_slot = [sum(r.slot == s for r in runs) for s in range(len(exp.values))]
    assert sorted(per_slot) == [42, 43, 43, 43, 43, 43, 43], per_slot
    pooled = cl.pool(exp, runs)
    assert pooled.runs == 300 and pooled.students == 300 and sum(p.n for p in pooled.points) == 300 * 20
