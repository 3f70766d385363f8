"""What `appendfsync always` costs the hall's store Redis (issue 19): the latency of sequential writes of a class
run's record (an HSET of ~400 bytes) with `everysec` and with `always`, on this machine's disk.

    nice -n 10 .venv/bin/python bench/hall_fsync.py [--writes 2000] [--repeat 2]

The store is started as `make hall` starts it (serve.hall.Hall.start_redis: the secret, the append-only file), then
its appendfsync is set to each mode in turn (CONFIG SET), alternating, `--repeat` times each. Prints p50, p95 and
p99 in milliseconds per mode and run, and the load average.
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


def measure(mode: str, writes: int) -> tuple[float, float, float]:
    import redis

    tmp = Path(tempfile.mkdtemp(prefix="hall-fsync-"))
    base = free_ports(2)
    h = Hall(HallConfig(replicas=1, cache_port=base, store_port=base + 1, store_dir=str(tmp),
                        secret_file=str(tmp / "secret"), warm=False, worker=False), out=sys.stderr)
    try:
        h.start_redis("store")
        r = redis.Redis.from_url(h.cfg.store_url)
        r.config_set("appendfsync", mode)
        payload = json.dumps({"student": "s" * 12, "rho": 0.05, "result": [0.1] * 40})
        lat = []
        for i in range(writes):
            t = time.perf_counter()
            r.hset(f"samlab:bench:run:{i}", mapping={"data": payload})
            lat.append(time.perf_counter() - t)
    finally:
        h.stop()
    lat.sort()
    return statistics.median(lat) * 1e3, lat[int(0.95 * len(lat))] * 1e3, lat[int(0.99 * len(lat))] * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)
    print(f"load before {os.getloadavg()}")
    for _ in range(a.repeat):
        for mode in ("everysec", "always"):
            p50, p95, p99 = measure(mode, a.writes)
            print(f"{mode:9s} p50 {p50:.3f} ms  p95 {p95:.3f} ms  p99 {p99:.3f} ms  ({a.writes} writes)", flush=True)
    print(f"load after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
