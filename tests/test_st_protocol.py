"""The protocol client (bench/st_protocol.py) and the Locust students (bench/hall_load.py), against real
`streamlit run` servers: the lab itself for what a student does, and a small app of our own for the
error paths (an exception, a run that takes too long, a server that goes away).

These are the checks that make the load generator's numbers trustworthy: a widget-state rerun must
draw what the browser would (the same chart as a fresh page at the new URL), a fragment widget must
rerun its fragment only, and every failure a hall can meet must come back as an error, not a hang.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench._browser import REPO, StreamlitServer
from bench.st_protocol import FINISHED_OK, StreamlitClient

pytestmark = pytest.mark.timeout(300)

# A small app with a ρ slider inside a fragment (as the lab's pages have), and switches that make
# the script raise or take longer than the client waits.
TINY_APP = textwrap.dedent('''
    import time
    import streamlit as st

    st.title("tiny")
    mode = st.query_params.get("mode", "ok")
    st.markdown(f"mode {mode}, reran {st.session_state.get('reran', False)}")

    @st.fragment
    def section():
        rho = st.slider("ρ (SAM radius)", 0.0, 0.3, float(st.query_params.get("rho", 0.1)), 0.005, key="rho")
        if mode == "raise" and rho > 0.2:
            raise ValueError("rho too large for this test")
        if mode == "slow" and rho > 0.2:
            time.sleep(5)
        if mode == "rerun" and rho > 0.2 and not st.session_state.get("reran"):
            st.session_state["reran"] = True  # as a page leaving its lecture scene does: st.rerun() once
            st.rerun(scope="app")
        st.query_params["rho"] = f"{rho:g}"  # after the checks: a failed run leaves the URL's ρ as it was
        st.markdown(f"rho is {rho:.3f}")

    section()
    st.markdown("end of page")
''')


@pytest.fixture(scope="module")
def lab():
    with StreamlitServer() as server:
        yield server


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    app = tmp_path_factory.mktemp("tiny") / "tiny_app.py"
    app.write_text(TINY_APP)
    with StreamlitServer(app) as server:
        yield server


def main_chart(client: StreamlitClient) -> str:
    charts = [e.plotly_chart for e in client.elements("plotly_chart") if e.plotly_chart.id.endswith("-main_chart")]
    assert charts, "no main chart on the page"
    return charts[0].spec


def rho_chart_payload(client: StreamlitClient) -> bytes:
    """The escape page's ρ chart (app/components/rhochart, key main_chart): the grid payload it carries, without
    its one-line header (the step the browser was sent)."""
    chart, grid, _ = client.rho_chart()
    assert chart is not None and chart.key == "main_chart", "no ρ chart on the page"
    assert grid, "the ρ chart carries no grid"
    return client.component_data("main_chart").partition(b"\n")[2]


def test_open_page_finds_widgets_and_fragment(lab):
    with StreamlitClient(lab.base_url) as c:
        run = c.open("escape", {"rho": "0.1"})
        assert run.ok, run.error
        assert run.status == 0  # a full run: FINISHED_SUCCESSFULLY
        chart, grid, shown = c.rho_chart()
        assert chart is not None and chart.kind == "bidi_component"  # ρ moves in the browser: a components-v2 chart
        assert c.widget("main_chart").id == chart.id
        assert c.widget("rho") is None, "the escape page's ρ is the chart's, not a server slider"
        assert chart.fragment_id, "the escape page's ρ chart lives in a fragment"
        assert c.widget("lr").fragment_id == ""  # a widget outside it
        assert grid[0] == 0.0 and 0.1 in grid  # the slider's steps
        assert shown == pytest.approx(0.1) and c.rho() == pytest.approx(0.1)
        assert c.page_script_hash, "the navigation message names the page's script"
        assert any("Escape lab" in t for t in c.texts())
    with StreamlitClient(lab.base_url) as c:  # the playground keeps a server ρ slider
        assert c.open("playground", {"rho": "0.3"}).ok
        rho = c.widget("rho")
        assert rho is not None and rho.kind == "slider"
        assert c.widget("ρ (SAM radius)").id == rho.id  # found by label too
        assert c.slider_value("rho") == pytest.approx(0.3) and c.rho() == pytest.approx(0.3)
        assert c.rho_chart()[0] is None


def test_widget_rerun_draws_what_a_fresh_page_at_the_new_url_draws(lab):
    with StreamlitClient(lab.base_url) as c, StreamlitClient(lab.base_url) as fresh:
        assert c.open("escape", {"rho": "0.1"}).ok
        before = rho_chart_payload(c)
        n_elements = len(c.elements())
        run = c.set_rho(0.125)  # a release on the ρ chart
        assert run.ok, run.error
        # a fragment rerun: only the fragment's part of the page came back
        assert run.status == 3  # FINISHED_FRAGMENT_RUN_SUCCESSFULLY
        assert c.query_params()["rho"] == "0.125", "the app's new URL is what the next rerun sends"
        assert c.rho() == pytest.approx(0.125)
        assert len(c.elements()) == n_elements, "the elements outside the fragment stay on the page"
        assert fresh.open("escape", {"rho": "0.125"}).ok
        assert fresh.rho() == pytest.approx(0.125)  # a fresh page opens its chart at the released step
        assert rho_chart_payload(fresh) == rho_chart_payload(c) == before  # every step's charts: the same grid
        assert fresh.texts() == c.texts()
    # A server slider (the playground's ρ): a full rerun, whose main chart is a fresh page's at the new URL.
    with StreamlitClient(lab.base_url) as c, StreamlitClient(lab.base_url) as fresh:
        assert c.open("playground", {"rho": "0.2"}).ok
        before = main_chart(c)
        run = c.set_widget("rho", 0.35)
        assert run.ok, run.error
        assert run.status == 0 and c.query_params()["rho"] == "0.35"
        after = main_chart(c)
        assert after != before
        assert fresh.open("playground", {"rho": "0.35"}).ok
        assert main_chart(fresh) == after


def test_message_cache_references_come_back_as_the_full_elements(lab):
    with StreamlitClient(lab.base_url) as c:
        assert c.open("escape", {"rho": "0.1"}).ok
        first = c.component_data("main_chart")
        run = c.set_rho(0.105)  # a release: the same grid, answered with the chart's one-line header alone
        assert run.ok, run.error
        assert len(c.widget("main_chart").proto.bytes) < 200, "a release re-sends no payload"
        assert c.component_data("main_chart") == first  # the client keeps the payload, as the browser does
        back = c.set_rho(0.1)
        assert back.ok and len(c.widget("main_chart").proto.bytes) < 200
        assert c.component_data("main_chart") == first and c.rho_chart()[1]
    with StreamlitClient(lab.base_url) as c:  # a server slider: an unchanged chart after a round trip
        assert c.open("playground", {"rho": "0.2"}).ok
        first = main_chart(c)
        assert c.set_widget("rho", 0.21).ok
        back = c.set_widget("rho", 0.2)
        assert back.ok, back.error
        assert back.ref_hits >= 1
        assert main_chart(c) == first


def test_errors_are_counted_not_raised(tiny):
    with StreamlitClient(tiny.base_url) as c:
        assert c.open("", {"mode": "raise"}).ok
        bad = c.set_widget("rho", 0.25)
        assert not bad.ok and "rho too large" in bad.error
        good = c.set_widget("rho", 0.15)
        assert good.ok, good.error
        assert "rho is 0.150" in c.texts()
        assert c.set_widget("no such widget", 1).error.startswith("no widget")


def test_a_rerun_asked_by_the_script_is_waited_for(tiny):
    # st.rerun() ends the run early (FINISHED_EARLY_FOR_RERUN) and the server starts a full run at once: the
    # browser waits for that one, and so must the client, or the next change would read its messages.
    with StreamlitClient(tiny.base_url) as c:
        assert c.open("", {"mode": "rerun"}).ok
        run = c.set_widget("rho", 0.25)
        assert run.ok, run.error
        assert run.early_reruns == 1 and run.status == 0  # the full run that followed
        assert "mode rerun, reran True" in c.texts()
        after = c.set_widget("rho", 0.15)  # in step with the server: this change's own answer
        assert after.ok and after.early_reruns == 0 and "rho is 0.150" in c.texts()


def test_a_slow_run_is_a_timeout_and_the_student_comes_back(tiny):
    with StreamlitClient(tiny.base_url, run_timeout=1.5) as c:
        assert c.open("", {"mode": "slow"}).ok
        run = c.set_widget("rho", 0.25)
        assert run.error.startswith("timeout"), run.error
        assert c.ws is None  # a late answer must not be taken for the next run's
        again = c.reopen()  # the URL kept the mode; ρ=0.25 was never confirmed, so it is not in the URL
        assert again.ok, again.error
        assert c.connects == 2


def test_a_server_that_goes_away_is_a_disconnect(tmp_path):
    app = tmp_path / "tiny_app.py"
    app.write_text(TINY_APP)
    server = StreamlitServer(app).start()
    try:
        c = StreamlitClient(server.base_url, run_timeout=10)
        assert c.open("").ok
        server.stop()
        run = c.set_widget("rho", 0.15)
        assert run.error.startswith(("disconnected", "timeout")), run.error
        assert not c.reopen().ok  # nobody answers: an error, not a hang
    finally:
        server.stop()


def test_locust_students_report_latencies_errors_and_their_own_cpu(tiny):
    # A subprocess: Locust patches the standard library for gevent on import, which must not happen
    # inside the test process.
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "hall_load.py"), "--url", f"{tiny.base_url}/", "--students", "4",
         "--changes", "3", "--think", "0.2", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["errors"] == 0, res["error_samples"]
    assert res["changes"] == 4 * 3
    assert res["opens"] == 4
    assert 0 < res["p50_ms"] <= res["p95_ms"] <= res["max_ms"]
    assert res["generator_cpu_pct"] is not None and res["generator_cpu_pct"] > 0
    assert res["changes_per_s"] > 0


def test_locust_students_count_exceptions_as_errors(tiny):
    # mode=raise: every ρ above 0.2 raises; ten students spread over the slider's steps (7 steps apart), so
    # some start above it.
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "hall_load.py"), "--url", f"{tiny.base_url}/?mode=raise",
         "--students", "10", "--changes", "2", "--think", "0.1", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1
    assert res["errors"] > 0 and any("rho too large" in e for e in res["error_samples"])


def test_script_finished_statuses_are_the_successful_ones():
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    assert ForwardMsg.FINISHED_EARLY_FOR_RERUN not in FINISHED_OK
    assert ForwardMsg.FINISHED_WITH_COMPILE_ERROR not in FINISHED_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([str(Path(__file__))]))
