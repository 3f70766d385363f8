"""The hall's warm-up: every lecture scene at every step of its page's ρ slider, computed once into the
shared cache, so a hall that opens the same scene costs almost nothing.

    SAMLAB_CACHE_URL=redis://127.0.0.1:6391/0 .venv/bin/python -m serve.warm [--scenes escape,valley] [--limit N]

How: each scene's page is RUN, as a student's replica runs it (Streamlit's AppTest, in this process),
with the scene's URL parameters, and then with its ρ slider moved to each step. The pages' cached
functions (app.cache.shared) put their results into the shared cache under the very keys the replicas
look up, because the configs are built by the pages' own code: nothing about a page's config is
written twice. The most likely configs come first: every scene's own ρ, then the steps next to it,
working outwards, all scenes in turn. A page whose ρ moves in the browser (the ρ chart component,
app/components/rhochart) computes every step of its grid in the run that opens it: its scenes are warm once
opened, with no slider steps to run.

It prints one progress line every few seconds ("warm-up: 120/850 page runs, 31 MB in the cache, 64 s")
and a last line with the totals. serve/hall.py starts it in the background at a lower priority than
the replicas, so the hall serves while it warms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RHO_KEY = "rho"
SKIP_PAGES = ("home", "cifar", "sam_step")  # no simulation behind their ρ (sam_step draws one step, ~1 ms)
PAGE_TIMEOUT_S = 300


@dataclass(frozen=True)
class Task:
    scene: str
    page: str
    params: tuple  # the scene's URL parameters, (key, value) pairs
    rho: float | None  # None: the scene as it opens


def lecture_scenes(names: list[str] | None = None) -> list:
    """The lecture scenes (app.presets.scenes) whose page has a ρ slider over a simulation."""
    from app.presets import scenes

    out = [s for s in scenes().values() if s.page not in SKIP_PAGES and "rho" in s.params]
    return [s for s in out if not names or s.name in names or s.page in names]


def slider_steps(lo: float, hi: float, step: float) -> list[float]:
    n = int(round((hi - lo) / step))
    return [round(lo + i * step, 6) for i in range(n + 1)]


def plan(scene_steps: dict) -> list[Task]:
    """Every (scene, ρ step), nearest to each scene's own ρ first, the scenes interleaved."""
    tasks = []
    for s, steps in scene_steps.items():
        own = float(s.params["rho"])
        for rank, rho in enumerate(sorted(steps, key=lambda r: (abs(r - own), r))):
            tasks.append((rank, s.name, Task(s.name, s.page, tuple(sorted(s.params.items())), rho)))
    return [t for _, _, t in sorted(tasks, key=lambda x: (x[0], x[1]))]


def cache_mb() -> float | None:
    """The shared cache's used memory in MB (None without one)."""
    from serve.sharedcache import default_cache

    c = default_cache()
    if c is None:
        return None
    try:
        return int(c.redis.info("memory")["used_memory"]) / 2**20
    except c._errors:
        return None


def run(names: list[str] | None = None, limit: int | None = None, out=sys.stdout) -> dict:
    """Warm the scenes; return {"runs", "failed", "seconds", "mb", "keys"}."""
    from streamlit.testing.v1 import AppTest

    if not os.environ.get("SAMLAB_CACHE_URL"):
        print("warm-up: SAMLAB_CACHE_URL is not set; nothing to warm", file=out, flush=True)
    t0 = time.monotonic()
    apps: dict[str, AppTest] = {}
    scene_steps = {}
    failed = opened_grids = 0
    for s in lecture_scenes(names):  # open each scene once: this also reads its slider's range
        at = AppTest.from_file(str(REPO / "pages" / f"{s.page}.py"), default_timeout=PAGE_TIMEOUT_S)
        for k, v in s.params.items():
            at.query_params[k] = v
        try:
            at.run()
            if at.exception:
                raise RuntimeError(at.exception[0].value)
            sliders = [w for w in at.slider if w.key == RHO_KEY]
        except Exception as e:  # a page that cannot open is reported and skipped; the hall still serves it
            print(f"warm-up: scene {s.name} did not open ({type(e).__name__}: {str(e)[:120]})", file=out, flush=True)
            failed += 1
            continue
        if not sliders:  # ρ moves in the browser: this run computed every step of the grid
            opened_grids += 1
            continue
        slider = sliders[0].proto
        apps[s.name] = at
        scene_steps[s] = slider_steps(slider.min, slider.max, slider.step)
    tasks = plan(scene_steps)[:limit]
    last_print = time.monotonic()
    for i, task in enumerate(tasks, 1):
        at = apps[task.scene]
        try:
            at.slider(key=RHO_KEY).set_value(task.rho).run()
            if at.exception:
                failed += 1
        except Exception:  # a timeout or a page error: counted, the warm-up goes on
            failed += 1
        if time.monotonic() - last_print >= 5 or i == len(tasks):
            mb = cache_mb()
            print(f"warm-up: {i}/{len(tasks)} page runs ({task.scene} ρ={task.rho:g})"
                  + (f", {mb:.0f} MB in the cache" if mb is not None else "")
                  + f", {time.monotonic() - t0:.0f} s", file=out, flush=True)
            last_print = time.monotonic()
    from serve.sharedcache import default_cache

    c = default_cache()
    keys = None
    if c is not None:
        try:
            keys = int(c.redis.dbsize())
        except c._errors:
            pass
    result = {"runs": len(tasks) + opened_grids, "scenes": len(apps) + opened_grids, "failed": failed,
              "seconds": round(time.monotonic() - t0, 1), "mb": cache_mb(), "keys": keys}
    print(f"warm-up: done, {result['runs']} page runs over {result['scenes']} scenes in {result['seconds']} s"
          + (f", {result['mb']:.0f} MB and {keys} keys in the cache" if result["mb"] is not None else "")
          + (f", {failed} failed" if failed else ""), file=out, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.warm", description=__doc__.split("\n")[0])
    p.add_argument("--scenes", default="", help="comma-separated scene or page names (default: all lecture scenes)")
    p.add_argument("--limit", type=int, default=None, help="at most this many page runs")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the replicas come first: the warm-up takes one core at most
    run([x.strip() for x in a.scenes.split(",") if x.strip()] or None, a.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
