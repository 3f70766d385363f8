"""One replica of the lecture hall: `streamlit run app/main.py`, with a rerun limit per browser session.

    python -m serve.replica run app/main.py --server.port 8511 ...   (serve/hall.py starts it; the arguments
                                                                     are streamlit's own)

HAProxy (serve/haproxy.cfg.tmpl) limits what it can see per source address: new sessions, HTTP requests and
open connections. It cannot see inside a session's WebSocket, where every widget change is one `rerun_script`
message and one script run on the replica. A script that sends reruns in a loop over one open session would
take a replica's CPU from every student on it. So each session gets a token bucket (`RerunLimit`): RATE
reruns per second on average, BURST at once. A student moving a slider sends a rerun when they let go, a
fragment timer (the projector, the CIFAR page's live view) one every second or more; both stay far below it.
A rerun over the limit is dropped, not run (the page keeps its last state); the first drop of a session is
logged. Other messages (heartbeats, file uploads' bookkeeping) are not limited.

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
    """A token bucket per session id: `allow(sid)` is False when that session has spent its reruns."""

    def __init__(self, rate: float = RATE, burst: float = BURST, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens: dict[str, tuple[float, float]] = {}  # sid → (tokens, last time)
        self.dropped: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, sid: str) -> bool:
        now = self.clock()
        with self._lock:
            tokens, last = self._tokens.get(sid, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self._tokens[sid] = (tokens - 1.0 if ok else tokens, now)
            if not ok:
                self.dropped[sid] = self.dropped.get(sid, 0) + 1
            if len(self._tokens) > 20000:  # sessions that left: forget the idle ones (full buckets)
                self._tokens = {k: v for k, v in self._tokens.items()
                                if v[0] + (now - v[1]) * self.rate < self.burst}
            return ok

    def forget(self, sid: str) -> None:
        with self._lock:
            self._tokens.pop(sid, None)
            self.dropped.pop(sid, None)


LIMIT = RerunLimit()


def install(limit: RerunLimit = LIMIT) -> None:
    """Wrap Streamlit's Runtime.handle_backmsg: a `rerun_script` over the session's limit is dropped."""
    from streamlit.runtime.runtime import Runtime

    if getattr(Runtime.handle_backmsg, "_samlab_limited", False):
        return
    original, original_disconnect = Runtime.handle_backmsg, Runtime.disconnect_session

    def handle_backmsg(self, session_id, msg, *args, **kwargs):
        if msg.WhichOneof("type") == "rerun_script" and not limit.allow(session_id):
            if limit.dropped.get(session_id) == 1:
                log.warning("session %s sends reruns faster than %g/s (burst %g); dropping the excess",
                            session_id, limit.rate, limit.burst)
            return None
        return original(self, session_id, msg, *args, **kwargs)

    def disconnect_session(self, session_id, *args, **kwargs):
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
