"""Where a class experiment lives: its room, who joined, and every stored run. ONE interface, two backends.

    SqliteStore   under `make app`: an embedded file (data/cache/classroom.sqlite), no server to start.
                  WAL mode (readers never block the writer), busy_timeout (writers queue instead of failing),
                  short transactions; many threads and processes may write at once.
    RedisStore    in the lecture hall (`make hall`): the shared STORE on SAMLAB_STORE_URL, which every
                  replica and every machine reach (noeviction, appendonly; see notes in core/README.md).

`open_store()` picks one from the environment. Both keep the same promises, which tests/test_classroom_store.py
checks against a real SQLite file and a real redis-server:

* a run is stored EXACTLY ONCE under its key (room, epoch, student, run index): a second `add_run` with the
  same key (a double click, a reconnect, another replica) stores nothing and returns False
  (SQLite: a PRIMARY KEY with INSERT OR IGNORE; Redis: HSETNX);
* `join` gives each student one slot, the same on every call; slots are handed out 0, 1, 2, … in the order
  students first join (SQLite: one IMMEDIATE transaction; Redis: INCR then HSETNX);
* `take_token` is a token bucket per (room, student): the rate limit (SQLite: one IMMEDIATE transaction;
  Redis: WATCH/MULTI, retried on a conflict);
* a reset starts a new epoch: runs of older epochs are never read again (a run still computing while the
  lecturer resets lands in the old epoch, so it cannot leak into the new one).

The store knows nothing about permissions or experiments: serve/classroom.py decides who may do what.
Every backend failure (file not writable, Redis down) becomes `StoreUnavailable`, one line for the user.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_SQLITE = Path(__file__).resolve().parents[1] / "data" / "cache" / "classroom.sqlite"
ENV_URL = "SAMLAB_STORE_URL"
POOL_SIZE = 16  # SQLite connections kept open per store object (one per thread busy at the same moment)
KEY_TTL_S = 14 * 24 * 3600  # Redis keys of a room vanish two weeks after its last write (the store never evicts)


class StoreUnavailable(RuntimeError):
    """The class store cannot be reached or written; str(e) is one line for the user."""


@dataclass
class Room:
    """One class experiment. `secret_hash` is sha256 of the lecturer secret (the secret itself is never stored)."""

    code: str
    secret_hash: str
    experiment: dict              # serve.classroom.Experiment.to_dict()
    created: float                # unix seconds
    expires: float                # unix seconds; the room takes nothing after it
    state: str = "open"           # "open" | "closed"
    cap: int = 3                  # runs per student
    epoch: int = 0                # +1 on each reset
    meta: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Room:
        return Room(**json.loads(text))


@dataclass
class Run:
    """One stored run: whose it is, the setting it ran, the full config and the result the server computed."""

    student: str
    run_index: int
    slot: int                     # the setting's index in the experiment's grid
    config: dict
    result: dict
    created: float
    replica: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# ---------------------------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (code TEXT PRIMARY KEY, body TEXT NOT NULL, joins INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS members (code TEXT NOT NULL, epoch INTEGER NOT NULL, student TEXT NOT NULL,
    slot INTEGER NOT NULL, PRIMARY KEY (code, epoch, student));
CREATE TABLE IF NOT EXISTS runs (code TEXT NOT NULL, epoch INTEGER NOT NULL, student TEXT NOT NULL,
    run_index INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (code, epoch, student, run_index));
CREATE TABLE IF NOT EXISTS buckets (code TEXT NOT NULL, student TEXT NOT NULL, tokens REAL NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (code, student));
"""


