"""Time per gradient of the ridge regularisers: the prepared map ``grad_operator`` vs ``grad``.

Iterative solvers (the prox, :class:`~deepinv_pnn.optim.ridge_solver.RidgeSolver`, the
WCRR-NN training's inner solve) evaluate :math:`\\nabla R` hundreds of times at a fixed noise
level. ``prior.grad`` re-derives on each call what does not depend on the image (normalised
kernels, projected spline tables, the noise-level factors and their table lookup, input
checks): about 150 tensor operations, two of which synchronise a GPU. ``prior.grad_operator``
prepares them once (about 20 operations per call). Peer: ``prior.grad`` in the same run, on
the same inputs (shipped weights, sigma 25/255); the table gives the time per call of each
and the ratio, per batch shape, and the operations per call (torch profiler, top level).

A second table times Hessian-vector products, which the WCRR-NN training's implicit gradient
needs (conjugate gradient on :math:`I + \nabla^2 R(x^*)`): the explicit
``prior.hessian_operator(x, sigma)`` (:math:`W^\top(\varphi'(Wx)\odot Wv)`) against its peer,
automatic differentiation of ``prior.grad`` with the graph built once and kept
(``torch.autograd.grad(g, x, v, retain_graph=True)``), as the training did before.

    python benchmarks/bench_ridge_grad_operator.py [--device cpu] [--repeats 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer

SHAPES = [(1, 1, 16, 16), (16, 1, 40, 40), (128, 1, 40, 40), (1, 1, 180, 180), (1, 1, 256, 256)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_call(fn, x, repeats: int, device, no_grad: bool = True) -> float:
    """Best-of-three mean seconds per call of ``fn(x)``."""
    with torch.set_grad_enabled(not no_grad):
        for _ in range(3):
            fn(x)
        best = float("inf")
        for _ in range(3):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn(x)
            _sync(device)
            best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def op_count(fn, x) -> int:
    from torch.profiler import profile

    with torch.no_grad(), profile() as prof:
        fn(x)
    return sum(1 for e in prof.events() if e.cpu_parent is None)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20, help="calls per timing (scaled down for large batches)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="the two smallest shapes only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = SHAPES[:2] if args.quick else SHAPES
    sigma = 25 / 255
    rows = []
    for name, cls in (("WCRR-NN", WeaklyConvexRidgeRegularizer), ("CRR-NN", ConvexRidgeRegularizer)):
        prior = cls(pretrained=True).to(device).eval()
        for shape in shapes:
            x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
            repeats = args.repeats if x.numel() <= 65536 else max(2, args.repeats // 5)
            frozen = prior.grad_operator(x, sigma)
            plain = lambda z, p=prior: p.grad(z, sigma)  # noqa: E731
            t_plain = per_call(plain, x, repeats, device)
            t_frozen = per_call(frozen, x, repeats, device)
            rows.append({"model": name, "shape": "x".join(map(str, shape)), "grad_ms": 1e3 * t_plain,
                         "operator_ms": 1e3 * t_frozen, "ratio": t_plain / t_frozen,
                         "ops_grad": op_count(plain, x), "ops_operator": op_count(frozen, x)})
    print(f"gradient of R, shipped weights, sigma 25/255, device {device}, threads {torch.get_num_threads()}")
    print(f"{'model':<9}{'batch':>14}{'grad ms':>10}{'operator ms':>13}{'ratio':>8}{'ops':>11}")
    for r in rows:
        ops = f"{r['ops_grad']}/{r['ops_operator']}"
        print(f"{r['model']:<9}{r['shape']:>14}{r['grad_ms']:10.3f}{r['operator_ms']:13.3f}{r['ratio']:8.2f}{ops:>11}")
    print("\nHessian-vector product, same inputs: autograd of grad (graph kept) vs hessian_operator")
    print(f"{'model':<9}{'batch':>14}{'autograd ms':>13}{'operator ms':>13}{'ratio':>8}")
    for r in hessian_rows(shapes, sigma, args.repeats, device):
        print(f"{r['model']:<9}{r['shape']:>14}{r['autograd_ms']:13.3f}{r['operator_ms']:13.3f}{r['ratio']:8.2f}")
        rows.append(r)
    return rows


def hessian_rows(shapes, sigma: float, repeats: int, device) -> list[dict]:
    rows = []
    for name, cls in (("WCRR-NN", WeaklyConvexRidgeRegularizer), ("CRR-NN", ConvexRidgeRegularizer)):
        prior = cls(pretrained=True).to(device).eval()
        for shape in shapes:
            gen = torch.Generator().manual_seed(0)
            x, v = torch.rand(shape, generator=gen).to(device), torch.randn(shape, generator=gen).to(device)
            reps = repeats if x.numel() <= 65536 else max(2, repeats // 5)
            z = x.clone().requires_grad_()
            g = prior.grad(z, sigma)
            autograd_hvp = lambda w, g=g, z=z: torch.autograd.grad(g, z, w, retain_graph=True)[0]  # noqa: E731
            t_auto = per_call(autograd_hvp, v, reps, device, no_grad=False)
            t_op = per_call(prior.hessian_operator(x, sigma), v, reps, device)
            rows.append({"model": name, "shape": "x".join(map(str, shape)), "autograd_ms": 1e3 * t_auto,
                         "operator_ms": 1e3 * t_op, "ratio": t_auto / t_op})
    return rows


if __name__ == "__main__":
    main()
