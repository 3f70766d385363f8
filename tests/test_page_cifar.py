"""pages/cifar.py in AppTest.

Claims:
1. The default page runs without exceptions and shows the main chart (recorded curves before any run).
2. A bad data path shows its one-line message and the page falls back to the built-in subset.
3. A run trains in the background through serve/jobs.py; after it finishes the page shows it in the
   comparison table, a reload with the same ?lab= token finds it again, and another session does not.
4. Recorded runs from data/runs/ are listed and marked as recorded.
"""

from __future__ import annotations

import functools
import json
import math

import pytest

from serve.runner import default_runner
from tests.pagetest import run_page

pytestmark = pytest.mark.usefixtures("one_torch_thread")


_run = functools.partial(run_page, "pages/cifar.py")


def _keys(at):
    return [c.proto.id for c in at.get("plotly_chart")]


def test_default_page_runs_with_main_chart():
    at = _run()
    assert any(i.endswith("-main_chart") for i in _keys(at))
    assert at.slider(key="rho").label.startswith("ρ")
    estimate = next(c.value for c in at.caption if "Estimated time" in c.value)
    assert "ASAM" not in estimate  # the default runs have no ASAM: no note about its ρ
    assert "ASAM uses 10 × ρ" in next(c.value for c in _run(opts="sgd,asam").caption if "Estimated time" in c.value)


def test_learning_curves_have_whole_epochs_and_a_readable_loss_axis():
    from dataclasses import asdict

    from app import cifar_view
    from core.cifar.train import TrainConfig

    hist = [{"epoch": e, "test_acc": 0.3 + 0.1 * e, "train_loss": 2.17531 - 0.04 * e} for e in (1, 2, 3)]
    layout = cifar_view.learning_curves([(asdict(TrainConfig()), hist)]).to_plotly_json()["layout"]
    assert layout["xaxis"]["dtick"] == 1 and layout["xaxis"]["tick0"] == 1
    assert layout["yaxis2"]["tickformat"] == ".2f"


@pytest.mark.parametrize("path,expect", [("data/no_such.tar.gz", "not found"), ("/etc/passwd", "only 'builtin'"),
                                         ("data/../../etc", "only 'builtin'"), ("data/cifar10-mini.tar.gz", None)])
def test_bad_data_path_shows_message(path, expect):
    """A missing data file gets its message and the built-in fallback; paths outside data/ are refused
    (a server must not read or probe arbitrary files); a good file under data/ gives no warning."""
    at = _run(data=path)
    warnings = [w.value for w in at.warning]
    if expect:
        assert any(expect in w and "built-in" in w for w in warnings), warnings
    else:
        assert not any("data" in w for w in warnings), warnings
    assert any("cifar10-mini" in c.value for c in at.caption)


def test_background_run_survives_reload_and_stays_private():
    at = _run(train_size=500, epochs=1, opts="sgd")
    lane = lambda page: next(c.value for c in page.caption if "lane:" in c.value)
    before = lane(at)
    at.button[0].click().run()  # "Train in the background"
    assert not at.exception
    owner = at.session_state["lab"]
    jobs = default_runner().jobs(owner)
    assert len(jobs) == 1
    assert lane(at) != before and "0 running, 0 queued" not in lane(at)  # the lane count follows the new run
    view = default_runner().wait(owner, jobs[0].id, timeout=170)
    assert view.status == "done", view.error
    assert view.result["result"]["grad_evals"] == view.result["result"]["total_steps"]  # SGD: one per step
    again = _run(lab=owner, train_size=500, epochs=1, opts="sgd")  # a reload: a new session, same URL
    table = again.dataframe[0].value
    assert len(table) == 1 and table["status"].iloc[0] == "done"
    stranger = _run(train_size=500, epochs=1, opts="sgd")
    assert stranger.session_state["lab"] != owner and default_runner().jobs(stranger.session_state["lab"]) == []
    assert not any(h.value == "Comparison" for h in stranger.subheader)
    assert any(h.value == "Comparison" for h in again.subheader)


def test_recorded_runs_are_marked():
    from app import cifar_view

    recorded = cifar_view.load_recorded()
    at = _run()
    labels = [e.label for e in at.expander]
    expected = len(recorded) + len(cifar_view.load_recorded(kinds=("escape",))) \
        + bool(cifar_view.load_recorded(kinds=("run",)))   # the throughput runs share one box
    assert sum("recorded" in lab for lab in labels) == expected
    # the GPU records, the real-scale figures, come before the CPU ones; the first is the open one
    gpu = [bool(r.get("hardware", {}).get("gpu")) for r in recorded]
    assert gpu == sorted(gpu, reverse=True)
    if any(gpu):
        assert labels[[i for i, lab in enumerate(labels) if "recorded" in lab][0]].startswith(
            ":material/history: recorded (GPU)")


