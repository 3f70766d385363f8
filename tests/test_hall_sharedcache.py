"""serve/sharedcache.py against a real redis-server (started the way `make hall` starts its cache Redis:
serve.hall.Hall.start_redis, on free ports).

Claims:
1. a miss computes and stores; the same call again (here or in another process) is a hit and does not compute;
2. the key is stable across processes and changes with the arguments;
3. two processes that miss the same key at once compute it ONCE (the SET NX lock); the other waits for it;
4. memory stays within the Redis maxmemory bound: old entries are evicted, new ones are never refused;
5. with Redis down (never started, or killed mid-way) the function is computed locally, without an error,
   and the failure is logged once;
6. without SAMLAB_CACHE_URL, shared_call is a plain call.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from serve import sharedcache
from serve.hall import REPO, Hall, HallConfig, binary, free_ports
from serve.sharedcache import SharedCache, cache_key, shared_call

pytestmark = pytest.mark.skipif(binary("redis-server") is None, reason="redis-server is not installed (make services)")


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    base = free_ports(2)
    h = Hall(HallConfig(replicas=1, cache_port=base, store_port=base + 1,
                        store_dir=str(tmp_path_factory.mktemp("store")), warm=False, worker=False))
    h.start_redis("cache")
    yield h
    h.stop()


@pytest.fixture
def cache(hall):
    c = SharedCache(hall.cfg.cache_url, replica="t1")
    c.redis.flushdb()
    return c


def counting(calls: list):
    def fn(x, n=1000):
        calls.append(x)
        return {"x": x, "array": np.arange(n, dtype=np.float32) * x}
    return fn


def test_miss_then_hit(cache):
    calls = []
    fn = counting(calls)
    a = cache.get_or_compute("square", fn, 3.0)
    b = cache.get_or_compute("square", fn, 3.0)
    assert calls == [3.0]  # computed once
    assert b["x"] == 3.0 and np.array_equal(a["array"], b["array"])
    c = cache.get_or_compute("square", fn, 4.0)  # other arguments: another entry
    assert calls == [3.0, 4.0] and c["x"] == 4.0
    assert cache.stats() == {"computed:t1": 2, "hit:t1": 1}


def test_key_is_stable_across_processes_and_follows_the_arguments_and_the_code():
    code = ("from serve.sharedcache import cache_key; from core.toy.simulate import SimConfig, simulate; "
            "print(cache_key('simulate', (SimConfig(rhos=(0.1,)),), simulate))")
    other = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    from core.toy.simulate import SimConfig, simulate

    mine = cache_key("simulate", (SimConfig(rhos=(0.1,)),), simulate)
    assert other.stdout.strip() == mine
    assert cache_key("simulate", (SimConfig(rhos=(0.2,)),), simulate) != mine
    assert cache_key("other", (SimConfig(rhos=(0.1,)),), simulate) != mine
    assert sharedcache.CODE_VERSION in mine  # a changed engine never reads an old result

    def edited(cfg):  # the same name, other code (an edited page function): another key
        return None

    assert cache_key("simulate", (SimConfig(rhos=(0.1,)),), edited) != mine


def test_a_hit_in_another_process(cache):
    cache.get_or_compute("square", counting([]), 5.0)
    code = ("import sys; from serve.sharedcache import SharedCache; from tests.test_hall_sharedcache import counting\n"
            "calls = []\n"
            f"v = SharedCache({cache.url!r}, replica='t2').get_or_compute('square', counting(calls), 5.0)\n"
            "assert calls == [], 'computed again'\n"
            "print(v['x'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5.0"
    assert cache.stats()["hit:t2"] == 1


SLOW = """
import sys, time
import redis
from serve.sharedcache import SharedCache
url, name = sys.argv[1], sys.argv[2]
def slow(x):
    redis.Redis.from_url(url).incr("test:computations")
    time.sleep(1.5)
    return x * 2
