"""The registry of methods (core/methods.py): one entry per method reaches every engine; the schedule
parameters are declared once and old records still load; the faithful variants (SS-SAM's trigonometric p(t),
Momentum-SAM's heavy-ball base and its BatchNorm re-estimation, counted in its cost)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core import methods
from core.methods import METHODS, Method, MethodParams, ToyRule, Tunable, scheduled_sam
from core.schedules import ScheduleParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(train_size=320, test_size=100, batch_size=32, epochs=1, sharpness_iters=0, trace_samples=0,
             model="tiny", device="cpu")


@pytest.fixture
def third_sam():
    """A method declared only here: SAM on every third step (the every_k schedule) with its own optimizer
    factory and its own toy rule, each counting its calls, so the test sees that the engines really used
    them."""
    built, decided = [], []

    def factory(spec):
        built.append(spec.total_steps)
        return scheduled_sam(spec)

    class CountingRule(ToyRule):
        def decide(self, g, t, take):
            decided.append(t)
            return take

    m = methods.register(Method("third_sam", "every third SAM", "every_k", "#123456", "bowtie", "dot",
                                optimizer=factory, toy=CountingRule, on_pages=True,
                                in_tournament=("toy", "cifar"),
                                tune=(Tunable("k", 3, (2, 3, 4)),)))
    yield m, built, decided
    methods.unregister("third_sam")


def test_a_method_registered_in_a_test_reaches_every_engine(third_sam, capsys):
    """One entry, and the toy engine, the CIFAR trainer, both CLIs, both tournaments' method lists, the pages'
    pickers and the theme all know it. Its counts are what its schedule implies (every_k, k = 3: steps 0, 3,
    6, 9 of T = 10 are SAM steps), computed here from the definition, not from the engines."""
    from app import theme
    from core.__main__ import main as core_main
    from core.cifar import cli
    from core.cifar.train import TrainConfig, train
    from core.toy import tournament as toy_tournament
    from core.toy.simulate import SimConfig, simulate

    m, built, decided = third_sam
    T, want_sam = 10, len(range(0, 10, 3))
    # the toy engine: its rule was asked every step, and its mask is the schedule's
    res = simulate(SimConfig(optimizer="third_sam", k=3, particles=8, steps=T, record_points=2, keep_paths=0))
    assert decided == list(range(T)) and list(np.flatnonzero(res.sam_mask)) == [0, 3, 6, 9]
    assert res.grad_evals == T + want_sam
    # the CIFAR trainer: 320 images, batch 32 → 10 steps; its factory built the optimizer once, for T steps
    run = train(TrainConfig(optimizer="third_sam", k=3, **SMALL))
    assert run.status == "done" and built == [T]
    assert run.sam_steps == want_sam and run.grad_evals == T + want_sam
    # the CLIs: the CIFAR one's --optimizer choices, the toy one's config
    assert cli.build_parser().parse_args(["run", "--optimizer", "third_sam"]).optimizer == "third_sam"
    argv = ["escape", "--optimizer", "third_sam", "--particles", "10", "--steps", "20", "--json"]
    assert core_main(argv) == 0
    assert json.loads(capsys.readouterr().out)["config"]["optimizer"] == "third_sam"
    # the tournaments' data: their method lists and the tuning settings they read
    assert "third_sam" in toy_tournament.METHODS and "third_sam" in methods.tournament_methods("cifar")
    assert METHODS["third_sam"].tune[0].grid == (2, 3, 4)
    # the pages and the charts
    assert "third_sam" in methods.page_methods()
    assert theme.label("third_sam") == "every third SAM" and theme.color("third_sam") == "#123456"
    assert theme.marker("third_sam") == "bowtie" and "third_sam" in theme.COLORS


def test_every_method_has_a_distinct_look_and_sound_tuning_settings():
    """Colours and markers tell the twelve methods apart (a second cue in greyscale); every tunable names a
    parameter the configs have, and its default is one of its grid's values or the code's default."""
    from core.cifar.train import TrainConfig

    assert len(METHODS) == 12
    assert len({m.color for m in METHODS.values()}) == 12 and len({m.marker for m in METHODS.values()}) == 12
    with pytest.raises(ValueError, match="already sam's"):
        methods.register(Method("copy", "copy", "always", METHODS["sam"].color, "circle"))
    with pytest.raises(ValueError, match="unknown schedule kind"):
        methods.register(Method("odd", "odd", "sometimes", "#010203", "circle"))
    assert "copy" not in METHODS and "odd" not in METHODS
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for m in METHODS.values():
        for t in m.tune:
            assert t.name in fields or t.name == "spread", (m.key, t.name)
            assert t.grid and len(set(t.grid)) == len(t.grid)


def test_schedule_parameters_are_declared_once_and_records_still_load():
    """ScheduleParams/MethodParams hold the schedule fields; Schedule, SimConfig and TrainConfig inherit them
    (none redeclares one). A config survives asdict → JSON → config; every config recorded in data/runs
    loads."""
    from core.cifar.train import TrainConfig
    from core.schedules import Schedule
    from core.toy.simulate import SimConfig

    shared = {f.name for f in dataclasses.fields(MethodParams)}
    assert {f.name for f in dataclasses.fields(ScheduleParams)} < shared
    for cls in (SimConfig, TrainConfig):
        assert shared <= {f.name for f in dataclasses.fields(cls)}
        assert not shared & set(cls.__dict__.get("__annotations__", {}))  # inherited, not written again
    schedule_fields = {f.name for f in dataclasses.fields(ScheduleParams)}
    assert not schedule_fields & set(Schedule.__dict__["__annotations__"])
    for cfg in (TrainConfig(optimizer="ss_sam", p_shape="trig", p_end=0.9, alpha=0.2, lam1=-2.0),
                SimConfig(optimizer="looksam", alpha=0.3, k=4, late_f=0.4)):
        back = type(cfg)(**json.loads(json.dumps(dataclasses.asdict(cfg))))
        assert back == cfg and hash(back) == hash(cfg)
    loaded = 0
    for path in sorted((ROOT / "data" / "runs").glob("*.json")):
        stack = [json.loads(path.read_text())]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                if "optimizer" in x and "train_size" in x and "eval_batch" in x:
                    cfg = TrainConfig(**{**x, "classes": tuple(x.get("classes", ()))})
                    assert cfg.schedule()[0].kind == METHODS[cfg.optimizer].kind
                    loaded += 1
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)
    assert loaded >= 10


def test_ss_sam_trigonometric_p_of_t():
    """p(t) = p_end + (p − p_end)(1 + cos(π t/T))/2: p at t = 0, p_end at t = T, the midpoint halfway, flat at
    both ends; its mean over the run is (p + p_end)/2, and so is the share of SAM steps its Bernoulli draws
    take (4,000
    draws: sd ≤ 0.008, so 0.03 is more than 3 sd)."""
    from core.schedules import Schedule

    s = Schedule("ss", p=0.1, p_end=0.9, p_shape="trig", seed=4)
    p = s.p_at(np.array([0, 500, 1000]), 1000)
    assert p == pytest.approx([0.1, 0.5, 0.9])
    assert s.p_at(10, 1000) - 0.1 < 0.001  # flat at the start (a cosine's slope is 0 there)
    m = s.mask(4000)
    assert abs(m.mean() - 0.5) < 0.03 and m[:1000].mean() < 0.2 and m[3000:].mean() > 0.8
    assert s.label().endswith("(trig))")


def test_momentum_sam_runs_on_heavy_ball_unless_nesterov_is_named():
    """The paper's base is heavy ball (Algorithm 1; MSAM's optimizer has nesterov=False): the trainer builds
    that; msam_nesterov=True names Nesterov. The other methods keep the configured Nesterov base."""
    from core.cifar.loop import make_method
    from core.cifar.models import make_model
    from core.cifar.train import TrainConfig

    model = make_model("tiny")
    heavy = make_method(TrainConfig(optimizer="msam"), model.parameters(), 10, 0.1).optimizer
    nest_cfg = TrainConfig(optimizer="msam", msam_nesterov=True)
    nest = make_method(nest_cfg, model.parameters(), 10, 0.1).optimizer
    sam = make_method(TrainConfig(optimizer="sam"), model.parameters(), 10, 0.1).optimizer
    assert heavy.param_groups[0]["nesterov"] is False and nest.param_groups[0]["nesterov"] is True
    assert sam.param_groups[0]["nesterov"] is True


def test_momentum_sams_batchnorm_is_reestimated_at_the_end_and_counted():
    """After the last step Momentum-SAM's BatchNorm statistics are those of its final weights on the whole
    training subset (recomputed here independently: a fresh model with the final weights, cumulative averages
    over batches of 500), and the forward-only pass is in the cost: cost_evals = grad_evals + n/(3·batch). SGD
    has none of it."""
    from core.cifar import data as cdata
    from core.cifar.models import make_model
    from core.cifar.train import TrainConfig, prepare_data, train

    cfg = TrainConfig(optimizer="msam", rho=0.3, augment=False, precision="fp32", **{**SMALL, "epochs": 2})
    res = train(cfg)
    n = res.n_train
    assert res.status == "done" and res.bn_images == n == 320
    assert res.cost_evals == pytest.approx(res.grad_evals + n / (3 * res.batch_size))
    twin = make_model("tiny")
    twin.load_state_dict(res.state)
    bns = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    twin.train()
    x = cdata.to_device(prepare_data(cfg)[0], "cpu")
    with torch.no_grad():
        twin(x)  # n = 320 < 500: one batch, so the cumulative average is that batch's statistics
    for name, buf in twin.named_buffers():
        if buf.is_floating_point():
            torch.testing.assert_close(res.state[name], buf, rtol=1e-5, atol=1e-6)
    sgd = train(TrainConfig(optimizer="sgd", **SMALL))
    assert sgd.bn_images == 0 and sgd.cost_evals == sgd.grad_evals
