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
