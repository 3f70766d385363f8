"""A real lecture hall for tests (serve/hall.py: HAProxy, both Redis, the replicas), on free ports."""

from __future__ import annotations

import contextlib
import os

from serve.hall import Hall, HallConfig, free_ports


@contextlib.contextmanager
def running_hall(tmp_path_factory, worker: bool):
    """Two replicas behind HAProxy with a cache and a store Redis, no warm-up; `worker` starts the RQ workers.
    Everything it started is stopped on exit."""
    base = free_ports(6)
    cfg = HallConfig(replicas=2, port=base, bind="127.0.0.1", replica_port=base + 1, cache_port=base + 3,
                     store_port=base + 4, store_dir=str(tmp_path_factory.mktemp("store")), warm=False, worker=worker)
    with open(os.devnull, "w") as out, Hall(cfg, out=out) as h:
        yield h
