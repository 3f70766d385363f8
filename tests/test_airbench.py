"""The airbench94 net and recipe on the CPU (issue 15): the pieces against their definitions, a tiny run that
learns, every optimizer on the net, and the GPU script's dry run. Narrow widths keep each test within seconds;
the pieces under test (whitening, Dirac init, Lookahead, TTA, the step) do not depend on the widths."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

from core.cifar import data as cdata
from core.cifar import whiten
from core.cifar.airbench import AirbenchNet, dirac_conv, trainable
from core.cifar.airbench_train import (
    RECIPE,
    Recipe,
    alternating_flip,
    param_groups,
    random_flip,
    train_airbench,
)
from core.cifar.lookahead import DECAY_BASE, Lookahead, decay
from core.cifar.models import make_model
from core.cifar.train import TrainConfig, make_method, optimization_step, prepare_data
from core.cifar.tta import tta_logits, views
from core.methods import OPTIMIZERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py: a shared CPU
ROOT = Path(__file__).resolve().parents[1]
NARROW = Recipe(widths=(16, 32, 32), tta_level=1)


@pytest.fixture(scope="module")
def images():
    """The first 2,000 training and 1,000 test images of the built-in mini set, normalised (float32)."""
    d = cdata.load("builtin")
    return cdata.to_device(d.x_train[:2000], "cpu"), cdata.to_device(d.x_test[:1000], "cpu")


def test_net_builds_with_the_right_shape_and_frozen_parts():
    torch.manual_seed(0)
    net = make_model("airbench")
    assert isinstance(net, AirbenchNet)
    assert net(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    n = sum(p.numel() for p in trainable(net))
    assert 1.9e6 < n < 2.0e6   # airbench94's 64/256/256 widths
    # frozen: the whitening filters and every BatchNorm γ; learned: the whitening bias, every β
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 6 and all(not m.weight.requires_grad and m.bias.requires_grad for m in bns)
    assert all(m.eps == 1e-12 and m.momentum == 0.4 for m in bns)


def test_dirac_init_passes_its_input_through():
    """The first c_in output channels of a Dirac-initialised 3×3 conv are the identity; the rest are
    random."""
    torch.manual_seed(0)
    conv = dirac_conv(8, 12)
    x = torch.randn(2, 8, 9, 9)
    y = conv(x)
    torch.testing.assert_close(y[:, :8], x)
    assert not torch.allclose(y[:, 8:], torch.zeros_like(y[:, 8:]))


def _patch_cov(z: torch.Tensor) -> torch.Tensor:
    """Second moment over every position and image of a conv output (N, C, H, W): (C, C)."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
    return flat.T @ flat / len(flat)


def whitening_tolerance(n_terms: int, lam: torch.Tensor) -> float:
    """How far W Σ Wᵀ may sit from diag(λ/(λ + eps)) in float64 through rounding alone.

    Σ is a mean of n_terms patch products, formed twice (once to build W, once more from the conv output);
    the forward-error bound of a sum of N terms is γ_N ≈ N·u times the sum of the terms' magnitudes, here
    ≈ ‖Σ‖ = λ_max (Higham, "Accuracy and Stability of Numerical Algorithms", §4.2). W divides by √λ on
    each side, so on the smallest channel that absolute error becomes relative error N·u·κ, κ = λ_max/λ_min;
    eigh adds p(n)·u·κ with n = 12, far below. Blocked BLAS sums round far better than the worst case
    (≈ √N·u·κ in practice), so the bound has headroom on any x86-64 BLAS, and a real error (a missing 1/√λ,
    a wrong eps) is of order λ/(λ + eps) itself, 1e-3 or more, far above it."""
    u = torch.finfo(torch.float64).eps
    kappa = float(lam.max() / lam.min())
    return 2 * n_terms * u * kappa


