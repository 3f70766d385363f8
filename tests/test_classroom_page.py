"""The class experiment page (pages/classroom.py) in Streamlit's AppTest: a lecturer session and student sessions
pooling into one room, on a real SQLite file.

Claims checked:
- the lecturer opens a room from the page's settings (a lab's entry point passes them in the URL) and lands on the
  lecturer view: room code, QR code, live chart, "0 runs from 0 students", the export buttons;
- three student sessions join with the room code, each is assigned a different ρ (round robin), presses run and
  sees their own run marked on the pooled chart; the lecturer's view then counts 3 runs from 3 students and the
  pooled trace has a point at each of the three settings;
- a second callback with the same run index (a double click) stores nothing;
- a reconnect (a new session with the same ?sid=) is the same student: same setting, their run count kept;
- the projector link (?show=1) and a wrong lecturer key show the chart but no controls; the wrong key gets a
  refusal, and so does a student's run in a closed room, an unknown room code and a store that is down.
"""

from __future__ import annotations

import pytest

from tests.pagetest import chart, run_page
from tests.test_classroom_store import redis_url  # noqa: F401 - the real redis-server fixture

PAGE = "pages/classroom.py"


@pytest.fixture(autouse=True)
def class_db(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMLAB_CLASSROOM_DB", str(tmp_path / "class.sqlite"))
    monkeypatch.delenv("SAMLAB_STORE_URL", raising=False)


def _texts(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def _open_room(**params):
    at = run_page(PAGE, **params)
    at.button(key="cl_open").click().run()
    assert not at.exception, at.exception
    return at, at.query_params["room"], at.query_params["key"]


def _student(code, **extra):
    return run_page(PAGE, room=code, **extra)


def test_lecturer_and_three_students_pool_into_one_room():
    lecturer, code, key = _open_room(kind="valley", particles="60", steps="200")
    assert "0 runs from 0 students" in _texts(lecturer)
    assert len(lecturer.get("image")) == 1, "no QR code"
    assert [b for b in lecturer.get("download_button")], "no export buttons"

    students = []
    for _ in range(3):
        s = _student(code)
        s.button(key="cl_run_0").click().run()
        assert not s.exception and [m.value for m in s.success], [e.value for e in s.error]
        students.append(s)
    settings = [next(m.value for m in s.markdown if m.value.startswith("Your setting")) for s in students]
    assert settings == ["Your setting: **ρ = 0**", "Your setting: **ρ = 0.05**", "Your setting: **ρ = 0.1**"]
    for s, rho in zip(students, (0.0, 0.05, 0.1)):
        mine = [t for t in chart(s, "main_chart")["data"] if t.get("name", "").startswith("your run")]
        assert len(mine) == 1 and mine[0]["x"] == [rho], mine

    lecturer.run()
    assert "3 runs from 3 students" in _texts(lecturer)
    pooled = [t for t in chart(lecturer, "main_chart")["data"] if t.get("name", "").startswith("class, pooled")]
    assert pooled and pooled[0]["x"] == [0.0, 0.05, 0.1]
    assert any(t.get("name", "").startswith("theory") for t in chart(lecturer, "main_chart")["data"])

    # a double click: the callback fires again with the run index the button was drawn with
    s = students[0]
    s.session_state["_cl_pending"] = (0, None)
    s.run()
    assert any("already stored" in m.value for m in s.success)
    lecturer.run()
    assert "3 runs from 3 students" in _texts(lecturer)

    # a reconnect: a new session with the same student id in the URL
    again = _student(code, sid=s.query_params["sid"])
    assert "Your setting: **ρ = 0**" in _texts(again)
    assert again.button(key="cl_run_1").proto.label.startswith("Run (2 of 3)")


def test_projector_link_and_a_wrong_key_have_no_controls():
    _, code, key = _open_room(kind="escape", particles="20", steps="50")
    projector = _student(code, show="1")
    chart(projector, "main_chart")
    assert not [b for b in projector.button if b.key == "cl_close"] and not projector.get("download_button")
    wrong = _student(code, key=code)  # a student trying the room code as the lecturer key
    assert any("lecturer link is not valid" in e.value for e in wrong.error)
    assert not [b for b in wrong.button if b.key == "cl_close"] and not wrong.get("download_button")


def test_closed_room_refuses_and_says_so():
    lecturer, code, key = _open_room(kind="escape", particles="20", steps="50")
    student = _student(code)
    lecturer.button(key="cl_close").click().run()
    assert [b for b in lecturer.button if b.key == "cl_reopen"]
    student.run()
    assert any("closed" in w.value for w in student.warning)
    assert not [b for b in student.button if b.key.startswith("cl_run")]
    # a run pressed before the room closed (its callback arrives late) is refused with the same message
    student.session_state["_cl_pending"] = (0, None)
    student.run()
    assert any("room is closed" in e.value for e in student.error)


def test_unknown_room_and_bad_code():
    at = _student("ZZZZZZZZ")
    assert any("There is no room" in e.value for e in at.error)
    at = _student("not-a-code!")
    assert any("8 letters and digits" in e.value for e in at.error)


def test_store_down_is_a_message(monkeypatch):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SAMLAB_STORE_URL", f"redis://127.0.0.1:{port}/0")  # nothing listens there
    at = _student("ABCDEFGH")
    assert any("class store is unavailable" in e.value for e in at.error), [e.value for e in at.error]


def test_entry_point_settings_prefill_the_form():
    at = run_page(PAGE, kind="valley", a_left="20", lr="0.02", particles="100000")
    assert at.selectbox(key="cl_kind").value == "valley"
    caption = _texts(at)
    assert "a_left = 20" in caption and "lr = 0.02" in caption and "particles = 400" in caption
    assert any("particles" in w.value and "400" in w.value for w in at.warning)  # clamped, with a notice


def test_lecturer_changes_the_cap_and_resets():
    lecturer, code, key = _open_room(kind="escape", particles="20", steps="50")
    student = _student(code)
    student.button(key="cl_run_0").click().run()
    lecturer.number_input(key="cl_cap_now").set_value(1)
    lecturer.button(key="cl_apply").click().run()
    assert not lecturer.exception
    student.run()
    assert any("done your 1 run" in i.value for i in student.info)  # the cap now holds them at one run
    lecturer.run()
    assert "1 run from 1 student" in _texts(lecturer)
    lecturer.button(key="cl_reset").click().run()
    assert "0 runs from 0 students" in _texts(lecturer)
    student.run()
    assert student.button(key="cl_run_0").proto.label.startswith("Run (1 of 1)")  # a fresh room, same student
    lecturer.number_input(key="cl_minutes_left").set_value(0)
    lecturer.button(key="cl_apply").click().run()
    student.run()
    assert any("expired" in w.value for w in student.warning)


@pytest.mark.parametrize("params", [
    {"room": "<script>alert(1)</script>"}, {"room": "ABCDEFGH", "key": "x" * 5000},
    {"room": "ABCDEFGH", "sid": "../.."},
    {"kind": "poker", "lr": "nan", "particles": "-1e308", "steps": "inf", "open": "2"},
    {"room": "ABCDEFGH", "show": "yes", "present": "1"}, {"kind": "cifar", "epochs": "1e9", "train_size": "abc"},
])
def test_hostile_urls_never_crash(params):
    at = run_page(PAGE, **params)  # run_page asserts there is no exception
    shown = [e.value for e in at.error] + [w.value for w in at.warning] + _texts(at).splitlines()
    assert shown and all("Traceback" not in t for t in shown)


def test_the_page_on_the_halls_redis_store(request, monkeypatch):
    """The same page on the lecture hall's store: two students on two replicas (SAMLAB_REPLICA r1, r2), a lecturer
    on a third session; the runs land in Redis, each once, and name the replica that computed them."""
    from serve.roomstore import RedisStore

    url = request.getfixturevalue("redis_url")
    monkeypatch.setenv("SAMLAB_STORE_URL", url)
    lecturer, code, key = _open_room(kind="valley", particles="40", steps="100")
    for replica in ("r1", "r2"):
        monkeypatch.setenv("SAMLAB_REPLICA", replica)
        s = _student(code)
        s.button(key="cl_run_0").click().run()
        assert [m.value for m in s.success], [e.value for e in s.error]
    lecturer.run()
    assert "2 runs from 2 students" in _texts(lecturer)
    runs = RedisStore(url).runs(code, 0)
    assert sorted(r.replica for r in runs) == ["r1", "r2"] and len({r.student for r in runs}) == 2


def test_a_students_stars_never_touch_the_shared_chart():
    """Every screen shares one class chart per state of the room (cached, read only); a student's stars go on a new
    figure. The shared one must come out unchanged, and the new one must hold it plus the stars."""
    from app import classroom_view as cv
    from serve import classroom as cl
    from serve.roomstore import Run

    exp = cl.make_experiment("escape", (0.0, 0.2))
    runs = [Run("s1", 0, 0, {}, {"successes": 3, "n": 10, "value": 0.3}, 0.0),
            Run("s2", 0, 1, {}, {"successes": 6, "n": 10, "value": 0.6}, 0.0)]
    pooled = cl.pool(exp, runs, with_theory=False)
    base = cv.class_figure(pooled)
    before = base.to_json()
    mine = cv.with_mine(base, pooled, pooled.per_student["s2"])
    assert base.to_json() == before
    data = mine.to_plotly_json()["data"]
    assert len(data) == len(base.data) + 1 and data[-1]["name"] == "your run"
    assert list(data[-1]["x"]) == [0.2] and list(data[-1]["y"]) == [0.6]
    assert cv.with_mine(base, pooled, None) is base


def test_students_choose_their_setting():
    at = run_page(PAGE, kind="escape", particles="20", steps="50")
    at.radio(key="cl_assign").set_value("choice").run()
    at.button(key="cl_open").click().run()
    code = at.query_params["room"]
    s = _student(code)
    s.selectbox(key="cl_choice").set_value(4).run()  # ρ = 0.2 of the default grid
    s.button(key="cl_run_0").click().run()
    assert any("ρ = 0.2 →" in m.value for m in s.success), [m.value for m in s.success]
    mine = [t for t in chart(s, "main_chart")["data"] if t.get("name", "").startswith("your run")]
    assert mine and mine[0]["x"] == [0.2]
