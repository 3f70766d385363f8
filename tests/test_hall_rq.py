"""The hall's GPU queue (serve/rqjobs.py) on a real store Redis and a real RQ worker process, both started as
`make hall` starts them (serve.hall.Hall.start_redis, `python -m serve.rqjobs worker`).

Claims:
1. jobs submitted from two "replicas" (two RQRunner objects, as two server processes would hold) run one at
   a time: their running intervals never overlap;
2. each owner sees its queue position (0 running, n ≥ 1 queued) and only its own jobs;
3. cancel: a queued job leaves the queue and never runs; a running one stops at its next check and keeps its
   partial result (status "cancelled"), as with the in-process runner;
4. a job names its function from an allow-list (core/cifar/tasks.py; this file's timed_task is added through
   $SAMLAB_JOB_TASKS, as the worker's environment says): the CIFAR page's jobs go, a closure or another
   function is refused with a clear message instead of failing in the worker;
6. nothing read from the store is unpickled: a crafted pickle planted as a job's data (or a JSON job naming
   another function) is refused by the worker, logged once, and never runs (its marker file is never made);
   a result and progress rows travel in serve/safecodec's format, the weights of a CIFAR run included.
5. default_runner() is the RQ runner when SAMLAB_STORE_URL is set, the in-process one otherwise.
"""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import time

import pytest

from serve.hall import REPO, Hall, HallConfig, binary, free_ports
from serve.jobs import JobError, JobRunner
from serve.rqjobs import ENV_TASKS, RQRunner

pytestmark = pytest.mark.skipif(binary("redis-server") is None, reason="redis-server is not installed (make services)")


def timed_task(seconds: float, tag: str, report, should_stop) -> dict:
    """A job that works for `seconds` in small steps, reporting each, and stops early when asked."""
    t0 = time.time()
    steps = 0
    while time.time() - t0 < seconds:
        if should_stop():
            break
        time.sleep(0.05)
        steps += 1
        report({"step": steps})
    return {"tag": tag, "start": t0, "end": time.time(), "steps": steps}


TIMED = "tests.test_hall_rq:timed_task"


@pytest.fixture(scope="module", autouse=True)
def allow_the_test_task():
    """This file's timed_task joins the allow-list, in this process and (inherited) in the workers it starts."""
    before = os.environ.get(ENV_TASKS)
    os.environ[ENV_TASKS] = TIMED
    yield
    if before is None:
        os.environ.pop(ENV_TASKS, None)
    else:
        os.environ[ENV_TASKS] = before


@pytest.fixture(scope="module")
def store(tmp_path_factory, allow_the_test_task):
    base = free_ports(2)
    h = Hall(HallConfig(replicas=1, cache_port=base, store_port=base + 1,
                        store_dir=str(tmp_path_factory.mktemp("store")), warm=False, worker=False))
    h.start_redis("store")
    # the worker exactly as serve/hall.py starts it (one per lane; here the gpu lane)
    h.spawn("rq-gpu", [sys.executable, "-m", "serve.rqjobs", "worker", "--lane", "gpu", "--url", h.cfg.store_url])
    yield h
    h.stop()


