"""A computation cache shared by every process of a lecture hall (Redis), keyed by the frozen config.

Under `make hall` several Streamlit replicas serve the same lecture. Without a shared cache each
replica would simulate the same scene once per process; with it a config is computed ONCE for the whole
hall:

    value = shared_call("escape_run", escape_run, cfg)

1. The key is a stable hash of `name`, `repr(args)` (frozen dataclasses have a deterministic repr),
   `CODE_VERSION` (a hash of the engine's source, core/) and the source of the cached function itself (a
   page's function lives in pages/), so a changed simulator never serves a stale result and two different
   checkouts never mix, while an edit to a chart or a caption leaves the cache valid.
2. A hit returns the stored value, in serve/safecodec.py's format (JSON and raw array bytes, decoded only
   into an allow-list of result types; never pickle: whoever can write to Redis must not run code here).
   A value that is not in that format (a planted pickle, a type outside the allow-list) is refused, logged
   once per process, and recomputed; the computed value replaces it. A value the format cannot carry is
   returned but not stored (logged once).
3. On a miss the process takes a short lock on the key (`SET key:lock NX PX`, the "single flight"
   pattern of the Redis docs) and computes; any other process that misses while the lock is held
   waits for the value instead of computing it too. A lock whose holder died expires after `lock_ms`.
4. If Redis is down or unreachable the function is computed locally, as without a hall: the student
   sees no error. The failure is logged once, and Redis is tried again `retry_s` later.

Memory is bounded by the Redis server itself (`maxmemory 256mb`, `maxmemory-policy allkeys-lru`,
started by serve/hall.py): old entries are evicted, never refused. Anything here may vanish at any time.

Counters (for tests and the benchmark): the Redis hash `samlab:stats` counts `hit:<replica>`,
`computed:<replica>` and `waited:<replica>`, where the replica is `$SAMLAB_REPLICA`.

Without `SAMLAB_CACHE_URL` (`make app`, the CLI, the tests) `shared_call` simply calls the function.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serve import safecodec

log = logging.getLogger("samlab.sharedcache")

ENV_URL = "SAMLAB_CACHE_URL"
ENV_REPLICA = "SAMLAB_REPLICA"
PREFIX = "samlab:c:"
STATS = "samlab:stats"
_REPO = Path(__file__).resolve().parents[1]


def code_version(folders: tuple[str, ...] = ("core",)) -> str:
    """A hash of every .py file in `folders` (the engine): results computed by another engine never match."""
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted((_REPO / folder).rglob("*.py")):
            h.update(str(path.relative_to(_REPO)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


CODE_VERSION = code_version()


_SOURCES: dict[Callable, str] = {}


def source_hash(fn: Callable | None) -> str:
    """A hash of a function's own source ('' when there is none to read, e.g. a builtin)."""
    if fn is None:
        return ""
    if fn not in _SOURCES:
        try:
            text = inspect.getsource(fn)
        except (OSError, TypeError):
            text = getattr(fn, "__qualname__", "")
        _SOURCES[fn] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return _SOURCES[fn]


def cache_key(name: str, args: tuple, fn: Callable | None = None) -> str:
    """The Redis key of `name(*args)` computed by `fn`: stable across processes and machines running the same
    code."""
    digest = hashlib.sha256(f"{name}|{source_hash(fn)}|{args!r}".encode()).hexdigest()[:32]
    return f"{PREFIX}{CODE_VERSION}:{name}:{digest}"