class SqliteStore:
    """The embedded store. Each call borrows a connection from a small pool and returns it (opening and closing a
    connection cost ~10 ms on this machine's disk, more than the queries); a connection is used by one thread at a
    time, never by two at once, and a forked process starts its own pool."""

    kind = "sqlite"

    def __init__(self, path: str | Path = DEFAULT_SQLITE, busy_timeout_ms: int = 30_000):
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._pid = os.getpid()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as con:
                con.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
                con.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailable(f"The class store is unavailable (SQLite file {self.path.name}: {e}).") from None

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we write BEGIN/COMMIT ourselves, so each transaction is as short as we make it.
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                              check_same_thread=False)  # pooled: one thread at a time, never two at once
        con.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        con.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across a crash of the app, fast commits
        return con

    def _do(self, fn):
        """fn(connection) on a pooled connection. A connection that saw any error is closed, not returned."""
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours to use
            self._pool, self._pid = queue.LifoQueue(), os.getpid()
        try:
            try:
                con = self._pool.get_nowait()
            except queue.Empty:
                con = self._connect()
            try:
                out = fn(con)
            except BaseException:
                con.close()
                raise
        except sqlite3.Error as e:
            raise StoreUnavailable(f"The class store is unavailable (SQLite: {e}).") from None
        if self._pool.qsize() < POOL_SIZE:
            self._pool.put(con)
        else:
            con.close()
        return out

    @staticmethod
    def _immediate(con, fn):
        """fn(con) inside BEGIN IMMEDIATE … COMMIT: the write lock is taken first, so two writers never both
        read the old value (no lost update)."""
        con.execute("BEGIN IMMEDIATE")
        try:
            out = fn(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return out

    # rooms
    def create_room(self, room: Room) -> bool:
        """Store a new room; False when the code is taken (the caller draws another). Rooms that expired more than
        KEY_TTL_S ago go first, with their runs (the Redis store's keys expire the same way)."""
        def go(con):
            old = [r[0] for r in con.execute("SELECT code FROM rooms WHERE json_extract(body, '$.expires') < ?",
                                             (time.time() - KEY_TTL_S,))]
            for table in ("runs", "members", "buckets", "rooms"):
                con.executemany(f"DELETE FROM {table} WHERE code = ?", [(c,) for c in old])
            cur = con.execute("INSERT OR IGNORE INTO rooms (code, body) VALUES (?, ?)", (room.code, room.to_json()))
            return cur.rowcount == 1
        return self._do(lambda con: self._immediate(con, go))

    def get_room(self, code: str) -> Room | None:
        row = self._do(lambda con: con.execute("SELECT body FROM rooms WHERE code = ?", (code,)).fetchone())
        return Room.from_json(row[0]) if row else None

    def update_room(self, code: str, **changes) -> Room | None:
        """Change fields of a room (state, expires, cap, epoch …) in one transaction; the new room, or None."""
        def go(con):
            row = con.execute("SELECT body FROM rooms WHERE code = ?", (code,)).fetchone()
            if not row:
                return None
            room = Room.from_json(row[0])
            for k, v in changes.items():
                setattr(room, k, v)
            con.execute("UPDATE rooms SET body = ? WHERE code = ?", (room.to_json(), code))
            return room
        return self._do(lambda con: self._immediate(con, go))

    def reset_room(self, code: str) -> Room | None:
        """A new epoch: the room starts empty (older epochs' runs and members are deleted)."""
        def go(con):
            row = con.execute("SELECT body FROM rooms WHERE code = ?", (code,)).fetchone()
            if not row:
                return None
            room = Room.from_json(row[0])
            room.epoch += 1
            con.execute("UPDATE rooms SET body = ?, joins = 0 WHERE code = ?", (room.to_json(), code))
            con.execute("DELETE FROM runs WHERE code = ? AND epoch < ?", (code, room.epoch))
            con.execute("DELETE FROM members WHERE code = ? AND epoch < ?", (code, room.epoch))
            return room
        return self._do(lambda con: self._immediate(con, go))

    # members
    def join(self, code: str, epoch: int, student: str) -> int:
        """The student's slot (0, 1, 2 … in the order of first joins); the same slot on every later call."""
        def go(con):
            row = con.execute("SELECT slot FROM members WHERE code = ? AND epoch = ? AND student = ?",
                              (code, epoch, student)).fetchone()
            if row:
                return int(row[0])
            slot = con.execute("SELECT joins FROM rooms WHERE code = ?", (code,)).fetchone()[0]
            con.execute("UPDATE rooms SET joins = joins + 1 WHERE code = ?", (code,))
            con.execute("INSERT INTO members (code, epoch, student, slot) VALUES (?, ?, ?, ?)",
                        (code, epoch, student, slot))
            return int(slot)

        def first(con):  # most calls are re-joins: read without taking the write lock
            row = con.execute("SELECT slot FROM members WHERE code = ? AND epoch = ? AND student = ?",
                              (code, epoch, student)).fetchone()
            return int(row[0]) if row else self._immediate(con, go)
        return self._do(first)

    def members(self, code: str, epoch: int) -> int:
        return self._do(lambda con: con.execute("SELECT COUNT(*) FROM members WHERE code = ? AND epoch = ?",
                                                (code, epoch)).fetchone()[0])

    # runs
    def add_run(self, code: str, epoch: int, run: Run) -> bool:
        """Store `run` under (code, epoch, student, run_index); False (nothing stored) if that key exists."""
        def go(con):
            cur = con.execute("INSERT OR IGNORE INTO runs (code, epoch, student, run_index, body) "
                              "VALUES (?, ?, ?, ?, ?)",
                              (code, epoch, run.student, run.run_index, run.to_json()))
            return cur.rowcount == 1
        return self._do(go)

    def has_run(self, code: str, epoch: int, student: str, run_index: int) -> bool:
        return self._do(lambda con: con.execute(
            "SELECT 1 FROM runs WHERE code = ? AND epoch = ? AND student = ? AND run_index = ?",
            (code, epoch, student, run_index)).fetchone() is not None)

    def count_runs(self, code: str, epoch: int, student: str) -> int:
        return self._do(lambda con: con.execute(
            "SELECT COUNT(*) FROM runs WHERE code = ? AND epoch = ? AND student = ?",
            (code, epoch, student)).fetchone()[0])

    def total_runs(self, code: str, epoch: int) -> int:
        return self._do(lambda con: con.execute("SELECT COUNT(*) FROM runs WHERE code = ? AND epoch = ?",
                                                (code, epoch)).fetchone()[0])

    def runs(self, code: str, epoch: int) -> list[Run]:
        rows = self._do(lambda con: con.execute(
            "SELECT body FROM runs WHERE code = ? AND epoch = ? ORDER BY rowid", (code, epoch)).fetchall())
        return [Run(**json.loads(r[0])) for r in rows]

    # rate limit
    def take_token(self, code: str, student: str, rate_per_s: float, burst: float, now: float | None = None) -> float:
        """Token bucket: take one token if there is one and return 0.0; else return the seconds until there is."""
        now = time.time() if now is None else now

        def go(con):
            row = con.execute("SELECT tokens, updated FROM buckets WHERE code = ? AND student = ?",
                              (code, student)).fetchone()
            tokens = burst if row is None else min(burst, row[0] + max(0.0, now - row[1]) * rate_per_s)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate_per_s
            if wait == 0.0:
                tokens -= 1.0
            con.execute("INSERT OR REPLACE INTO buckets (code, student, tokens, updated) VALUES (?, ?, ?, ?)",
                        (code, student, tokens, now))
            return wait
        return self._do(lambda con: self._immediate(con, go))


# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------

class RedisStore:
    """The shared store of the lecture hall. Keys (all under samlab:room:<code>):

        :meta               the Room as JSON
        :joins:<epoch>      INCR counter: the next slot
        :joined:<epoch>     set of students who drew a slot (SADD: one draw per student)
        :members:<epoch>    hash student → slot (HSETNX: the first slot wins)
        :runs:<epoch>       hash "<student>/<run_index>" → Run JSON (HSETNX: stored once)
        :count:<epoch>      hash student → runs stored (HINCRBY after a successful HSETNX)
        :bucket:<student>   hash {tokens, updated}: the rate limit, changed under WATCH/MULTI
    """

    kind = "redis"

    def __init__(self, url: str, timeout_s: float = 2.0):
        try:
            import redis
        except ImportError:  # the client is pinned in requirements.txt; say so rather than crash
            raise StoreUnavailable("The class store is unavailable (the redis client is not installed).") from None
        self._redis = redis
        self.url = url
        self.r = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                      decode_responses=True, health_check_interval=30)

    def describe(self) -> str:
        return f"Redis at {self.url.split('@')[-1]}"

    @staticmethod
    def _k(code: str, *parts) -> str:
        return ":".join(("samlab:room", code) + tuple(str(p) for p in parts))

    def _do(self, fn):
        try:
            return fn(self.r)
        except self._redis.RedisError as e:
            raise StoreUnavailable(f"The class store is unavailable ({self.describe()}: {e}).") from None

    def _touch(self, pipe, *keys):
        for k in keys:
            pipe.expire(k, KEY_TTL_S)

    def create_room(self, room: Room) -> bool:
        return bool(self._do(lambda r: r.set(self._k(room.code, "meta"), room.to_json(), nx=True, ex=KEY_TTL_S)))

    def get_room(self, code: str) -> Room | None:
        text = self._do(lambda r: r.get(self._k(code, "meta")))
        return Room.from_json(text) if text else None

    def _change(self, code: str, change) -> Room | None:
        """Read-modify-write of the room under WATCH: retried if another client changed it meanwhile."""
        key = self._k(code, "meta")

        def go(r):
            with r.pipeline() as pipe:
                for _ in range(50):
                    try:
                        pipe.watch(key)
                        text = pipe.get(key)
                        if not text:
                            pipe.unwatch()
                            return None
                        room = Room.from_json(text)
                        change(room)
                        pipe.multi()
                        pipe.set(key, room.to_json(), ex=KEY_TTL_S)
                        pipe.execute()
                        return room
                    except self._redis.WatchError:
                        continue
            raise StoreUnavailable("The class store is too busy to change the room; try again.")
        return self._do(go)

    def update_room(self, code: str, **changes) -> Room | None:
        return self._change(code, lambda room: [setattr(room, k, v) for k, v in changes.items()])

    def reset_room(self, code: str) -> Room | None:
        def bump(room):
            room.epoch += 1
        room = self._change(code, bump)
        if room is not None:
            old = [self._k(code, what, e) for e in range(room.epoch)
                   for what in ("joins", "joined", "members", "runs", "count")]
            if old:
                self._do(lambda r: r.delete(*old))
        return room

    def join(self, code: str, epoch: int, student: str) -> int:
        members = self._k(code, "members", epoch)

        joined, joins = self._k(code, "joined", epoch), self._k(code, "joins", epoch)

        def go(r):
            slot = r.hget(members, student)
            if slot is not None:
                return int(slot)
            # SADD answers 1 to exactly one caller per student: only that one draws a slot, so two joins of the same
            # student at once (a double click on two replicas) never use up two slots.
            if r.sadd(joined, student):
                new = r.incr(joins) - 1
                with r.pipeline(transaction=True) as p:
                    p.hsetnx(members, student, new)
                    self._touch(p, members, joins, joined)
                    p.execute()
            for _ in range(200):  # the other caller is between SADD and HSETNX: its slot appears within ms
                slot = r.hget(members, student)
                if slot is not None:
                    return int(slot)
                time.sleep(0.01)
            new = r.incr(joins) - 1  # that caller died midway: draw a slot here
            r.hsetnx(members, student, new)
            return int(r.hget(members, student))
        return self._do(go)

    def members(self, code: str, epoch: int) -> int:
        return int(self._do(lambda r: r.hlen(self._k(code, "members", epoch))))

    def add_run(self, code: str, epoch: int, run: Run) -> bool:
        runs, count = self._k(code, "runs", epoch), self._k(code, "count", epoch)

        def go(r):
            new = bool(r.hsetnx(runs, f"{run.student}/{run.run_index}", run.to_json()))
            with r.pipeline(transaction=True) as p:
                if new:
                    p.hincrby(count, run.student, 1)
                self._touch(p, runs, count)
                p.execute()
            return new
        return self._do(go)

    def has_run(self, code: str, epoch: int, student: str, run_index: int) -> bool:
        return bool(self._do(lambda r: r.hexists(self._k(code, "runs", epoch), f"{student}/{run_index}")))

    def count_runs(self, code: str, epoch: int, student: str) -> int:
        return int(self._do(lambda r: r.hget(self._k(code, "count", epoch), student)) or 0)

    def total_runs(self, code: str, epoch: int) -> int:
        return int(self._do(lambda r: r.hlen(self._k(code, "runs", epoch))))

    def runs(self, code: str, epoch: int) -> list[Run]:
        raw = self._do(lambda r: r.hgetall(self._k(code, "runs", epoch)))
        out = [Run(**json.loads(v)) for v in raw.values()]
        out.sort(key=lambda run: (run.created, run.student, run.run_index))
        return out

    def take_token(self, code: str, student: str, rate_per_s: float, burst: float, now: float | None = None) -> float:
        key = self._k(code, "bucket", student)

        def go(r):
            with r.pipeline() as pipe:
                for _ in range(50):
                    try:
                        pipe.watch(key)
                        t = time.time() if now is None else now
                        state = pipe.hgetall(key)
                        tokens = (burst if not state else
                                  min(burst, float(state["tokens"])
                                      + max(0.0, t - float(state["updated"])) * rate_per_s))
                        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate_per_s
                        if wait == 0.0:
                            tokens -= 1.0
                        pipe.multi()
                        pipe.hset(key, mapping={"tokens": tokens, "updated": t})
                        pipe.expire(key, 3600)
                        pipe.execute()
                        return wait
                    except self._redis.WatchError:
                        continue
            return 1.0 / rate_per_s  # never settled: treat as too fast
        return self._do(go)


def open_store(url: str | None = None, sqlite_path: str | Path | None = None):
    """The store for this process: Redis when SAMLAB_STORE_URL (or `url`) is set, else the SQLite file.
    Raises StoreUnavailable (one line) when it cannot be opened."""
    url = os.environ.get(ENV_URL, "") if url is None else url
    if url:
        return RedisStore(url)
    return SqliteStore(sqlite_path or os.environ.get("SAMLAB_CLASSROOM_DB", DEFAULT_SQLITE))