def wait_for(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_two_replicas_one_job_at_a_time_positions_and_cancel(store):
    r1, r2 = RQRunner(store.cfg.store_url), RQRunner(store.cfg.store_url)  # two server processes
    a = r1.submit("alice", functools.partial(timed_task, 2.0, "a"), lane="gpu", label="a")
    b = r2.submit("bob", functools.partial(timed_task, 1.0, "b"), lane="gpu", label="b")
    c = r1.submit("alice", functools.partial(timed_task, 1.0, "c"), lane="gpu", label="c")
    d = r2.submit("bob", functools.partial(timed_task, 1.0, "d"), lane="gpu", label="d")
    assert wait_for(lambda: r1.get("alice", a).status == "running"), r1.get("alice", a)
    # positions while a runs: b, c, d wait in submission order, whichever replica asks
    assert r1.queue_position("alice", a) == 0
    assert r2.queue_position("bob", b) == 1
    assert r1.queue_position("alice", c) == 2
    assert r2.queue_position("bob", d) == 3
    assert r1.lane_load("gpu") == (1, 3) == r2.lane_load("gpu")
    # each sees only its own jobs
    assert [v.id for v in r1.jobs("alice")] == [a, c] and [v.id for v in r2.jobs("bob")] == [b, d]
    assert r1.get("alice", b) is None and not r1.cancel("alice", b)  # alice cannot see or cancel bob's job
    # cancel a queued job: it leaves the queue, and d moves up
    assert r1.cancel("alice", c)
    assert r1.get("alice", c).status == "cancelled"
    assert r2.queue_position("bob", d) == 2
    views = {j: (r1 if j in (a, c) else r2).wait("alice" if j in (a, c) else "bob", j, timeout=60) for j in (a, b, d)}
    assert all(v.status == "done" for v in views.values()), views
    runs = sorted((v.result["start"], v.result["end"], v.result["tag"]) for v in views.values())
    assert [t for *_, t in runs] == ["a", "b", "d"]  # first in, first out
    for (_, end, _), (start, _, _) in zip(runs, runs[1:]):
        assert start >= end  # one at a time: the next job started after the previous one ended
    assert len(views[a].progress) == views[a].result["steps"] > 10  # the progress rows came back
    assert r1.get("alice", c).result is None  # c never ran


def test_cancel_a_running_job_keeps_its_partial_result(store):
    r = RQRunner(store.cfg.store_url)
    j = r.submit("carol", functools.partial(timed_task, 30.0, "long"), lane="gpu", label="long")
    assert wait_for(lambda: len(r.get("carol", j).progress) >= 3)
    assert r.cancel("carol", j)
    view = r.wait("carol", j, timeout=20)
    assert view.status == "cancelled", view
    assert view.result["tag"] == "long" and view.result["end"] - view.result["start"] < 10  # stopped early
    assert r.cancel_owner("carol") == 0  # nothing left to cancel


def test_a_closure_or_another_function_is_refused_with_a_message(store):
    r = RQRunner(store.cfg.store_url)
    with pytest.raises(JobError, match="not importable"):
        r.submit("dave", lambda report, should_stop: 1, lane="gpu")
    with pytest.raises(JobError, match="not importable"):
        r.submit("dave", functools.partial(os.system, "true"), lane="gpu")
    assert r.jobs("dave") == []


def test_the_cifar_pages_jobs_are_allowed_tasks():
    from core.cifar import tasks
    from core.cifar.profiles import EscapeConfig
    from core.cifar.train import TrainConfig
    from serve import safecodec
    from serve.rqjobs import job_call

    name, args = job_call(functools.partial(tasks.train_task, TrainConfig()))
    assert name == "core.cifar.tasks:train_task"
    import base64

    assert safecodec.decode(base64.b64decode(args)) == (TrainConfig(),)
    name, _ = job_call(functools.partial(tasks.escape_task, TrainConfig(), EscapeConfig()))
    assert name == "core.cifar.tasks:escape_task"
    src = (REPO / "pages" / "cifar.py").read_text()
    assert "functools.partial(tasks.train_task" in src and "functools.partial(tasks.escape_task" in src


def test_default_runner_follows_the_environment(store):
    code = ("from serve.runner import default_runner; print(type(default_runner()).__name__)")
    env_on = {"SAMLAB_STORE_URL": store.cfg.store_url, "PATH": "/usr/bin:/bin"}
    on = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env_on, capture_output=True, text=True)
    off = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert on.stdout.strip() == "RQRunner", on.stderr[-300:]
    assert off.stdout.strip() == JobRunner.__name__, off.stderr[-300:]


def test_a_store_that_is_down_gives_one_line():
    r = RQRunner(f"redis://127.0.0.1:{free_ports(1)}/0")
    with pytest.raises(JobError, match="unavailable"):
        r.submit("erin", functools.partial(timed_task, 0.1, "x"), lane="gpu")
    assert r.jobs("erin") == [] and r.lane_load("gpu") == (0, 0) and r.get("erin", "nope") is None


