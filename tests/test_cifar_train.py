"""The CIFAR trainer: every optimizer through core.schedules + core.sam, exact gradient-evaluation
counts, cancellation, divergence, reproducibility, OOM fallback, bad data paths."""

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cifar import train as ctrain
from core.cifar.train import TrainConfig, train
from core.methods import OPTIMIZERS, for_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 320 images, batch 32 → T = 10 steps per epoch: enough for every schedule to differ from the others
SMALL = dict(train_size=320, test_size=100, batch_size=32, epochs=1, sharpness_iters=0, trace_samples=0,
             model="tiny")


# AE-SAM decides from the gradients, so no schedule knows its count beforehand: tests/test_cifar_tournament.py
@pytest.mark.parametrize("name", [o for o in OPTIMIZERS if o != "ae_sam"])
def test_one_epoch_grad_evals_match_schedule(name):
    """Gradient evaluations counted in the loop = T + S, with S the SAM steps of the optimizer's
    schedule (Schedule.grad_evals); SAM steps = Schedule.sam_steps. Computed independently here."""
    cfg = TrainConfig(optimizer=name, k=3, f=0.6, p=0.3, late_f=0.3, seed=1, rho=0.5 if name == "asam" else 0.05,
                      **SMALL)
    rows = []
    res = train(cfg, on_epoch=rows.append)
    schedule, _ = for_optimizer(name, k=3, f=0.6, p=0.3, seed=1, late_f=0.3)
    assert res.status == "done" and res.total_steps == 10
    assert res.grad_evals == schedule.grad_evals(10)
    assert res.sam_steps == schedule.sam_steps(10)
    assert len(rows) == 1 and rows[0]["grad_evals"] == res.grad_evals and rows[0]["sam_steps"] == res.sam_steps
    assert set(ctrain.EPOCH_KEYS) <= set(rows[0]) and 0.0 <= rows[0]["test_acc"] <= 1.0
    assert math.isfinite(rows[0]["train_loss"]) and rows[0]["wall_s"] > 0


def test_schedules_really_differ():
    """The counts above are not all the same number: SGD 10, SAM 20, PSAM(k=3, f=0.6) 12, late SAM 13."""
    counts = {n: for_optimizer(n, k=3, late_f=0.3)[0].grad_evals(10) for n in ("sgd", "sam", "psam", "late_sam")}
    assert counts == {"sgd": 10, "sam": 20, "psam": 12, "late_sam": 13}


def test_seed_reproducible_and_sharpness_measured():
    """The same seed gives the same run; another seed a different one. λ_max and Tr(H) are reported."""
    cfg = TrainConfig(optimizer="sam", **{**SMALL, "sharpness_iters": 3, "trace_samples": 1, "train_size": 160,
                                          "eval_batch": 16})
    a, b = train(cfg), train(cfg)
    c = train(TrainConfig(**{**cfg.__dict__, "seed": 7}))
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"] and a.test_acc == b.test_acc
    assert a.history[0]["train_loss"] != c.history[0]["train_loss"]
    assert a.lambda_max is not None and a.lambda_max > 0 and a.trace is not None
    assert a.state is not None and "state" not in a.to_dict()


