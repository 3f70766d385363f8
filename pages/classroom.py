"""Class experiment (issue 14): every student's run pools into one live result on the projector.

One page, four views, chosen by the URL:

    (nothing)              open a class experiment (lecturer), or type a room code (student)
    ?room=CODE&key=SECRET  the lecturer's view: room code, QR code, the live pooled chart, then the controls
                           (close / reopen, reset, expiry, cap, CSV and JSON export). The secret is in this
                           link only; the projector link below it carries none.
    ?room=CODE&show=1      the projector view without controls (safe to show: no secret in the address bar)
    ?room=CODE[&sid=…]     a student: their setting, a run button, the pooled chart with their own runs marked.
                           The student id goes into the URL on the first visit, so a reload or a reconnect (or
                           another replica) keeps it.

The page only wires: rooms, runs and pooling are serve/classroom.py, storage serve/roomstore.py, figures
app/classroom_view.py. The live chart is a fragment that reruns every REFRESH_S seconds and redraws only itself.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import streamlit as st

from app import classroom_view as cv
from app import controls, theme
from serve import classroom as cl
from serve.roomstore import ENV_URL, StoreUnavailable, open_store

REFRESH_S = 1.5  # the projector's chart: a new read of the room every 1.5 s (target: a run visible within 2 s)
STUDENT_REFRESH_S = 5.0  # a student's chart (the projector is the live one; 300 phones at 1.5 s would cost more)
URL_KEYS = ("kind", "room", "key", "sid", "show", "open", "landscape", "lr", "sigma", "particles", "steps", "rho",
            "a_left", "a_right", "k", "f", "late_f", "p", "train_size", "epochs")
for key in URL_KEYS:  # this page reads these itself (no widget binds them): they stay in the URL
    controls.keep_param(key)
REPLICA = os.environ.get("SAMLAB_REPLICA", "")


@st.cache_resource(max_entries=4, show_spinner=False)  # one per (store URL, file): a handful at most
def _store(url: str, path: str):
    """One store object per process, shared by every session (SQLite: a pool of connections, one thread at a time
    on each; Redis: the client's own thread-safe pool)."""
    return open_store(url, path or None)


def store():
    """The class store, or None after a one-line error (a store that is down never shows a traceback)."""
    try:
        return _store(os.environ.get(ENV_URL, ""), os.environ.get("SAMLAB_CLASSROOM_DB", ""))
    except StoreUnavailable as e:
        st.error(str(e), icon=":material/cloud_off:")
        return None


def _q(key: str) -> str | None:
    value = st.query_params.get(key)
    return None if value is None else str(value)[:200]


def _base_url() -> str:
    """This page's address as the browser sees it (for the join link and the QR code)."""
    try:
        url = st.context.url or ""
    except Exception:  # outside a browser session (AppTest)
        url = ""
    return url.split("?")[0] or "http://localhost:8501/classroom"


def _refused(e: Exception) -> None:
    st.error(str(e), icon=":material/block:")


# ---------------------------------------------------------------------------------------------
# The live chart (projector, lecturer and student screens)
# ---------------------------------------------------------------------------------------------

@st.cache_resource(max_entries=256, show_spinner=False)
def _pooled(code: str, epoch: int, n_runs: int, _db, _room):
    """The room's runs read and pooled once per (room, epoch, number of runs) per server process, and shared read
    only by every session watching the room (the projector and each student's chart). A refresh reads only the
    room and its run count (two small reads); runs are only ever added, so the same count is the same runs."""
    runs = cl.room_runs(_db, _room)
    return cl.pool(cl.Experiment.from_dict(_room.experiment), runs)


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure(code: str, epoch: int, n_runs: int, height: int, present: bool, _pooled):
    """The class chart of one state of the room, built once and shared read only by every screen; a student's
    stars are added to a new figure (cv.with_mine), never to this one."""
    return cv.class_figure(_pooled, height=height, present=present)


def live_chart(code: str, student: str | None = None, height: int = 430) -> None:
    """Read the room, pool its runs and draw: the chart, the run and student counts, the room's state."""
    s = store()
    if s is None:
        return
    try:
        room = cl.find_room(s, code)
        n_runs = s.total_runs(room.code, room.epoch)
        pooled = _pooled(room.code, room.epoch, n_runs, s, room)
    except (cl.Refused, StoreUnavailable) as e:
        _refused(e)
        return
    fig = _figure(room.code, room.epoch, pooled.runs, height, theme.is_presentation(), pooled)
    if student:
        fig = cv.with_mine(fig, pooled, pooled.per_student.get(student))
    st.plotly_chart(fig, key="main_chart", config=theme.PLOTLY_CONFIG)
    state = cl.status(room)
    badge = {"open": f":green[open] · {cv.time_left(room.expires)}", "closed": ":red[closed]",
             "expired": ":red[expired]"}[state]
    st.markdown(f"**{cv.count_line(pooled)}** · {badge}")
    if pooled.theory is None:
        st.caption(f"No theory curve here ({pooled.theory_label}).")


@st.fragment(run_every=REFRESH_S)
def projector_fragment(code: str) -> None:
    live_chart(code)


@st.fragment(run_every=STUDENT_REFRESH_S)
def student_fragment(code: str, student: str) -> None:
    live_chart(code, student, height=360)


# ---------------------------------------------------------------------------------------------
# Opening a room (lecturer) or joining one (student)
# ---------------------------------------------------------------------------------------------

def _settings_from_url(kind: str) -> dict:
    """The fixed settings a page passed in the URL (the entry points on the labs), each checked; a value outside
    the class limits is clamped with a notice."""
    out = {}
    for name, default in cl.DEFAULTS[kind].items():
        raw = _q(name)
        if raw is None:
            continue
        if name == "landscape":
            if raw in cl.LANDSCAPES.get(kind, ()):
                out[name] = raw
            else:
                controls.notice(f"landscape: {raw[:30]!r} is not one of this experiment's; using {default}.")
            continue
        lo, hi = cl.BOUNDS[name]
        value, message = controls.parse_float(name, raw, lo, hi, float(default), label=name)
        if message:
            controls.notice(message + " (a class run must take seconds)")
        out[name] = value
    return out


def open_view() -> None:
    st.title("Class experiment")
    st.markdown("Every student runs one setting on the server; the projector pools the class's runs into one "
                "curve, with intervals that narrow as runs arrive.")
    join_col, open_col = st.columns([1, 2], gap="large")
    with join_col:
        st.subheader("Join a room")
        typed = st.text_input("room code (on the projector)", max_chars=12, key="cl_join_code")
        if st.button("Join", key="cl_join", type="primary"):
            code = cl.clean_code(typed)
            if code is None:
                st.error("A room code has 8 letters and digits (no 0, O, 1 or I); check the projector.")
            else:
                st.query_params.clear()
                st.query_params["room"] = code
                st.rerun()
    with open_col:
        st.subheader("Open a class experiment (lecturer)")
        kinds = list(cl.KINDS)
        raw_kind = _q("kind")
        if raw_kind is not None and raw_kind not in kinds:
            controls.notice(f"kind: {raw_kind[:30]!r} is not an experiment; using escape.")
        kind = st.selectbox("what the class measures", kinds, index=kinds.index(raw_kind) if raw_kind in kinds else 0,
                            format_func=cl.KINDS.get, key="cl_kind")
        settings = _settings_from_url(kind)
        c1, c2, c3 = st.columns([2, 1.4, 1])
        if kind in ("escape", "valley"):
            options = sorted(set(cl.RHO_GRID) | {0.02, 0.4, 0.5})
            values = c1.multiselect("ρ values (the grid)", options, default=list(cl.RHO_GRID), key=f"cl_grid_{kind}")
        else:
            allowed = cl.SCHEDULES if kind == "psam" else cl.CIFAR_OPTS
            values = c1.multiselect("schedules" if kind == "psam" else "optimizers", allowed, default=list(allowed),
                                    format_func=lambda o: theme.label(o), key=f"cl_grid_{kind}")
        assign = c2.radio("settings", ("assigned", "choice"), key="cl_assign",
                          format_func={"assigned": "assigned (round robin)", "choice": "students choose"}.get)
        cap = c3.number_input("runs per student", 1, cl.MAX_CAP, 3, key="cl_cap")
        minutes = c3.number_input("open for (minutes)", 5, cl.MAX_MINUTES, 90, step=5, key="cl_minutes")
        try:
            exp = cl.make_experiment(kind, values, assign=assign, **settings)
        except ValueError as e:
            st.error(str(e))
            return
        preview = cl.pool(exp, [])  # no runs yet: what the projector will show, with the theory where there is one
        st.plotly_chart(cv.pooled_figure(preview, height=300, empty_text="the class's runs will appear here"),
                        key="main_chart", config=theme.PLOTLY_CONFIG)
        st.caption("Each run: " + ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                                            for k, v in exp.settings.items()) + ". A run's seed comes from the room, "
                   "the student and the run number.")
        auto = _q("open") == "1" and not st.session_state.get("_cl_auto_opened")
        if st.button("Open the room", key="cl_open", type="primary", icon=":material/meeting_room:") or auto:
            st.session_state["_cl_auto_opened"] = True
            s = store()
            if s is None:
                return
            try:
                opened = cl.open_room(s, exp, minutes=minutes, cap=int(cap))
            except StoreUnavailable as e:
                _refused(e)
                return
            keep = {k: st.query_params[k] for k in ("preset", "present") if k in st.query_params}  # the scene's banner
            st.query_params.clear()
            st.query_params.update({"room": opened.code, "key": opened.secret} | keep)
            if theme.is_presentation():
                st.query_params["present"] = "1"
            st.rerun()


