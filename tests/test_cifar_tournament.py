"""The CIFAR side of the budget tournament: the one step function for every method (exact gradient-evaluation
counts, BatchNorm frozen on perturbed passes, the limits that must hold in the trainer), label noise, and the
tournament itself (each method spends the budget its schedule says, every configuration of the tuning search
does too, the same number of pilot runs per method on seeds no reported run uses, the seeds really paired, the
paired verdicts with Holm and the share of SAM's gain, the Pareto front, the CLIs' JSON)."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.cifar import tournament as ct
from core.cifar import train as ctrain
from core.cifar.cli import main as cifar_main
from core.cifar.models import make_model
from core.cifar.tournament import METHODS, TournamentConfig, method_config, run_tournament
from core.cifar.train import TrainConfig, make_method, noisy_labels, optimization_step, train
from core.methods import OPTIMIZERS
from core.toy.tournament import pareto_front

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 320 images, batch 32 → T = 10 steps per epoch
SMALL = dict(train_size=320, test_size=100, batch_size=32, epochs=1, sharpness_iters=0, trace_samples=0,
             model="tiny", device="cpu", precision="fp32")


def _batch(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _counting_loss(model):
    """loss_fn for optimization_step that counts its forward-backward passes independently of the step's own
    count (every call is followed by one backward in the step function)."""
    calls = []
    crit = torch.nn.CrossEntropyLoss()

    def loss_fn(x, y):
        out = model(x)
        calls.append(1)
        return crit(out, y), out
    return loss_fn, calls


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_method_counts_its_gradient_evaluations_exactly(name):
    """The step function's count equals the passes really made (loss_fn calls), step by step; and over T steps
    it is what each rule implies: T + S for a schedule (Schedule.grad_evals), T + ⌈T/k⌉ for LookSAM, T for
    Momentum-SAM, T + the steps AE-SAM's rule took (AESAMRule.taken)."""
    torch.manual_seed(0)
    model = make_model("tiny")
    T, k = 12, 3
    cfg = TrainConfig(optimizer=name, k=k, f=0.5, p=0.4, late_f=0.3, seed=2, lam1=-0.5, lam2=0.5, **SMALL)
    method = make_method(cfg, model.parameters(), T, lr=0.05)
    loss_fn, calls = _counting_loss(model)
    model.train()
    total = 0
    for t in range(T):
        before = len(calls)
        step = optimization_step(model, method, *_batch(t), loss_fn, t)
        assert step.grad_evals == len(calls) - before == (2 if step.sam else 1)
        total += step.grad_evals
    schedule, _ = cfg.schedule()
    if name == "ae_sam":
        assert total == T + method.rule.taken and 0 < method.rule.taken < T  # it really decided, both ways
    elif name == "looksam":
        assert total == T + math.ceil(T / k) == schedule.grad_evals(T)
    elif name == "msam":
        assert total == T == schedule.grad_evals(T)
    else:
        assert total == schedule.grad_evals(T)


@pytest.mark.parametrize("name,extra", [("sam", {}), ("asam", {"rho": 0.5}), ("looksam", {"k": 2}),
                                        ("ae_sam", {"lam1": -math.inf, "lam2": -math.inf}), ("composer", {"k": 1}),
                                        ("psam", {})])
def test_the_perturbed_pass_leaves_batchnorm_statistics_alone(name, extra):
    """After a SAM step BatchNorm's running statistics are exactly those one forward pass at w gives: the pass
    at w + ε must not move them (core.sam.frozen_bn_stats). A copy of the model makes that one pass by
    itself."""
    torch.manual_seed(1)
    model = make_model("tiny")
    twin = make_model("tiny")
    twin.load_state_dict(model.state_dict())
    cfg = TrainConfig(optimizer=name, **({"rho": 0.05} | extra), **SMALL)
    method = make_method(cfg, model.parameters(), 4, lr=0.05)
    x, y = _batch(5)
    model.train(), twin.train()
    step = optimization_step(model, method, x, y, _counting_loss(model)[0], 0)
    assert step.sam  # step 0 is a SAM step for each of these
    with torch.no_grad():
        twin(x)
    for (n, a), b in zip(model.named_buffers(), twin.buffers()):
        if a.is_floating_point():
            assert torch.equal(a, b), n


def _params(state):
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def _same(a, b, exact=False):
    assert set(a) == set(b)
    for key in a:
        if a[key].is_floating_point():
            ok = torch.equal(a[key], b[key]) if exact else torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
            assert ok, (key, (a[key] - b[key]).abs().max())


