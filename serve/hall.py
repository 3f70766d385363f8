"""`make hall`: serve the lab to a lecture hall from one machine's cores (README, "Serving a lecture hall").

    .venv/bin/python -m serve.hall [--replicas N] [--port 8501] [--bind 0.0.0.0] [--no-warm] [--no-worker]

What it starts, in this order, each in its own process group (so that stopping it stops all its children):

0. the hall's Redis secret: read from `$SAMLAB_REDIS_SECRET`, else from data/cache/hall-secret, which the first
   start creates (32 random bytes, URL-safe; mode 0600, gitignored). Both Redis require it (`requirepass`,
   given in a config file of mode 0600, never on a command line that `ps` shows); the replicas, the RQ
   workers and the warm-up get it inside their Redis URLs, in their environment only;
1. two Redis servers from Debian:
   - the COMPUTE CACHE on 127.0.0.1:6391: `maxmemory 256mb`, `allkeys-lru` eviction, no persistence:
     results any replica computed, for every replica (serve/sharedcache.py);
   - the STORE on 127.0.0.1:6392: `noeviction`, append-only file in data/cache/hall-store/ with
     `appendfsync always`: what must not be lost (the class experiment's rooms and results, the RQ job
     queue). Every write is on disk before Redis answers it, so a run a student was told is stored survives a
     SIGKILL of the store (everysec could lose the last second); the cost is one fsync per write, a few
     hundred writes a minute in a class (BENCHMARKS.md, "A hall you can trust");
2. N Streamlit replicas of app/main.py on 127.0.0.1 (ports 8511, 8512, …; serve/replica.py: streamlit with a
   rerun limit per session), each with SAMLAB_CACHE_URL, SAMLAB_STORE_URL and SAMLAB_REPLICA=r1, r2, … in
   its environment;
3. HAProxy in front on --port (config written from serve/haproxy.cfg.tmpl): sticky sessions by the
   SERVERID cookie, WebSocket tunnels kept for hours, health checks on /_stcore/health, a dead replica
   leaves the rotation and its students are re-dispatched to a live one. With a certificate (`--cert`,
   `make hall CERT=/path/fullchain.pem`: certificate and key in one PEM) it serves HTTPS and WSS on --port
   and redirects plain HTTP on --http-port (default 80 when --port is 443, else none) to it. Limits per
   source address (a flood from one client is cut; a class of 300 behind one NAT address is not): new
   sessions, HTTP requests and open connections (HallConfig.max_*; README, "Serving a lecture hall");
4. one RQ worker for the GPU queue (serve/rqjobs.py), so N replicas never put N jobs on one GPU;
5. the cache warm-up in the background (serve/warm.py): every lecture scene at every ρ step of its slider.

It prints the URL to give students. Ctrl-C (SIGINT) or SIGTERM stops everything it started; if any part
fails to start, it stops what it had started and exits with a one-line message. A replica, an RQ worker or a
Redis that dies while the hall runs is restarted (a replica's students are already on the others; the store
Redis reads its append-only file back, so what it acknowledged is still there).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Template
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("haproxy.cfg.tmpl")
STOP_GRACE_S = 8.0  # SIGTERM, then SIGKILL after this long
MAX_RESTARTS = 5  # per replica, while the hall runs
SECRET_FILE = REPO / "data" / "cache" / "hall-secret"
ENV_SECRET = "SAMLAB_REDIS_SECRET"


def load_or_create_secret(path: Path | str = SECRET_FILE) -> str:
    """The hall's Redis secret: `$SAMLAB_REDIS_SECRET`, else the file `path`, created at the first start
    (mode 0600: only this user reads it). A file that others can read is made private again."""
    env = os.environ.get(ENV_SECRET, "").strip()
    if env:
        return env
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        text = path.read_text().strip()
        if not text:
            raise HallError(f"{path} is empty: delete it, and the next start makes a new secret") from None
        return text
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


class HallError(RuntimeError):
    """Something the hall needs is missing or did not start. str(e) is one line."""


@dataclass(frozen=True)
class HallConfig:
    replicas: int = field(default_factory=lambda: os.cpu_count() or 1)
    port: int = 8501  # HAProxy: the one port students open
    bind: str = "0.0.0.0"  # where HAProxy listens (tests: 127.0.0.1); replicas and Redis stay on 127.0.0.1
    replica_port: int = 8511  # replicas listen on replica_port, replica_port + 1, …
    cache_port: int = 6391
    store_port: int = 6392
    cache_maxmemory: str = "256mb"
    store_dir: str = str(REPO / "data" / "cache" / "hall-store")  # the store's append-only file lives here
    secret: str = ""  # the Redis secret ("" → load_or_create_secret(secret_file) when the Hall is made)
    secret_file: str = str(SECRET_FILE)
    cert: str = ""  # a PEM with certificate and key: HTTPS and WSS on `port`
    http_port: int | None = None  # with a cert: plain HTTP here is redirected to HTTPS (None: 80 if port is 443)
    # Per source address (a lecture hall's NAT shares one): new sessions (WebSocket opens) per 10 s, HTTP
    # requests per 10 s, open connections. 300 students joining within ~30 s open ≤ ~150 sessions in any 10 s
    # and load ~20 files each; a script that opens sessions or requests in a loop passes these within seconds.
    max_sessions_10s: int = 200
    max_requests_10s: int = 6000
    max_connections: int = 3000
    worker: bool = True  # the RQ worker of the GPU queue
    warm: bool = True  # the background warm-up of the lecture scenes
    python: str = sys.executable
    start_timeout_s: float = 120.0

    def _auth(self) -> str:
        return f":{quote(self.secret, safe='')}@" if self.secret else ""

    @property
    def cache_url(self) -> str:
        return f"redis://{self._auth()}127.0.0.1:{self.cache_port}/0"

    @property
    def store_url(self) -> str:
        return f"redis://{self._auth()}127.0.0.1:{self.store_port}/0"

    @property
    def redirect_port(self) -> int | None:
        if not self.cert:
            return None
        if self.http_port is None:
            return 80 if self.port == 443 else None
        return self.http_port or None

    def replica_names(self) -> list[str]:
        return [f"r{i + 1}" for i in range(self.replicas)]

    def replica_ports(self) -> list[int]:
        return [self.replica_port + i for i in range(self.replicas)]


# ------------------------------------------------------------------------------------------------
# The commands (plain argument lists: nothing goes through a shell)
# ------------------------------------------------------------------------------------------------

def binary(tool: str) -> str | None:
    """The path of a Debian tool, also where /usr/sbin is not on the PATH (a normal user's shell)."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin")
    return found


def redis_command(port: int, role: str, folder: Path, maxmemory: str = "256mb",
                  conf: Path | None = None) -> list[str]:
    """redis-server for the `cache` (bounded, LRU, nothing on disk) or the `store` (no eviction, append-only,
    every write fsynced). `conf`: a config file read first (the hall's holds `requirepass`, mode 0600)."""
    common = [binary("redis-server") or "redis-server", *([str(conf)] if conf else []), "--port", str(port),
              "--bind", "127.0.0.1", "--protected-mode", "yes", "--daemonize", "no", "--dir", str(folder),
              "--save", ""]
    if role == "cache":
        return common + ["--maxmemory", maxmemory, "--maxmemory-policy", "allkeys-lru", "--appendonly", "no"]
    if role == "store":
        return common + ["--maxmemory-policy", "noeviction", "--appendonly", "yes", "--appendfsync", "always"]
    raise ValueError(f"unknown redis role {role!r}")


def redis_conf(path: Path, secret: str) -> Path:
    """A Redis config file (mode 0600) that requires `secret`: AUTH before anything else."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'requirepass "{secret}"\n' if secret else "")
    return path


def replica_command(cfg: HallConfig, port: int) -> list[str]:
    return [cfg.python, "-m", "serve.replica", "run", str(REPO / "app" / "main.py"),
            "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]


def replica_env(cfg: HallConfig, name: str) -> dict[str, str]:
    return {**os.environ, "SAMLAB_CACHE_URL": cfg.cache_url, "SAMLAB_STORE_URL": cfg.store_url,
            "SAMLAB_REPLICA": name, "PYTHONUNBUFFERED": "1"}


def haproxy_config(cfg: HallConfig) -> str:
    """serve/haproxy.cfg.tmpl with this hall's frontend and one `server` line per replica. For several
    machines, the same lines name the other machines' addresses (README, "Serving a lecture hall")."""
    servers = "\n".join(f"    server {n} 127.0.0.1:{p} check cookie {n}"
                        for n, p in zip(cfg.replica_names(), cfg.replica_ports()))
    if cfg.cert:
        binds = f"    bind {cfg.bind}:{cfg.port} ssl crt {cfg.cert} alpn http/1.1"
        if cfg.redirect_port:
            binds += f"\n    bind {cfg.bind}:{cfg.redirect_port}"
        # plain HTTP (the redirect port) goes to HTTPS on the students' port; HSTS keeps browsers there
        tls = ("    http-request redirect scheme https code 301 if !{ ssl_fc }\n"
               "    http-response set-header Strict-Transport-Security max-age=31536000 if { ssl_fc }\n")
        if cfg.port != 443:
            tls = tls.replace("redirect scheme https code 301",
                              f"redirect prefix https://%[req.hdr(host),field(1,:)]:{cfg.port} code 301")
    else:
        binds, tls = f"    bind {cfg.bind}:{cfg.port}", ""
    return Template(TEMPLATE.read_text()).substitute(
        binds=binds, tls=tls, servers=servers, max_sessions=cfg.max_sessions_10s,
        max_requests=cfg.max_requests_10s, max_connections=cfg.max_connections)


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------

def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, lo: int = 20000, hi: int = 60000) -> int:
    """The first of n consecutive free loopback ports (for tests and for --port 0)."""
    import random

    for _ in range(200):
        base = random.randint(lo, hi - n)
        if all(port_free(base + i) for i in range(n)):
            return base
    raise HallError(f"no {n} consecutive free ports found")