# ---------------------------------------------------------------------------------------------
# The lecturer's and the projector's view
# ---------------------------------------------------------------------------------------------

def header(room, exp) -> None:
    """Room code, QR code and the join link: the left column of the projector."""
    join_url = f"{_base_url()}?room={room.code}"
    st.caption("Room code: scan, or open the link and type it")
    st.markdown(f"<div style='font-size:{2.6 * theme.text_scale():.1f}rem;font-weight:700;letter-spacing:0.08em;"
                f"line-height:1.1'>{cv.spaced(room.code)}</div>", unsafe_allow_html=True)
    st.image(cv.qr_png(join_url), width=int(190 * theme.text_scale()))
    st.caption(f"Join: {join_url}")
    host = (urlsplit(join_url).hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
        st.warning("This link names this computer only: students' phones cannot open it. Open the lab by the "
                   "server's network address (the one `make hall` prints) and the code will carry that.",
                   icon=":material/wifi_off:")
    st.markdown(f"**{cl.KINDS[exp.kind]}**")


def lecturer_view(code: str, secret: str | None) -> None:
    s = store()
    if s is None:
        return
    try:
        room = cl.find_room(s, code)
    except (cl.Refused, StoreUnavailable) as e:
        _refused(e)
        return
    exp = cl.Experiment.from_dict(room.experiment)
    lecturer = secret is not None and cl.is_lecturer(room, secret)
    if secret is not None and not lecturer:
        st.error("This lecturer link is not valid for this room: the controls need the link that opened it.",
                 icon=":material/lock:")
    left, right = st.columns([1, 3.2], gap="medium")
    with left:
        header(room, exp)
    with right:
        projector_fragment(room.code)
    if lecturer:
        lecturer_controls(s, room, secret)


def lecturer_controls(s, room, secret) -> None:
    st.divider()
    st.subheader("Lecturer controls")
    code = room.code
    projector = f"{_base_url()}?room={code}&show=1"
    st.caption(f"Projector link (no secret, safe to show): {projector}  \nYour lecturer link holds the secret "
               "(key=…): keep it to yourself; it alone can close, reset or export this room.")
    c1, c2, c3, c4 = st.columns(4, vertical_alignment="bottom")
    state = cl.status(room)
    try:
        if room.state == "open":
            if c1.button("Close the room", key="cl_close", icon=":material/lock:"):
                cl.set_state(s, code, secret, "closed")
                st.rerun()
        elif c1.button("Reopen the room", key="cl_reopen", icon=":material/lock_open:"):
            cl.set_state(s, code, secret, "open")
            st.rerun()
        with c2.popover("Reset (delete all runs)", icon=":material/restart_alt:"):
            st.write("Every run of this room is deleted; students keep the code.")
            if st.button("Yes, reset", key="cl_reset", type="primary"):
                cl.reset_room(s, code, secret)
                st.rerun()
        minutes = c3.number_input("minutes left", 0, cl.MAX_MINUTES,
                                  max(0, int((room.expires - time.time()) // 60)), step=5,
                                  key="cl_minutes_left")
        cap = c4.number_input("runs per student", 1, cl.MAX_CAP, int(room.cap), key="cl_cap_now")
        if st.button("Apply expiry and cap", key="cl_apply"):
            cl.set_limits(s, code, secret, minutes_left=minutes, cap=int(cap))
            st.rerun()
        csv_text, json_text = cl.export(s, code, secret)
    except (cl.Refused, StoreUnavailable) as e:
        _refused(e)
        return
    d1, d2, _ = st.columns([1, 1, 2])
    d1.download_button("Export CSV", csv_text, file_name=f"class_{code}.csv", mime="text/csv", key="cl_csv",
                       icon=":material/download:")
    d2.download_button("Export JSON", json_text, file_name=f"class_{code}.json", mime="application/json",
                       key="cl_json", icon=":material/download:")
    st.caption(f"Room {state}; epoch {room.epoch}; store: {s.describe()}. Every row of the export carries the run's "
               "full config and seed; the JSON also the experiment and the pooled points.")


# ---------------------------------------------------------------------------------------------
# A student
# ---------------------------------------------------------------------------------------------

def _press(run_index: int, choice) -> None:
    """The run button's callback: the run index is the one the button was drawn with, so a double click (two
    callbacks) asks for the same run, which is stored once."""
    st.session_state["_cl_pending"] = (run_index, choice)


def student_view(code: str) -> None:
    s = store()
    if s is None:
        return
    sid = _q("sid")
    if sid is None or not cl.STUDENT_ID.match(sid):
        sid = st.session_state.get("_cl_sid") or cl.new_student_id()
        st.query_params["sid"] = sid  # in the URL: a reload or a reconnect keeps this student
    st.session_state["_cl_sid"] = sid
    try:
        room = cl.find_room(s, code)
        exp = cl.Experiment.from_dict(room.experiment)
        st.title(f"Class experiment {cv.spaced(room.code)}")
        st.caption(cl.KINDS[exp.kind])
        pending = st.session_state.pop("_cl_pending", None)
        if pending is not None:
            with st.spinner("Computing your run on the server…"):
                try:
                    out = cl.submit_run(s, room.code, sid, pending[0], choice=pending[1], replica=REPLICA)
                    value = out.run.result["value"]
                    st.session_state["_cl_last"] = (f"Your run {out.run.run_index + 1}: "
                                                    f"{exp.value_label(exp.values[out.run.slot])} → {exp.metric} "
                                                    f"{value:.3f}" + ("" if out.stored else " (already stored)"))
                except cl.Refused as e:
                    _refused(e)
        assignment = cl.join(s, room.code, sid)
        done = s.count_runs(room.code, room.epoch, sid)
        state = cl.status(room)
    except (cl.Refused, StoreUnavailable) as e:
        _refused(e)
        return
    choice = None
    if exp.assign == "choice":
        labels = [exp.value_label(v) for v in exp.values]
        choice = st.selectbox("your setting", range(len(labels)), index=assignment.slot, format_func=labels.__getitem__,
                              key="cl_choice")
        shown = labels[choice]
    else:
        shown = assignment.label
    st.markdown(f"Your setting: **{shown}**")
    last = st.session_state.get("_cl_last")
    if last:
        st.success(last, icon=":material/check_circle:")
    if state != "open":
        st.warning({"closed": "This room is closed: the lecturer is not taking runs now.",
                    "expired": "This room has expired: ask the lecturer for a new code."}[state])
    elif done >= room.cap:
        st.info(f"You have done your {room.cap} run{'s' if room.cap > 1 else ''}: watch the class result below.")
    else:
        # The key names the run: once run `done` is stored, the next run's button is another widget, so a second
        # click that lands after the first run finished triggers a button that is gone (nothing happens), and one
        # that lands before reaches the same callback with the same run index (stored once).
        st.button(f"Run ({done + 1} of {room.cap})", key=f"cl_run_{done}", type="primary",
                  icon=":material/play_arrow:", on_click=_press, args=(done, choice), width="stretch")
    student_fragment(room.code, sid)
    st.caption("Your runs are the stars. The server computed them from the room's settings and a seed of your own; "
               "the class curve pools every student's particles.")


# ---------------------------------------------------------------------------------------------

room_param = _q("room")
if room_param is None:
    open_view()
else:
    room_code = cl.clean_code(room_param)
    if room_code is None:
        st.title("Class experiment")
        st.error(f"There is no room {room_param[:12]!r}: a room code has 8 letters and digits; check the projector.",
                 icon=":material/block:")
    elif _q("key") is not None or _q("show") == "1":
        lecturer_view(room_code, _q("key"))
    else:
        student_view(room_code)
