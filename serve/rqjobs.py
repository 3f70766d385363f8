"""The lecture hall's job runner: one queue per lane in the hall's Redis store, run by RQ workers.

Under `make hall` N Streamlit replicas serve the students. If each replica ran its own in-process
JobRunner (serve/jobs.py), N replicas would put N training runs on one GPU at once. Here every replica
submits to the same RQ queue (python-rq, a well-kept job queue on Redis) and ONE worker per lane, started
by serve/hall.py, runs the jobs one at a time.

`RQRunner` has the JobRunner's interface (submit, jobs, get, queue_position, lane_load, wait, cancel,
cancel_owner, shutdown), so the CIFAR page does not care which one it talks to. Differences:

* RQ runs a job in another process, and nothing read from Redis is unpickled (whoever can write to the
  store must not run code in the worker or the replicas). A job is a `functools.partial` of a function
  in the allow-list `TASKS` (core/cifar/tasks.py's `train_task` and `escape_task`) with its configs, e.g.
  `functools.partial(core.cifar.tasks.train_task, cfg)`, called as `fn(report, should_stop)` as in JobRunner.
  It goes to RQ as `run_task(task name, configs)`: RQ's JSON serializer for the job's data and meta, the
  configs in serve/safecodec.py's format (allow-listed dataclasses only). The worker's job class (`SafeJob`)
  runs no function but `run_task`, and `run_task` none but the allow-list's; anything else is refused,
  logged once per job, and never run.
* the result (a dict, with the trained weights as tensors) travels in serve/safecodec.py's format too, under
  its own key (`samlab:jobs:<id>:result`): tensors as raw bytes with dtype and shape, rebuilt with
  `torch.frombuffer`; nothing in it is evaluated. (RQ's own return value is only the result's size.)
* progress rows (`report(dict)`) go to a Redis list per job; `should_stop()` reads a stop flag per job
  (at most twice a second), so a cancelled run stops between two steps and keeps its partial result, as in
  the in-process runner. A queued job is simply taken out of the queue (RQ's `Job.cancel`).
* ownership: a Redis list per owner holds their job ids; a session sees and cancels only its own jobs.

The worker: `python -m serve.rqjobs worker --lane gpu --url redis://127.0.0.1:6392/0` (serve/hall.py starts
one per lane). It is RQ's SimpleWorker: jobs run in the worker process itself, so torch is imported and the
CUDA context created once, not once per job.
"""

from __future__ import annotations

import argparse
import base64
import functools
import logging
import os
import sys
import time
from collections.abc import Callable

from rq.job import Job
from rq.serializers import JSONSerializer

from serve import safecodec
from serve.jobs import LANES, JobError, JobView

log = logging.getLogger("samlab.rqjobs")

ENV_URL = "SAMLAB_STORE_URL"
QUEUE_PREFIX = "samlab-"  # queue names: samlab-gpu, samlab-cpu
KEY = "samlab:jobs:"  # samlab:jobs:owner:<owner>, samlab:jobs:<id>:progress, samlab:jobs:<id>:stop
JOB_TIMEOUT_S = 6 * 3600  # a long CIFAR run on a CPU lane; RQ's default (180 s) would kill it
KEEP_S = 24 * 3600  # results, progress and the owner's list live this long
STOP_POLL_S = 0.5
# The functions a job may name ("module:function"). $SAMLAB_JOB_TASKS adds names (comma-separated) for the
# hall's own tests; it is read from the environment of the worker and of the submitting process, never
# from Redis.
TASKS = ("core.cifar.tasks:train_task", "core.cifar.tasks:escape_task")
ENV_TASKS = "SAMLAB_JOB_TASKS"
RUN_TASK = "serve.rqjobs.run_task"

_STATUS = {"queued": "queued", "deferred": "queued", "scheduled": "queued", "started": "running",
           "finished": "done", "failed": "failed", "stopped": "cancelled", "canceled": "cancelled"}


def _connect(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)


def allowed_tasks() -> tuple[str, ...]:
    extra = tuple(t.strip() for t in os.environ.get(ENV_TASKS, "").split(",") if t.strip())
    return TASKS + extra


