r"""WPP value + gradient: chunked semi-dual vs a dense N x M implementation.

For N input patches and M reference patches (dimension 36 = 6x6), times one evaluation of
the semi-dual :math:`F(\psi)` and its gradient with respect to the patches, and measures
the peak memory of each:

- ``chunked``: :func:`deepinv_pnn.nn.semidual.semidual_value` with a memory budget
  (default 64 MiB) on the N x M cost matrix;
- ``dense``: the same quantity by ``torch.cdist`` on the full matrix, autograd backward
  (the peer: what a direct implementation such as the papers' non-KeOps path does).

Peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU each variant runs in a fresh
subprocess and reports its peak resident set size minus the size after setup.

Usage::

    python benchmarks/bench_patch_wpp.py [--quick] [--device cuda] [--n 10000] [--m 10000] [--budget-mb 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from deepinv_pnn.nn import semidual


def run_one(variant: str, n: int, m: int, d: int, budget_mb: float, device: str) -> dict:
    """Time and peak memory of one value+gradient evaluation (in this process)."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, d, device=device, generator=g).requires_grad_(True)
    y = torch.rand(m, d, device=device, generator=g)
    psi = 0.01 * torch.randn(m, device=device, generator=g)
    budget = int(budget_mb * 2**20)

    def step():
        x.grad = None
        if variant == "chunked":
            value = semidual.semidual_value(x, y, psi, memory_budget=budget)
        else:
            value = semidual.dense_semidual_value(x, y, psi)
        value.backward()
        return float(value)

    if device.startswith("cuda"):
        step()  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        value = step()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t0 = time.perf_counter()
        value = step()
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"variant": variant, "n": n, "m": m, "seconds": seconds, "peak_mib": peak / 2**20, "value": value}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = M = 3000 (< 60 s on one CPU core)")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--m", type=int, default=10000)
    parser.add_argument("--d", type=int, default=36)
    parser.add_argument("--budget-mb", type=float, default=64.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n, m = (3000, 3000) if args.quick else (args.n, args.m)
    if args.child:
        print(json.dumps(run_one(args.child, n, m, args.d, args.budget_mb, args.device)))
        return []
    rows = []
    for variant in ("chunked", "dense"):
        if args.device.startswith("cuda"):
            rows.append(run_one(variant, n, m, args.d, args.budget_mb, args.device))
        else:  # a fresh process per variant, so ru_maxrss is that variant's own peak
            cmd = [sys.executable, __file__, "--child", variant, "--n", str(n), "--m", str(m), "--d", str(args.d),
                   "--budget-mb", str(args.budget_mb), "--device", args.device]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
    chunked, dense = rows
    print(f"WPP semi-dual value+grad, N={n} x M={m}, d={args.d}, device {args.device}, budget {args.budget_mb} MiB")
    print(f"{'variant':<10}{'seconds':>10}{'peak MiB':>11}{'value':>12}")
    for r in rows:
        print(f"{r['variant']:<10}{r['seconds']:10.3f}{r['peak_mib']:11.1f}{r['value']:12.6f}")
    print(f"ratio chunked/dense: time {chunked['seconds'] / dense['seconds']:.2f}, "
          f"peak memory {chunked['peak_mib'] / max(dense['peak_mib'], 1e-9):.3f}; "
          f"dense N x M matrix alone: {n * m * 4 / 2**20:.0f} MiB; "
          f"within budget: {chunked['peak_mib'] <= args.budget_mb + n * args.d * 4 * 3 / 2**20}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "budget_mib": args.budget_mb}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
