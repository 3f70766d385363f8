"""The job runner of this process: the hall's RQ queue under `make hall`, else the in-process one.

serve/jobs.py (threads in this process) and serve/rqjobs.py (one RQ queue per lane in the hall's Redis) have
the same interface; the CIFAR page asks `default_runner()` and does not care which one it gets.
"""

from __future__ import annotations

import threading

from core.methods import page_methods
from serve.jobs import JobRunner
from serve.rqjobs import runner_from_env

_DEFAULT: JobRunner | None = None
_DEFAULT_LOCK = threading.Lock()


def default_runner() -> JobRunner:
    """The process-wide runner shared by all sessions (so 'one GPU job at a time' holds server-wide).
    Under `make hall` ($SAMLAB_STORE_URL set) it is the hall's RQ queue (serve.rqjobs.RQRunner), shared by
    every replica, so 'one GPU job at a time' holds hall-wide; its jobs must be importable functions."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = runner_from_env()
        if _DEFAULT is None:
            # finished runs hold weights: keep the newest 50; one click may queue every method the CIFAR page
            # offers (the registry's page methods), and one more run may still be waiting
            _DEFAULT = JobRunner(max_kept=50, max_queued_per_owner=len(page_methods()) + 1)
        return _DEFAULT