class SharedCache:
    """`get_or_compute(name, fn, *args)` through one Redis; see the module docstring."""

    def __init__(self, url: str, replica: str | None = None, lock_ms: int = 60_000, wait_s: float = 30.0,
                 retry_s: float = 30.0, client=None):
        import redis  # only a hall needs the client

        self.url = url
        self.replica = replica or os.environ.get(ENV_REPLICA, "local")
        self.lock_ms, self.wait_s, self.retry_s = lock_ms, wait_s, retry_s
        self.redis = client or redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2.0)
        self._errors = (redis.RedisError, OSError)
        self._down_until = 0.0  # while Redis is known to be down, compute locally without trying it
        self._logged = False
        self._logged_refused = False
        self._logged_unstorable = False
        self._mutex = threading.Lock()

    # --------------------------------------------------------------------------- health
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _went_down(self, err: Exception) -> None:
        with self._mutex:
            self._down_until = time.monotonic() + self.retry_s
            if not self._logged:  # once per process: a hall of students must not flood the log
                log.warning("shared cache %s unreachable (%s); computing locally", self.url,
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
                self._logged = True

    def _refused(self, key: str, err: Exception) -> None:
        """A stored value that is not in the safe format: counted, logged once per process, never decoded."""
        self._count("refused")
        with self._mutex:
            if not self._logged_refused:
                log.warning("shared cache: refused the value under %s (%s); recomputing it", key, err)
                self._logged_refused = True

    def _decode(self, key: str, raw: bytes):
        """(True, value) or (False, None) when the stored bytes are refused."""
        try:
            return True, safecodec.decode(raw)
        except safecodec.Refused as e:
            self._refused(key, e)
            return False, None

    def _count(self, what: str) -> None:
        try:
            self.redis.hincrby(STATS, f"{what}:{self.replica}", 1)
        except self._errors:
            pass

    # --------------------------------------------------------------------------- the cache
    def get_or_compute(self, name: str, fn: Callable, *args, source: Callable | None = None) -> Any:
        """fn(*args), computed once for every process that shares this Redis. `source`: the function whose
        source goes into the key (default `fn`)."""
        if not self.available():
            return fn(*args)
        key = cache_key(name, args, source or fn)
        try:
            raw = self.redis.get(key)
            if raw is not None:
                ok, value = self._decode(key, raw)
                if ok:
                    self._count("hit")
                    return value
                self.redis.delete(key)  # refused: recomputed below, and the computed value replaces it
            token = uuid.uuid4().hex
            if self.redis.set(key + ":lock", token, nx=True, px=self.lock_ms):
                return self._compute(key, token, fn, args)
            value = self._wait_for(key)
        except self._errors as e:
            self._went_down(e)
            return fn(*args)
        if value is not None:
            return value
        return fn(*args)  # the other process gave up or took too long: compute here

    def _compute(self, key: str, token: str, fn: Callable, args: tuple) -> Any:
        try:
            value = fn(*args)  # the function's own errors propagate, as without a cache
            try:
                data = safecodec.encode(value)
            except safecodec.Unstorable as e:  # returned, not shared
                self._count("unstorable")
                with self._mutex:
                    if not self._logged_unstorable:
                        log.warning("shared cache: %s is not stored (%s)", key, e)
                        self._logged_unstorable = True
                return value
            try:
                self.redis.set(key, data)
                self._count("computed")
            except self._errors as e:
                self._went_down(e)
            return value
        finally:
            try:  # release only our own lock (it may have expired and been taken by another process)
                if self.redis.get(key + ":lock") == token.encode():
                    self.redis.delete(key + ":lock")
            except self._errors:
                pass

    def _wait_for(self, key: str):
        """Poll for the value another process is computing; None if its lock vanished without a value
        (it failed) or `wait_s` passed."""
        end = time.monotonic() + self.wait_s
        delay = 0.01
        while time.monotonic() < end:
            time.sleep(delay)
            delay = min(0.1, delay * 1.5)
            raw = self.redis.get(key)
            if raw is not None:
                ok, value = self._decode(key, raw)
                if not ok:
                    return None
                self._count("waited")
                return value
            if not self.redis.exists(key + ":lock"):
                return None
        return None

    def stats(self) -> dict[str, int]:
        """The hall's counters: {"hit:r1": 12, "computed:r2": 3, ...} ({} when Redis is down)."""
        try:
            return {k.decode(): int(v) for k, v in self.redis.hgetall(STATS).items()}
        except self._errors:
            return {}


_DEFAULT: SharedCache | None = None
_DEFAULT_URL: str | None = None
_DEFAULT_LOCK = threading.Lock()


def default_cache() -> SharedCache | None:
    """The process's shared cache from `$SAMLAB_CACHE_URL`, or None when it is not set."""
    global _DEFAULT, _DEFAULT_URL
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        return None
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT_URL != url:
            try:
                _DEFAULT, _DEFAULT_URL = SharedCache(url), url
            except (ImportError, ValueError) as e:  # no redis client, or a malformed URL: no shared level
                log.warning("shared cache disabled: %s", e)
                return None
        return _DEFAULT


def shared_call(name: str, fn: Callable, *args, **kwargs) -> Any:
    """fn(*args, **kwargs) through the hall's shared cache when `$SAMLAB_CACHE_URL` is set, else simply
    fn(*args, **kwargs). Keyword arguments are part of the key (sorted by name)."""
    cache = default_cache()
    if cache is None:
        return fn(*args, **kwargs)
    if kwargs:
        items = tuple(sorted(kwargs.items()))
        return cache.get_or_compute(name, lambda *a: fn(*a[: len(args)], **dict(items)), *args, *items, source=fn)
    return cache.get_or_compute(name, fn, *args)
