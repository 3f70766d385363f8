"""The CIFAR page's background jobs as importable functions: a config in, a plain result out.

A job runner calls `fn(report, should_stop)` (serve/jobs.py). The page binds a config with
`functools.partial(train_task, cfg)`; a partial of a module-level function pickles BY REFERENCE, which is
what the lecture hall's RQ queue (serve/rqjobs.py) needs to run the job in its worker process. The
in-process runner of `make app` calls the same partial directly.
"""

from __future__ import annotations

from collections.abc import Callable

from core.cifar.profiles import EscapeConfig, escape
from core.cifar.train import TrainConfig, train


def train_task(cfg: TrainConfig, report: Callable[[dict], None], should_stop: Callable[[], bool]) -> dict:
    """One training run (core.cifar.train.train): its result as a dict and the final weights."""
    res = train(cfg, on_epoch=report, should_stop=should_stop)
    return {"result": res.to_dict(), "state": res.state}


def escape_task(cfg: TrainConfig, esc: EscapeConfig, report: Callable[[dict], None],
                should_stop: Callable[[], bool]) -> dict:
    """Escape on a real net (core.cifar.profiles.escape): train `cfg` with SGD, then continue from it with SGD
    and with SAM at each ρ of `esc`; one progress row per stage. `complete` is False when it stopped early."""
    result = escape(cfg, esc, should_stop=should_stop, on_stage=report)
    return {"escape": result.to_dict(), "complete": len(result.rows) == 1 + len(esc.rhos)}
