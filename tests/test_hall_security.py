"""A hall no one else can write to, over HTTPS, that one misbehaving client cannot take (issue 19, items 2, 4, 5),
against the real servers (redis-server, HAProxy, Streamlit replicas) started by serve.hall's own code.

Claims:
1. the Redis secret: made at the first start in a file of mode 0600, the same on the next start, made private
   again if someone loosened it; $SAMLAB_REDIS_SECRET overrides it;
2. both Redis refuse a client without the secret (and one with a wrong secret); the hall's own URLs carry it;
   the secret is on no command line (`ps` shows command lines to every local user);
3. HTTPS: with a certificate (self-signed, made by Debian's openssl) the page opens over https and ρ moves
   over wss, the certificate verified against itself (CN and SAN 127.0.0.1); plain HTTP on the redirect port
   answers 301 to the https URL;
4. a flood from one address is cut: a script opening sessions in a loop gets 429 after the per-address limit,
   a script sending reruns in a loop over one session has the excess held back (the replica logs it once);
   meanwhile 20 protocol students from the same address (127.0.0.1) change ρ with 0 errors.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from serve.hall import ENV_SECRET, Hall, HallConfig, binary, free_ports, load_or_create_secret

needs_redis = pytest.mark.skipif(binary("redis-server") is None, reason="redis-server is not installed (make services)")
needs_hall = pytest.mark.skipif(
    binary("redis-server") is None or binary("haproxy") is None or binary("openssl") is None,
    reason="haproxy, redis-server and openssl are needed (make services)")
PAGE = {"landscape": "double_well_2d", "rho": "0.05", "seed": "191919", "particles": "100"}


# ------------------------------------------------------------------------------------------------ the secret

def test_the_secret_file_is_private_stable_and_overridable(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_SECRET, raising=False)
    path = tmp_path / "cache" / "hall-secret"
    first = load_or_create_secret(path)
    assert len(first) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first  # the next start uses the same secret
    os.chmod(path, 0o644)
    assert load_or_create_secret(path) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv(ENV_SECRET, "from-the-environment")
    assert load_or_create_secret(path) == "from-the-environment"  # several machines: one secret, passed along
    assert Hall(HallConfig(secret_file=str(path))).cfg.store_url.startswith("redis://:from-the-environment@")


@needs_redis
def test_a_client_without_the_secret_is_refused(tmp_path, monkeypatch):
    import redis

    monkeypatch.delenv(ENV_SECRET, raising=False)
    base = free_ports(2)
    h = Hall(HallConfig(replicas=1, cache_port=base, store_port=base + 1, store_dir=str(tmp_path / "store"),
                        secret_file=str(tmp_path / "secret"), warm=False, worker=False))
    try:
        h.start_redis("cache")
        h.start_redis("store")
        for port, url in ((base, h.cfg.cache_url), (base + 1, h.cfg.store_url)):
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=port).set("planted", b"x")
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=port, password="wrong").get("planted")
            r = redis.Redis.from_url(url)
            assert r.ping() and r.get("planted") is None  # nothing was written by the clients without it
        for name in ("redis-cache", "redis-store"):  # the secret is on no command line
            cmdline = Path(f"/proc/{h.procs[name].popen.pid}/cmdline").read_bytes()
            assert h.cfg.secret.encode() not in cmdline and h.cfg.secret not in " ".join(h.procs[name].argv)
            conf = Path(h.procs[name].argv[1])  # the config file that holds it
            assert h.cfg.secret in conf.read_text()
            assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    finally:
        h.stop()


# ------------------------------------------------------------------------------------------------ HTTPS

def self_signed(folder: Path) -> tuple[Path, Path]:
    """(fullchain.pem with certificate and key, cert.pem alone) for 127.0.0.1, made by Debian's openssl."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run([binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    full = folder / "fullchain.pem"
    full.write_bytes(cert.read_bytes() + key.read_bytes())
    os.chmod(full, 0o600)
    return full, cert


@needs_hall
@pytest.mark.timeout(600)
def test_https_and_wss_with_a_self_signed_certificate(tmp_path):
    from bench.st_protocol import StreamlitClient

    full, cert = self_signed(tmp_path)
    base = free_ports(6)
    cfg = HallConfig(replicas=1, port=base, bind="127.0.0.1", replica_port=base + 1, cache_port=base + 2,
                     store_port=base + 3, http_port=base + 4, store_dir=str(tmp_path / "store"), warm=False,
                     worker=False, cert=str(full))
    with Hall(cfg, out=open(os.devnull, "w")) as hall:
        assert hall.url == f"https://127.0.0.1:{base}"
        c = StreamlitClient(hall.url, run_timeout=180, ca_file=str(cert))  # verified: no "insecure" here
        run = c.open("escape", PAGE)
        assert run.ok, run.error
        assert c.ws.sock.version().startswith("TLS")  # the WebSocket itself is wss
        assert c.rho() == pytest.approx(0.05)
        run = c.set_rho(0.1)  # a release on the page's ρ control, over wss
        assert run.ok, run.error
        assert c.rho() == pytest.approx(0.1) and c.query_params().get("rho") == "0.1"
        c.close()
        # plain HTTP on the redirect port: 301 to the same path over https
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(f"http://127.0.0.1:{base + 4}/escape?rho=0.1", timeout=10)
        assert e.value.code == 301
        assert e.value.headers["Location"] == f"https://127.0.0.1:{base}/escape?rho=0.1"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# ------------------------------------------------------------------------------------------------ floods