def test_limits_in_the_trainer_ae_sam_looksam_msam():
    """The limits the issue names, through the whole trainer (same seed, same minibatches): AE-SAM with
    thresholds −∞ is SAM and with +∞ is SGD; LookSAM with k = 1 is SAM; Momentum-SAM with ρ = 0 is SGD (its
    weights; its BatchNorm statistics are re-estimated at w after the epoch, so those are not compared)."""
    runs = {}
    for key, changes in {"sam": dict(optimizer="sam"), "sgd": dict(optimizer="sgd"),
                         "ae_minus": dict(optimizer="ae_sam", lam1=-math.inf, lam2=-math.inf),
                         "ae_plus": dict(optimizer="ae_sam", lam1=math.inf, lam2=math.inf),
                         "look1": dict(optimizer="looksam", k=1), "msam0": dict(optimizer="msam", rho=0.0),
                         "heavy_ball": dict(optimizer="sgd", nesterov=False)}.items():
        res = train(TrainConfig(seed=4, augment=False, **(SMALL | changes)))
        assert res.status == "done"
        runs[key] = res
    assert runs["ae_minus"].sam_steps == 10 and runs["ae_minus"].grad_evals == 20
    assert runs["ae_plus"].sam_steps == 0 and runs["ae_plus"].grad_evals == 10
    _same(runs["ae_minus"].state, runs["sam"].state, exact=True)
    _same(runs["ae_plus"].state, runs["sgd"].state, exact=True)
    _same(runs["look1"].state, runs["sam"].state)
    assert runs["look1"].grad_evals == 20
    # Momentum-SAM's base is heavy ball (its paper; TrainConfig.msam_nesterov False): at ρ = 0 it is that base
    _same(_params(runs["msam0"].state), _params(runs["heavy_ball"].state), exact=True)
    assert runs["msam0"].grad_evals == 10
    # and the limits are not trivially met: a real LookSAM (k = 2) and a Momentum-SAM at ρ = 0.3 do differ
    other = train(TrainConfig(seed=4, augment=False, **(SMALL | dict(optimizer="msam", rho=0.3))))
    pairs = zip(_params(other.state).values(), _params(runs["heavy_ball"].state).values())
    assert any(not torch.equal(a, b) for a, b in pairs)


def test_momentum_sam_without_momentum_is_a_one_line_error():
    with pytest.raises(ValueError, match="momentum"):
        ctrain.check_config(TrainConfig(optimizer="msam", momentum=0.0, **SMALL))
    with pytest.raises(ValueError, match="label_noise"):
        ctrain.check_config(TrainConfig(label_noise=1.0, **SMALL))


def test_label_noise_flips_exactly_the_fraction_to_wrong_classes():
    """round(f·n) labels change, each to a class other than its own, about uniformly; seeded; 0 changes nothing."""
    y = np.repeat(np.arange(10), 300)
    noisy = noisy_labels(y, 10, 0.4, seed=3)
    changed = noisy != y
    assert changed.sum() == 1200
    assert np.array_equal(noisy, noisy_labels(y, 10, 0.4, seed=3))
    assert not np.array_equal(noisy, noisy_labels(y, 10, 0.4, seed=4))
    assert noisy_labels(y, 10, 0.0, seed=3) is y
    # the wrong class is uniform over the 9 others: offsets (noisy − y) mod 10 cover 1 … 9 about equally
    # (1200 draws, 133 expected each; ±50 is beyond 4 standard deviations of a count of 133)
    counts = np.bincount((noisy[changed] - y[changed]) % 10, minlength=10)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] - 1200 / 9) < 50)


def test_label_noise_reaches_training_labels_only():
    clean = ctrain.prepare_data(TrainConfig(**SMALL))
    noisy = ctrain.prepare_data(TrainConfig(label_noise=0.5, **SMALL))
    assert np.array_equal(clean[0], noisy[0]) and np.array_equal(clean[2], noisy[2])
    assert np.array_equal(clean[3], noisy[3])                       # test labels stay clean
    assert (clean[1] != noisy[1]).sum() == 160                      # half of the 320 training labels


