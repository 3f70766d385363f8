"""Tests of the SAM step (core/sam.py), equations (1)-(3) of its docstring."""

import copy

import pytest
import torch

from core.sam import SAM, frozen_bn_stats, sam_perturbation


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _batches(n=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _closure(opt, model, loss_fn, x, y):
    """The closure SAM.step calls twice: zero the gradients, forward and backward on the same batch."""
    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss
    return closure


@pytest.mark.parametrize("adaptive,momentum,weight_decay", [(False, 0.0, 0.0), (True, 0.0, 0.0), (False, 0.9, 5e-4),
                                                             (True, 0.9, 5e-4)])
def test_sam_step_equals_hand_written_two_pass_update_over_20_steps(adaptive, momentum, weight_decay):
    """SAM: ε = ρ g/‖g‖ (global norm); ASAM: ε = ρ T²g/‖Tg‖ with T = |w| (the MLP's weights have both signs);
    then the base optimizer's step at w with ∇L_B(w+ε), the same batch B. The base step is torch's SGD,
    with momentum and weight decay in two of the cases, so SAM must hand it the gradient at w + ε and the
    parameters back at w."""
    model = _mlp()
    ref = copy.deepcopy(model)
    rho, lr = (1.0 if adaptive else 0.1), 0.05
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr, momentum=momentum,
              weight_decay=weight_decay)
    params = list(ref.parameters())
    base = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    assert any((p < 0).any() and (p > 0).any() for p in params)
    for x, y in _batches():
        opt.step(_closure(opt, model, loss_fn, x, y))

        grads = torch.autograd.grad(loss_fn(ref(x), y), params)
        scale = [p.detach().abs() if adaptive else torch.ones_like(p) for p in params]
        norm = torch.sqrt(sum(((t * g) ** 2).sum() for t, g in zip(scale, grads)))
        with torch.no_grad():
            eps = [rho * t * t * g / (norm + 1e-12) for t, g in zip(scale, grads)]
            for p, e in zip(params, eps):
                p.add_(e)
        grads2 = torch.autograd.grad(loss_fn(ref(x), y), params)
        with torch.no_grad():
            for p, e, g2 in zip(params, eps, grads2):
                p.sub_(e)
                p.grad = g2
        base.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (p - q).abs().max()


def test_step_returns_the_loss_at_w_and_leaves_parameters_without_a_gradient_alone():
    model = _mlp()
    unused = torch.nn.Parameter(torch.ones(3))
    opt = SAM([*model.parameters(), unused], torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = _batches(1)[0]
    with torch.no_grad():
        at_w = loss_fn(model(x), y)
    loss = opt.step(_closure(opt, model, loss_fn, x, y))
    assert loss.item() == pytest.approx(at_w.item(), rel=1e-6)  # the first pass, at w, not at w + ε
    assert torch.equal(unused, torch.ones(3)) and "w" not in opt.state[unused]


def test_state_dict_keeps_the_momentum_for_a_resume():
    """Saving after 5 steps and loading into a fresh SAM must continue exactly as an uninterrupted run: the
    momentum buffers live in the base optimizer, and they must be in the saved state."""
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = _batches(8)
    model = _mlp()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    for x, y in batches[:5]:
        opt.step(_closure(opt, model, loss_fn, x, y))
    resumed = copy.deepcopy(model)
    opt2 = SAM(resumed.parameters(), torch.optim.SGD, rho=0.7, lr=0.5, momentum=0.0)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.param_groups[0]["rho"] == 0.1 and opt2.param_groups[0]["lr"] == 0.05
    for x, y in batches[5:]:
        opt.step(_closure(opt, model, loss_fn, x, y))
        opt2.step(_closure(opt2, resumed, loss_fn, x, y))
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_rho_zero_reproduces_plain_sgd_exactly():
    model, ref = _mlp(), _mlp()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.0, lr=0.1, momentum=0.9)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    for x, y in _batches():
        opt.step(_closure(opt, model, loss_fn, x, y))
        sgd.zero_grad()
        loss_fn(ref(x), y).backward()
        sgd.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_perturbation_has_norm_rho_and_zero_gradient_is_guarded():
    g = [torch.tensor([3.0, 4.0]), torch.tensor([[12.0]])]
    eps = sam_perturbation(g, 0.5)
    total = torch.sqrt(sum((e * e).sum() for e in eps))
    assert total.item() == pytest.approx(0.5, rel=1e-6)
    zero = sam_perturbation([torch.zeros(3)], 0.5)
    assert torch.isfinite(zero[0]).all() and zero[0].abs().max() == 0