@needs_hall
@pytest.mark.timeout(900)
def test_a_flood_from_one_address_is_cut_while_20_students_there_see_no_error(tmp_path):
    import websocket

    from bench.st_protocol import StreamlitClient

    base = free_ports(6)
    cfg = HallConfig(replicas=2, port=base, bind="127.0.0.1", replica_port=base + 1, cache_port=base + 3,
                     store_port=base + 4, store_dir=str(tmp_path / "store"), warm=False, worker=False,
                     secret_file=str(tmp_path / "secret"))
    with Hall(cfg, out=open(os.devnull, "w")) as hall:
        students = [StreamlitClient(hall.url, run_timeout=240) for _ in range(20)]
        errors: list[str] = []
        for c in students:  # the class is in (20 sessions, well under the limit)
            run = c.open("escape", PAGE)
            if not run.ok:
                errors.append(run.error)
        assert not errors, errors
        # the rerun flood: one session sends reruns in a loop without waiting for them
        flooder = StreamlitClient(hall.url, run_timeout=120)
        assert flooder.open("escape", PAGE).ok
        stop = threading.Event()
        sent = [0]

        def rerun_flood():
            msg = flooder._client_state_msg("", "")
            while not stop.is_set():
                try:
                    flooder.ws.send_binary(msg)
                except Exception:  # cut: the flood ends here
                    return
                sent[0] += 1
                time.sleep(0.002)

        # the session flood: new WebSocket sessions in a loop, each closed at once
        opened, refused, other = [0], [0], []

        def session_flood():
            ws_url = "ws" + hall.url[len("http"):] + "/_stcore/stream"
            while not stop.is_set():
                try:
                    websocket.create_connection(ws_url, subprotocols=["streamlit"], timeout=10).close()
                    opened[0] += 1
                except websocket.WebSocketBadStatusException as e:
                    if e.status_code == 429:
                        refused[0] += 1
                    else:
                        other.append(str(e)[:100])
                except (OSError, websocket.WebSocketException) as e:
                    other.append(type(e).__name__)

        floods = [threading.Thread(target=rerun_flood)] + [threading.Thread(target=session_flood) for _ in range(4)]
        for t in floods:
            t.start()
        try:
            rhos = (0.06, 0.07, 0.08)
            for rho in rhos:  # every student moves ρ three times while the floods go on
                for c in students:
                    run = c.set_rho(rho)
                    if not run.ok:
                        errors.append(run.error)
        finally:
            stop.set()
            for t in floods:
                t.join(30)
        for c in students:
            c.close()
        flooder.close()
        assert not errors, errors[:5]
        assert all(c.connects == 1 for c in students)  # no student was disconnected
        print(f"\nflood: {opened[0]} sessions opened, {refused[0]} refused (429), {len(other)} other errors; "
              f"{sent[0]} reruns sent by the rerun flood")
        # the session flood was cut at the per-address limit (200 new sessions per 10 s, HallConfig)
        assert refused[0] > 0 and opened[0] > 0, (opened, refused, other[:3])
        assert opened[0] <= cfg.max_sessions_10s * 3 + 20 * 3, (opened, refused)  # not many more than the limit
        # the rerun flood: the replica held its excess back and said so once
        assert sent[0] > 200
        logs = "".join(hall.procs[n].log.read_text(errors="replace") for n in cfg.replica_names())
        assert logs.count("sends reruns faster than") == 1, logs[-2000:]
        assert all(p.alive() for p in hall.procs.values())


def test_the_rerun_limit_holds_back_the_excess_and_refills():
    """serve/replica.RerunLimit: BURST reruns at once, then one per 1/RATE s; the wait it returns is the time until
    the next token; sessions are independent."""
    from serve.replica import RerunLimit

    now = [0.0]
    lim = RerunLimit(rate=3.0, burst=15.0, clock=lambda: now[0])
    assert all(lim.take("a") == 0.0 for _ in range(15))
    wait = lim.take("a")
    assert wait == pytest.approx(1 / 3) and lim.deferred["a"] == 1
    assert lim.take("b") == 0.0  # another student is not affected
    now[0] += wait
    assert lim.take("a") == 0.0 and lim.take("a") > 0  # one token back after 1/RATE s, not more
    now[0] += 100.0
    assert sum(lim.take("a") == 0.0 for _ in range(20)) == 15  # refilled to the burst, not beyond
