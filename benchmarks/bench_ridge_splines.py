"""Spline evaluation speed: vectorised (one take, hand-written backward) vs gather-based.

Peer: the gather-based evaluation with autograd through advanced indexing
(:func:`deepinv_pnn.nn.splines.spline_value_gather`), the usual implementation. Also shown: one
elementwise pass (``clamp``) as the floor. Forward and forward+backward (input and
coefficients), same tensors, same run.

    python benchmarks/bench_ridge_splines.py [--quick] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from deepinv_pnn.nn.splines import spline_value, spline_value_gather


def _time(fn, repeats: int, device) -> float:
    fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    batch, size, repeats = (4, 64, 3) if args.quick else (16, 128, 5)
    channels, knots = 32, 21
    g = torch.Generator().manual_seed(0)
    x = (0.1 * torch.randn(batch, channels, size, size, generator=g)).to(args.device)
    c = torch.cumsum(torch.rand(channels, knots, generator=g), 1).to(args.device) * 0.01
    h = 0.2 / (knots - 1)

    def forward(fn):
        return lambda: fn(x, c, -0.1, h)

    def backward(fn):
        def run():
            xr, cr = x.detach().requires_grad_(), c.detach().requires_grad_()
            fn(xr, cr, -0.1, h).sum().backward()

        return run

    floor = _time(lambda: x.clamp(-0.1, 0.1), repeats, args.device)
    print(f"{batch}x{channels}x{size}x{size} inputs, {knots} knots, device {args.device}")
    print(f"{'pass':<18} {'vectorised (s)':>15} {'gather (s)':>11} {'speed-up':>9} {'x elementwise':>14}")
    for label, wrap in (("forward", forward), ("forward+backward", backward)):
        ours = _time(wrap(spline_value), repeats, args.device)
        peer = _time(wrap(spline_value_gather), repeats, args.device)
        print(f"{label:<18} {ours:>15.4f} {peer:>11.4f} {peer / ours:>8.1f}x {ours / floor:>13.1f}x")


if __name__ == "__main__":
    main()
