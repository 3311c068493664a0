"""Unrolled PDHG: forward time against deepinv's PDCP, and memory with/without checkpointing.

1. Time of T iterations of :class:`deepinv_pnn.models.unrolled_pdhg.UnrolledPDHG`
   (K = [A; grad]) against T iterations of deepinv's :class:`deepinv.optim.PDCP` with
   :class:`deepinv_pnn.optim.weighted_tv.WeightedTVPrior` (K = grad, ``g_first=True``,
   the data term through ``physics.prox_l2``), the same weighted-TV problem, measured
   in the same run (peer: PDCP). Denoising and Gaussian deblurring.
2. Memory of a training forward pass at T = 256 with and without gradient
   checkpointing: bytes of the tensors saved for the backward pass (any device, via
   ``torch.autograd.graph.saved_tensors_hooks``) and, on CUDA, the peak allocation.

    python benchmarks/bench_tvmap_speed.py [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import deepinv as dinv
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.unrolled_pdhg import UnrolledPDHG
from deepinv_pnn.optim.weighted_tv import WeightedTVPrior, nabla, nabla_adjoint
from deepinv_pnn.training.train_param_map import make_problem_physics


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def speed_table(device, size: int, iterations: list[int], repeats: int) -> list[tuple]:
    x = load_image("camera", size=size, device=device)
    rows = []
    for problem, sigma in (("denoise", 0.1), ("deblur", 0.01)):
        physics = make_problem_physics(problem, (1, size, size), sigma, device)
        y = physics(x)
        lam = torch.full_like(y, 0.05 if problem == "denoise" else 0.002)
        ours = UnrolledPDHG().to(device)
        sqnorm = ours.operator_sqnorm(physics, y)
        for n in iterations:
            pdcp = dinv.optim.PDCP(
                K=nabla, K_adjoint=nabla_adjoint, data_fidelity=dinv.optim.L2(), prior=WeightedTVPrior(lam),
                stepsize=0.3, stepsize_dual=0.3, g_first=True, max_iter=n, early_stop=False,
                custom_init=lambda y, p: {"est": (p.A_adjoint(y), p.A_adjoint(y), torch.zeros_like(nabla(y)))},
            )
            with torch.no_grad():
                t_ours = best_time(partial(ours, y, physics, lam, n_iter=n, op_sqnorm=sqnorm), device, repeats)
                t_pdcp = best_time(partial(pdcp, y, physics), device, repeats)
            rows.append((problem, n, 1e3 * t_ours, 1e3 * t_pdcp, t_pdcp / t_ours))
    return rows


def saved_bytes(fn) -> int:
    """Bytes of the distinct tensor storages saved for backward while running ``fn``."""
    seen = {}

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.sum().backward()
    return sum(seen.values())


def memory_table(device, size: int, n_iter: int) -> list[tuple]:
    x = load_image("camera", size=size, device=device)
    physics = make_problem_physics("deblur", (1, size, size), 0.01, device)
    y = physics(x)
    rows = []
    for checkpointing in (False, True):
        model = UnrolledPDHG(n_iter=n_iter, checkpointing=checkpointing).to(device)
        lam = torch.full_like(y, 0.002, requires_grad=True)
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        saved = saved_bytes(partial(model, y, physics, lam))
        seconds = time.perf_counter() - start
        peak = (torch.cuda.max_memory_allocated() - base) if torch.device(device).type == "cuda" else None
        rows.append((checkpointing, saved / 2**20, None if peak is None else peak / 2**20, seconds))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    size = 64 if args.quick else 128
    iterations = [16, 64] if args.quick else [16, 64, 256]
    repeats = 2 if args.quick else 5
    print(f"device {args.device}, image {size}x{size}, best of {repeats}")
    print("\n| problem | T | UnrolledPDHG (ms) | deepinv PDCP (ms, peer) | PDCP / ours |")
    print("|---|---|---|---|---|")
    for problem, n, t_ours, t_pdcp, ratio in speed_table(args.device, size, iterations, repeats):
        print(f"| {problem} | {n} | {t_ours:.1f} | {t_pdcp:.1f} | {ratio:.2f} |")
    n_iter = 256
    mem_size = 64 if args.quick else 128
    print(f"\nmemory of one training forward + backward, deblurring {mem_size}x{mem_size}, T = {n_iter}")
    print("| checkpointing | saved for backward (MiB) | CUDA peak (MiB) | time (s) |")
    print("|---|---|---|---|")
    rows = memory_table(args.device, mem_size, n_iter)
    for checkpointing, saved, peak, seconds in rows:
        peak_s = "n/a (CPU)" if peak is None else f"{peak:.1f}"
        print(f"| {checkpointing} | {saved:.1f} | {peak_s} | {seconds:.2f} |")
    print(f"ratio without / with checkpointing (saved tensors): {rows[0][1] / rows[1][1]:.1f}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
