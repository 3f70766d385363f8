"""CPU figures for the airbench net (issue 15): what can be measured without a GPU. Prints them; BENCHMARKS.md
("airbench net, CPU") holds a copy with the date, the machine and the load.

    nice -n 10 .venv/bin/python bench/airbench_cpu.py [--quick]

  1. The whitening of our JPEG copy of CIFAR-10 (the built-in mini set's 5,000 training images): the patch
     covariance's eigenvalues against airbench's eps = 5e-4, and the variance λ/(λ + eps) each whitened channel
     keeps.
  2. Step times on one CPU thread, eager fp32, batch 128, through core.cifar.train.optimization_step: the fast
     net's SGD step, the airbench net's SGD and SAM steps, timed interleaved (round robin) so that the machine's
     load hits all alike; the figures to read are the ratios.
  3. A tiny learning check: the recipe on a narrow net (16/32/32 channels), 2,000 images × 4 epochs, SGD and
     SAM (ρ = 0.05), seeds 0 and 1, accuracy with mirror TTA on 1,000 test images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.cifar import data as cdata  # noqa: E402
from core.cifar import whiten  # noqa: E402
from core.cifar.airbench import AirbenchNet  # noqa: E402
from core.cifar.airbench_train import RECIPE, Recipe, param_groups, train_airbench  # noqa: E402
from core.cifar.models import make_model  # noqa: E402
from core.cifar.train import TrainConfig, make_method, optimization_step  # noqa: E402


def whitening_figures(x: torch.Tensor) -> None:
    p = whiten.patches(x.double())
    lam = torch.linalg.eigvalsh(p.T @ p / len(p)).flip(0)
    print(f"1. patch covariance of {len(x)} training images ({len(p):,} 2×2 patches), eigenvalues, largest first:")
    print("   λ:           " + " ".join(f"{v:.2e}" for v in lam.tolist()))
    print("   λ/(λ + eps): " + " ".join(f"{v:8.3f}" for v in (lam / (lam + whiten.EPS)).tolist()))


def step_times(x: torch.Tensor, rounds: int) -> None:
    torch.manual_seed(0)
    xb, yb = x[:128], torch.randint(0, 10, (128,))
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.2)
    setups = {}
    for label, model_name, opt in (("fast SGD", "fast", "sgd"), ("airbench SGD", "airbench", "sgd"),
                                   ("airbench SAM", "airbench", "sam")):
        net = make_model(model_name)
        if isinstance(net, AirbenchNet):
            net.init_whitening(x)
            lr, dec = RECIPE.sgd_hyper(128)
            params = param_groups(net, lr, dec, RECIPE.bias_scaler)
        else:
            lr, params = 0.1, net.parameters()
        method = make_method(TrainConfig(model=model_name, optimizer=opt), params, 10**6, lr=lr)
        net.train()

        def loss_fn(a, b, net=net):
            out = net(a)
            return crit(out, b), out
        setups[label] = (net, method, loss_fn)
    times = {k: [] for k in setups}
    for r in range(rounds + 2):
        for label, (net, method, loss_fn) in setups.items():
            t0 = time.perf_counter()
            optimization_step(net, method, xb, yb, loss_fn, 0)
            if r >= 2:   # two warm-up rounds
                times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"2. step time, batch 128, 1 thread, eager fp32, median of {rounds} interleaved rounds:")
    for k, v in med.items():
        print(f"   {k:13} {1e3 * v:8.1f} ms   {128 / v:7.0f} img/s")
    print(f"   airbench SGD / fast SGD  {med['airbench SGD'] / med['fast SGD']:.2f}×;   "
          f"airbench SAM / airbench SGD  {med['airbench SAM'] / med['airbench SGD']:.2f}×")


def learning(quick: bool) -> None:
    print("3. recipe on a narrow net (16/32/32), 2,000 mini-set images × 4 epochs, batch 100, mirror TTA:")
    narrow = Recipe(widths=(16, 32, 32), tta_level=1)
    for opt in ("sgd", "sam"):
        for seed in ((0,) if quick else (0, 1)):
            cfg = TrainConfig(model="airbench", data="builtin", train_size=2000, test_size=1000, epochs=4,
                              batch_size=100, optimizer=opt, seed=seed, device="cpu", sharpness_iters=0,
                              trace_samples=0)
            res = train_airbench(cfg, recipe=narrow)
            print(f"   {opt:4} seed {seed}: TTA {100 * res.test_acc:.1f}%  (single view "
                  f"{100 * res.history[-1]['test_acc']:.1f}%), per epoch "
                  + " ".join(f"{100 * h['test_acc']:.1f}" for h in res.history)
                  + f";  train loop {res.wall_s:.1f} s, {res.grad_evals} gradient evaluations")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    d = cdata.load("builtin")
    x = cdata.to_device(d.x_train, "cpu")
    whitening_figures(x)
    step_times(x, rounds=3 if a.quick else 10)
    learning(a.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
