"""CPU benchmark of the CIFAR trainer: the tiny CNN on the built-in mini subset (5,000 training images),
5 epochs of SGD and 5 epochs of SAM, end-to-end (data from the decode cache, training, per-epoch test
evaluation; no sharpness measurement). Target on the 2-core CPU: SAM ≤ 60 s.

    .venv/bin/python bench/cifar.py [--epochs 5] [--threads 0] [--precision auto] [--json]

Prints the times, their ratio (SAM / SGD, ideally ≈ 2: two gradient evaluations per step) and the
throughput; with --json one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.cifar import data as cdata  # noqa: E402
from core.cifar.train import TrainConfig, hardware_info, train  # noqa: E402


def run(epochs: int = 5, precision: str = "auto", train_size: int = 5000) -> dict:
    cdata.load("builtin")  # decode once (cached on disk after the first time), not timed
    out = {"epochs": epochs, "train_size": train_size, "precision": precision, "model": "tiny"}
    for name in ("sgd", "sam"):
        cfg = TrainConfig(optimizer=name, epochs=epochs, train_size=train_size, precision=precision, device="cpu",
                          sharpness_iters=0, trace_samples=0)
        t0 = time.perf_counter()
        res = train(cfg)
        out[name] = {"end_to_end_s": time.perf_counter() - t0, "train_loop_s": res.wall_s,
                     "test_acc": res.test_acc, "grad_evals": res.grad_evals,
                     "images_per_s": res.images_per_s, "status": res.status}
    out["sam_over_sgd"] = out["sam"]["end_to_end_s"] / out["sgd"]["end_to_end_s"]
    out["sam_target_s"] = 60.0
    out["sam_meets_target"] = out["sam"]["end_to_end_s"] <= 60.0
    out["hardware"] = hardware_info(torch.device("cpu"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    r = run(a.epochs, a.precision, a.train_size)
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        for name in ("sgd", "sam"):
            x = r[name]
            print(f"{name.upper():4} {a.epochs} epochs: {x['end_to_end_s']:6.1f} s end to end "
                  f"({x['train_loop_s']:.1f} s training, {x['images_per_s']:.0f} img/s), test acc {x['test_acc']:.3f}")
        print(f"SAM / SGD time ratio: {r['sam_over_sgd']:.2f}; SAM target ≤ 60 s: "
              f"{'met' if r['sam_meets_target'] else 'NOT met'} ({r['hardware']['threads']} threads, {a.precision})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