print(SharedCache(url, replica=name).get_or_compute("slow", slow, 21))
"""


def test_two_processes_one_computation(cache):
    procs = [subprocess.Popen([sys.executable, "-c", SLOW, cache.url, f"p{i}"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    assert [o[0].strip() for o in outs] == ["42", "42"]
    assert int(cache.redis.get("test:computations")) == 1  # the lock held: one process computed
    stats = cache.stats()
    assert sum(v for k, v in stats.items() if k.startswith("computed:")) == 1
    assert sum(v for k, v in stats.items() if k.startswith("waited:")) == 1


def test_memory_is_bounded_by_eviction(cache):
    """The hall's cache Redis evicts (allkeys-lru): 60 values of ~0.4 MB into a 4 MB bound all succeed, memory
    stays at the bound, and the newest value is there. (A 'noeviction' Redis would refuse the writes instead;
    the cache would then log and compute locally, and the first assertion below would fail.)"""
    cache.redis.config_set("maxmemory", "4mb")
    try:
        calls = []
        fn = counting(calls)
        for i in range(60):
            assert cache.get_or_compute("big", fn, float(i), 100_000)["x"] == float(i)
        assert cache.available()  # no write was refused
        used = int(cache.redis.info("memory")["used_memory"])
        # Redis lets used_memory reach maxmemory, then evicts before the next write; one value of slack.
        assert used <= 4 * 2**20 + 500_000, used
        assert cache.redis.dbsize() < 60  # old entries are gone …
        assert cache.get_or_compute("big", fn, 59.0, 100_000)["x"] == 59.0 and len(calls) == 60  # … the newest is a hit
    finally:
        cache.redis.config_set("maxmemory", "256mb")


def test_redis_never_started_computes_locally(caplog):
    port = free_ports(1)
    c = SharedCache(f"redis://127.0.0.1:{port}/0", replica="t3")
    calls = []
    with caplog.at_level(logging.WARNING, logger="samlab.sharedcache"):
        assert c.get_or_compute("square", counting(calls), 2.0)["x"] == 2.0
        t0 = time.perf_counter()
        assert c.get_or_compute("square", counting(calls), 2.0)["x"] == 2.0
        second = time.perf_counter() - t0
    assert calls == [2.0, 2.0]
    assert second < 0.2  # Redis is not tried again at once (no connect timeout per call)
    warnings = [r for r in caplog.records if r.name == "samlab.sharedcache"]
    assert len(warnings) == 1 and "computing locally" in warnings[0].getMessage()


def test_redis_killed_midway_computes_locally(tmp_path):
    base = free_ports(2)
    h = Hall(HallConfig(replicas=1, cache_port=base, store_port=base + 1, store_dir=str(tmp_path),
                        warm=False, worker=False))
    proc = h.start_redis("cache")
    try:
        c = SharedCache(h.cfg.cache_url, replica="t4")
        calls = []
        c.get_or_compute("square", counting(calls), 1.0)
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)
        assert c.get_or_compute("square", counting(calls), 1.0)["x"] == 1.0  # was a hit; now computed here
        assert calls == [1.0, 1.0]
    finally:
        h.stop()


def test_without_the_variable_shared_call_is_a_plain_call(monkeypatch):
    monkeypatch.delenv(sharedcache.ENV_URL, raising=False)
    calls = []
    assert shared_call("square", counting(calls), 7.0)["x"] == 7.0
    assert shared_call("square", counting(calls), 7.0)["x"] == 7.0
    assert calls == [7.0, 7.0]


def test_a_malformed_url_disables_the_shared_level(monkeypatch):
    monkeypatch.setenv(sharedcache.ENV_URL, "not-a-url")
    monkeypatch.setattr(sharedcache, "_DEFAULT", None)
    calls = []
    assert shared_call("square", counting(calls), 8.0)["x"] == 8.0
    assert calls == [8.0]


class Boom:
    """Unpickling this creates `path` (what an attacker's payload would do, harmlessly)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_pickle_is_refused_logged_once_and_recomputed(cache, tmp_path, caplog):
    """Who can write to the cache Redis plants a crafted pickle under the key a replica will read: it is never
    unpickled (the marker file is not made), the refusal is logged once, the value is recomputed and replaces
    the planted bytes, and the next call is an ordinary hit."""
    import pickle

    marker = tmp_path / "pwned"
    calls = []
    fn = counting(calls)
    key = cache_key("planted", (5.0,), fn)
    cache.redis.set(key, pickle.dumps(Boom(marker)))
    cache._logged_refused = False
    with caplog.at_level(logging.WARNING, logger="samlab.sharedcache"):
        a = cache.get_or_compute("planted", fn, 5.0)
        cache.redis.set(key, pickle.dumps(Boom(marker)))  # planted again: refused again, not logged again
        b = cache.get_or_compute("planted", fn, 5.0)
    assert not marker.exists()
    assert a["x"] == b["x"] == 5.0 and calls == [5.0, 5.0]  # recomputed each time
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert cache.redis.get(key).startswith(b"SAMLAB1")  # the computed value replaced the planted one
    assert cache.get_or_compute("planted", fn, 5.0)["x"] == 5.0 and calls == [5.0, 5.0]  # a hit
    assert cache.stats()["refused:t1"] == 2


def test_the_halls_cached_results_round_trip_in_the_safe_format():
    """What the pages cache through the hall (simulate's SimResult, measure's statistics, theory's exact chain,
    tuples of arrays, None) comes back equal from serve/safecodec; a type outside the allow-list is not stored."""
    from core.toy import measure, theory
    from core.toy.simulate import SimConfig, simulate
    from serve import safecodec

    cfg = SimConfig(landscape="double_well_1d", rhos=(0.0, 0.05), particles=20, steps=200, seed=3)
    res = simulate(cfg)
    stats = measure.escape_stats(res.first_passage[0], cfg.steps, n_boot=20, seed=cfg.seed)
    t, s = measure.survival_curve(res.first_passage[0], cfg.steps)
    chain = theory.exact_chain_valley(1.0, 4.0, 0.1, 0.5, 0.05, n=101)
    value = (res, [stats], [(t, s)], chain, None, 3, float("nan"), {"k": np.float64(0.25)})
    back = safecodec.decode(safecodec.encode(value))
    assert back[0].config == cfg and type(back[0]) is type(res)
    for f in ("paths", "first_passage", "final", "sam_mask", "occupancy"):
        np.testing.assert_array_equal(getattr(back[0], f), getattr(res, f))
        assert getattr(back[0], f).dtype == getattr(res, f).dtype
    assert back[1][0].to_dict() == stats.to_dict()
    np.testing.assert_array_equal(back[2][0][1], s)
    np.testing.assert_array_equal(back[3].density, chain.density)
    assert back[4] is None and back[5] == 3 and np.isnan(back[6]) and back[7] == {"k": 0.25}
    with pytest.raises(safecodec.Unstorable):
        safecodec.encode(np.array([object()]))
    with pytest.raises(safecodec.Refused):
        safecodec.decode(safecodec.encode({"x": 1}).replace(b'"x"', b'"y"', 1)[:-1] + b"{")
    forged = safecodec.encode(cfg).replace(b"core.toy.simulate:SimConfig", b"subprocess:Popen_____xxxxxx")
    with pytest.raises(safecodec.Refused, match="not allowed"):
        safecodec.decode(forged)
