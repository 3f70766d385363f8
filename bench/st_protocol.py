"""A Streamlit client that speaks the browser's own WebSocket protocol, without a browser.

What a browser does when a student opens a Streamlit page, and what this module does the same way
(read from streamlit 1.67's frontend bundle and `streamlit/web/server/starlette/starlette_websocket.py`):

1. HTTP: GET the page (`/escape?preset=...`), `/_stcore/health` and `/_stcore/host-config`. Cookies are
   kept per student in a `requests.Session`, so a proxy's sticky cookie (HAProxy `cookie ... insert`)
   sends every later request of this student to the same replica, as it does for a browser.
2. WebSocket `/_stcore/stream`, subprotocol `streamlit` (the browser's second and third entries are
   an XSRF token and, on a reconnect, the previous session id; neither is needed here), with the same
   cookies.
3. BackMsg `rerun_script` (a `ClientState`): the URL's query string, the page's url path as
   `page_name` (first load) or the page's `page_script_hash` (later reruns), the widget states, and
   the hashes of the messages this client has cached (the server then sends a small `ref_hash`
   message instead of resending an unchanged chart, exactly as for a browser). A widget inside an
   `st.fragment` reruns only its fragment: the rerun carries the fragment's id, which the element's
   delta named.
4. ForwardMsgs come back one per WebSocket message: `new_session`, `navigation` (the page's script
   hash), `page_info_changed` (the app rewrote the URL's query string: the next rerun sends it, as the
   browser's address bar would), `delta`s (elements at a `delta_path`), and finally `script_finished`.
   "The rerun has finished and its last delta has arrived" = the `script_finished` message arrived.

Errors are counted, never raised past `open` / `set_widget` (they return a `Run` whose `error` says
what went wrong): an exception element in the page, a timeout, a disconnect, a run that did not finish
successfully (`script_finished` missing or not a success), a page the server did not find.

Widget states: a browser sends the state of every widget on the page; this client sends the states
of the widgets it has changed (and keeps sending them). Streamlit keeps the other widgets' values in
the session's state, so the script sees the same values either way (checked in tests/test_st_protocol.py:
the rerun's page matches a fresh page opened at the new URL).

Used by `bench/hall_load.py` (the Locust students) and usable by any benchmark or test that needs to
script a student:

    c = StreamlitClient("http://127.0.0.1:8501")
    run = c.open("escape", {"preset": "escape_basic"})        # waits for script_finished
    run = c.set_widget("rho", 0.12)                          # by user key or by label
    c.texts(); c.elements("plotly_chart"); c.widget("rho")   # read the page
    c.close()
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
import websocket
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

# script_finished statuses (ForwardMsg.ScriptFinishedStatus)
FINISHED_OK = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
RUN_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 20.0
# Headers a proxy may add to name the replica that answered (the first one present is used); without
# one, the value of the sticky cookie names it.
REPLICA_HEADERS = ("x-samlab-replica", "x-replica", "x-served-by")


class ProtocolError(RuntimeError):
    """The server broke the protocol or went away (a disconnect, a timeout)."""


@dataclass
class Widget:
    """A widget as the last run drew it: its id (the server's), user key, label, element type
    ("slider", "checkbox", ...), the fragment it lives in ("" = none) and its proto."""

    id: str
    key: str
    label: str
    kind: str
    fragment_id: str
    proto: object


@dataclass
class Run:
    """One script run as the client saw it. seconds: request sent → script_finished arrived;
    last_delta_s: request sent → the last delta before script_finished (NaN when none came)."""

    seconds: float = float("nan")
    last_delta_s: float = float("nan")
    status: int | None = None  # script_finished status, None when it never came
    error: str = ""  # "" = a good run
    messages: int = 0
    bytes: int = 0
    deltas: int = 0
    ref_hits: int = 0  # deltas the server sent as a reference to this client's cache
    early_reruns: int = 0  # runs that ended early because the script asked for a rerun (one more followed)
    exceptions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error


def widget_state_value(widget: Widget, value):
    """(WidgetState oneof field name, encoded value) for setting `widget` to `value`, in the form
    the browser sends for that element type."""
    kind = widget.kind
    if kind == "slider":
        if list(widget.proto.options):  # select_slider: the index of each chosen option
            opts = list(widget.proto.options)
            vals = value if isinstance(value, (list, tuple)) else [value]
            return "int_array_value", [opts.index(str(v)) for v in vals]
        vals = value if isinstance(value, (list, tuple)) else [value]
        return "double_array_value", [float(v) for v in vals]
    if kind in ("checkbox", "toggle"):
        return "bool_value", bool(value)
    if kind in ("selectbox", "radio"):
        return "string_value", str(value)
    if kind == "multiselect":
        return "string_array_value", [str(v) for v in value]
    if kind == "number_input":
        if widget.proto.data_type == widget.proto.INT:
            return "int_value", int(value)
        return "double_value", float(value)
    if kind in ("text_input", "text_area"):
        return "string_value", str(value)
    if kind == "bidi_component":  # a components-v2 component: its whole state, as JSON (what setStateValue sends)
        return "json_value", json.dumps(dict(value))
    raise ValueError(f"setting a {kind} widget is not supported by this client")


def _user_key(widget_id: str) -> str:
    """The user key in a widget id: '$$ID-<hash>-<key>' → '<key>' ('' when the widget has none)."""
    if widget_id.startswith("$$ID-"):
        parts = widget_id.split("-", 2)
        if len(parts) == 3 and parts[2] != "None":
            return parts[2]
    return ""


class StreamlitClient:
    """One simulated student: one cookie jar, one WebSocket, one Streamlit session at a time.

    Not thread-safe (one student = one client). Works in plain threads and under gevent (Locust
    monkey-patches sockets, so the blocking calls here yield to the other students).
    """

    def __init__(self, base_url: str, *, run_timeout: float = RUN_TIMEOUT_S,
                 connect_timeout: float = CONNECT_TIMEOUT_S, http: requests.Session | None = None,
                 ca_file: str | None = None):
        """`ca_file`: for an https:// base URL, the certificate(s) to trust (a self-signed hall's PEM);
        None: the system's."""
        self.base_url = base_url.rstrip("/")
        self.ca_file = ca_file
        self.run_timeout = run_timeout
        self.connect_timeout = connect_timeout
        self.http = http or requests.Session()
        self.ws: websocket.WebSocket | None = None
        self.page = ""  # url path of the page on screen ("" = the main page)
        self.query_string = ""  # the query string as the browser's address bar shows it now
        self.page_script_hash = ""  # the page's script hash (from the navigation message)
        self.session_id = ""
        self.replica = ""  # which replica answered (proxy header or sticky cookie), "" when unknown
        self.connects = 0  # WebSocket connections made (1 + reconnects)
        self.widget_values: dict[str, tuple[str, object]] = {}  # widget id → state the client set
        self._elements: dict[tuple[int, ...], tuple[object, str, int]] = {}  # path → (Element, fragment, run)
        self._cache: dict[str, tuple[ForwardMsg, int]] = {}  # message hash → (message, last run it was used)
        self._max_cache_age = 2  # runs; the server's global.maxCachedMessageAge arrives in new_session
        self._run_no = 0

    # ------------------------------------------------------------------ connection
    @property
    def cookies(self) -> dict[str, str]:
        return self.http.cookies.get_dict()

    def _cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _note_replica(self, headers) -> None:
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        for name in REPLICA_HEADERS:
            if lower.get(name):
                self.replica = lower[name]
                return
        # Streamlit's own cookies (_streamlit_xsrf, ...) name no replica; a proxy's sticky cookie does.
        sticky = [v for k, v in self.cookies.items() if not k.startswith("_streamlit")]
        if sticky:
            self.replica = sticky[0]

    def http_get(self, path: str, **params) -> requests.Response:
        """GET a path of the app with this student's cookies (kept from the answers)."""
        # verify per request: a session's own `verify` loses to $REQUESTS_CA_BUNDLE in requests
        r = self.http.get(f"{self.base_url}/{path.lstrip('/')}", params=params or None, timeout=self.connect_timeout,
                          **({"verify": self.ca_file} if self.ca_file else {}))
        self._note_replica(r.headers)
        return r

    def connect(self) -> None:
        """What the browser does before the first rerun: the page's HTML (which sets a proxy's sticky
        cookie), the health and host-config endpoints, then the WebSocket with the same cookies."""
        self.close()
        url = f"{self.page}?{self.query_string}" if self.query_string else self.page
        try:
            self.http_get(url)
            self.http_get("_stcore/health")
            self.http_get("_stcore/host-config")
        except requests.RequestException as e:
            raise ProtocolError(f"HTTP: {type(e).__name__}: {str(e)[:200]}") from None
        ws_url = "ws" + self.base_url[len("http"):] + "/_stcore/stream"
        try:
            self.ws = websocket.create_connection(
                ws_url, subprotocols=["streamlit"], timeout=self.connect_timeout,
                cookie=self._cookie_header() or None, enable_multithread=False,
                sslopt={"ca_certs": self.ca_file} if self.ca_file else None,
            )
        except (OSError, websocket.WebSocketException) as e:
            self.ws = None
            raise ProtocolError(f"WebSocket connect: {type(e).__name__}: {str(e)[:200]}") from None
        headers = self.ws.getheaders() or {}
        for name, value in headers.items():  # a proxy may (re)set its sticky cookie on the upgrade
            if name.lower() == "set-cookie":
                for morsel in SimpleCookie(value).values():
                    self.http.cookies.set(morsel.key, morsel.value)
        self._note_replica(headers)
        self.connects += 1
        self._elements.clear()
        self._cache.clear()  # a new session (maybe on another replica) knows nothing of this cache

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close(timeout=1)
            self.ws = None

    # ------------------------------------------------------------------ runs
    def open(self, page: str = "", params: dict | None = None, *, query_string: str | None = None) -> Run:
        """Open a page as a fresh browser tab would: connect, send the first rerun with the URL's query
        string and the page's url path, and wait for script_finished. `page` may be a full URL."""
        if "://" in page or page.startswith("/") or "?" in page:
            parts = urlsplit(page)
            page, query_string = parts.path.strip("/"), parts.query
        self.page = page.strip("/")
        self.query_string = query_string if query_string is not None else urlencode(params or {})
        self.page_script_hash = ""
        self.widget_values.clear()
        try:
            self.connect()
        except ProtocolError as e:
            return Run(error=f"connect: {e}")
        return self._rerun(page_name=self.page)

    def reopen(self) -> Run:
        """After a disconnect: reconnect and re-open the current URL (which holds every control, ρ
        included), as the browser does when its WebSocket comes back."""
        return self.open(self.page, query_string=self.query_string)

    def set_widget(self, key_or_label: str, value) -> Run:
        """Change one widget as a user would and wait for the rerun it triggers (a fragment rerun
        when the widget lives in a fragment)."""
        w = self.widget(key_or_label)
        if w is None:
            return Run(error=f"no widget {key_or_label!r} on the page")
        self.widget_values[w.id] = widget_state_value(w, value)
        return self._rerun(fragment_id=w.fragment_id)

    def rerun(self) -> Run:
        """A full rerun with the current widget states (the 'R' key)."""
        return self._rerun()

    def _client_state_msg(self, page_name: str, fragment_id: str) -> bytes:
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query_string
        if self.page_script_hash:
            cs.page_script_hash = self.page_script_hash
        else:
            cs.page_name = page_name
        if fragment_id:
            cs.fragment_id = fragment_id
        for wid, (field_name, value) in self.widget_values.items():
            ws = cs.widget_states.widgets.add()
            ws.id = wid
            if field_name.endswith("_array_value"):
                getattr(ws, field_name).data.extend(value)
            else:
                setattr(ws, field_name, value)
        cs.cached_message_hashes.extend(self._cache.keys())
        return msg.SerializeToString()

    def _rerun(self, page_name: str = "", fragment_id: str = "") -> Run:
        run = Run()
        if self.ws is None:
            run.error = "disconnected: no WebSocket"
            return run
        self._run_no += 1
        t0 = time.perf_counter()
        try:
            self.ws.send_binary(self._client_state_msg(page_name, fragment_id))
            deadline = t0 + self.run_timeout
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError
                self.ws.settimeout(left)
                data = self.ws.recv()
                if isinstance(data, str) or not data:
                    raise ProtocolError("unexpected empty or text frame")
                run.messages += 1
                run.bytes += len(data)
                msg = ForwardMsg()
                msg.ParseFromString(data)
                if self._handle(msg, run, fragment_id, t0):
                    if run.status != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                        break
                    # The script asked for a rerun (st.rerun(), e.g. a page leaving its lecture scene): the
                    # server starts a full run at once, and the browser waits for that one to finish too.
                    run.early_reruns += 1
                    self._run_no += 1
                    fragment_id = ""
        except (TimeoutError, websocket.WebSocketTimeoutException):
            run.error = f"timeout: no script_finished within {self.run_timeout:.0f} s"
            self.close()  # a late answer would be taken for the next run's
            return run
        except (OSError, websocket.WebSocketException, ProtocolError) as e:
            run.error = f"disconnected: {type(e).__name__}: {str(e)[:200]}"
            self.close()
            return run
        run.seconds = time.perf_counter() - t0
        if run.status not in FINISHED_OK:
            run.error = f"script did not finish successfully (status {run.status})"
        elif run.exceptions:
            run.error = f"exception in the page: {run.exceptions[0][:300]}"
        return run

    def _handle(self, msg: ForwardMsg, run: Run, fragment_id: str, t0: float) -> bool:
        """Apply one ForwardMsg; True when it ends the run."""
        kind = msg.WhichOneof("type")
        if msg.metadata.cacheable and msg.hash and kind == "delta":
            self._cache[msg.hash] = (msg, self._run_no)
        if kind == "ref_hash":
            cached = self._cache.get(msg.ref_hash)
            if cached is None:
                raise ProtocolError(f"reference to a message this client never cached ({msg.ref_hash})")
            self._cache[msg.ref_hash] = (cached[0], self._run_no)
            run.ref_hits += 1
            full = ForwardMsg()
            full.CopyFrom(cached[0])
            full.metadata.CopyFrom(msg.metadata)  # the reference carries the new position
            msg, kind = full, "delta"
        if kind == "delta":
            run.deltas += 1
            run.last_delta_s = time.perf_counter() - t0
            d = msg.delta
            path = tuple(msg.metadata.delta_path)
            which = d.WhichOneof("type")
            if which in ("new_element", "add_block"):
                el = d.new_element if which == "new_element" else None
                self._elements[path] = (el, d.fragment_id, self._run_no)
                if el is not None and el.WhichOneof("type") == "exception":
                    run.exceptions.append(f"{el.exception.type}: {el.exception.message}")
        elif kind == "new_session":
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            age = msg.new_session.config.max_cached_message_age
            self._max_cache_age = age or self._max_cache_age
        elif kind == "navigation":
            self.page_script_hash = msg.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "page_not_found":
            run.exceptions.append(f"page not found: {msg.page_not_found.page_name!r}")
        elif kind == "script_finished":
            run.status = msg.script_finished
            if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                self._forget_stale(fragment_id, msg.script_finished)
            return True
        return False

    def _forget_stale(self, fragment_id: str, status: int) -> None:
        """After a run, the page holds only what this run drew (a fragment run replaces only the
        fragment's elements); cached messages unused for more than the server's age limit go, as in
        the browser's cache."""
        if status in FINISHED_OK:
            now = self._run_no
            self._elements = {
                p: v for p, v in self._elements.items()
                if v[2] == now or (fragment_id and v[1] != fragment_id)
            }
        self._cache = {h: v for h, v in self._cache.items() if self._run_no - v[1] <= self._max_cache_age}

    # ------------------------------------------------------------------ reading the page
    def elements(self, kind: str | None = None) -> list:
        """The page's elements in page order (Element protos), optionally of one type
        ("plotly_chart", "markdown", "slider", "exception", ...)."""
        out = []
        for _, (el, _frag, _run) in sorted(self._elements.items()):
            if el is not None and (kind is None or el.WhichOneof("type") == kind):
                out.append(el)
        return out

    def texts(self) -> list[str]:
        """Text of the page's markdown, headings, captions, alerts and exceptions, in page order."""
        out = []
        for el in self.elements():
            kind = el.WhichOneof("type")
            if kind in ("markdown", "heading", "text", "alert"):
                out.append(getattr(el, kind).body)
            elif kind == "exception":
                out.append(f"{el.exception.type}: {el.exception.message}")
        return out

    def widgets(self) -> list[Widget]:
        out = []
        for _, (el, frag, _run) in sorted(self._elements.items()):
            if el is None:
                continue
            kind = el.WhichOneof("type")
            proto = getattr(el, kind)
            wid = getattr(proto, "id", "") if hasattr(proto, "id") else ""
            if wid and kind not in ("plotly_chart", "download_button", "button"):
                out.append(Widget(wid, _user_key(wid), getattr(proto, "label", ""), kind, frag, proto))
        return out

    def widget(self, key_or_label: str) -> Widget | None:
        """The widget with this user key, else the first whose label is or starts with this text."""
        ws = self.widgets()
        for w in ws:
            if w.key == key_or_label:
                return w
        for w in ws:
            if w.label == key_or_label or w.label.startswith(key_or_label):
                return w
        return None

    def component_data(self, key: str) -> bytes:
        """The data payload a components-v2 component (`key`) got in the last run (b"" when none)."""
        w = self.widget(key)
        if w is None or w.kind != "bidi_component":
            return b""
        p = w.proto
        data = bytes(p.bytes) if p.bytes else p.json.encode()
        # A ρ chart answers a release with its header alone (app/components/rhochart.show): the browser keeps the
        # payload it holds for that digest, and so does this client.
        bodies = self.__dict__.setdefault("_component_bodies", {})
        head, nl, body = data.partition(b"\n")
        try:
            digest = json.loads(head).get("digest") if nl else None
        except (ValueError, AttributeError):
            digest = None
        if digest and body:
            bodies[key] = (digest, body)
        elif digest and bodies.get(key, (None,))[0] == digest:
            data = head + b"\n" + bodies[key][1]
        return data

    def rho_chart(self, slider_key: str = "rho") -> tuple[Widget | None, list[float], float | None]:
        """(component, grid, ρ shown) of the page's ρ chart: the components-v2 component whose payload
        (app/components/rhochart: a header line with the step shown, then the grid's JSON) carries the slider
        `slider_key`; (None, [], None) when the page has none."""
        for w in self.widgets():
            if w.kind != "bidi_component":
                continue
            data = self.component_data(w.key) if w.key else (bytes(w.proto.bytes) or w.proto.json.encode())
            head, _, body = data.partition(b"\n")
            try:
                slider = json.loads(body)["slider"]
                if slider.get("key", slider_key) != slider_key:
                    continue
                grid = [float(r) for r in slider["rhos"]]
                index = int(json.loads(head)["index"])
            except (ValueError, KeyError, TypeError):
                continue
            if w.id in self.widget_values:  # what this client released last
                return w, grid, float(json.loads(self.widget_values[w.id][1])["rho"])
            return w, grid, grid[index] if 0 <= index < len(grid) else None
        return None, [], None

    def rho_chart_state(self) -> tuple[list[float], float | None]:
        """(grid, ρ shown) of the page's ρ chart ([], None without one)."""
        _, grid, rho = self.rho_chart()
        return grid, rho

    def rho(self) -> float | None:
        """The page's ρ: its ρ slider's value (key `rho`), else its ρ chart's."""
        w = self.widget("rho")
        if w is not None and w.kind == "slider":
            return self.slider_value("rho")
        return self.rho_chart_state()[1]

    def set_rho(self, rho: float) -> Run:
        """Move ρ as the browser does: the ρ slider's widget state, or a release on the ρ chart (its state `rho`,
        which reruns the chart's fragment)."""
        w = self.widget("rho")
        if w is not None and w.kind == "slider":
            return self.set_widget("rho", rho)
        chart, _, _ = self.rho_chart()
        if chart is None:
            return Run(error="no ρ slider or ρ chart on the page")
        self.widget_values[chart.id] = widget_state_value(chart, {"rho": float(rho)})
        return self._rerun(fragment_id=chart.fragment_id)

    def slider_value(self, key_or_label: str) -> float | None:
        """The value a slider shows now: the value this client set, else the one the server drew."""
        w = self.widget(key_or_label)
        if w is None or w.kind != "slider":
            return None
        if w.id in self.widget_values:
            return float(self.widget_values[w.id][1][0])
        p = w.proto
        vals = list(p.value) if p.set_value and len(p.value) else list(p.default)
        return float(vals[0]) if vals else None

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query_string))

    def __enter__(self) -> StreamlitClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