def test_tournament_spends_each_methods_budget_and_marks_the_front():
    """Untuned (the budget rule's fixed parameters), at b = 0.65 over T = 20 steps each method spends what its
    rule says: PSAM (k 2, f 0.6), late SAM (last 30%), Composer (every 3rd) 26 of SAM's 40 evaluations;
    LookSAM and SAM every k (k 3) 27; SGD and Momentum-SAM 20; SAM 40; AE-SAM what its own decisions took. The
    Pareto front is exactly the non-dominated rows; the result is JSON."""
    cfg = TournamentConfig(budget=0.65, seeds=2, train_size=320, epochs=2, batch_size=32, sharpness_iters=0,
                           device="cpu", tune=False)
    seen = []
    res = run_tournament(cfg, progress=seen.append)
    assert res.steps == 20 and len(seen) == len(res.runs) == 2 * len(METHODS)
    want = {"sgd": 20, "sam": 40, "psam": 26, "late_sam": 26, "composer": 26, "looksam": 27, "every_k": 27,
            "msam": 20}
    rows = {m.name: m for m in res.methods}
    assert set(rows) == set(METHODS)
    for name, evals in want.items():
        assert rows[name].grad_evals == evals and rows[name].budget_ratio == pytest.approx(evals / 40), name
    ae = [r for r in res.runs if r["optimizer"] == "ae_sam"]
    assert rows["ae_sam"].grad_evals == np.mean([r["grad_evals"] for r in ae])
    assert all(r["grad_evals"] == 20 + r["sam_steps"] for r in ae)
    assert all(t["runs"] == 0 and not t["pilots"] for t in res.tuning.values())   # nothing tuned
    ss = [r for r in res.runs if r["optimizer"] == "ss_sam"]
    assert all(r["grad_evals"] == 20 + r["sam_steps"] for r in ss)
    front = [res.methods[i].name for i in pareto_front([m.budget_ratio for m in res.methods],
                                                          [m.outcome for m in res.methods])]
    assert res.pareto == front and front
    for m in res.methods:
        assert len(m.per_seed) == 2 and m.outcome == pytest.approx(np.mean(m.per_seed))
        assert m.outcome_ci[0] <= m.outcome <= m.outcome_ci[1]
        assert m.seed_ids == [20, 21]
    json.dumps(res.to_dict())  # NaN-free, plain types


@pytest.mark.parametrize("budget", [0.55, 0.6, 0.65, 0.7, 0.75])
def test_every_configuration_of_the_search_spends_the_budget(budget):
    """Tuning must not buy extra SAM steps: every configuration the search may choose spends the budget (its
    schedule's gradient evaluations over T = 300 steps within one SAM step of (2b − 1)·T), and the grids are
    the registry's (core.methods: Method.tune); SGD, SAM, Momentum-SAM keep their own 50% / 100% / 50%."""
    from core import methods as registry

    T = 300
    target = round((2 * budget - 1) * T)
    k = round(1 / (2 * budget - 1))
    for name in METHODS:
        grid = ct.search_space(name, budget, T, 0.1)
        knobs = ct.tunables(name)
        assert (len(grid) > 1) == bool(knobs), name
        if name in ("psam", "ss_sam", "composer", "looksam"):
            assert len(grid) == len({tuple(sorted(g.items())) for g in grid})     # no configuration twice
        for g in grid:
            tcfg = replace(method_config(TournamentConfig(budget=budget), name, T, g), seed=3)
            schedule, _ = tcfg.schedule()
            extra = None if schedule.state_dependent else schedule.grad_evals(T) - T
            if name in ("sgd", "msam"):
                assert extra == 0
            elif name == "sam":
                assert extra == T
            elif name == "ae_sam":   # state-dependent: the Gaussian guess spends the budget in expectation
                assert schedule.expected_sam_fraction(T) == pytest.approx(2 * budget - 1, abs=0.01)
            elif name in ("looksam", "every_k", "composer"):
                assert tcfg.k == k and extra == math.ceil(T / k), (name, g)
            elif name == "ss_sam":   # random draws: the mean p(t) is the share (± 4 binomial sd)
                assert abs(extra - target) < 4 * math.sqrt(T * 0.25) + 1, (g, extra)
            else:
                assert abs(extra - target) <= 1, (name, g, extra)
    shapes = {g["p_shape"] for g in ct.search_space("ss_sam", budget, T, 0.1)}
    assert shapes == set(registry.get("ss_sam").tune[0].grid)
    alphas = [g["alpha"] for g in ct.search_space("looksam", budget, T, 0.1)]
    assert alphas == list(next(t for t in registry.get("looksam").tune if t.name == "alpha").grid)
    assert all(g[ct._MSAM_BASE] is False for g in ct.search_space("msam", budget, T, 0.1))   # heavy ball


