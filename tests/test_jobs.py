"""serve/jobs.py: one GPU job at a time with a FIFO queue, positions, per-owner isolation,
cancellation (single, per session), results kept by id, and no orphaned threads."""

import threading
import time

import pytest

from serve.jobs import THREAD_PREFIX, JobError, JobRunner


def _blocking(gate: threading.Event, seen: list | None = None):
    """A job that reports once, then waits for `gate` (or a stop request) and returns 'ok'."""
    def fn(report, should_stop):
        if seen is not None:
            seen.append(time.monotonic())
        report({"epoch": 1})
        while not gate.is_set():
            if should_stop():
                return "stopped"
            time.sleep(0.005)
        return "ok"
    return fn


def _poll(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return False


@pytest.fixture
def runner():
    r = JobRunner(max_queued_per_owner=10)
    yield r
    assert r.shutdown(timeout=5)


def test_one_gpu_job_at_a_time_and_queue_positions(runner):
    """The GPU lane has one worker: with 3 jobs, one runs (position 0) and the others wait (1, 2), FIFO."""
    gates = [threading.Event() for _ in range(3)]
    ids = [runner.submit("alice", _blocking(g), lane="gpu", label=f"run {i}") for i, g in enumerate(gates)]
    assert _poll(lambda: runner.get("alice", ids[0]).status == "running")
    assert [runner.queue_position("alice", i) for i in ids] == [0, 1, 2]
    assert runner.lane_load("gpu") == (1, 2)
    gates[0].set()
    assert runner.wait("alice", ids[0], timeout=5).status == "done"
    assert _poll(lambda: runner.get("alice", ids[1]).status == "running")
    assert runner.get("alice", ids[2]).status == "queued" and runner.queue_position("alice", ids[2]) == 1
    for g in gates:
        g.set()
    assert runner.wait("alice", ids[2], timeout=5).result == "ok"


def test_results_and_progress_kept_by_id(runner):
    """A finished job's result and progress stay fetchable by id (what a page reload needs)."""
    g = threading.Event()
    g.set()
    jid = runner.submit("alice", _blocking(g), lane="cpu")
    view = runner.wait("alice", jid, timeout=5)
    assert view.status == "done" and view.result == "ok" and view.progress == ({"epoch": 1},)
    assert runner.get("alice", jid).result == "ok"  # again, later
    assert [j.id for j in runner.jobs("alice")] == [jid]


def test_meta_comes_back_as_submitted(runner):
    """The submitted metadata (the CIFAR page's config) is on every view, and a caller changing its
    own dict afterwards (or the view's copy) does not change the job's."""
    g = threading.Event()
    meta = {"epochs": 5, "optimizer": "sam"}
    jid = runner.submit("alice", _blocking(g), lane="cpu", meta=meta)
    meta["epochs"] = 99
    runner.get("alice", jid).meta["epochs"] = 7
    assert runner.get("alice", jid).meta == {"epochs": 5, "optimizer": "sam"}
    g.set()
    assert runner.wait("alice", jid, timeout=5).meta["epochs"] == 5


def test_owner_isolation(runner):
    """Another session can neither see, list, position nor cancel my job."""
    g = threading.Event()
    jid = runner.submit("alice", _blocking(g))
    assert runner.get("bob", jid) is None and runner.jobs("bob") == []
    assert runner.queue_position("bob", jid) is None
    assert runner.cancel("bob", jid) is False and runner.cancel_owner("bob") == 0
    assert runner.get("alice", jid).status in ("queued", "running")
    g.set()


def test_cancel_running_and_queued(runner):
    """Cancelling a running job makes should_stop() true (the job returns early); a queued one never runs."""
    g1, g2 = threading.Event(), threading.Event()
    started = []
    j1 = runner.submit("alice", _blocking(g1))
    j2 = runner.submit("alice", _blocking(g2, started))
    assert _poll(lambda: runner.get("alice", j1).status == "running")
    assert runner.cancel("alice", j2) and runner.get("alice", j2).status == "cancelled"
    assert runner.cancel("alice", j1)
    v1 = runner.wait("alice", j1, timeout=5)
    assert v1.status == "cancelled" and v1.result == "stopped"
    assert started == []


def test_cancel_owner_stops_everything_and_leaves_no_threads():
    """When a session ends, cancel_owner stops its running and queued jobs; the workers then exit,
    so no job thread outlives the work (checked in threading.enumerate())."""
    r = JobRunner(workers={"cpu": 2}, max_queued_per_owner=10)
    gates = [threading.Event() for _ in range(4)]
    ids = [r.submit("s1", _blocking(g), lane=lane) for g, lane in zip(gates, ["gpu", "gpu", "cpu", "cpu"])]
    other = threading.Event()
    other.set()
    keep = r.submit("s2", _blocking(other), lane="cpu")
    assert _poll(lambda: sum(r.get("s1", i).status == "running" for i in ids) == 3)
    workers = r.threads()
    assert len(workers) == 3 and all(t.name.startswith(THREAD_PREFIX) for t in workers)
    assert r.cancel_owner("s1") == 4
    for i in ids:
        assert r.wait("s1", i, timeout=5).status == "cancelled"
    assert r.wait("s2", keep, timeout=5).status == "done"
    assert _poll(lambda: not any(t in threading.enumerate() for t in workers))
    assert r.threads() == []
    assert r.shutdown(timeout=5)


def test_failures_are_statuses_and_limits_are_one_line(runner):
    def boom(report, should_stop):
        raise RuntimeError("CUDA out of memory\nlong trace")
    jid = runner.submit("alice", boom, lane="cpu")
    view = runner.wait("alice", jid, timeout=5)
    assert view.status == "failed" and view.error == "CUDA out of memory"
    small = JobRunner(max_queued_per_owner=1)
    g = threading.Event()
    small.submit("a", _blocking(g))
    with pytest.raises(JobError) as e:
        small.submit("a", _blocking(g))
    assert "\n" not in str(e.value)
    with pytest.raises(JobError):
        small.submit("a", _blocking(g), lane="tpu")
    g.set()
    assert small.shutdown(timeout=5)


def test_shutdown_joins_workers():
    r = JobRunner()
    gate = threading.Event()
    jid = r.submit("a", _blocking(gate))
    assert _poll(lambda: r.get("a", jid).status == "running")
    assert r.shutdown(timeout=5) and r.threads() == []
    assert r.get("a", jid).status == "cancelled"
    with pytest.raises(JobError):
        r.submit("a", _blocking(gate))