def test_no_gpu_notice_only_promises_gpu_records_that_ship():
    """On a CPU server the notice says whether recorded GPU runs exist (it used to promise them always)."""
    import torch

    from app import cifar_view

    if torch.cuda.is_available():
        pytest.skip("the notice is for servers without a GPU")
    recs = cifar_view.load_recorded(kinds=("table", "escape"))
    info = " ".join(i.value for i in _run().info)
    gpu = any(r.get("hardware", {}).get("gpu") for r in recs)
    assert ("recorded GPU runs below" in info) == gpu
    assert ("none from a GPU ship yet" in info) == (not gpu)


def test_live_escape_experiment_runs_in_the_background_and_is_drawn():
    """The escape button runs core.cifar.profiles.escape as a job (its stages are the progress), and the
    finished experiment is drawn: distance and λ_max against ρ, SGD at ρ = 0, and a row per continuation.
    It does not enter the training-run comparison table."""
    at = _run(train_size=500, epochs=1, esc_rhos="0.05,0.5")
    at.button(key="esc_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    owner = at.session_state["lab"]
    (job,) = default_runner().jobs(owner)
    assert job.meta["kind"] == "escape" and job.meta["stages"] == 4
    view = default_runner().wait(owner, job.id, timeout=170)
    assert view.status == "done", view.error
    assert [p["stage"] for p in view.progress] == ["start", "continue", "continue", "continue"]
    rows = view.result["escape"]["rows"]
    assert [(r["optimizer"], r["rho"]) for r in rows] == [("sgd", 0.0), ("sam", 0.05), ("sam", 0.5)]
    assert all(r["distance"] > 0 and math.isfinite(r["lambda_max"]) for r in rows)
    again = _run(lab=owner, train_size=500, epochs=1, esc_rhos="0.05,0.5")
    spec = next(c.proto.spec for c in again.get("plotly_chart") if c.proto.id.endswith("-escape_chart"))
    import json

    data = json.loads(spec)["data"]
    sam_dist = next(t for t in data if t["name"] == "SAM" and t.get("xaxis", "x") == "x")
    assert sam_dist["x"] == [0.05, 0.5] and sam_dist["y"] == pytest.approx([r["distance"] for r in rows[1:]])
    assert not any(h.value == "Comparison" for h in again.subheader)  # an escape is not a training run
    assert len(again.dataframe[0].value) == 3


def test_recorded_runs_show_in_presentation_mode():
    """Presentation mode hides expanders (secondary controls); the recorded runs, what a lecture without a GPU
    shows, must then sit in plain boxes, with their charts drawn."""
    from app import cifar_view

    shown = _run(present="1")
    assert not [e for e in shown.expander if e.label.startswith(":material/history: recorded")]
    # the recorded tables as static tables, whose text the projector CSS enlarges (the data grid's does not grow)
    assert len(shown.table) >= len(cifar_view.load_recorded()) and not shown.dataframe
    assert any("recorded (" in m.value for m in shown.markdown)
    assert any(i.endswith("-recorded_chart_0") for i in _keys(shown))
    normal = _run()
    assert [e for e in normal.expander if e.label.startswith(":material/history: recorded")]


def test_throughput_table_reads_recorded_runs(tmp_path):
    """One row per recorded single run, sorted by batch; the steady rate (after epoch 1) kept apart from the
    all-epochs rate, which a compile inflates; table and escape records are not throughput runs."""
    from app import cifar_view

    def rec(batch, rate, steady, compile_=False):
        return {"kind": "run", "recorded": True, "hardware": {"gpu": "NVIDIA H100 80GB HBM3"},
                "config": {"optimizer": "sgd", "epochs": 3, "compile": compile_},
                "results": {"batch_size": batch, "images_per_s": rate, "steady_images_per_s": steady,
                            "test_acc": 0.8}}
    for name, r in {"b.json": rec(1000, 187_770.4, 187_920.6), "a.json": rec(500, 91_834.2, 97_764.1),
                    "c.json": rec(500, 7_188.0, 81_492.7, True)}.items():
        (tmp_path / name).write_text(json.dumps(r))
    (tmp_path / "t.json").write_text(json.dumps({"kind": "table", "results": {"rows": []}}))
    table = cifar_view.throughput_table(cifar_view.load_recorded(tmp_path, kinds=("run",)))
    assert list(table["batch"]) == [500, 500, 1000]
    assert list(table["torch.compile"]) == ["no", "yes", "no"]
    assert list(table["images/s after epoch 1"]) == [97_764, 81_493, 187_921]
    assert list(table["images/s, all epochs"]) == [91_834, 7_188, 187_770]
    assert "device" not in table.columns                     # one GPU for all: the caption names it
    mixed = cifar_view.load_recorded(tmp_path, kinds=("run",))
    mixed[0]["hardware"] = {}
    assert set(cifar_view.throughput_table(mixed)["device"]) == {"CPU", "NVIDIA H100 80GB HBM3"}
    assert cifar_view.throughput_table([]).empty


def test_recorded_gpu_runs_come_first(tmp_path):
    """GPU records lead, whatever their file names; within each kind of hardware, the file-name order stays."""
    from app import cifar_view

    for name, gpu in (("a_cpu.json", None), ("b_gpu.json", "H100"), ("c_cpu.json", None), ("d_gpu.json", "H100")):
        (tmp_path / name).write_text(json.dumps({"kind": "table", "hardware": {"gpu": gpu}, "results": {}}))
    assert [r["file"] for r in cifar_view.load_recorded(tmp_path)] == ["b_gpu.json", "d_gpu.json", "a_cpu.json",
                                                                          "c_cpu.json"]


def test_profile_figure_gives_random_directions_their_own_panel():
    """t = 1 is the SAM solution only on the line between the solutions: with random directions present they
    get a second panel (its own x axis), and the 'SAM solution' marker stays on the first."""
    from app import cifar_view

    def prof(kind, label):
        return {"kind": kind, "label": label, "ts": [0.0, 1.0], "train_loss": [0.2, 0.3], "test_loss": [0.8, 0.9]}
    fig = cifar_view.profile_figure([prof("interpolation", "SGD → SAM"), prof("random", "SGD, random direction")])
    axes = {t.name: t.xaxis for t in fig.data}
    assert axes["SGD → SAM: train"] == "x" and axes["SGD, random direction: train"] == "x2"
    assert [s["xref"] for s in fig.layout.shapes] == ["x", "x"]
    alone = cifar_view.profile_figure([prof("interpolation", "SGD → SAM")])
    assert {t.xaxis for t in alone.data} == {"x"} and len(alone.layout.shapes) == 2


def test_malformed_records_are_shown_or_skipped_never_fatal(tmp_path):
    """Hand-edited records: no hardware entry (null), a stopped run with no accuracy. Listing and the throughput
    table must not raise (either used to take the whole CIFAR page down)."""
    from app import cifar_view

    (tmp_path / "a.json").write_text(json.dumps({"kind": "run", "hardware": None, "config": None,
                                                 "results": {"batch_size": 500, "images_per_s": None,
                                                             "test_acc": None}}))
    (tmp_path / "b.json").write_text(json.dumps({"kind": "run", "hardware": {"gpu": "H100"}, "config": {},
                                                 "results": {"batch_size": 1000, "images_per_s": 1e5,
                                                             "steady_images_per_s": float("nan"), "test_acc": 0.5}}))
    (tmp_path / "c.json").write_text("{not json")
    recs = cifar_view.load_recorded(tmp_path, kinds=("run",))
    assert [r["file"] for r in recs] == ["b.json", "a.json"] and recs[1]["hardware"] == {}
    table = cifar_view.throughput_table(recs)
    assert table["test acc (%)"].isna().tolist() == [True, False]      # sorted by device: "CPU" < "H100"
    assert table["images/s after epoch 1"].isna().all()


def test_live_profile_names_the_solution_it_compares_with():
    """The live page compares SGD with any SAM-type run: the marker at t = 1 and the axis name that run."""
    from app import cifar_view

    prof = {"kind": "interpolation", "label": "SGD → PSAM", "ts": [0.0, 1.0], "train_loss": [0.2, 0.3],
            "test_loss": [0.8, 0.9]}
    fig = cifar_view.profile_figure([prof])
    texts = [a.text for a in fig.layout.annotations]
    assert "PSAM solution" in texts and "SAM solution" not in texts
    assert fig.layout.xaxis.title.text == "t: from the SGD (0) to the PSAM solution (1)"


def test_recorded_verdict_reads_the_seeds_and_says_which_differences_are_noise():
    """Per pair: the difference of the means, Welch's t, and 'clear' only when |t| beats the 5% critical value.
    Pairs whose optimizers are missing are left out; no per-seed runs, no verdict."""
    from app import cifar_view

    def runs(o, accs, lams):
        return [{"optimizer": o, "status": "done", "test_acc": a, "lambda_max": m} for a, m in zip(accs, lams)]
    rec = {"results": {"runs": runs("sgd", [0.790, 0.792, 0.794], [100, 101, 102])
                       + runs("sam", [0.800, 0.802, 0.804], [80, 81, 82])
                       + runs("psam", [0.790, 0.800, 0.810], [99, 100, 101])
                       + [{"optimizer": "psam", "status": "cancelled", "test_acc": 0.1, "lambda_max": 1}]}}
    text = cifar_view.recorded_verdict(rec)
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("- **SAM vs SGD**") and "Late SAM" not in text
    # SAM − SGD = +1.00 points, s = 0.2 each: t = 1/√(0.04/3·2) = 6.1 > 2.776 (df 4): clear
    assert "test accuracy +1.00 points (Welch t = +6.1, 3 and 3 seeds): clear" in lines[0]
    assert "λ_max −20 (Welch t = −24.5, 3 and 3 seeds): clear" in lines[0]
    # SAM − PSAM = +0.20 points with PSAM's spread 1.0: t = 0.34: noise (the cancelled run is not a seed)
    assert "test accuracy +0.20 points" in lines[1] and "within the seed noise" in lines[1]
    assert cifar_view.recorded_verdict({"results": {"rows": []}}) == ""