def test_tuning_gives_every_method_the_same_pilots_on_unreported_seeds():
    """Every method with a free hyperparameter gets exactly `pilot_runs` pilots (a grid of 2 is run on both
    pilot seeds, one of 4 once), on the pilot seeds only; the choice is the eligible configuration with the
    best mean validation accuracy, and it is what the reported runs use; SGD and SAM get no pilots."""
    cfg = TournamentConfig(budget=0.65, seeds=2, train_size=320, epochs=1, batch_size=32, sharpness_iters=0,
                           device="cpu", methods=("sgd", "sam", "composer", "looksam"), val_size=200)
    res = run_tournament(cfg)
    assert res.tuning["sgd"]["runs"] == res.tuning["sam"]["runs"] == 0
    reported = {r["seed"] for r in res.runs}
    assert reported == {20, 21}
    for name in ("composer", "looksam"):
        t = res.tuning[name]
        assert t["runs"] == len(t["pilots"]) == 4
        assert {p["seed"] for p in t["pilots"]} <= set(cfg.pilot_seeds)
        assert not reported & set(cfg.pilot_seeds)
        counts = np.bincount([p["config"] for p in t["pilots"]], minlength=len(t["grid"]))
        assert counts.tolist() == [4 // len(t["grid"])] * len(t["grid"])
        for i, score in enumerate(t["scores"]):
            vals = [p["val_acc"] for p in t["pilots"] if p["config"] == i]
            assert score == pytest.approx(np.mean(vals)) and all(0 <= v <= 1 for v in vals)
        best = max(t["eligible"], key=lambda i: t["scores"][i])
        assert t["scores"][t["chosen_index"]] == t["scores"][best]
        row = next(m for m in res.methods if m.name == name)
        for key, value in t["chosen"].items():
            assert row.params.get(key, value) == value
    json.dumps(res.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="disjoint"):
        TournamentConfig(seed0=999, seeds=3)          # 999, 1000, 1001 would overlap the pilot seeds


def test_seeds_are_paired_same_init_same_data_order():
    """A seed fixes the initial weights, the subset, its label noise and the minibatch order, whatever the
    method: SAM at ρ = 0 (its second pass at w itself) ends on SGD's weights for the same seed, not for
    another seed."""
    base = dict(SMALL, epochs=2, label_noise=0.4, augment=False)
    sgd = train(TrainConfig(optimizer="sgd", seed=7, **base))
    sam0 = train(TrainConfig(optimizer="sam", rho=0.0, seed=7, **base))
    other = train(TrainConfig(optimizer="sgd", seed=8, **base))
    _same(_params(sam0.state), _params(sgd.state))
    assert sam0.test_acc == sgd.test_acc
    pairs = zip(_params(other.state).values(), _params(sgd.state).values())
    assert any(not torch.allclose(a, b) for a, b in pairs)


def test_validation_images_are_not_the_pilots_training_images():
    """The pilots are scored on clean-labelled images of the training pool that their own subset left out."""
    tcfg = TrainConfig(train_size=1000, label_noise=0.4, seed=1000, data="builtin")
    xtr = ctrain.prepare_data(tcfg)[0]
    xv, yv = ct.validation_set(tcfg, 500)
    assert len(xv) == 500 and np.bincount(yv, minlength=10).tolist() == [50] * 10   # balanced
    train_keys = {x.tobytes() for x in xtr}
    assert not any(x.tobytes() in train_keys for x in xv)


def _row(name, accs, seeds=(0, 1, 2, 3, 4)):
    return ct.MethodRow(name=name, optimizer=name, label=name, params={}, seeds=len(accs), grad_evals=0.0,
                        budget_ratio=0.5, sam_fraction=0.0, outcome=float(np.mean(accs)), outcome_ci=(0, 0),
                        test_acc_mean=float(np.mean(accs)), test_acc_std=0.0, lambda_max_mean=0.0,
                        lambda_max_std=0.0, wall_s=1.0, wall_s_mean=1.0, wall_s_std=0.0,
                        cost_vs_sam_evals=0.5,
                        cost_vs_sam_wall=0.5, per_seed=list(accs), lambda_per_seed=[0.0] * len(accs),
                        seed_ids=list(seeds))


def test_paired_verdicts_use_holm_and_the_gain_share_fieller():
    """Verdicts against SAM: one paired t per method on per-seed points, Holm-corrected across the methods;
    the share of SAM's gain is mean(m − SGD)/mean(SAM − SGD) over the paired seeds."""
    from core.stats import fieller_ratio, holm, paired_difference

    sgd = _row("sgd", [0.34, 0.36, 0.33, 0.35, 0.37])
    sam = _row("sam", [0.39, 0.40, 0.38, 0.40, 0.41])
    half = _row("psam", [0.362, 0.383, 0.352, 0.378, 0.388])
    same = _row("late_sam", [0.392, 0.398, 0.381, 0.40, 0.409], seeds=(4, 3, 2, 1, 0))   # in another order
    v = ct.paired_verdicts([sgd, sam, half, same])["vs_sam"]
    raw = {n: paired_difference([100 * x for x in r.per_seed], [100 * x for x in sam.per_seed], r.seed_ids,
                                sam.seed_ids) for n, r in (("sgd", sgd), ("psam", half), ("late_sam", same))}
    adjusted, _ = holm([raw[n].p for n in raw])
    for n, a in zip(raw, adjusted):
        assert v[n]["p"] == pytest.approx(raw[n].p) and v[n]["p_holm"] == pytest.approx(a)
    assert v["sgd"]["clear_holm"] and v["psam"]["clear_holm"] and not v["late_sam"]["clear_holm"]
    share, lo, hi = ct.gain_share(half, sgd, sam)
    num = np.array(half.per_seed) - np.array(sgd.per_seed)
    den = np.array(sam.per_seed) - np.array(sgd.per_seed)
    assert (share, lo, hi) == pytest.approx(fieller_ratio(num, den))
    assert 0.4 < share < 0.6 and lo < share < hi


def test_method_config_uses_the_shared_budget_rule():
    cfg = TournamentConfig(budget=0.75)
    assert (method_config(cfg, "psam", 100).k, method_config(cfg, "psam", 100).f) == (2, 1.0)
    assert method_config(cfg, "late_sam", 100).late_f == pytest.approx(0.5)
    assert method_config(cfg, "composer", 100).k == 2 and method_config(cfg, "msam", 100).rho == cfg.msam_rho
    assert getattr(method_config(cfg, "msam", 100), ct._MSAM_BASE) is False   # the paper's heavy-ball base
    ae = method_config(cfg, "ae_sam", 100)
    assert ae.lam2 - ae.lam1 == pytest.approx(2.0)
    with pytest.raises(ValueError, match="budget"):
        TournamentConfig(budget=1.0)
    with pytest.raises(ValueError, match="unknown tournament method"):
        TournamentConfig(methods=("sgd", "adam"))


def test_cli_tournament_prints_one_json_object(capsys):
    argv = ["tournament", "--budget", "0.6", "--seeds", "2", "--train-size", "320", "--epochs", "1", "--batch-size",
            "32", "--sharpness-iters", "0", "--optimizers", "sgd,sam,psam", "--device", "cpu", "--json"]
    assert cifar_main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "tournament" and out["results"]["budget"] == 0.6
    names = [m["name"] for m in out["results"]["methods"]]
    assert names == ["sgd", "sam", "psam"]
    for m in out["results"]["methods"]:
        assert {"name", "grad_evals", "budget_ratio", "outcome", "outcome_ci", "wall_s"} <= set(m)
    assert out["results"]["methods"][2]["budget_ratio"] == pytest.approx(12 / 20)  # PSAM k 2, f 0.4: 2 of 10 steps
    assert cifar_main(["tournament", "--budget", "0.4"]) == 2
    assert "between 0.5" in capsys.readouterr().err


def test_final_test_accuracy_is_the_trainers_own_on_the_whole_test_set():
    """Reported runs pass over 100 test images after each epoch and measure the whole test set once at the
    end: the same number the trainer gives when it passes over the whole test set itself (training does not
    see the test set, so the two runs are the same run)."""
    full = train(TrainConfig(optimizer="sgd", seed=5, **(SMALL | dict(test_size=0))))
    small = train(TrainConfig(optimizer="sgd", seed=5, **SMALL))
    acc, n = ct.final_test_accuracy(small)
    assert n == full.n_test == 1000 and small.n_test == 100
    assert acc == full.test_acc
    _same(small.state, full.state, exact=True)


def test_a_stopped_tournament_resumes_from_its_run_file(tmp_path):
    """RunCache(path) appends each finished run; a new cache on that file returns them without training."""
    path = str(tmp_path / "runs.jsonl")
    tcfg = TrainConfig(optimizer="sgd", seed=6, **SMALL)
    first = ct.RunCache(path).get(tcfg)
    again = ct.RunCache(path)
    calls = []
    again_d = again.get(tcfg, progress=calls.append)
    assert again_d["test_acc"] == first["test_acc"] and again_d["grad_evals"] == first["grad_evals"]
    assert not calls and again.fresh_s == 0.0                 # nothing trained the second time
    other = again.get(replace(tcfg, seed=7))                   # a configuration not in the file trains
    assert other["seed"] == 7 and again.fresh_s > 0