def test_per_particle_norm_along_an_axis():
    g = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    (eps,) = sam_perturbation([g], torch.tensor([[1.0], [2.0]]), dim=-1)
    assert torch.allclose(eps, torch.tensor([[0.6, 0.8], [0.0, 2.0]]))


def test_asam_scales_by_weight_magnitude():
    """ASAM: ε = ρ T² g / ‖T g‖ with T = |w|."""
    w = [torch.tensor([2.0, 0.5])]
    g = [torch.tensor([1.0, 1.0])]
    (eps,) = sam_perturbation(g, 1.0, weights=w, adaptive=True)
    tg = torch.tensor([2.0, 0.5])
    expected = torch.tensor([4.0, 0.25]) / tg.norm()
    assert torch.allclose(eps, expected)


def test_frozen_bn_stats_keeps_running_statistics():
    bn = torch.nn.BatchNorm1d(4)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), bn)
    model(torch.randn(16, 3))
    before = bn.running_mean.clone(), bn.running_var.clone()
    with frozen_bn_stats(model):
        model(torch.randn(16, 3) * 5 + 2)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert bn.momentum == 0.1
    model(torch.randn(16, 3) + 3)
    assert not torch.equal(bn.running_mean, before[0])


def test_negative_or_nan_rho_is_refused():
    with pytest.raises(ValueError):
        SAM(_mlp().parameters(), torch.optim.SGD, rho=-0.1, lr=0.1)
    with pytest.raises(ValueError):
        SAM(_mlp().parameters(), torch.optim.SGD, rho=float("nan"), lr=0.1)


def test_frozen_bn_stats_also_holds_for_a_compiled_model():
    """torch.compile specialises on BatchNorm's momentum; the compiled module must notice the change to 0
    (it recompiles) rather than keep updating the running statistics on the perturbed pass."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.GELU())
    net = torch.compile(model)
    x = torch.randn(8, 3, 6, 6)
    net(x)
    before = model[1].running_mean.clone()
    with frozen_bn_stats(model):
        net(x + 1.0)
    assert torch.equal(model[1].running_mean, before)
    net(x + 1.0)  # momentum restored: the statistics move again
    assert not torch.equal(model[1].running_mean, before)


# --- LookSAM and Momentum-SAM (issue 13; rules in core/sam.py and theory.md §7) --------------------------

from core.sam import LookSAM, MomentumSAM  # noqa: E402
from core.schedules import Schedule  # noqa: E402


def _bn_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.BatchNorm1d(12), torch.nn.Tanh(),
                               torch.nn.Linear(12, 3))


def _run_steps(opt, model, batches, loss_fn, with_model=True):
    for x, y in batches:
        opt.step(_closure(opt, model, loss_fn, x, y), model=model if with_model else None)


def test_looksam_with_k_1_is_sam_on_a_net_with_batchnorm():
    """k = 1: every step is a SAM step, so LookSAM must follow SAM's trajectory, BatchNorm running statistics
    included (both freeze them on the pass at w + ε)."""
    a, b = _bn_net(), _bn_net()
    loss_fn = torch.nn.CrossEntropyLoss()
    la = LookSAM(a.parameters(), torch.optim.SGD, rho=0.1, k=1, alpha=0.7, lr=0.1, momentum=0.9, weight_decay=5e-4)
    sb = SAM(b.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9, weight_decay=5e-4)
    batches = _batches(15)
    _run_steps(la, a, batches, loss_fn)
    _run_steps(sb, b, batches, loss_fn)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-6), name
    assert la.grad_evals == sb.grad_evals == 30


def _grad_at_shift(model, params, eps, loss_fn, x, y):
    """∇L_B at w + ε, by hand: ε added, the gradient taken, ε taken away again."""
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.add_(e)
    g = torch.autograd.grad(loss_fn(model(x), y), params)
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.sub_(e)
    return g


def _hand_looksam(model, batches, loss_fn, rho, k, alpha, lr, momentum):
    """LookSAM by hand from the paper's Algorithm 1, global norms, on a copy of the model (no BatchNorm)."""
    params = list(model.parameters())
    base = torch.optim.SGD(params, lr=lr, momentum=momentum)
    g_v = None
    for t, (x, y) in enumerate(batches):
        g = torch.autograd.grad(loss_fn(model(x), y), params)
        gnorm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
        if t % k == 0:
            eps = [rho * gi / (gnorm + 1e-12) for gi in g]
            g_s = _grad_at_shift(model, params, eps, loss_fn, x, y)
            dot = sum((gi * si).sum() for gi, si in zip(g, g_s))
            g_v = [si - dot / gnorm ** 2 * gi for gi, si in zip(g, g_s)]
            update = g_s
        else:
            vnorm = torch.sqrt(sum((v ** 2).sum() for v in g_v))
            update = [gi + alpha * gnorm / vnorm * v for gi, v in zip(g, g_v)]
        for p, u in zip(params, update):
            p.grad = u.detach().clone()
        base.step()