def http_ok(url: str, timeout: float = 2.0, insecure: bool = False) -> bool:
    """True when `url` answers 200. `insecure`: accept any certificate (the hall's own, checked on loopback)."""
    context = None
    if insecure and url.startswith("https"):
        import ssl

        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(port: int, secret: str = "") -> bool:
    """True when the Redis on `port` answers PING (after AUTH with `secret`, when given)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            if secret:
                s.sendall(f"AUTH {secret}\r\n".encode())
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def lan_address() -> str:
    """This machine's address on its network (what students type), or its host name."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it only picks the route
            return s.getsockname()[0]
        except OSError:
            return socket.gethostname()


def _die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM) in a child before exec (Linux only; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen
    log: Path
    env: dict | None = None
    restarts: int = 0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


# ------------------------------------------------------------------------------------------------
# The hall
# ------------------------------------------------------------------------------------------------

class Hall:
    """Start and stop everything `make hall` runs. Also the tests' fixture (tests/test_hall_*.py):

        with Hall(HallConfig(replicas=2, port=..., bind="127.0.0.1", warm=False)) as hall:
            hall.url, hall.procs["r1"].popen.pid, ...
    """

    def __init__(self, cfg: HallConfig, out=None):
        if not cfg.secret:
            cfg = replace(cfg, secret=load_or_create_secret(cfg.secret_file))
        self.cfg = cfg
        self.out = out if out is not None else sys.stdout
        self.procs: dict[str, Proc] = {}  # in start order
        self.run_dir = Path(tempfile.mkdtemp(prefix="samlab-hall-"))
        self.failed = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.cfg.bind in ("0.0.0.0", "127.0.0.1", "") else self.cfg.bind
        return f"{'https' if self.cfg.cert else 'http'}://{host}:{self.cfg.port}"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -------------------------------------------------------------------------------- starting
    def check(self) -> None:
        """Fail early, with one line, on what would make a start fail later."""
        cfg = self.cfg
        for tool in ("redis-server", "haproxy"):
            if binary(tool) is None:
                raise HallError(f"{tool} is not installed (make hall installs it with apt-get; "
                                f"on another system install {tool} with its package manager)")
        if cfg.replicas < 1:
            raise HallError("REPLICAS must be at least 1")
        if cfg.cert and not Path(cfg.cert).is_file():
            raise HallError(f"CERT={cfg.cert}: no such file (a PEM with the certificate chain and the key)")
        wanted = [("HAProxy", cfg.port), ("the cache Redis", cfg.cache_port), ("the store Redis", cfg.store_port)]
        if cfg.redirect_port:
            wanted.append(("HAProxy's HTTP redirect", cfg.redirect_port))
        wanted += [(f"replica {n}", p) for n, p in zip(cfg.replica_names(), cfg.replica_ports())]
        for what, port in wanted:
            if not port_free(port, "0.0.0.0" if what.startswith("HAProxy") else "127.0.0.1"):
                raise HallError(f"port {port} (for {what}) is in use: is a hall or `make app` already running? "
                                "Stop it, or choose other ports (PORT=...)")

    def spawn(self, name: str, argv: list[str], env: dict | None = None, nice: int = 0) -> Proc:
        """Start one part in its own process group (so that stopping it stops its children too), its output in
        the run folder. On Linux it also gets SIGTERM if the hall itself dies (even by SIGKILL)."""
        log = self.run_dir / f"{name}.log"

        def setup() -> None:
            _die_with_parent()
            if nice:
                os.nice(nice)

        with open(log, "ab") as f:
            popen = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=REPO, env=env, start_new_session=True, preexec_fn=setup)
        proc = self.procs[name] = Proc(name, argv, popen, log, env)
        return proc

    def wait_until(self, proc: Proc, ready, what: str) -> None:
        end = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < end:
            if ready():
                return
            if not proc.alive():
                raise HallError(f"{what} exited at start (code {proc.popen.returncode}): {proc.log_tail()}")
            time.sleep(0.1)
        raise HallError(f"{what} did not become ready in {self.cfg.start_timeout_s:.0f} s: {proc.log_tail()}")

    def start_redis(self, role: str) -> Proc:
        """The `cache` or the `store` Redis (also what the shared-cache and RQ tests start)."""
        port = self.cfg.cache_port if role == "cache" else self.cfg.store_port
        folder = self.run_dir / "cache" if role == "cache" else Path(self.cfg.store_dir)
        folder.mkdir(parents=True, exist_ok=True)
        conf = redis_conf(self.run_dir / f"redis-{role}.conf", self.cfg.secret)
        proc = self.spawn(f"redis-{role}", redis_command(port, role, folder, self.cfg.cache_maxmemory, conf))
        self.wait_until(proc, lambda: redis_ping(port, self.cfg.secret), f"the {role} Redis (port {port})")
        return proc

    def start(self) -> Hall:
        """Start everything; on any failure stop what was started and raise HallError (one line)."""
        cfg = self.cfg
        t0 = time.monotonic()
        try:
            self.check()
            self.start_redis("cache")
            self.start_redis("store")
            for name, port in zip(cfg.replica_names(), cfg.replica_ports()):
                self.spawn(name, replica_command(cfg, port), replica_env(cfg, name))
            for name, port in zip(cfg.replica_names(), cfg.replica_ports()):  # they start in parallel
                self.wait_until(self.procs[name], lambda p=port: http_ok(f"http://127.0.0.1:{p}/_stcore/health"),
                                f"replica {name} (port {port})")
            (self.run_dir / "haproxy.cfg").write_text(haproxy_config(cfg))
            haproxy = binary("haproxy") or "haproxy"
            check = subprocess.run([haproxy, "-c", "-q", "-f", str(self.run_dir / "haproxy.cfg")],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                raise HallError(f"HAProxy refused its config: {(check.stderr or check.stdout).strip()[:300]}")
            proxy = self.spawn("haproxy", [haproxy, "-db", "-f", str(self.run_dir / "haproxy.cfg")])
            self.wait_until(proxy, lambda: http_ok(f"{self.url}/_stcore/health", insecure=True),
                            f"HAProxy (port {cfg.port})")
            if cfg.worker:  # one worker per lane: one GPU job at a time, one CPU training at a time
                # the URL (with the secret) goes in the environment, not on the command line `ps` shows
                workers = [self.spawn(f"rq-{lane}", [cfg.python, "-m", "serve.rqjobs", "worker", "--lane", lane],
                                      {**os.environ, "PYTHONUNBUFFERED": "1", "SAMLAB_STORE_URL": cfg.store_url})
                           for lane in ("gpu", "cpu")]
                time.sleep(1.0)
                for w in workers:
                    if not w.alive():
                        raise HallError(f"the RQ worker {w.name} exited at start: {w.log_tail()}")
            self.start_s = time.monotonic() - t0
            if cfg.warm:
                self.start_warmup()
        except BaseException:
            self.failed = True
            self.stop()
            raise
        return self

    def start_warmup(self) -> Proc:
        """serve/warm.py in the background, at a lower priority than the replicas (the hall serves while it
        warms); its progress lines go to the hall's output."""
        env = {**os.environ, "SAMLAB_CACHE_URL": self.cfg.cache_url, "SAMLAB_REPLICA": "warm-up",
               "PYTHONUNBUFFERED": "1"}
        return self.spawn("warm-up", [self.cfg.python, "-m", "serve.warm"], env, nice=10)

    # -------------------------------------------------------------------------------- running
    def restart(self, name: str) -> None:
        proc = self.procs[name]
        self._stop_one(proc)
        new = self.spawn(name, proc.argv, proc.env)
        new.restarts = proc.restarts + 1

    def watch_once(self) -> None:
        """Called every second by `serve`: report what exited; restart dead replicas (a few times)."""
        for name, proc in list(self.procs.items()):
            if proc.alive() or getattr(proc, "reported", False):
                continue
            code = proc.popen.returncode
            restartable = name in self.cfg.replica_names() or name.startswith(("rq-", "redis-"))
            if restartable and proc.restarts < MAX_RESTARTS:
                self.say(f"{name} exited (code {code}); restarting it"
                         + ("; its students are on the other replicas" if name.startswith("r") and name[1:].isdigit()
                            else "; the store reads its append-only file back" if name == "redis-store" else ""))
                self.restart(name)
            elif name == "warm-up":
                self.say("warm-up finished" if code == 0 else f"warm-up stopped (code {code}): {proc.log_tail(1)}")
                proc.reported = True
            elif name == "haproxy":
                raise HallError(f"HAProxy exited (code {code}): {proc.log_tail()}")
            else:
                self.say(f"{name} exited (code {code}): {proc.log_tail(1)}; the replicas carry on without it")
                proc.reported = True

    def warm_progress(self) -> str:
        """The warm-up's last progress line ('' if none)."""
        proc = self.procs.get("warm-up")
        return proc.log_tail(1) if proc else ""

    # -------------------------------------------------------------------------------- stopping
    def _stop_one(self, proc: Proc) -> None:
        if proc.alive():
            try:
                os.killpg(proc.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.popen.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        try:  # the whole group, also after the leader exited (a streamlit child, a forked work horse)
            os.killpg(proc.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.popen.wait(2.0)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        """Stop everything, newest first (the proxy before the replicas, the Redis last)."""
        for proc in reversed(list(self.procs.values())):
            self._stop_one(proc)
        if not self.failed:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Hall:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(cfg: HallConfig) -> int:
    """Run the hall until Ctrl-C / SIGTERM. Returns the exit status."""
    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    hall, status = Hall(cfg), 0
    hall.say(f"Starting the SAM Lab lecture hall: {cfg.replicas} replicas, port {cfg.port} …")
    try:
        hall.start()
    except HallError as e:
        hall.say(f"make hall: {e}")
        hall.say(f"(logs kept in {hall.run_dir})")
        return 1
    except KeyboardInterrupt:
        hall.say("stopped while starting; everything it had started is stopped")
        return 130
    try:  # from here on, Ctrl-C at any moment (even while the address is printed) stops everything
        where = lan_address() if cfg.bind == "0.0.0.0" else cfg.bind
        replicas = ", ".join(f"{n} :{p}" for n, p in zip(cfg.replica_names(), cfg.replica_ports()))
        hall.say(f"\nStarted in {hall.start_s:.1f} s:\n"
                 f"  redis cache   127.0.0.1:{cfg.cache_port}  "
                 f"(maxmemory {cfg.cache_maxmemory}, allkeys-lru, not saved)\n"
                 f"  redis store   127.0.0.1:{cfg.store_port}  "
                 f"(noeviction, append-only, fsync always, in {cfg.store_dir})\n"
                 f"  redis secret  both require it: ${ENV_SECRET} or {cfg.secret_file} (mode 0600)\n"
                 f"  replicas      {replicas}  (streamlit run app/main.py)\n"
                 f"  haproxy       {cfg.bind}:{cfg.port}  (sticky by cookie SERVERID, health checks, per-address limits"
                 + (f"; HTTPS with {cfg.cert}" if cfg.cert else "")
                 + (f"; HTTP on :{cfg.redirect_port} redirected" if cfg.redirect_port else "") + ")\n"
                 + ("  rq workers    the GPU queue and the CPU queue, one job at a time each\n" if cfg.worker else "")
                 + ("  warm-up       every lecture scene at every ρ step, in the background\n" if cfg.warm else "")
                 + f"  logs          {hall.run_dir}\n\n"
                 f"Give the students this address:   {'https' if cfg.cert else 'http'}://{where}:{cfg.port}/\n"
                 "Ctrl-C stops everything.")
        last = ""
        while True:
            time.sleep(1.0)
            hall.watch_once()
            line = hall.warm_progress()
            if line and line != last and line.startswith("warm-up"):
                hall.say(line)
                last = line
    except KeyboardInterrupt:
        hall.say("\nStopping the hall …")
    except HallError as e:
        hall.say(f"make hall: {e}")
        hall.failed, status = True, 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        hall.stop()
        hall.say("Everything the hall started is stopped.")
    return status


def config_from_args(argv: list[str] | None = None) -> HallConfig:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m serve.hall", description="Serve SAM Lab to a lecture hall.")
    p.add_argument("--replicas", type=int, default=int(env.get("REPLICAS") or (os.cpu_count() or 1)),
                   help="Streamlit replicas (default: $REPLICAS or the number of cores)")
    p.add_argument("--port", type=int, default=int(env.get("PORT") or 8501), help="the students' port (HAProxy)")
    p.add_argument("--bind", default=env.get("BIND", "0.0.0.0"),
                   help="HAProxy's address (127.0.0.1: this machine only)")
    p.add_argument("--replica-port", type=int, default=8511, help="the first replica's port")
    p.add_argument("--cache-port", type=int, default=6391)
    p.add_argument("--store-port", type=int, default=6392)
    p.add_argument("--cache-maxmemory", default="256mb", help="the compute cache's memory bound")
    p.add_argument("--cert", default=env.get("CERT", ""),
                   help="a PEM with certificate chain and key: HTTPS and WSS on --port ($CERT)")
    p.add_argument("--http-port", type=int, default=int(env["HTTP_PORT"]) if env.get("HTTP_PORT") else None,
                   help="with --cert: redirect plain HTTP on this port to HTTPS (default 80 when --port is 443)")
    p.add_argument("--secret-file", default=str(SECRET_FILE),
                   help=f"the Redis secret's file (created at the first start; ${ENV_SECRET} overrides it)")
    p.add_argument("--no-warm", action="store_true", help="skip the warm-up of the lecture scenes")
    p.add_argument("--no-worker", action="store_true", help="no RQ worker (no CIFAR jobs in this hall)")
    a = p.parse_args(argv)
    return replace(HallConfig(), replicas=a.replicas, port=a.port, bind=a.bind, replica_port=a.replica_port,
                   cache_port=a.cache_port, store_port=a.store_port, cache_maxmemory=a.cache_maxmemory,
                   warm=not a.no_warm, worker=not a.no_worker, cert=a.cert and str(Path(a.cert).resolve()),
                   http_port=a.http_port, secret_file=a.secret_file)


def main(argv: list[str] | None = None) -> int:
    return serve(config_from_args(argv))


if __name__ == "__main__":
    sys.exit(main())