def task_name(fn: Callable) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _task(name: str) -> Callable:
    """The allow-listed function `name` ("module:function"); JobError for any other name."""
    if name not in allowed_tasks():
        raise JobError(f"refused: {name!r} is not a job this hall runs")
    import importlib

    module, _, qual = name.partition(":")
    return getattr(importlib.import_module(module), qual)


class JobRefused(RuntimeError):
    """A job in the queue that names something other than run_task (planted, or from other code)."""


_REFUSED_LOGGED: set[str] = set()


def _refuse(job_id: str, why: str) -> JobRefused:
    if job_id not in _REFUSED_LOGGED:  # once per job: a job RQ retries must not flood the log
        _REFUSED_LOGGED.add(job_id)
        log.warning("refused job %s: %s; it does not run", job_id, why)
    return JobRefused(f"refused: {why}")


class SafeJob(Job):
    """RQ's Job that runs nothing but `run_task` and calls no callbacks by name. Its data and meta are read
    with RQ's JSON serializer (a pickle in their place fails to decode and is refused)."""

    def _deserialize_data(self):
        from rq.exceptions import DeserializationError

        try:
            super()._deserialize_data()
        except DeserializationError:
            _refuse(self.id, "its data is not JSON (a pickle?)")
            raise
        if self._func_name != RUN_TASK or self._instance is not None:
            _refuse(self.id, f"it names {self._func_name!r}, not {RUN_TASK}")

    @property
    def func(self):
        try:
            name, instance = self.func_name, self.instance
        except Exception as e:  # rq.exceptions.DeserializationError: not JSON (e.g. a planted pickle)
            raise _refuse(self.id, f"its data is not JSON ({type(e).__name__})") from None
        if name != RUN_TASK or instance is not None:
            raise _refuse(self.id, f"it names {name!r}, not {RUN_TASK}")
        return run_task

    @property
    def success_callback(self):
        if self._success_callback_name:
            raise _refuse(self.id, "it names a success callback")
        return None

    @property
    def failure_callback(self):
        return None  # never import a name read from Redis; a failed job is simply failed

    @property
    def stopped_callback(self):
        return None


# ------------------------------------------------------------------------------------------------
# What the worker runs
# ------------------------------------------------------------------------------------------------

def run_task(name: str, args: str) -> dict:
    """Run the allow-listed task `name` with its configs (`args`: safecodec bytes, base64) as the current RQ
    job: `fn(*configs, report, should_stop)`. Progress rows go to the job's Redis list, the stop flag is the
    job's key, the result to the job's result key (all in safecodec's format). Returns the result's size."""
    from rq import get_current_job

    job = get_current_job()
    try:
        fn = _task(name)
        configs = safecodec.decode(base64.b64decode(args))
    except (JobError, safecodec.Refused, ValueError) as e:
        raise _refuse(job.id, str(e)) from None
    r = job.connection
    progress, stop = f"{KEY}{job.id}:progress", f"{KEY}{job.id}:stop"
    last = [0.0, False]

    def report(row: dict) -> None:
        r.rpush(progress, safecodec.encode(dict(row)))
        r.expire(progress, KEEP_S)

    def should_stop() -> bool:
        now = time.monotonic()
        if not last[1] and now - last[0] >= STOP_POLL_S:
            last[0], last[1] = now, bool(r.exists(stop))
        return last[1]

    data = safecodec.encode(fn(*configs, report, should_stop))
    r.set(f"{KEY}{job.id}:result", data, ex=KEEP_S)
    return {"result_bytes": len(data)}