def test_looksam_follows_the_papers_rule_with_global_norms():
    """k = 3, α = 0.7 over 10 steps against a hand-written Algorithm 1 (the orthogonal part of g_s, rescaled
    to ‖g‖ and reused on the two steps between SAM steps). The MLP's gradients are never parallel, so g_v ≠
    0."""
    model, ref = _mlp(), _mlp()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = LookSAM(model.parameters(), torch.optim.SGD, rho=0.1, k=3, alpha=0.7, lr=0.05, momentum=0.9)
    batches = _batches(10)
    _run_steps(opt, model, batches, loss_fn, with_model=False)
    _hand_looksam(ref, batches, loss_fn, 0.1, 3, 0.7, 0.05, 0.9)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-5), (p - q).abs().max()
    # and the reuse really changes something: α = 0 ends elsewhere
    other = _mlp()
    opt0 = LookSAM(other.parameters(), torch.optim.SGD, rho=0.1, k=3, alpha=0.0, lr=0.05, momentum=0.9)
    _run_steps(opt0, other, batches, loss_fn, with_model=False)
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), other.parameters())) > 1e-4


def test_looksam_alpha_0_is_sam_every_k_steps():
    """α = 0: the reused direction has no weight, so LookSAM is SAM on steps 0, k, 2k, … and SGD between."""
    model, ref = _mlp(), _mlp()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = LookSAM(model.parameters(), torch.optim.SGD, rho=0.1, k=4, alpha=0.0, lr=0.05, momentum=0.9)
    sam = SAM(ref.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    batches = _batches(11)
    _run_steps(opt, model, batches, loss_fn, with_model=False)
    for t, (x, y) in enumerate(batches):
        if t % 4 == 0:
            sam.step(_closure(sam, ref, loss_fn, x, y))
        else:
            _closure(sam, ref, loss_fn, x, y)()
            sam.sgd_step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("k,steps", [(1, 7), (3, 10), (5, 12), (4, 4)])
def test_looksam_gradient_count_is_exact(k, steps):
    """Closure calls counted by a wrapper, independently of the optimizer's own counter: T + ⌈T/k⌉, which is
    what the schedule module says LookSAM costs."""
    model = _mlp()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = LookSAM(model.parameters(), torch.optim.SGD, rho=0.1, k=k, alpha=0.7, lr=0.05)
    calls = 0
    for x, y in _batches(steps):
        inner = _closure(opt, model, loss_fn, x, y)

        def counting(inner=inner):
            nonlocal calls
            calls += 1
            return inner()
        opt.step(counting)
    assert calls == opt.grad_evals == steps + -(-steps // k) == Schedule("looksam", k=k).grad_evals(steps)


def test_looksam_freezes_batchnorm_only_on_the_perturbed_pass():
    """With model=, the running statistics after a SAM step are those of one forward pass at w."""
    net = _bn_net()
    ref = copy.deepcopy(net)
    opt = LookSAM(net.parameters(), torch.optim.SGD, rho=0.5, k=2, lr=0.1)
    x, y = _batches(1)[0]
    opt.step(_closure(opt, net, torch.nn.CrossEntropyLoss(), x, y), model=net)
    ref(x)  # one pass at w
    assert torch.equal(net[1].running_mean, ref[1].running_mean)
    assert torch.equal(net[1].running_var, ref[1].running_var)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_sam_with_rho_0_is_its_base_optimizer_bit_for_bit(nesterov):
    net, ref = _bn_net(), _bn_net()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = MomentumSAM(net.parameters(), torch.optim.SGD, rho=0.0, lr=0.1, momentum=0.9, nesterov=nesterov,
                      weight_decay=5e-4)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    for x, y in _batches(12):
        opt.step(_closure(opt, net, loss_fn, x, y), model=net)
        sgd.zero_grad()
        loss_fn(ref(x), y).backward()
        sgd.step()
    for p, q in zip(net.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(p, q)
    assert opt.grad_evals == 12  # one pass a step


def test_momentum_sam_takes_the_gradient_at_w_minus_rho_v_over_norm_v():
    """By hand: v is torch SGD's buffer (v ← μ v + g); the gradient is taken at w − ρ v/‖v‖ (global norm),
    the update is applied to w. The first step has no buffer yet: no perturbation."""
    model, ref = _mlp(), _mlp()
    loss_fn = torch.nn.CrossEntropyLoss()
    rho, lr, mu = 0.3, 0.05, 0.9
    opt = MomentumSAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=mu)
    params = list(ref.parameters())
    v = None
    for x, y in _batches(10):
        opt.step(_closure(opt, model, loss_fn, x, y))
        eps = [torch.zeros_like(p) for p in params] if v is None else \
            [-rho * vi / torch.sqrt(sum((u ** 2).sum() for u in v)) for vi in v]
        g = _grad_at_shift(ref, params, eps, loss_fn, x, y)
        with torch.no_grad():
            v = [gi.clone() for gi in g] if v is None else [mu * vi + gi for vi, gi in zip(v, g)]
            for p, vi in zip(params, v):
                p.sub_(lr * vi)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (p - q).abs().max()
    # ρ matters: the same run at ρ = 0 ends elsewhere
    plain = _mlp()
    opt0 = MomentumSAM(plain.parameters(), torch.optim.SGD, rho=0.0, lr=lr, momentum=mu)
    for x, y in _batches(10):
        opt0.step(_closure(opt0, plain, loss_fn, x, y))
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), plain.parameters())) > 1e-4


