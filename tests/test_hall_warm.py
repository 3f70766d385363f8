"""The hall's warm-up (serve/warm.py).

Claims:
1. the plan covers every step of each scene's ρ slider once, each scene's own ρ first, then outwards;
2. the lecture scenes it warms are those with a simulation behind a ρ slider (escape, valley, playground, psam);
3. what it computes is what a replica later asks for: after warming the escape scene (at its own ρ, or every
   step at once where the page draws ρ in the browser), a fresh
   process ("another replica") that opens the scene's page computes nothing and hits the shared cache.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.presets import Scene
from serve import warm
from serve.hall import REPO, Hall, HallConfig, binary, free_ports


def test_plan_covers_every_step_nearest_first():
    a = Scene("a", "A", "escape", {"rho": "0.2"})
    b = Scene("b", "B", "valley", {"rho": "0.1"})
    steps = warm.slider_steps(0.0, 0.3, 0.005)
    assert len(steps) == 61 and steps[0] == 0.0 and steps[-1] == 0.3
    tasks = warm.plan({a: steps, b: steps})
    assert len(tasks) == 122
    assert sorted(t.rho for t in tasks if t.scene == "a") == steps  # every step once
    assert [(t.scene, t.rho) for t in tasks[:2]] == [("a", 0.2), ("b", 0.1)]  # each scene's own ρ first
    dist = [abs(t.rho - 0.2) for t in tasks if t.scene == "a"]
    assert dist == sorted(dist)  # then working outwards


def test_the_lecture_scenes_with_a_simulation():
    pages = {s.page for s in warm.lecture_scenes()}
    assert pages == {"escape", "valley", "playground", "psam"}
    assert {s.name for s in warm.lecture_scenes(["zhu_breaks"])} == {"zhu_breaks"}  # by scene name
    assert {s.name for s in warm.lecture_scenes(["escape"])} == {"escape", "zhu_breaks"}  # by page: its scenes


CHECK = """
import json, sys
from streamlit.testing.v1 import AppTest
from serve.sharedcache import default_cache
from app.presets import scenes
s = scenes()["escape"]
at = AppTest.from_file("pages/escape.py", default_timeout=300)
for k, v in s.params.items():
    at.query_params[k] = v
at.run()
assert not at.exception, [e.value for e in at.exception]
print(json.dumps(default_cache().stats()))
"""


@pytest.mark.skipif(binary("redis-server") is None, reason="redis-server is not installed (make services)")
@pytest.mark.timeout(600)
def test_the_warm_up_fills_the_keys_a_replica_asks_for(tmp_path):
    base = free_ports(2)
    h = Hall(HallConfig(replicas=1, cache_port=base, store_port=base + 1, store_dir=str(tmp_path), warm=False,
                        worker=False))
    h.start_redis("cache")
    try:
        # The warm-up runs in a process of its own, as `make hall` starts it (serve.hall.start_warmup): in the
        # test process, state left by earlier tests could change the configs it builds.
        env = {"SAMLAB_CACHE_URL": h.cfg.cache_url, "SAMLAB_REPLICA": "warm-up", "PATH": "/usr/bin:/bin"}
        warm_out = subprocess.run([sys.executable, "-m", "serve.warm", "--scenes", "escape", "--limit", "1"], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=500)
        assert warm_out.returncode == 0, warm_out.stderr[-1500:]
        assert "warm-up: done" in warm_out.stdout and "failed" not in warm_out.stdout, warm_out.stdout[-500:]
        env = {"SAMLAB_CACHE_URL": h.cfg.cache_url, "SAMLAB_REPLICA": "r9", "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=500)
        assert out.returncode == 0, out.stderr[-1500:]
        stats = __import__("json").loads(out.stdout.strip().splitlines()[-1])
        assert stats.get("computed:warm-up", 0) >= 2, stats  # the warm-up computed the scene's SGD and SAM runs …
        assert stats.get("computed:r9", 0) == 0, stats  # the other process computed nothing …
        assert stats.get("hit:r9", 0) >= 2, stats  # … its SGD and SAM runs came from the warm-up
    finally:
        h.stop()