def job_call(fn: Callable) -> tuple[str, str]:
    """(task name, encoded configs) of a job `functools.partial(task, *configs)`; JobError when `fn` is not an
    allow-listed task with configs the safe format carries (a programming error, not a user's)."""
    func = fn.func if isinstance(fn, functools.partial) else fn
    args = fn.args if isinstance(fn, functools.partial) else ()
    if isinstance(fn, functools.partial) and fn.keywords:
        raise JobError("this job cannot go to the hall's queue (not importable): keyword arguments")
    name = task_name(func) if callable(func) else repr(func)
    if name not in allowed_tasks():
        raise JobError(f"this job cannot go to the hall's queue (not importable as an allowed task): {name}")
    try:
        return name, base64.b64encode(safecodec.encode(tuple(args))).decode()
    except safecodec.Unstorable as e:
        raise JobError(f"this job's configs cannot go to the hall's queue: {e}") from None


# ------------------------------------------------------------------------------------------------
# The runner the pages use
# ------------------------------------------------------------------------------------------------

class RQRunner:
    """JobRunner's interface over RQ queues in the hall's store (see the module docstring)."""

    def __init__(self, url: str, max_queued_per_owner: int = 8, max_queued: int = 64, connection=None):
        from rq import Queue

        self.url = url
        self.redis = connection or _connect(url)
        self._queues = {lane: Queue(QUEUE_PREFIX + lane, connection=self.redis, serializer=JSONSerializer,
                                    job_class=SafeJob) for lane in LANES}
        self._max_per_owner, self._max_queued = max_queued_per_owner, max_queued
        import redis

        self._errors = (redis.RedisError, OSError)

    def _job(self, job_id: str):
        from rq.exceptions import NoSuchJobError

        try:
            return SafeJob.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return None

    def _owner_ids(self, owner: str) -> list[str]:
        return [i.decode() for i in self.redis.lrange(f"{KEY}owner:{owner}", 0, -1)]

    # ----------------------------------------------------------------------- submitting
    def submit(self, owner: str, fn: Callable, lane: str = "gpu", label: str = "", meta: dict | None = None) -> str:
        if lane not in self._queues:
            raise JobError(f"unknown lane {lane!r}; use one of {', '.join(self._queues)}")
        name, args = job_call(fn)
        try:
            mine = sum(1 for v in self.jobs(owner) if v.active)
            if mine >= self._max_per_owner:
                raise JobError(f"you already have {mine} jobs queued or running; wait or cancel one")
            if sum(len(q) for q in self._queues.values()) >= self._max_queued:
                raise JobError("the server's queue is full; try again in a few minutes")
            job = self._queues[lane].enqueue_call(
                run_task, args=(name, args), timeout=JOB_TIMEOUT_S, result_ttl=KEEP_S, failure_ttl=KEEP_S,
                description=label or lane,
                meta={"owner": str(owner), "label": label, "lane": lane, "meta": dict(meta or {}),
                      "submitted": time.time()})
            self.redis.rpush(f"{KEY}owner:{owner}", job.id)
            self.redis.expire(f"{KEY}owner:{owner}", KEEP_S)
            return job.id
        except self._errors:
            raise JobError("the hall's job queue is unavailable right now (its store is down); "
                           "try again in a minute") from None

    # ----------------------------------------------------------------------- querying
    def _view(self, job) -> JobView:
        rq_status = job.get_status(refresh=False)
        rq_status = getattr(rq_status, "value", rq_status)
        stopped = bool(self.redis.exists(f"{KEY}{job.id}:stop"))
        status = _STATUS.get(rq_status, "queued")
        if status == "done" and stopped:
            status = "cancelled"  # stopped early on request: the partial result is kept, as in JobRunner
        position = None
        if status == "queued":
            pos = job.get_position()
            position = None if pos is None else pos + 1
        elif status == "running":
            position = 0
        result, error = None, ""
        if status in ("done", "cancelled"):
            raw = self.redis.get(f"{KEY}{job.id}:result")
            if raw is not None:
                try:
                    result = safecodec.decode(raw)
                except safecodec.Refused as e:
                    status, error = "failed", f"its result was refused ({e})"
        if status == "failed" and not error:
            latest = job.latest_result()
            text = (getattr(latest, "exc_string", "") or "").strip().splitlines()
            error = (text[-1] if text else "failed")[:300]
        progress = tuple(self._rows(job.id))
        m = job.meta
        started = job.started_at.timestamp() if job.started_at else None
        finished = job.ended_at.timestamp() if job.ended_at else None
        return JobView(job.id, m.get("label", ""), m.get("lane", ""), status, position, progress, result, error,
                       m.get("submitted", 0.0), started, finished, dict(m.get("meta", {})))

    def _rows(self, job_id: str):
        for b in self.redis.lrange(f"{KEY}{job_id}:progress", 0, -1):
            try:
                yield safecodec.decode(b)
            except safecodec.Refused:
                continue  # a row that is not ours is skipped, never decoded

    def get(self, owner: str, job_id: str) -> JobView | None:
        try:
            job = self._job(job_id)
            return self._view(job) if job is not None and job.meta.get("owner") == str(owner) else None
        except self._errors:
            return None

    def jobs(self, owner: str) -> list[JobView]:
        """All of `owner`'s jobs, oldest first ([] when the store is down)."""
        try:
            views = [self.get(owner, i) for i in self._owner_ids(str(owner))]
        except self._errors:
            return []
        return [v for v in views if v is not None]

    def queue_position(self, owner: str, job_id: str) -> int | None:
        view = self.get(owner, job_id)
        return view.queue_position if view else None

    def lane_load(self, lane: str) -> tuple[int, int]:
        """(running, queued) in a lane, over all owners and replicas."""
        from rq.registry import StartedJobRegistry

        try:
            q = self._queues[lane]
            return StartedJobRegistry(queue=q).count, len(q)
        except (self._errors + (KeyError,)):
            return 0, 0

    def wait(self, owner: str, job_id: str, timeout: float | None = None) -> JobView | None:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            view = self.get(owner, job_id)
            if view is None or not view.active or (end is not None and time.monotonic() >= end):
                return view
            time.sleep(0.1)

    # ----------------------------------------------------------------------- stopping
    def cancel(self, owner: str, job_id: str) -> bool:
        """A queued job leaves the queue; a running one is asked to stop (its stop flag)."""
        view = self.get(owner, job_id)
        if view is None or not view.active:
            return False
        try:
            self.redis.set(f"{KEY}{job_id}:stop", 1, ex=KEEP_S)
            if view.status == "queued":
                job = self._job(job_id)
                if job is not None:
                    job.cancel()
            return True
        except self._errors:
            return False

    def cancel_owner(self, owner: str) -> int:
        return sum(self.cancel(owner, v.id) for v in self.jobs(owner) if v.active)

    def threads(self) -> list:
        return []  # the jobs run in the worker processes, not here

    def shutdown(self, timeout: float = 30.0) -> bool:
        return True  # the queue belongs to the hall, not to this replica