def test_the_cifar_page_on_the_halls_queue(store, monkeypatch, one_torch_thread):
    """pages/cifar.py with the hall's runner (as under make hall) and a CPU-lane worker, as serve/hall.py starts
    it: two students' runs go through RQ, the second sees its queue position on the page, 'Cancel my runs' takes
    it out of the queue, the first runs when the worker starts, and a reload finds it finished."""
    import serve.runner
    from tests.pagetest import run_page

    runner = RQRunner(store.cfg.store_url)
    monkeypatch.setattr(serve.runner, "_DEFAULT", runner)  # what default_runner() returns under SAMLAB_STORE_URL
    params = dict(train_size=500, epochs=2, opts="sgd")
    a = run_page("pages/cifar.py", **params)
    a.button[0].click().run()  # "Train in the background"
    owner_a = a.session_state["lab"]
    (job_a,) = runner.jobs(owner_a)
    b = run_page("pages/cifar.py", **params)
    b.button[0].click().run()
    owner_b = b.session_state["lab"]
    (job_b,) = runner.jobs(owner_b)
    # the CPU lane's worker is not started yet: both runs wait, b behind a, and b's page says where
    assert any("queued, position 2 in the CPU queue" in m.value for m in b.markdown), [m.value for m in b.markdown]
    b.button[1].click().run()  # "Cancel my runs"
    assert runner.get(owner_b, job_b.id).status == "cancelled"
    assert runner.queue_position(owner_a, job_a.id) == 1
    store.spawn("rq-cpu", [sys.executable, "-m", "serve.rqjobs", "worker", "--lane", "cpu",
                           "--url", store.cfg.store_url])
    view = runner.wait(owner_a, job_a.id, timeout=300)
    assert view.status == "done", view.error
    assert len(view.progress) == 2  # one row per epoch came back through Redis
    again = run_page("pages/cifar.py", lab=owner_a, **params)  # a reload, maybe on another replica
    table = again.dataframe[0].value
    assert len(table) == 1 and table["status"].iloc[0] == "done"


class Boom:
    """Unpickling this creates `path` (what an attacker's payload would do, harmlessly)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_pickle_job_is_refused_logged_once_and_never_runs(store, tmp_path):
    """Who can write to the store plants (a) a job whose data is a crafted pickle, (b) a JSON job naming
    os.system, (c) a pickle under a real job's result key and progress list. Nothing runs; the worker
    refuses each once (its log) and keeps serving: a real job after them is done."""
    import redis
    from rq import Queue

    r = redis.Redis.from_url(store.cfg.store_url)
    marker = tmp_path / "pwned"
    planted = Queue("samlab-gpu", connection=r)  # RQ's default (pickle) serializer: the attacker's choice
    bad = planted.enqueue_call(open, args=(str(marker), "w"))
    r.hset(f"rq:job:{bad.id}", "data", pickle.dumps(Boom(marker)))
    from rq.serializers import JSONSerializer

    json_q = Queue("samlab-gpu", connection=r, serializer=JSONSerializer)
    named = json_q.enqueue_call("os.system", args=(f"touch {marker}",))
    runner = RQRunner(store.cfg.store_url)
    good = runner.submit("frank", functools.partial(timed_task, 0.3, "after"), lane="gpu", label="after")
    view = runner.wait("frank", good, timeout=60)
    assert view is not None and view.status == "done" and view.result["tag"] == "after"
    assert not marker.exists()
    assert runner.get("frank", bad.id) is None  # not frank's (its meta is not even readable)
    for job_id in (bad.id, named.id):
        status = r.hget(f"rq:job:{job_id}", "status")
        assert status == b"failed", (job_id, status)
    log = store.procs["rq-gpu"].log.read_text()
    assert log.count(f"refused job {bad.id}") == 1 and log.count(f"refused job {named.id}") == 1, log[-2000:]
    # (c) a pickle under a finished job's result key and in its progress list: refused, never decoded
    r.set(f"samlab:jobs:{good}:result", pickle.dumps(Boom(marker)))
    r.rpush(f"samlab:jobs:{good}:progress", pickle.dumps(Boom(marker)))
    again = runner.get("frank", good)
    assert again.status == "failed" and "refused" in again.error and again.result is None
    assert len(again.progress) == len(view.progress)  # the planted row is skipped
    assert not marker.exists()


def test_a_cifar_result_with_its_weights_travels_without_pickle():
    """train_task's result (a dict with the state dict of tensors) in safecodec's format: equal tensors back."""
    import torch

    from core.cifar.models import TinyCNN
    from serve import safecodec

    state = TinyCNN().state_dict()
    back = safecodec.decode(safecodec.encode({"result": {"acc": 0.5, "history": [1.0, 2.0]}, "state": state}))
    assert back["result"] == {"acc": 0.5, "history": [1.0, 2.0]}
    assert list(back["state"]) == list(state)
    for k, v in state.items():
        assert back["state"][k].dtype == v.dtype and torch.equal(back["state"][k], v)