def test_compiled_model_computes_what_the_eager_one_computes():
    """torch.compile changes kernels, not the function: on the same weights and batch, the compiled net's
    logits and its loss gradient equal the eager net's up to float32 reassociation (fused kernels sum in
    another order; relative errors ~1e-6 per operation, so 1e-4 after a few layers is a generous bound)."""
    from core.cifar.models import make_model

    torch.manual_seed(0)
    model = make_model("tiny")
    compiled = torch.compile(model)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    grads = []
    for net in (model, compiled):
        model.zero_grad(set_to_none=True)
        out = net(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_e, g_e), (out_c, g_c) = grads
    torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-4)
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_training_keeps_the_schedule_and_measures_lambda_max_on_its_weights():
    """cfg.compile trains with the same schedule (gradient evaluations, SAM steps), and λ_max is taken
    from the eager module that holds the final weights (compiled graphs have no double backward):
    recomputing it from the returned weights gives the same number. 2 epochs, so the steady throughput
    (epochs 2 … E) is reported too."""
    cfg = TrainConfig(optimizer="psam", **{**SMALL, "epochs": 2, "sharpness_iters": 5, "eval_batch": 32,
                                           "precision": "fp32"})
    compiled = train(TrainConfig(**{**cfg.__dict__, "compile": True}))
    schedule, _ = cfg.schedule()
    assert compiled.status == "done", compiled.message
    assert (compiled.grad_evals, compiled.sam_steps) == (schedule.grad_evals(20), schedule.sam_steps(20))
    from core.cifar.data import to_device
    from core.cifar.models import make_model
    from core.cifar.sharpness import lambda_max

    model = make_model("tiny")
    model.load_state_dict(compiled.state)
    xtr, ytr, *_ = ctrain.prepare_data(cfg)
    x, y = to_device(xtr[:32], "cpu"), torch.from_numpy(ytr[:32])
    assert compiled.lambda_max == pytest.approx(lambda_max(model, x, y, iters=5, seed=cfg.seed), rel=1e-4)
    assert compiled.steady_images_per_s and compiled.steady_images_per_s > 0
    assert not any(k.startswith("_orig_mod") for k in compiled.state)  # weights load into a plain model


def test_cancel_halfway():
    """should_stop() turning true mid-epoch stops the run with status 'cancelled', counts consistent."""
    calls = []
    res = train(TrainConfig(optimizer="sam", **SMALL), should_stop=lambda: calls.append(1) or len(calls) > 4)
    assert res.status == "cancelled" and "cancel" in res.message
    assert res.grad_evals == 8  # 4 SAM steps done before the stop
    assert res.lambda_max is None


def test_divergence_is_a_status_not_a_crash():
    """A learning rate of 1e30 blows the weights up: status 'diverged' and a one-line message."""
    res = train(TrainConfig(optimizer="sgd", lr=1e30, **{**SMALL, "epochs": 2}))
    assert res.status == "diverged" and "diverged" in res.message and "\n" not in res.message


def test_bad_data_path_falls_back_with_message(tmp_path):
    res = train(TrainConfig(data=str(tmp_path / "missing.tar.gz"), optimizer="sgd", **SMALL))
    assert res.status == "done" and any("not found" in m and "built-in" in m for m in res.messages)


