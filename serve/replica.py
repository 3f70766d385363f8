"""One replica of the lecture hall: `streamlit run app/main.py`, with a rerun limit per browser session.

    python -m serve.replica run app/main.py --server.port 8511 ...   (serve/hall.py starts it; the arguments
                                                                     are streamlit's own)

HAProxy (serve/haproxy.cfg.tmpl) limits what it can see per source address: new sessions, HTTP requests and
open connections. It cannot see inside a session's WebSocket, where every widget change is one `rerun_script`
message and one script run on the replica. A script that sends reruns in a loop over one open session would
take a replica's CPU from every student on it. So each session gets a token bucket (`RerunLimit`): RATE
reruns per second on average, BURST at once. A student moving a slider sends a rerun when they let go, a
fragment timer (the projector, the CIFAR page's live view) one every second or more; both stay far below it.
A rerun over the limit is held back until the session has a token again; a later rerun of the same session
replaces the one held back (Streamlit itself interrupts an older run for a newer one), so the last state a
student sent always runs, and a session never runs more than RATE reruns a second on average. The first
hold-back of a session is logged. Other messages (heartbeats, file uploads' bookkeeping) are not limited.

It also stops Streamlit's own pollers of its configuration (`quiet_watchers`). With `fileWatcherType = "none"`
Streamlit still polls `.streamlit/config.toml` and `~/.streamlit/config.toml` every 0.2 s (and the secrets
files once st.secrets is read), whatever the setting says; a change to one of them re-parses the configuration
and clears every session's compiled page scripts, so the next run of every page recompiles it (the
recompiles a class-load profile showed while files were being edited). A lecture hall does not reload its
configuration mid-lecture: a restart does. Idle cost measured on a quiet replica: BENCHMARKS.md, "A hall you
can trust". SAMLAB_REPLICA_WATCHERS=1 keeps Streamlit's behaviour (for that measurement).
"""

from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger("samlab.replica")

RATE = 3.0  # reruns per second per session, on average
BURST = 15.0  # reruns at once (a student clicking quickly through a few steps)


class RerunLimit:
    """A token bucket per session id: `take(sid)` is 0 when the session may rerun now, else the seconds until it
    may (no token is taken then)."""

    def __init__(self, rate: float = RATE, burst: float = BURST, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens: dict[str, tuple[float, float]] = {}  # sid → (tokens, last time)
        self.deferred: dict[str, int] = {}  # sid → reruns held back (then run, or replaced by a later one)
        self._lock = threading.Lock()

    def take(self, sid: str) -> float:
        now = self.clock()
        with self._lock:
            tokens, last = self._tokens.get(sid, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._tokens[sid] = (tokens - 1.0, now)
                return 0.0
            self._tokens[sid] = (tokens, now)
            self.deferred[sid] = self.deferred.get(sid, 0) + 1
            if len(self._tokens) > 20000:  # sessions that left without a disconnect: forget full buckets
                self._tokens = {k: v for k, v in self._tokens.items()
                                if v[0] + (now - v[1]) * self.rate < self.burst}
            return (1.0 - tokens) / self.rate

    def forget(self, sid: str) -> None:
        with self._lock:
            self._tokens.pop(sid, None)
            self.deferred.pop(sid, None)


LIMIT = RerunLimit()


def install(limit: RerunLimit = LIMIT) -> None:
    """Wrap Streamlit's Runtime.handle_backmsg: a `rerun_script` over the session's limit is held back until the
    session has a token again, and a later one replaces it (Streamlit itself would interrupt the older run for
    the newer one), so the last state a student sent is always run, at most RATE times a second."""
    import asyncio

    from streamlit.runtime.runtime import Runtime

    if getattr(Runtime.handle_backmsg, "_samlab_limited", False):
        return
    original, original_disconnect = Runtime.handle_backmsg, Runtime.disconnect_session
    pending: dict[str, tuple] = {}  # sid → the latest held-back (runtime, msg, args, kwargs)

    def release(sid: str) -> None:
        held = pending.pop(sid, None)
        if held is None:
            return
        wait = limit.take(sid)
        if wait > 0:  # (another rerun took the token meanwhile) hold it a little longer
            pending[sid] = held
            asyncio.get_running_loop().call_later(wait, release, sid)
            return
        runtime, msg, args, kwargs = held
        try:
            original(runtime, sid, msg, *args, **kwargs)
        except Exception:  # the session left meanwhile
            log.debug("held-back rerun of %s not delivered", sid, exc_info=True)

    def handle_backmsg(self, session_id, msg, *args, **kwargs):
        if msg.WhichOneof("type") == "rerun_script":
            if session_id in pending:  # already holding one back: this later one replaces it
                pending[session_id] = (self, msg, args, kwargs)
                return None
            wait = limit.take(session_id)
            if wait > 0:
                if limit.deferred.get(session_id) == 1:
                    log.warning("session %s sends reruns faster than %g/s (burst %g); holding the excess back",
                                session_id, limit.rate, limit.burst)
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # not on the server's event loop (a test calling it directly): drop it
                    return None
                pending[session_id] = (self, msg, args, kwargs)
                loop.call_later(wait, release, session_id)
                return None
        return original(self, session_id, msg, *args, **kwargs)

    def disconnect_session(self, session_id, *args, **kwargs):
        pending.pop(session_id, None)
        limit.forget(session_id)
        return original_disconnect(self, session_id, *args, **kwargs)

    handle_backmsg._samlab_limited = True
    Runtime.handle_backmsg = handle_backmsg
    Runtime.disconnect_session = disconnect_session


def quiet_watchers() -> None:
    """No polling of config.toml and the secrets files in this process (see the module docstring)."""
    import streamlit.web.bootstrap as bootstrap
    from streamlit.runtime.secrets import Secrets

    bootstrap.watch_file = lambda *args, **kwargs: False
    Secrets._maybe_install_file_watchers = lambda self: None


def main() -> None:
    import os

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    install()
    if os.environ.get("SAMLAB_REPLICA_WATCHERS") != "1":
        quiet_watchers()
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main()


if __name__ == "__main__":
    main()
