"""ConvPNN against deepinv's DnCNN: forward time and peak memory; Cayley-Adam against iSPALM step time.

Peers, measured in the same run on the same device:

- ``DnCNN(depth=8, nf=32)``: about the parameter count of the default ConvPNN (74k vs 66k);
- ``DnCNN(depth=20, nf=64)``: deepinv's default DnCNN (668k parameters).

Usage::

    python benchmarks/bench_pnn_speed.py [--quick] [--device cpu|cuda] [--size 128]

Prints one table; ratios are ConvPNN / peer (time and memory: < 1 means ConvPNN is cheaper).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import deepinv as dinv
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _memory import peak_memory_mib

from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.training.ispalm import ISPALM
from deepinv_pnn.training.pnn_optimizers import make_optimizer


def _time(fn, repeats: int, device) -> float:
    fn()  # warm-up
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def forward_table(size: int, repeats: int, device) -> list[tuple]:
    x = torch.rand(1, 1, size, size, device=device)
    models = {
        "ConvPNN (64 ch, 8 layers)": ConvPNN(pretrained=True),
        "DnCNN depth 8, nf 32": dinv.models.DnCNN(1, 1, depth=8, nf=32, pretrained=None),
        "DnCNN depth 20, nf 64": dinv.models.DnCNN(1, 1, depth=20, nf=64, pretrained=None),
    }
    rows = []
    for name, model in models.items():
        model = model.to(device).eval()

        def run(model=model):
            with torch.no_grad():
                return model(x, 0.1)

        seconds = _time(run, repeats, device)
        _, mib = peak_memory_mib(run, device)
        params = sum(p.numel() for p in model.parameters())
        rows.append((name, params, seconds, mib))
    return rows


def training_step_table(steps: int, device) -> list[tuple]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 40, 40, generator=gen).to(device)
    y = x + 0.1 * torch.randn(x.shape, generator=gen).to(device)
    for name in ("cayley-adam", "ispalm"):
        model = ConvPNN(seed=0).to(device).train()
        opt = make_optimizer(model, name, 1e-3, 1e-2)

        def closure(model=model, opt=opt):
            opt.zero_grad()
            loss = ((model(y, 0.1) - x) ** 2).mean()
            loss.backward()
            return loss

        def step(opt=opt, closure=closure):
            if isinstance(opt, ISPALM):
                opt.step(closure)
            else:
                closure()
                opt.step()

        rows.append((name, _time(step, steps, device)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 60 s on one CPU core")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args()
    size = args.size or (96 if args.quick else 180)
    repeats = 2 if args.quick else 10
    rows = forward_table(size, repeats, args.device)
    base = rows[0]
    print(f"forward pass, 1x1x{size}x{size}, device={args.device}")
    print(
        f"{'model':28s} {'params':>8s} {'time ms':>9s} {'peak MiB':>9s} {'time ratio':>11s} {'mem ratio':>10s}"
    )
    for name, params, seconds, mib in rows:
        ratio_t = base[2] / seconds
        ratio_m = base[3] / mib if mib > 0 else float("nan")
        print(
            f"{name:28s} {params:8d} {1e3 * seconds:9.2f} {mib:9.1f} {ratio_t:11.2f} {ratio_m:10.2f}"
        )
    print("(ratio = ConvPNN / peer)")
    steps = training_step_table(2 if args.quick else 10, args.device)
    print(f"\ntraining step, ConvPNN, batch 8x1x40x40, device={args.device}")
    print(f"{'optimiser':14s} {'step ms':>9s} {'ratio to cayley-adam':>21s}")
    for name, seconds in steps:
        print(f"{name:14s} {1e3 * seconds:9.1f} {seconds / steps[0][1]:21.2f}")


if __name__ == "__main__":
    main()
