"""Figures of the lecture hall's infrastructure (serve/hall.py, serve/sharedcache.py), for BENCHMARKS.md.

    .venv/bin/python bench/hall_infra.py start [--replicas 2] [--repeat 3]   # start → every part ready; stop
    .venv/bin/python bench/hall_infra.py warm  [--replicas 2]                # the full warm-up: time, entries, MB
    .venv/bin/python bench/hall_infra.py cache [--repeat 200]                # a hit: in-process vs the Redis cache
    .venv/bin/python bench/hall_infra.py coldwarm [--students 10]            # one load on a cold and a warmed hall

`start`: time from launching the hall (two Redis, N replicas, HAProxy, two RQ workers) until HAProxy answers
/_stcore/health, and the time Hall.stop() takes to stop them all.
`warm`: a hall with its background warm-up; waits for the warm-up to finish and reports its wall time, page
runs, the cache's keys and used memory.
`cache`: the cost of one cache hit for an escape-page result (escape_run of the lecture scene at ρ = 0.2, the
page's largest entry): the first level (st.cache_data: a pickled copy per hit, measured as pickle.loads of the
same bytes, which is what st.cache_data does) and the second level (serve.sharedcache: GET from the cache Redis
on loopback + unpickle). Each is the median over --repeat hits.

`coldwarm`: the same protocol load (bench/hall_load.py: --students on the escape page, 6 ρ changes each at random
slider steps, think 2 s) on two fresh 2-replica halls: one cold, one after serve/warm.py warmed the escape page's
scenes; p50/p95 of the ρ changes and the replicas' counters (computed vs hit).

Prints one JSON line per measurement. Absolute times on a shared 2-core machine are indicative; the ratio
local/Redis in one run is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve.hall import Hall, HallConfig, free_ports  # noqa: E402


def _config(replicas: int, warm: bool) -> HallConfig:
    base = free_ports(replicas + 4)
    return HallConfig(replicas=replicas, port=base, bind="127.0.0.1", replica_port=base + 1,
                      cache_port=base + replicas + 1, store_port=base + replicas + 2,
                      store_dir=tempfile.mkdtemp(prefix="hall-bench-store-"), warm=warm, worker=True)


def bench_start(replicas: int, repeat: int) -> dict:
    starts, stops = [], []
    for _ in range(repeat):
        hall = Hall(_config(replicas, warm=False), out=open(os.devnull, "w"))
        t0 = time.perf_counter()
        hall.start()
        starts.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        hall.stop()
        stops.append(time.perf_counter() - t1)
    return {"bench": "hall_start", "replicas": replicas, "repeat": repeat,
            "start_s": [round(x, 2) for x in starts], "start_median_s": round(statistics.median(starts), 2),
            "stop_s": [round(x, 2) for x in stops], "load_avg": os.getloadavg()[0]}


def bench_warm(replicas: int) -> dict:
    import redis

    hall = Hall(_config(replicas, warm=True), out=open(os.devnull, "w"))
    t0 = time.perf_counter()
    hall.start()
    try:
        warm = hall.procs["warm-up"]
        warm.popen.wait()
        wall = time.perf_counter() - t0 - hall.start_s
        r = redis.Redis.from_url(hall.cfg.cache_url)
        info = r.info("memory")
        keys = [k.decode() for k in r.scan_iter("samlab:c:*")]
        per_function: dict[str, int] = {}
        for k in keys:
            fn = k.split(":")[3]
            per_function[fn] = per_function.get(fn, 0) + 1
        last = warm.log.read_text().strip().splitlines()[-1]
        return {"bench": "hall_warm", "replicas": replicas, "warm_s": round(wall, 1), "last_line": last,
                "entries": len(keys), "entries_per_function": per_function,
                "used_memory_mb": round(int(info["used_memory"]) / 2**20, 1),
                "exit_code": warm.popen.returncode, "load_avg": os.getloadavg()[0]}
    finally:
        hall.stop()


def bench_cache(repeat: int) -> dict:
    import pickle

    import torch

    torch.set_num_threads(1)
    from core.toy import measure
    from core.toy.presets import ESCAPE
    from core.toy.simulate import simulate
    from serve.sharedcache import SharedCache

    # the escape page's entry for the lecture scene at ρ = 0.2 (its escape_run: runs at ρ/4, ρ/2, ρ)
    cfg = ESCAPE.config.replace(rhos=(0.05, 0.1, 0.2), keep_paths=40, record_points=120)

    def escape_run(c):
        res = simulate(c)
        return res, [measure.escape_stats(fp, c.steps, n_boot=400, seed=c.seed) for fp in res.first_passage]

    t0 = time.perf_counter()
    value = escape_run(cfg)
    compute_s = time.perf_counter() - t0
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    hall = Hall(HallConfig(replicas=1, cache_port=free_ports(1), store_dir=tempfile.mkdtemp(), warm=False,
                           worker=False), out=open(os.devnull, "w"))
    hall.start_redis("cache")
    try:
        cache = SharedCache(hall.cfg.cache_url, replica="bench")
        cache.get_or_compute("escape_run", escape_run, cfg)  # the miss: computed and stored
        local, shared = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            pickle.loads(blob)
            local.append(time.perf_counter() - t)
            t = time.perf_counter()
            cache.get_or_compute("escape_run", escape_run, cfg)
            shared.append(time.perf_counter() - t)
        stats = cache.stats()
    finally:
        hall.stop()
    ms = lambda xs: round(1000 * statistics.median(xs), 3)  # noqa: E731
    return {"bench": "hall_cache_hit", "entry_kb": round(len(blob) / 1024, 1), "compute_ms": round(1000 * compute_s, 1),
            "local_hit_ms": ms(local), "redis_hit_ms": ms(shared), "redis_over_local": round(ms(shared) / ms(local), 2),
            "compute_over_redis": round(1000 * compute_s / ms(shared), 1), "repeat": repeat,
            "hits_counted": stats.get("hit:bench"), "load_avg": os.getloadavg()[0]}


def bench_coldwarm(students: int) -> dict:
    import subprocess

    import redis

    out = {"bench": "hall_cold_vs_warm", "students": students}
    for label in ("cold", "warm"):
        hall = Hall(_config(2, warm=False), out=open(os.devnull, "w"))
        hall.start()
        try:
            env = {**os.environ, "SAMLAB_CACHE_URL": hall.cfg.cache_url, "SAMLAB_REPLICA": "warm-up"}
            if label == "warm":
                t0 = time.perf_counter()
                subprocess.run(["nice", "-n", "10", sys.executable, "-m", "serve.warm", "--scenes", "escape"],
                               cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, check=True)
                out["warm_escape_s"] = round(time.perf_counter() - t0, 1)
            r = redis.Redis.from_url(hall.cfg.cache_url)
            before = {k.decode(): int(v) for k, v in r.hgetall("samlab:stats").items()}
            load = subprocess.run([sys.executable, str(Path(__file__).with_name("hall_load.py")), "--url",
                                   hall.url + "/escape", "--students", str(students), "--changes", "6", "--think", "2",
                                   "--rho-mode", "random", "--json"], capture_output=True, text=True)
            res = json.loads([ln for ln in load.stdout.splitlines() if ln.startswith("{")][-1])
            after = {k.decode(): int(v) for k, v in r.hgetall("samlab:stats").items()}
            delta = {k: after[k] - before.get(k, 0) for k in after if k.endswith(("r1", "r2"))}
            out[label] = {k: res[k] for k in ("p50_ms", "p95_ms", "max_ms", "errors", "changes", "changes_per_s")}
            out[label]["replica_counters"] = delta
        finally:
            hall.stop()
    out["load_avg"] = os.getloadavg()[0]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("start", "warm", "cache", "coldwarm"))
    p.add_argument("--students", type=int, default=10)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--repeat", type=int, default=None)
    a = p.parse_args(argv)
    if a.what == "start":
        out = bench_start(a.replicas, a.repeat or 3)
    elif a.what == "warm":
        out = bench_warm(a.replicas)
    elif a.what == "coldwarm":
        out = bench_coldwarm(a.students)
    else:
        out = bench_cache(a.repeat or 200)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