def runner_from_env():
    """An RQRunner on `$SAMLAB_STORE_URL`, or None when it is not set (then serve.jobs' in-process runner)."""
    url = os.environ.get(ENV_URL, "").strip()
    return RQRunner(url) if url else None


# ------------------------------------------------------------------------------------------------
# The worker
# ------------------------------------------------------------------------------------------------

def work(url: str, lanes: tuple[str, ...] = ("gpu",), burst: bool = False) -> None:
    """Run jobs of `lanes` one at a time until stopped (SIGTERM/SIGINT: RQ finishes the current job's
    bookkeeping and exits)."""
    from rq import Queue, SimpleWorker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    r = _connect(url)
    queues = [Queue(QUEUE_PREFIX + lane, connection=r, serializer=JSONSerializer, job_class=SafeJob)
              for lane in lanes]
    SimpleWorker(queues, connection=r, serializer=JSONSerializer, job_class=SafeJob).work(
        burst=burst, logging_level="WARNING")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.rqjobs", description="The hall's job worker.")
    p.add_argument("command", choices=["worker"])
    p.add_argument("--url", default=os.environ.get(ENV_URL, "redis://127.0.0.1:6392/0"))
    p.add_argument("--lane", action="append", choices=LANES, help="lane(s) to serve (default: gpu)")
    p.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    a = p.parse_args(argv)
    work(a.url, tuple(a.lane or ["gpu"]), burst=a.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