def test_whitening_makes_the_patch_covariance_the_identity(images):
    """By definition (core/cifar/whiten.py) the whitened patches z = W p have second moment diag(λ/(λ + eps)):
    with eps = 0 that is the identity, up to float64 rounding, whose size grows with the number of patches
    summed and with the conditioning κ of the patch covariance (whitening_tolerance; on the mini set
    N = 1.9 M, κ = 8.5e4: tolerance 7e-5, observed 3.4e-8 on an AMD EPYC, 1 and 2 threads). With airbench's
    eps = 5e-4 it is diagonal, with entries λ/(λ + eps), which on our JPEG set sit well below 1 for its two
    smallest eigenvalues (1.2e-4 and 2.0e-4: JPEG noise)."""
    x = images[0].double()
    p = whiten.patches(x)
    lam = torch.linalg.eigvalsh(p.T @ p / len(p)).flip(0)
    tol = whitening_tolerance(len(p), lam)
    for eps in (0.0, whiten.EPS):
        w = whiten.whitening_filters(x, eps=eps)
        cov = _patch_cov(torch.nn.functional.conv2d(x, w))
        expected = torch.diag(lam / (lam + eps))
        torch.testing.assert_close(cov, expected, atol=tol, rtol=0)
    assert tol < 1e-3 * (lam / (lam + whiten.EPS)).min()   # the check can still see a real error
    assert (lam / (lam + whiten.EPS)).min() < 0.5   # the eps does shrink the noise channels here


def test_the_whitening_layer_and_held_out_images(images):
    """The net's own float32 layer: [W; −W] (both signs), zero bias, and on the images that set it the first
    12 channels' covariance is diag(λ/(λ + eps)) to float32 accuracy (atol 2e-3: the filters of the smallest
    eigenvalues are ~50× the input scale, and float32 keeps 7 digits). On 1,000 held-out test images the
    eps = 0 covariance is the identity up to sampling error: each entry is a mean over ~1,000 images of
    unit-variance products, std ≈ √(2/1000) ≈ 0.045 for an image-level effective sample size, so 78 entries
    stay within 0.2 (≈ 4.5 σ); it measured 0.056. A wrong filter (e.g. missing 1/√λ) misses by orders more."""
    net = AirbenchNet(widths=(8, 8, 8))
    net.init_whitening(images[0])
    w = net.whiten.weight
    torch.testing.assert_close(w[12:], -w[:12])
    assert torch.count_nonzero(net.whiten.bias) == 0
    with torch.no_grad():
        cov = _patch_cov(net.whiten(images[0])[:, :12])
    p = whiten.patches(images[0].double())
    lam = torch.linalg.eigvalsh(p.T @ p / len(p)).flip(0)
    torch.testing.assert_close(cov, torch.diag(lam / (lam + whiten.EPS)), atol=2e-3, rtol=0)
    w0 = whiten.whitening_filters(images[0].double(), eps=0.0)
    held = _patch_cov(torch.nn.functional.conv2d(images[1].double(), w0))
    assert (held - torch.eye(12, dtype=held.dtype)).abs().max() < 0.2