def test_momentum_sam_needs_momentum_and_works_with_adam():
    with pytest.raises(ValueError, match="momentum"):
        MomentumSAM(_mlp().parameters(), torch.optim.SGD, rho=0.3, lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        MomentumSAM(_mlp().parameters(), torch.optim.Adam, rho=0.3, lr=0.1, betas=(0.0, 0.99))
    model = _mlp()
    opt = MomentumSAM(model.parameters(), torch.optim.Adam, rho=0.3, lr=0.01)  # β₁ = 0.9: exp_avg
    loss_fn = torch.nn.CrossEntropyLoss()
    for x, y in _batches(3):
        opt.step(_closure(opt, model, loss_fn, x, y))
    assert all(torch.isfinite(p).all() for p in model.parameters()) and opt.grad_evals == 3


def test_looksam_refuses_bad_k_and_alpha():
    for bad in (dict(k=0), dict(k=2.5), dict(alpha=-1.0), dict(alpha=float("nan"))):
        with pytest.raises(ValueError):
            LookSAM(_mlp().parameters(), torch.optim.SGD, rho=0.1, lr=0.1, **bad)


@pytest.mark.parametrize("make,kind", [
    (lambda p: SAM(p, torch.optim.SGD, rho=0.1, lr=0.05), Schedule("always")),
    (lambda p: LookSAM(p, torch.optim.SGD, rho=0.1, k=3, lr=0.05), Schedule("looksam", k=3)),
    (lambda p: MomentumSAM(p, torch.optim.SGD, rho=0.3, lr=0.05, momentum=0.9), Schedule("msam")),
])
def test_every_optimizers_backward_passes_are_counted_exactly(make, kind):
    """Backward passes counted by a hook on the loss (independent of the optimizers' own counters) over 11
    steps: SAM 22, LookSAM (k = 3) 11 + 4, Momentum-SAM 11, as the schedule module says."""
    model = _mlp()
    opt = make(model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    backward = 0

    def hook(_grad):
        nonlocal backward
        backward += 1
    for x, y in _batches(11):
        def closure(x=x, y=y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.register_hook(hook)
            loss.backward()
            return loss
        opt.step(closure)
    assert backward == opt.grad_evals == kind.grad_evals(11)


@pytest.mark.parametrize("make", [
    lambda params: SAM(params, torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9),
    lambda params: SAM(params, torch.optim.SGD, rho=0.5, adaptive=True, lr=0.05),
    lambda params: MomentumSAM(params, torch.optim.SGD, rho=0.3, lr=0.05, momentum=0.9),
])
def test_the_norm_is_global_over_parameter_groups(make):
    """ε = ρ T²g/‖Tg‖ with ONE norm over every parameter (davda54/sam's _grad_norm; MSAM's single group):
    splitting the parameters into two groups with the same settings changes nothing (a norm per group would:
    each group's share of ε would then have norm ρ). Float round-off only: the groups sum the squares in the
    same order."""
    loss_fn = torch.nn.CrossEntropyLoss()
    one, two = _mlp(), _mlp()
    two.load_state_dict(one.state_dict())
    params = list(two.parameters())
    opt1, opt2 = make(one.parameters()), make([{"params": params[:2]}, {"params": params[2:]}])
    for x, y in _batches(6):
        opt1.step(_closure(opt1, one, loss_fn, x, y))
        opt2.step(_closure(opt2, two, loss_fn, x, y))
    for p, q in zip(one.parameters(), two.parameters()):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7), (p - q).abs().max()
