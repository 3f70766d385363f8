"""A small background job runner: threads, queues, cancellation. No Streamlit here.

The CIFAR page trains in the background so the page stays usable. On a shared server:
  * one GPU job runs at a time ("gpu" lane: a single worker); CPU jobs get a small bounded lane too;
  * the others wait in a first-in-first-out queue, and anyone can ask for their position in it;
  * a job is owned by a session id, and a session sees (and cancels) only its own jobs;
  * finished results stay by job id (the newest `max_kept`), so a page reload can fetch them;
  * `cancel_owner(session_id)` stops everything a session started, when that session ends;
  * workers are started on demand and exit when their lane is empty: no threads linger.

A job is a callable `fn(report, should_stop) -> result`: it calls `report(dict)` with progress
(e.g. one dict per epoch) and checks `should_stop()` often, returning early when it is true.

Under `make hall` the process's runner (serve/runner.py) is serve/rqjobs.py's RQRunner instead: the same
interface over one RQ queue per lane in the hall's Redis store, so N replicas still run one GPU job at a time.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LANES = ("gpu", "cpu")
THREAD_PREFIX = "samlab-job"


class JobError(RuntimeError):
    """A refused submission (queue full, unknown lane). str(e) is one line."""


@dataclass
class _Job:
    id: str
    owner: str
    lane: str
    label: str
    fn: Callable
    meta: dict = field(default_factory=dict)  # what the caller wants back with the job (e.g. its config)
    status: str = "queued"  # queued | running | done | failed | cancelled
    progress: list = field(default_factory=list)
    result: Any = None
    error: str = ""
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JobView:
    """A snapshot of a job for its owner. `queue_position` is 0 while running, n ≥ 1 while n−1 jobs
    are ahead of it in its lane's queue, None once finished."""

    id: str
    label: str
    lane: str
    status: str
    queue_position: int | None
    progress: tuple
    result: Any
    error: str
    submitted: float
    started: float | None
    finished: float | None
    meta: dict

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class JobRunner:
    def __init__(self, workers: dict[str, int] | None = None, max_kept: int = 200,
                 max_queued_per_owner: int = 4, max_queued: int = 64):
        self._workers = {"gpu": 1, "cpu": 1, **(workers or {})}
        self._max_kept = max_kept
        self._max_per_owner = max_queued_per_owner
        self._max_queued = max_queued
        self._lock = threading.Condition()
        self._queues = {lane: deque() for lane in self._workers}
        self._jobs: dict[str, _Job] = {}
        self._threads: dict[str, set[threading.Thread]] = {lane: set() for lane in self._workers}
        self._counter = itertools.count()
        self._closed = False

    # ----------------------------------------------------------------------- submitting
    def submit(self, owner: str, fn: Callable, lane: str = "gpu", label: str = "", meta: dict | None = None) -> str:
        """Queue `fn(report, should_stop)` in `lane`; return the job id. `meta` comes back (a copy) on
        every view of the job, e.g. the config it was submitted with."""
        if lane not in self._queues:
            raise JobError(f"unknown lane {lane!r}; use one of {', '.join(self._queues)}")
        with self._lock:
            if self._closed:
                raise JobError("the job runner is shut down")
            queued = sum(len(q) for q in self._queues.values())
            mine = sum(1 for j in self._jobs.values() if j.owner == owner and j.status in ("queued", "running"))
            if mine >= self._max_per_owner:
                raise JobError(f"you already have {mine} jobs queued or running; wait or cancel one")
            if queued >= self._max_queued:
                raise JobError("the server's queue is full; try again in a few minutes")
            job = _Job(id=uuid.uuid4().hex[:12], owner=str(owner), lane=lane, label=label, fn=fn, meta=dict(meta or {}))
            self._jobs[job.id] = job
            self._queues[lane].append(job)
            self._prune()
            self._maybe_start_worker(lane)
            self._lock.notify_all()
            return job.id

    def _maybe_start_worker(self, lane: str) -> None:
        alive = {t for t in self._threads[lane] if t.is_alive()}
        self._threads[lane] = alive
        busy = sum(1 for j in self._jobs.values() if j.lane == lane and j.status == "running")
        idle = len(alive) - busy
        if idle < len(self._queues[lane]) and len(alive) < self._workers[lane]:
            t = threading.Thread(target=self._work, args=(lane,), daemon=True,
                                 name=f"{THREAD_PREFIX}-{lane}-{next(self._counter)}")
            self._threads[lane].add(t)
            t.start()

    def _work(self, lane: str) -> None:
        while True:
            with self._lock:
                if not self._queues[lane] or self._closed:
                    self._threads[lane].discard(threading.current_thread())
                    return  # nothing left: the worker ends instead of idling forever
                job = self._queues[lane].popleft()
                job.status, job.started = "running", time.time()
            try:
                result = job.fn(lambda row, j=job: self._report(j, row), job.stop.is_set)
                status, error = ("cancelled" if job.stop.is_set() else "done"), ""
            except Exception as e:  # a job's failure is its status, never the server's crash
                result, status = None, "failed"
                error = (str(e).splitlines() or [type(e).__name__])[0][:300]
            with self._lock:
                job.result, job.status, job.error, job.finished = result, status, error, time.time()
                job.fn = None  # drop the closure (it may hold big objects)
                self._lock.notify_all()

    def _report(self, job: _Job, row: dict) -> None:
        with self._lock:
            job.progress.append(dict(row))

    def _prune(self) -> None:
        done = [j for j in self._jobs.values() if j.status not in ("queued", "running")]
        for j in sorted(done, key=lambda j: j.finished or 0)[: max(0, len(done) - self._max_kept)]:
            del self._jobs[j.id]

    # ----------------------------------------------------------------------- querying
    def _position(self, job: _Job) -> int | None:
        if job.status == "running":
            return 0
        if job.status == "queued":
            return list(self._queues[job.lane]).index(job) + 1
        return None

    def _view(self, job: _Job) -> JobView:
        return JobView(job.id, job.label, job.lane, job.status, self._position(job), tuple(job.progress),
                       job.result, job.error, job.submitted, job.started, job.finished, dict(job.meta))

    def get(self, owner: str, job_id: str) -> JobView | None:
        """The job if it exists and belongs to `owner`; None otherwise (other sessions' jobs are invisible)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return self._view(job) if job is not None and job.owner == str(owner) else None

    def jobs(self, owner: str) -> list[JobView]:
        """All of `owner`'s jobs, oldest first."""
        with self._lock:
            return [self._view(j) for j in self._jobs.values() if j.owner == str(owner)]

    def queue_position(self, owner: str, job_id: str) -> int | None:
        view = self.get(owner, job_id)
        return view.queue_position if view else None

    def lane_load(self, lane: str) -> tuple[int, int]:
        """(running, queued) in a lane, over all owners: numbers only, no one's jobs."""
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.lane == lane and j.status == "running")
            return running, len(self._queues.get(lane, ()))

    def wait(self, owner: str, job_id: str, timeout: float | None = None) -> JobView | None:
        """Block until the job has finished (or the timeout passed); return its view."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._jobs.get(job_id)
                if job is None or job.owner != str(owner):
                    return None
                if job.status not in ("queued", "running"):
                    return self._view(job)
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return self._view(job)
                self._lock.wait(left)

    # ----------------------------------------------------------------------- stopping
    def cancel(self, owner: str, job_id: str) -> bool:
        """Cancel one of `owner`'s jobs: a queued one leaves the queue, a running one is asked to stop."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.owner != str(owner) or job.status not in ("queued", "running"):
                return False
            job.stop.set()
            if job.status == "queued":
                self._queues[job.lane].remove(job)
                job.status, job.finished, job.fn = "cancelled", time.time(), None
            self._lock.notify_all()
            return True

    def cancel_owner(self, owner: str) -> int:
        """Cancel every queued or running job of `owner` (e.g. when its session ends)."""
        with self._lock:
            ids = [j.id for j in self._jobs.values() if j.owner == str(owner) and j.status in ("queued", "running")]
        return sum(self.cancel(owner, i) for i in ids)

    def threads(self) -> list[threading.Thread]:
        """The live worker threads (for tests and monitoring)."""
        with self._lock:
            return [t for lane in self._threads.values() for t in lane if t.is_alive()]

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel all jobs, refuse new ones, and join the workers. True if all threads ended."""
        with self._lock:
            self._closed = True
            owners = {j.owner for j in self._jobs.values()}
        for o in owners:
            self.cancel_owner(o)
        end = time.monotonic() + timeout
        for t in self.threads():
            t.join(max(0.0, end - time.monotonic()))
        return not self.threads()
