"""pages/cifar.py on a server with a GPU: the researcher's setup. CI has no GPU, so these are skipped there.

Claims:
1. With CUDA the page offers the airbench net (its default since issue 15) and no "no GPU" notice, and its
   runs train on CUDA.
2. The "gpu" lane runs one job at a time: three submitted runs never have more than one running, and the
   others wait in the queue; all three finish, and a reload of the same ?lab= lists them with device cuda.
3. The escape experiment runs on the GPU lane with the airbench net and draws its result.

Run on a CUDA machine (streamlit and plotly installed from wheels; see BENCHMARKS.md's GPU section):
    python3 -m pytest -q tests/test_gpu_page.py
"""

from __future__ import annotations

import functools
import math
import time

import pytest
import torch

from serve.runner import default_runner
from tests.pagetest import run_page

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
_run = functools.partial(run_page, "pages/cifar.py")


def test_gpu_page_trains_the_airbench_net_on_cuda_one_job_at_a_time():
    at = _run(train_size=2000, epochs=2, opts="sgd,sam,psam")
    assert at.selectbox(key="model").value == "airbench"
    assert not any("No GPU on this server" in i.value for i in at.info)
    assert any("on the GPU" in c.value for c in at.caption if "Estimated time" in c.value)
    at.button[0].click().run()  # "Train in the background"
    assert not at.exception, [e.value for e in at.exception]
    owner = at.session_state["lab"]
    runner = default_runner()
    jobs = runner.jobs(owner)
    assert len(jobs) == 3
    most_running, saw_queue = 0, False
    end = time.monotonic() + 240
    while any(j.active for j in runner.jobs(owner)) and time.monotonic() < end:
        running, queued = runner.lane_load("gpu")
        most_running, saw_queue = max(most_running, running), saw_queue or queued > 0
        time.sleep(0.02)
    views = runner.jobs(owner)
    assert all(v.status == "done" for v in views), [(v.status, v.error) for v in views]
    assert most_running == 1 and saw_queue   # one GPU job at a time, the others queued behind it
    for v in views:
        r = v.result["result"]
        assert r["device"] == "cuda" and r["n_train"] == 2000
        assert math.isfinite(r["lambda_max"]) and math.isfinite(r["trace"])
    evals = {v.result["result"]["config"]["optimizer"]: v.result["result"]["grad_evals"] for v in views}
    steps = views[0].result["result"]["total_steps"]
    assert evals["sgd"] == steps and evals["sam"] == 2 * steps and steps < evals["psam"] < 2 * steps
    again = _run(lab=owner, train_size=2000, epochs=2, opts="sgd,sam,psam")
    table = again.dataframe[0].value
    assert len(table) == 3 and set(table["status"]) == {"done"} and set(table["device"]) == {"cuda"}


def test_gpu_page_runs_the_escape_experiment_with_the_airbench_net():
    at = _run(train_size=1000, epochs=1, esc_rhos="0.05,0.2")
    at.button(key="esc_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    owner = at.session_state["lab"]
    (job,) = default_runner().jobs(owner)
    assert job.meta["model"] == "airbench"
    view = default_runner().wait(owner, job.id, timeout=240)
    assert view.status == "done", view.error
    rows = view.result["escape"]["rows"]
    assert [(r["optimizer"], r["rho"]) for r in rows] == [("sgd", 0.0), ("sam", 0.05), ("sam", 0.2)]
    assert all(r["device"] == "cuda" and r["distance"] > 0 and math.isfinite(r["lambda_max"]) for r in rows)
    again = _run(lab=owner, train_size=1000, epochs=1, esc_rhos="0.05,0.2")
    assert any(c.proto.id.endswith("-escape_chart") for c in again.get("plotly_chart"))