def test_bad_config_is_one_line_valueerror():
    for bad in (dict(optimizer="adam"), dict(rho=float("nan")), dict(f=2.0), dict(classes=("unicorn",))):
        with pytest.raises(ValueError) as e:
            train(TrainConfig(**{**SMALL, **bad}))
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("model", ["tiny", "airbench"])
def test_gpu_oom_retries_smaller_batch_then_cpu(monkeypatch, model):
    """On CUDA out-of-memory the one loop (both recipes) halves the batch (while > 64), then moves to the CPU.
    The OOM is injected where a real one would surface: in the first step of an attempt on the (pretended)
    GPU."""
    from core.cifar import loop

    real_attempt = loop._attempt
    tried = []

    def attempt(ctx):
        tried.append((ctx.device.type, ctx.batch))
        if ctx.device.type == "cuda":
            ctx.device = torch.device("cpu")  # build everything on the CPU, then fail as the GPU would
            real_step = loop.optimization_step

            def oom(*a, **k):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            monkeypatch.setattr(loop, "optimization_step", oom)
            try:
                return real_attempt(ctx)
            finally:
                monkeypatch.setattr(loop, "optimization_step", real_step)
        return real_attempt(ctx)

    monkeypatch.setattr(loop, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(loop, "_attempt", attempt)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    extra = {"model": model, "train_size": 160} | ({"sharpness_iters": 0} if model == "tiny" else {})
    res = train(TrainConfig(optimizer="sgd", **{**SMALL, "batch_size": 160, **extra}))
    assert tried == [("cuda", 160), ("cuda", 80), ("cuda", 40), ("cpu", 40)]
    assert res.status == "done" and res.device == "cpu" and res.batch_size == 40
    assert sum("out of memory" in m for m in res.messages) == 3 and "on the CPU" in res.messages[-1]


def test_recompute_bn_gives_exact_batch_statistics():
    """After recompute_bn each BatchNorm's running statistics are the plain average over the batches (a
    cumulative average, every batch counting equally) of the batch means and unbiased batch variances of its
    input. The three batches differ in scale and mean, so an exponential moving average, or the pooled
    variance of all images, would be far off; the tolerance is float32 round-off."""
    from core.cifar.models import make_model
    from core.cifar.profiles import recompute_bn

    torch.manual_seed(0)
    model = make_model("tiny")
    per_batch = torch.tensor([1.0, 2.0, 3.0]).repeat_interleave(32).view(96, 1, 1, 1)
    x = torch.randn(96, 3, 32, 32) * per_batch + 2 * per_batch  # batches differ in spread and in mean
    recompute_bn(model, x, batch=32)
    with torch.no_grad():
        h = model.features[0](x)  # the first convolution's output feeds the first BatchNorm
    batches = h.view(3, 32, *h.shape[1:])
    bn = model.features[1]
    assert torch.allclose(bn.running_mean, torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0), atol=1e-5)
    want = torch.stack([b.var((0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(bn.running_var, want, rtol=1e-4)
    assert not torch.allclose(want, h.var((0, 2, 3)), rtol=0.02)  # the test can tell the two apart
    assert not model.training


def test_filter_normalized_direction_matches_filter_norms():
    """Li et al. 2018: each filter of d has the norm of the same filter of w; 1-D tensors get d = 0."""
    from core.cifar.models import make_model
    from core.cifar.profiles import filter_normalized_direction

    model = make_model("tiny")
    state = model.state_dict()
    d = filter_normalized_direction(state, model, seed=0)
    w = state["features.0.weight"]
    assert torch.allclose(d["features.0.weight"].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-4)
    assert torch.count_nonzero(d["features.1.weight"]) == 0 and "features.1.running_mean" not in d
    assert not torch.equal(d["features.0.weight"],
                           filter_normalized_direction(state, model, seed=1)["features.0.weight"])


def test_interpolation_profile_endpoints():
    """The profile at t = 0 and t = 1 evaluates exactly the two solutions (BN recomputed), in [−1, 2]."""
    from core.cifar.profiles import ProfileConfig, interpolation_profile

    cfg = TrainConfig(optimizer="sgd", **{**SMALL, "train_size": 160})
    a, b = train(cfg), train(TrainConfig(**{**cfg.__dict__, "optimizer": "sam"}))
    p = interpolation_profile(cfg, a.state, b.state, ProfileConfig(points=4, n_eval=160, bn_images=160))
    assert list(p.ts) == [-1.0, 0.0, 1.0, 2.0]
    q = interpolation_profile(cfg, b.state, a.state, ProfileConfig(points=4, n_eval=160, bn_images=160))
    # the same two points with the roles swapped: t=0 here is t=1 there
    assert p.train_loss[1] == pytest.approx(q.train_loss[2], rel=1e-5)
    assert p.train_loss[2] == pytest.approx(q.train_loss[1], rel=1e-5)
    assert np.all(np.isfinite(p.test_loss)) and p.train_loss[0] != p.train_loss[3]


def test_cli_table_json_and_recorded_view(tmp_path, capsys):
    """`python -m core cifar table`: per optimizer mean ± std over seeds, grad evals from the schedule,
    cost relative to SAM (SAM itself 1.0); the JSON is what data/runs/ holds and the page can show it."""
    import json

    from app import cifar_view
    from core.cifar import cli

    out = tmp_path / "t.json"
    rc = cli.main(["table", "--train-size", "100", "--test-size", "50", "--epochs", "1", "--batch-size", "20",
                   "--seeds", "2", "--sharpness-iters", "2", "--trace-samples", "1", "--eval-batch", "8",
                   "--record", "--note", "test", "--out", str(out), "--json"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["recorded"] is True and d["hardware"]["device"] == "cpu" and "torch" in d and "date" in d
    rows = {r["optimizer"]: r for r in d["results"]["rows"]}
    assert list(rows) == ["sgd", "sam", "psam", "late_sam"] and len(d["results"]["runs"]) == 8
    assert rows["sam"]["cost_vs_sam_evals"] == 1.0
    assert rows["sgd"]["grad_evals"] == 5 and rows["sam"]["grad_evals"] == 10  # T = 100 / 20 = 5 steps
    assert rows["psam"]["grad_evals"] == for_optimizer("psam")[0].grad_evals(5)
    accs = [r["test_acc"] for r in d["results"]["runs"] if r["optimizer"] == "sgd"]
    assert rows["sgd"]["test_acc_mean"] == pytest.approx(np.mean(accs))
    assert rows["sgd"]["test_acc_std"] == pytest.approx(np.std(accs, ddof=1))
    d["file"] = out.name
    assert len(cifar_view.recorded_table(d)) == 4
    capsys.readouterr()
    assert cli.main(["--epochs", "0"]) == 2 and cli.main(["--optimizer", "adam"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error:") for e in err)


def test_gpu_session_script_dry_run(tmp_path):
    """bench/gpu_session.sh is the one prepared script for a session with a GPU (device time is scarce, so it
    must not fail there for a reason the CPU could have shown). Its --dry-run runs every step (throughput at
    three batch sizes, compiled throughput, both tables, escape, the step probe) with tiny sizes on the CPU;
    each must write its JSON."""
    import json
    import os

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_session.sh"
    out, side = tmp_path / "out", tmp_path / "side"   # $OUT comes back from the device; side files do not
    out.mkdir(), side.mkdir()
    env = {**os.environ, "OUT": str(out), "SIDE": str(side)}
    proc = subprocess.run(["bash", str(script), "--dry-run"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    smoke = json.loads((side / "smoke_check.json").read_text())["results"]
    assert smoke["status"] == "done" and smoke["lambda_max"] is not None and smoke["trace"] is not None
    for name in ("throughput", "throughput_b1000", "throughput_b2000", "table_a", "table_b", "escape",
                 "throughput_compiled"):
        d = json.loads((out / f"dryrun_{name}.json").read_text())
        assert d["recorded"] is True and d["results"], name
    assert "FAILED" not in proc.stdout and (out / "session.log").stat().st_size > 0
    assert "PSAM/SAM wall time" in proc.stdout
    assert "sgd batch    32: eager" in proc.stdout        # the step probe ran (no CUDA graph on a CPU)
    assert json.loads((side / "gpu_step_probe.json").read_text())["rows"]
    # $OUT brings back at most 8 files from the device: the real run must not write more
    assert len(list(out.iterdir())) <= 8, sorted(p.name for p in out.iterdir())


def test_escape_reports_each_stage_and_stops_when_asked():
    """core.cifar.profiles.escape: one on_stage call for the start and one per continuation; the start's
    λ_max is the one reported in `base`; a stop request after the first continuation leaves one row."""
    from core.cifar.profiles import EscapeConfig, escape

    cfg = TrainConfig(optimizer="sam", **{**SMALL, "train_size": 160, "sharpness_iters": 3})
    stages = []
    esc = escape(cfg, EscapeConfig(rhos=(0.05, 0.2), continue_epochs=1, eval_images=32), on_stage=stages.append)
    assert [s["stage"] for s in stages] == ["start", "continue", "continue", "continue"]
    assert [(r["optimizer"], r["rho"]) for r in esc.rows] == [("sgd", 0.0), ("sam", 0.05), ("sam", 0.2)]
    assert esc.start_lambda_max == stages[0]["lambda_max"] and math.isfinite(esc.start_lambda_max)
    for r, s in zip(esc.rows, stages[1:]):
        assert r["loss_jump"] == pytest.approx(r["loss"] - esc.start_loss) and s["distance"] == r["distance"]
    stages.clear()
    esc = escape(cfg, EscapeConfig(rhos=(0.05, 0.2), continue_epochs=1, eval_images=32), on_stage=stages.append,
                 should_stop=lambda: sum(s["stage"] == "continue" for s in stages) >= 1)
    assert len(esc.rows) == 1 and esc.rows[0]["optimizer"] == "sgd"


def test_escape_from_a_cancelled_or_diverged_start_measures_nothing():
    from core.cifar.profiles import EscapeConfig, escape

    cfg = TrainConfig(optimizer="sgd", **{**SMALL, "train_size": 160, "sharpness_iters": 3})
    stages = []
    esc = escape(cfg, EscapeConfig(rhos=(0.05,), continue_epochs=1, eval_images=32), on_stage=stages.append,
                 should_stop=lambda: True)
    assert esc.rows == [] and stages == [] and esc.base["status"] == "cancelled"
    esc = escape(TrainConfig(**{**cfg.__dict__, "lr": 1e30}), EscapeConfig(rhos=(0.05,), continue_epochs=1,
                                                                          eval_images=32))
    assert esc.rows == [] and esc.base["status"] == "diverged"


def test_a_failed_sharpness_measurement_keeps_the_trained_run(monkeypatch):
    """λ_max needs double backward and a second big batch; if that fails (out of memory, an op without a
    double-backward formula), the run that trained is kept, with λ_max None and the reason in messages."""
    def broken(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    from core.cifar import loop

    monkeypatch.setattr(loop, "lambda_max", broken)
    res = train(TrainConfig(optimizer="sam", **{**SMALL, "sharpness_iters": 3, "trace_samples": 1}))
    assert res.status == "done" and res.history and res.lambda_max is None
    assert res.trace is None  # it stopped at the first failure
    assert res.messages == ["sharpness not measured: CUDA out of memory. Tried to allocate 2.00 GiB"]


def test_a_record_names_the_hardware_its_runs_really_used(tmp_path, monkeypatch):
    """A table or escape record states the hardware of its runs, not of the device asked for: when one run
    fell back to another device (a GPU out of memory → CPU), the record lists both and the page says so."""
    import json

    from app import cifar_view
    from core.cifar import cli

    cpu = ctrain.hardware_info(torch.device("cpu"))
    gpu = {**cpu, "device": "cuda:0", "gpu": "NVIDIA H100 80GB HBM3"}
    assert ctrain.common_hardware([cpu, cpu], gpu) == cpu  # all runs agree: theirs, not the requested one
    assert ctrain.common_hardware([], gpu) == gpu
    mixed = ctrain.common_hardware([gpu, cpu], gpu)
    assert mixed["mixed"] == ["NVIDIA H100 80GB HBM3", "cpu"] and mixed["gpu"] == gpu["gpu"]

    real_train = ctrain.train

    def second_seed_on_a_gpu(cfg, *a, **k):  # pretend seed 1 ran on a GPU and the others fell back to the CPU
        res = real_train(cfg, *a, **k)
        if cfg.seed == 1:
            res.hardware = gpu
        return res

    monkeypatch.setattr(cli, "train", second_seed_on_a_gpu)  # the name the CLI calls
    out = tmp_path / "t.json"
    assert cli.main(["table", "--train-size", "100", "--test-size", "20", "--epochs", "1", "--batch-size", "20",
                     "--seeds", "2", "--optimizers", "sgd", "--sharpness-iters", "0", "--trace-samples", "0",
                     "--out", str(out), "--json"]) == 0
    d = json.loads(out.read_text())
    assert [r["hardware"].get("gpu") for r in d["results"]["runs"]] == [None, gpu["gpu"]]
    assert d["hardware"]["mixed"] == ["NVIDIA H100 80GB HBM3", "cpu"]
    assert "but its runs used NVIDIA H100 80GB HBM3 and cpu" in cifar_view.recorded_caption(d | {"file": "t.json"})

    monkeypatch.setattr(ctrain, "train", real_train)
    assert cli.main(["escape", "--train-size", "100", "--test-size", "20", "--epochs", "1", "--batch-size", "20",
                     "--rhos", "0.1", "--continue-epochs", "1", "--sharpness-iters", "2", "--eval-batch", "8",
                     "--out", str(out), "--json"]) == 0
    d = json.loads(out.read_text())
    assert len(d["results"]["hardware"]) == 3 and d["hardware"] == d["results"]["hardware"][0]
    assert "mixed" not in d["hardware"] and [r["device"] for r in d["results"]["rows"]] == ["cpu", "cpu"]


def test_lr_schedule_is_a_linear_warm_up_then_a_linear_decay_to_zero():
    """lr_at: over T = 10 steps with warm-up 0.2, the first w = 2 steps climb (t+1)/w · peak, then the rate
    falls on a straight line from peak at t = w to 0 at t = T (worked out by hand from the docstring)."""
    lrs = [ctrain.lr_at(t, 10, 1.0, 0.2) for t in range(11)]
    assert lrs[:3] == [0.5, 1.0, 1.0]
    assert lrs[2:] == pytest.approx([(10 - t) / 8 for t in range(2, 11)])
    assert [ctrain.lr_at(t, 4, 2.0, 0.0) for t in range(4)] == pytest.approx([2.0, 2.0, 4 / 3, 2 / 3])


@pytest.mark.parametrize("name", ["sgd", "sam", "asam"])
def test_trainer_steps_equal_a_hand_written_loop(name):
    """The trainer's weights after 3 steps equal a loop written here from the equations, independently of
    core.sam: g = ∇L_B(w); ε = ρ T²g/‖Tg‖ (T = |w| for ASAM, else 1); ∇L_B(w + ε) with the BatchNorm running
    statistics left as they were after the first pass; back to w; Nesterov SGD with weight decay at the
    learning rate of the schedule. A trainer that skipped the ascent, ignored ASAM's scaling, let the
    perturbed pass move the BatchNorm statistics or shifted the learning rate by one step would differ."""
    from core.cifar import data as cdata
    from core.cifar.models import make_model

    rho = {"sgd": 0.0, "sam": 0.05, "asam": 0.5}[name]
    cfg = TrainConfig(optimizer=name, rho=rho, train_size=96, test_size=50, batch_size=32, epochs=1,
                      augment=False, precision="fp32", warmup=0.0, sharpness_iters=0, trace_samples=0, seed=3,
                      model="tiny", device="cpu")
    res = train(cfg)

    xtr, ytr, *_ = ctrain.prepare_data(cfg)
    torch.manual_seed(cfg.seed)
    model = make_model("tiny")
    x, y = cdata.to_device(xtr, "cpu"), torch.from_numpy(ytr)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.2)
    params = list(model.parameters())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    peak, T = cfg.resolved_lr(), 3
    for t in range(T):
        idx = perm[32 * t : 32 * (t + 1)]
        grads = torch.autograd.grad(loss_fn(model(x[idx]), y[idx]), params)
        if name != "sgd":
            # the same arithmetic order as core.sam (ε = (T²g)·(ρ/(‖Tg‖ + 1e-12)), then w restored from a
            # copy): max-pooling is not smooth, so a last-bit difference could flip an argmax and grow over
            # the steps
            tg = [p.detach().abs() * g if name == "asam" else g for p, g in zip(params, grads)]
            scale = rho / (torch.sqrt(sum((s * s).sum() for s in tg)) + 1e-12)
            eps = [p.detach() * p.detach() * g * scale if name == "asam" else g * scale for p, g in zip(params, grads)]
            saved = [p.detach().clone() for p in params]
            stats = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
            with torch.no_grad():
                for p, e in zip(params, eps):
                    p.add_(e)
            grads = torch.autograd.grad(loss_fn(model(x[idx]), y[idx]), params)
            with torch.no_grad():
                for p, w in zip(params, saved):
                    p.copy_(w)
                for bn, (m, v) in zip(bns, stats):  # the perturbed pass must not move the statistics
                    bn.running_mean.copy_(m), bn.running_var.copy_(v)
        for p, g in zip(params, grads):
            p.grad = g
        base.param_groups[0]["lr"] = peak if t == 0 else peak * (T - t) / (T - 1)  # no warm-up: decay from t = 0
        base.step()
    want = model.state_dict()
    assert res.total_steps == T and set(res.state) == set(want)
    for k in want:
        if want[k].is_floating_point():  # float32 round-off only (one SAM step differs from its mutants by ≳ 1e-4)
            assert torch.allclose(res.state[k], want[k], rtol=1e-5, atol=1e-6), (
                k, (res.state[k] - want[k]).abs().max())
