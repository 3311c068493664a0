r"""patchNR training steps per second: ours vs deepinv's PatchNR of the same size.

Both flows have 5 GLOW coupling blocks with sub-networks of width 256 on 6x6 patches;
ours adds ActNorm and a learned invertible (LU) mixing per block and uses SiLU instead of
ReLU. One step = negative log-likelihood of a batch of patches + backward + Adam step.

Usage::

    python benchmarks/bench_patch_nr.py [--quick] [--device cuda] [--batch 4096]
"""

from __future__ import annotations

import argparse
import time

import deepinv as dinv
import torch

from deepinv_pnn.optim import PatchNR


def steps_per_second(loss_fn, params, batch, steps, device) -> float:
    optimizer = torch.optim.Adam(params, lr=1e-4)
    for _ in range(2):  # warm-up
        optimizer.zero_grad()
        loss_fn(batch).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(batch).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 512, 10 steps")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    batch_size, steps = (512, 10) if args.quick else (args.batch, args.steps)
    device = torch.device(args.device)
    torch.manual_seed(0)
    patches = torch.rand(batch_size, 36, device=device)
    ours = PatchNR(patch_size=6, n_blocks=5, hidden=256).to(device).train()
    theirs = dinv.optim.PatchNR(patch_size=6, channels=1, num_layers=5, sub_net_size=256).to(device)
    rate_ours = steps_per_second(lambda b: ours.nll(b).mean(), ours.parameters(), patches, steps, device)
    rate_theirs = steps_per_second(lambda b: theirs.fn(b[None]).mean(), theirs.parameters(), patches, steps, device)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    print(f"patchNR training, batch {batch_size} 6x6 patches, device {device}")
    print(f"{'model':<28}{'params':>10}{'steps/s':>10}")
    print(f"{'deepinv_pnn PatchNR':<28}{n_ours:>10}{rate_ours:10.2f}")
    print(f"{'deepinv.optim.PatchNR':<28}{n_theirs:>10}{rate_theirs:10.2f}")
    print(f"ratio ours/deepinv: {rate_ours / rate_theirs:.2f}")
    return {"ours": rate_ours, "deepinv": rate_theirs}


if __name__ == "__main__":
    main()