def test_lookahead_against_a_hand_computation():
    """φ ← β φ + (1 − β) w, then w ← φ, on every float entry of the state (BatchNorm statistics too); the
    integer counter is left alone. β(t) = 0.95⁵ (t/T)³."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        model[1].running_mean.fill_(4.0)
    la = Lookahead(model)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, -2.0]]))
        model[1].running_mean.fill_(0.0)
        model[1].num_batches_tracked.fill_(7)
    la.update(model, 0.25)
    # 0.25·1 + 0.75·3 = 2.5;  0.25·2 + 0.75·(−2) = −1;  running mean 0.25·4 + 0 = 1
    torch.testing.assert_close(model[0].weight, torch.tensor([[2.5, -1.0]]))
    torch.testing.assert_close(model[1].running_mean, torch.tensor([1.0]))
    assert int(model[1].num_batches_tracked) == 7
    assert decay(0, 100) == 0.0 and decay(50, 100) == pytest.approx(DECAY_BASE / 8)
    assert decay(100, 100) == pytest.approx(0.95 ** 5)
    # the end of a run at T = 100: after step 100 (an update step) the weights are already the average
    assert la.maybe_update(model, 100, 100)
    w_end = model[0].weight.clone()
    la.finish(model, 100, 100)
    assert torch.equal(model[0].weight, w_end)
    # ending at T = 102 (not an update step): one more average with β(102/102) brings the last steps in
    with torch.no_grad():
        model[0].weight.copy_(w_end + 1.0)
    la.finish(model, 102, 102)
    torch.testing.assert_close(model[0].weight, w_end + (1 - DECAY_BASE))
    # a run shorter than 5 steps has no average: its weights stay
    short = Lookahead(model)
    with torch.no_grad():
        model[0].weight.fill_(9.0)
    assert not short.maybe_update(model, 3, 3)
    short.finish(model, 3, 3)
    assert torch.equal(model[0].weight, torch.full((1, 2), 9.0))


def test_tta_views_and_their_mean():
    torch.manual_seed(0)
    net = AirbenchNet(widths=(8, 8, 8)).eval()
    x = torch.randn(4, 3, 32, 32)
    for level in (0, 1, 2):
        vs = views(x, level)
        assert len(vs) == (1, 2, 6)[level] and sum(w for w, _ in vs) == pytest.approx(1.0)
        # TTA equals the weighted mean of the model's logits over its views
        by_hand = sum(w * net(v) for w, v in vs)
        torch.testing.assert_close(tta_logits(net, x, level), by_hand, atol=1e-5, rtol=1e-5)
    # the level-2 views by hand: a one-pixel shift up-left is x padded by reflection, rows/cols 0…31
    shifted = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")[..., :32, :32]
    assert torch.equal(views(x, 2)[2][1], shifted) and torch.equal(views(x, 2)[3][1], shifted.flip(-1))
    # a mirror-symmetric image: the mirror view adds nothing, level 1 equals the single view
    sym = torch.cat((x[..., :16], x[..., :16].flip(-1)), dim=-1)
    torch.testing.assert_close(tta_logits(net, sym, 1), net(sym), atol=1e-5, rtol=1e-5)
    # eval mode: an image's TTA logits do not depend on its batch mates
    torch.testing.assert_close(tta_logits(net, x, 2)[:1], tta_logits(net, x[:1], 2), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        views(x, 3)


def test_recipe_numbers():
    """airbench94's decoupled hyperparameters: at batch 1024, lr_sgd = 11.5 / (1 + 1/0.15) ≈ 1.50 and a decay
    of 0.0153 / 7.67 ≈ 0.2% per step; the schedule goes 0.2 → 1 over 23% of the steps, then to 0.07."""
    lr, dec = RECIPE.sgd_hyper(1024)
    assert lr == pytest.approx(11.5 / (1 + 1 / 0.15)) and dec == pytest.approx(0.0153 / (1 + 1 / 0.15))
    assert RECIPE.sgd_hyper(512)[0] == pytest.approx(lr / 2)
    total = 480
    f = [RECIPE.lr_factor(t, total) for t in range(total)]
    assert f[0] == pytest.approx(0.2) and max(f) == pytest.approx(1.0) and f.index(1.0) == int(0.23 * total)
    assert f[-1] == pytest.approx(0.07, abs=0.003) and all(a >= b for a, b in zip(f[111:], f[112:]))
    net = AirbenchNet(widths=(8, 8, 8))
    groups = param_groups(net, lr, dec, RECIPE.bias_scaler)
    bn_biases = {id(m.bias) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in groups[0]["params"]} == bn_biases
    assert groups[0]["lr"] == pytest.approx(64 * lr)
    for g in groups:   # the same decay per step, lr · weight_decay, for both groups
        assert g["lr"] * g["weight_decay"] == pytest.approx(dec)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert id(net.whiten.weight) not in in_groups and in_groups == {id(p) for p in trainable(net)}


def test_alternating_flips():
    """Each image flipped at random once (about half of them), then the whole set mirrored every odd epoch."""
    x = torch.randn(400, 3, 4, 4)
    gen = torch.Generator().manual_seed(0)
    pre = random_flip(x, gen)
    flipped = (pre != x).flatten(1).any(1)
    assert torch.equal(pre[~flipped], x[~flipped]) and torch.equal(pre[flipped], x[flipped].flip(-1))
    assert 150 < int(flipped.sum()) < 250   # Binomial(400, ½): mean 200, std 10
    assert torch.equal(alternating_flip(pre, 0), pre) and torch.equal(alternating_flip(pre, 1), pre.flip(-1))
    assert torch.equal(alternating_flip(pre, 2), pre)


def test_a_sam_step_leaves_the_whitening_and_the_running_statistics_alone(images):
    """One SAM step through the shared step function: the frozen whitening filters get no gradient and do not
    move, the other weights do; BatchNorm's running statistics are those of the first pass alone (the
    perturbed pass runs with them frozen)."""
    torch.manual_seed(0)
    net = AirbenchNet(widths=(8, 16, 16))
    net.init_whitening(images[0])
    x, y = images[0][:64], torch.randint(0, 10, (64,))
    cfg = TrainConfig(model="airbench", optimizer="sam", rho=0.5)
    lr, dec = RECIPE.sgd_hyper(64)
    method = make_method(cfg, param_groups(net, lr, dec, RECIPE.bias_scaler), 10, lr=lr)

    def loss_fn(xb, yb):   # one forward pass, as the trainer's
        out = net(xb)
        return torch.nn.functional.cross_entropy(out, yb), out
    # the running statistics after ONE training pass from the same start
    ref = AirbenchNet(widths=(8, 16, 16))
    ref.load_state_dict(net.state_dict())
    ref.train()
    ref(x)
    w_whiten, w_head = net.whiten.weight.clone(), net.head.weight.clone()
    net.train()
    step = optimization_step(net, method, x, y, loss_fn, 0)
    assert step.grad_evals == 2 and step.sam
    assert net.whiten.weight.grad is None and torch.equal(net.whiten.weight, w_whiten)
    assert not torch.equal(net.head.weight, w_head)
    torch.testing.assert_close(net.groups[0].norm1.running_mean, ref.groups[0].norm1.running_mean)
    torch.testing.assert_close(net.groups[2].norm2.running_var, ref.groups[2].norm2.running_var)


def _cfg(**kw) -> TrainConfig:
    base = dict(model="airbench", data="builtin", train_size=1000, test_size=500, epochs=4, batch_size=100,
                sharpness_iters=0, trace_samples=0, device="cpu", optimizer="sgd", seed=0)
    return TrainConfig(**(base | kw))


def test_a_tiny_run_learns_above_chance():
    """1,000 mini-set images, 4 epochs of the recipe on a narrow net (40 steps, a few seconds): seeds 0 and 1
    reached 25.8% and 27.0% on 500 test images (mirror TTA). Chance is 10%; the bar of 20% (2× chance) is
    3 standard errors of a 500-image accuracy (√(0.26·0.74/500) ≈ 2 points) below what it reaches."""
    torch.manual_seed(0)
    res = train_airbench(_cfg(), recipe=NARROW)
    assert res.status == "done", res.message
    assert res.test_acc >= 0.20, res.history
    last = res.history[-1]
    assert last["tta_test_acc"] == res.test_acc and last["tta_level"] == 1
    assert last["run_s"] == pytest.approx(last["whiten_s"] + res.wall_s + last["tta_s"])
    assert res.grad_evals == res.total_steps == 40 and res.batch_size == 100


def test_train_hands_the_airbench_model_to_the_recipe():
    """core.cifar.train.train(cfg) with model 'airbench' runs the recipe: the net's whitening is set from the
    data (not random), and the run reports its TTA accuracy."""
    from core.cifar.train import train

    res = train(_cfg(train_size=200, test_size=100, epochs=1, batch_size=50))
    assert res.status == "done" and "tta_test_acc" in res.history[-1]
    w = res.state["whiten.weight"]
    torch.testing.assert_close(w[12:], -w[:12])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_runs_on_the_net(name):
    """Every optimizer name (the budget tournament's too) takes a few steps on the net, counts 1–2 gradient
    evaluations a step, and never moves the frozen whitening filters."""
    cfg = _cfg(optimizer=name, train_size=200, test_size=100, epochs=2, batch_size=50,
               rho=0.5 if name == "asam" else 0.05)
    res = train_airbench(cfg, recipe=Recipe(widths=(8, 16, 16), tta_level=0))
    assert res.status == "done", res.message
    assert res.total_steps == 8 and res.total_steps <= res.grad_evals <= 2 * res.total_steps
    assert res.sam_steps == res.grad_evals - res.total_steps
    if name == "sgd":
        assert res.sam_steps == 0
    if name in ("sam", "asam"):
        assert res.sam_steps == res.total_steps
    assert math.isfinite(res.test_acc)
    # the filters are what the whitening of the run's first images gives, untouched by 8 steps
    xtr = prepare_data(cfg)[0]
    expected = whiten.whitening_filters(cdata.to_device(xtr[: RECIPE.whiten_images], "cpu"))
    torch.testing.assert_close(res.state["whiten.weight"][:12], expected, atol=1e-6, rtol=1e-5)


def test_cancel_and_divergence_are_statuses():
    res = train_airbench(_cfg(train_size=200, epochs=2, batch_size=50), should_stop=lambda: True, recipe=NARROW)
    assert res.status == "cancelled" and res.history == []
    # BatchNorm makes most weights scale-invariant, so a merely large rate (1e6) still ends "done" with a huge
    # but finite loss; 1e30 overflows float32 within the first steps
    res = train_airbench(_cfg(train_size=200, epochs=1, batch_size=50, lr=1e30), recipe=NARROW)
    assert res.status == "diverged" and "diverged" in res.message


def test_gpu_session_airbench_dry_run(tmp_path):
    """bench/gpu_session.sh airbench --dry-run: every airbench step of the device session on the CPU with tiny
    sizes; each record is valid JSON, and $OUT stays within the device's 8 files."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "SIDE": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), "airbench", "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    table = json.loads((out / "dryrun_airbench_table.json").read_text())
    assert table["kind"] == "table" and table["config"]["model"] == "airbench"
    names = {r["optimizer"] for r in table["results"]["rows"]}
    assert {"sgd", "sam", "psam", "late_sam"} <= names
    assert all(r["status"] == "done" for r in table["results"]["runs"])
    for rho in ("002", "01"):
        d = json.loads((out / f"dryrun_airbench_rho{rho}.json").read_text())
        assert {r["optimizer"] for r in d["results"]["rows"]} == {"sgd", "sam"}
    esc = json.loads((out / "dryrun_airbench_escape.json").read_text())
    assert esc["kind"] == "escape" and len(esc["results"]["seeds"]) >= 2
    assert all("distance_std" in r for r in esc["results"]["rows"])
    thr = json.loads((out / "dryrun_airbench_throughput.json").read_text())
    assert thr["kind"] == "run" and thr["results"]["images_per_s"] > 0
    assert "FAILED" not in proc.stdout
    assert "-- profile: sam" in proc.stdout and "profile failed" not in proc.stdout
    assert "target SAM ≤ 2.1× SGD's wall time" in proc.stdout   # the summary checks the targets


def test_an_escape_record_over_seeds_draws_error_bars():
    """bench/airbench_session.py averages the escape over seeds and keeps each measure's std: the CIFAR page's
    escape chart draws them as error bars (a one-seed record, without stds, draws none) and says 'mean of n
    seeds'."""
    from app import cifar_view

    rows = [dict(optimizer="sgd", rho=0.0, distance=1.0, distance_std=0.1, lambda_max=50.0, lambda_max_std=5.0,
                 seeds=3, history=[{}, {}]),
            dict(optimizer="sam", rho=0.05, distance=2.0, distance_std=0.2, lambda_max=40.0, lambda_max_std=4.0,
                 seeds=3, history=[{}, {}])]
    fig = cifar_view.escape_figure({"rows": rows, "start_lambda_max": 60.0})
    assert [tuple(t.error_y.array) for t in fig.data] == [(0.2,), (0.1,), (4.0,), (5.0,)]
    single = [{k: v for k, v in r.items() if not k.endswith("_std")} for r in rows]
    assert all(t.error_y.array is None for t in cifar_view.escape_figure({"rows": single}).data)
    rec = {"kind": "escape", "config": {"train_size": 50_000, "epochs": 10, "seed": 0}, "results": {"rows": rows}}
    assert "mean of 3 seeds" in cifar_view.recorded_caption(rec)


@pytest.mark.parametrize("name", ["sgd", "sam"])
def test_the_recipe_through_the_one_loop_equals_a_loop_written_from_its_pieces(name):
    """The airbench recipe run by core.cifar.loop equals a loop written here from the recipe's own pieces and
    the equations, without the loop module: whitening from the first images, the two parameter groups with the
    decoupled lr and decay, Nesterov SGD at μ = 0.85, the lr factor of each step, (SAM: g; ε = ρ g/‖g‖; the
    gradient at w + ε with BatchNorm's running statistics left as after the first pass; back to w), Lookahead
    after every step and at the end, on the same minibatch order (one generator seeded by the seed). 6 steps,
    no augmentation. A loop that shifted the lr by one step, skipped Lookahead's last update or let the
    perturbed pass move the statistics would differ by far more than float32 round-off."""
    recipe = Recipe(widths=(8, 16, 16), tta_level=0)
    cfg = _cfg(optimizer=name, rho=0.05, train_size=300, test_size=50, epochs=1, batch_size=50, augment=False,
               seed=4)
    res = train_airbench(cfg, recipe=recipe)

    xtr, ytr, *_ = prepare_data(cfg)
    torch.manual_seed(cfg.seed)
    x, y = cdata.to_device(xtr, "cpu"), torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = AirbenchNet(10, recipe.widths)
    net.init_whitening(x[: recipe.whiten_images])
    lr, dec = recipe.sgd_hyper(50)
    groups = param_groups(net, lr, dec, recipe.bias_scaler)
    base = torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=True)
    slow = Lookahead(net)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    params = [p for g in groups for p in g["params"]]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    T = 6
    perm = torch.randperm(len(x), generator=gen)
    net.train()
    for t in range(T):
        idx = perm[50 * t : 50 * (t + 1)]
        grads = torch.autograd.grad(crit(net(x[idx]), y[idx]), params)
        if name == "sam":
            scale = 0.05 / (torch.sqrt(sum((g * g).sum() for g in grads)) + 1e-12)
            saved = [p.detach().clone() for p in params]
            stats = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.add_(g * scale)
            grads = torch.autograd.grad(crit(net(x[idx]), y[idx]), params)
            with torch.no_grad():
                for p, w in zip(params, saved):
                    p.copy_(w)
                for bn, (m, v) in zip(bns, stats):
                    bn.running_mean.copy_(m), bn.running_var.copy_(v)
        for p, g in zip(params, grads):
            p.grad = g
        for group in base.param_groups:
            group["lr"] = group["initial_lr"] * recipe.lr_factor(t, T)
        base.step()
        slow.maybe_update(net, t + 1, T, recipe.lookahead_every)
    slow.finish(net, T, T, recipe.lookahead_every)
    want = net.state_dict()
    assert res.total_steps == T and res.grad_evals == (2 * T if name == "sam" else T)
    for k in want:
        if want[k].is_floating_point():
            assert torch.allclose(res.state[k], want[k], rtol=1e-4, atol=1e-5), (
                k, (res.state[k] - want[k]).abs().max())
