"""Where the fast net's training step spends its time on a GPU (issue 4's 200,000 img/s target).

The recorded GPU runs show SGD at ~98k img/s with batch 500 and ~188k with batch 1000 (after a warm-up run):
5.1 and 5.3 ms per step, nearly the same time for twice the images, so the GPU is not what limits the step.
This probe checks that, on random data already on the device (no JPEG decoding and no augmentation: it is
about the network step itself):

  eager  the step as core.cifar.train runs it (gather the batch, bf16 forward, backward, Nesterov SGD through
         core.sam.SAM), timed with a host clock after a synchronize;
  graph  the same step captured once in a CUDA graph (torch.cuda.graph) and replayed: the GPU runs the same
         kernels, but Python and the per-kernel launch cost are gone. Its rate is what the GPU itself allows.

If graph ≫ eager, the step is launch-bound (CPU side) and capturing it would help; if graph ≈ eager,
the network itself is too slow for it. SAM's step (two passes, core.sam's first/second step with frozen
BatchNorm statistics) is measured the same way at the first batch size.

    python bench/gpu_step_probe.py                       # on the GPU machine: fast net, batches 500,1000,2000
    python bench/gpu_step_probe.py --device cpu --model tiny --batches 32 --steps 3   # a CPU dry run (no graphs)

The learning rate is constant here (a graph bakes a Python float in); a trainer built on graphs would keep it in
a tensor. Random data: timing on zeros can run faster than real data (METHOD.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.cifar.models import make_model  # noqa: E402
from core.sam import SAM, frozen_bn_stats  # noqa: E402


def build(model_name: str, batch: int, device: torch.device, n: int):
    """Model, data, optimizer and the two step functions for one batch size."""
    torch.manual_seed(0)
    channels_last = device.type == "cuda"
    model = make_model(model_name).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    x = torch.randn(n, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,), device=device)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.01, momentum=0.9, nesterov=True,
              weight_decay=5e-4)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.2)
    idx = torch.zeros(batch, dtype=torch.long, device=device)   # filled before each step (a graph's static input)

    def loss_at(xb, yb):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(xb)
        return criterion(out.float(), yb)

    def sgd_step():
        xb, yb = x[idx], y[idx]
        loss_at(xb, yb).backward()
        opt.sgd_step(zero_grad=False)

    def sam_step():
        xb, yb = x[idx], y[idx]
        loss_at(xb, yb).backward()
        opt.first_step(zero_grad=True)
        with frozen_bn_stats(model):
            loss_at(xb, yb).backward()
        opt.second_step(zero_grad=False)

    return opt, idx, {"sgd": sgd_step, "sam": sam_step}, n


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run_one, idx, n, batch, steps, device) -> float:
    """Images per second over `steps` steps after a synchronize; each step takes a fresh slice of a permutation."""
    perm = torch.randperm(n, device=device)
    per_epoch = n // batch
    sync(device)
    t0 = time.perf_counter()
    for s in range(steps):
        j = s % per_epoch
        idx.copy_(perm[j * batch:(j + 1) * batch])
        run_one()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def eager_rate(kind, model_name, batch, device, n, steps) -> float:
    opt, idx, step, n = build(model_name, batch, device, n)

    def run_one():
        opt.zero_grad(set_to_none=True)
        step[kind]()

    time_steps(run_one, idx, n, batch, 10, device)   # warm-up: cuDNN autotuning, allocator, momentum buffers
    return time_steps(run_one, idx, n, batch, steps, device)


def graph_rate(kind, model_name, batch, device, n, steps) -> float:
    """The PyTorch whole-network capture recipe: warm up on a side stream, capture one step, replay it."""
    opt, idx, step, n = build(model_name, batch, device, n)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            step[kind]()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)   # backward inside the capture allocates .grad from the graph's pool
    with torch.cuda.graph(graph):
        step[kind]()
    time_steps(graph.replay, idx, n, batch, 10, device)
    return time_steps(graph.replay, idx, n, batch, steps, device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="fast")
    ap.add_argument("--batches", default="500,1000,2000")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "/tmp"), "gpu_step_probe.json"))
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    torch.backends.cudnn.benchmark = True   # as the trainer: fixed shapes, let cuDNN pick its fastest kernels
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    for kind in ("sgd", "sam"):
        for batch in batches if kind == "sgd" else batches[:1]:
            row = dict(step=kind, batch=batch, eager_images_per_s=None, graph_images_per_s=None, error=None)
            try:
                row["eager_images_per_s"] = eager_rate(kind, a.model, batch, device, a.n, a.steps)
                if device.type == "cuda":
                    row["graph_images_per_s"] = graph_rate(kind, a.model, batch, device, a.n, a.steps)
            except Exception as e:  # a failed capture is a finding, not a reason to lose the other rows
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            rows.append(row)
            fmt = lambda r: "-" if r is None else f"{r:,.0f}"
            print(f"{kind:3} batch {batch:5}: eager {fmt(row['eager_images_per_s']):>9} img/s   "
                  f"CUDA graph {fmt(row['graph_images_per_s']):>9} img/s   {row['error'] or ''}", flush=True)
    hardware = dict(torch=torch.__version__, device=str(device),
                    gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    result = dict(model=a.model, steps=a.steps, n=a.n, hardware=hardware, rows=rows)
    Path(a.out).write_text(json.dumps(result, indent=1))
    return 0 if all(r["error"] is None for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
