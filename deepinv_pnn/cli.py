"""The ``deepinv-pnn`` command: demo, reconstruct, list, train, bench."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

from deepinv_pnn.registry import KINDS, PROBLEMS


def _cmd_list(args) -> int:
    from deepinv_pnn.registry import components

    entries = components(args.kind)
    width = max((len(c.name) for c in entries), default=4)
    print(f"{'name':<{width}}  {'kind':<13}  {'problems':<28}  description")
    for c in entries:
        print(f"{c.name:<{width}}  {c.kind:<13}  {','.join(c.problems) or '-':<28}  {c.description}")
    return 0


def _cmd_demo(args) -> int:
    import torch

    from deepinv_pnn.compare import compare_methods, format_table, save_figure
    from deepinv_pnn.data import load_image

    torch.manual_seed(args.seed)
    x = load_image(args.image, size=args.size, grayscale=not args.color, device=args.device)
    print(f"demo: {args.problem} of {args.image!r} ({args.size}x{args.size}, noise {args.noise})")
    _, results = compare_methods(x, args.problem, args.noise, args.methods, seed=args.seed)
    print(format_table(results))
    save_figure(x, results, args.output, title=f"{args.problem}, noise {args.noise}")
    print(f"figure written to {args.output}")
    failed = [r.method for r in results if r.error]
    if failed:
        print(f"failed methods: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _save_image(image, path: str) -> None:
    import numpy as np
    import skimage.io

    array = image[0].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    array = (array[..., 0] if array.shape[2] == 1 else array) * 255
    skimage.io.imsave(path, np.round(array).astype(np.uint8), check_contrast=False)


def _cmd_reconstruct(args) -> int:
    import deepinv as dinv
    import torch

    from deepinv_pnn.data import load_image
    from deepinv_pnn.problems import SR_FACTOR, make_physics
    from deepinv_pnn.registry import get
    from deepinv_pnn.solve import make_reconstructor

    component = get(args.method)
    if args.physics not in component.problems:
        raise ValueError(f"method {args.method!r} does not solve {args.physics!r}; it solves "
                         f"{', '.join(component.problems) or 'nothing (it is a ' + component.kind + ')'}")
    image = load_image(args.input, size=args.size, grayscale=not args.color, device=args.device)
    if args.observed:
        if args.physics == "inpaint":
            raise ValueError("--observed is not available for inpaint (the mask is unknown); drop --observed")
        y = image
        factor = SR_FACTOR if args.physics == "sr" else 1
        shape = (image.shape[1], image.shape[2] * factor, image.shape[3] * factor)
        physics = make_physics(args.physics, shape, args.noise, device=args.device, seed=args.seed)
        x = None
    else:
        x = image
        shape = tuple(x.shape[1:])
        physics = make_physics(args.physics, shape, args.noise, device=args.device, seed=args.seed)
        y = physics(x)
    model = component.build()
    if isinstance(model, torch.nn.Module):
        model = model.to(args.device).eval()
    solver = make_reconstructor(component, model, physics, shape)
    with torch.no_grad():
        estimate = solver(y, physics)
    if isinstance(estimate, tuple):
        estimate = estimate[0]
    _save_image(estimate, args.output)
    if x is not None:
        psnr = dinv.metric.PSNR(max_pixel=1.0)
        observed = y if y.shape == x.shape else physics.A_adjoint(y)
        print(f"PSNR observation {float(psnr(observed.clamp(0, 1), x)):.2f} dB -> "
              f"{args.method} {float(psnr(estimate.clamp(0, 1), x)):.2f} dB")
    print(f"reconstruction written to {args.output}")
    return 0


def _recipes() -> list[str]:
    import deepinv_pnn.training as training

    return sorted(m.name for m in pkgutil.iter_modules(training.__path__) if m.name.startswith("train_"))


def _cmd_train(args, rest: list[str]) -> int:
    recipes = _recipes()
    if args.recipe not in recipes:
        raise ValueError(f"unknown recipe {args.recipe!r}; available: {', '.join(recipes) or 'none'}")
    module = importlib.import_module(f"deepinv_pnn.training.{args.recipe}")
    if not hasattr(module, "main"):
        raise ValueError(f"recipe {args.recipe!r} has no main(argv)")
    return int(module.main(rest) or 0)


def benchmark_dir() -> Path:
    """The ``benchmarks/`` folder of the source tree (benchmarks are not installed)."""
    for candidate in (Path.cwd() / "benchmarks", Path(__file__).resolve().parents[1] / "benchmarks"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no benchmarks/ folder found: run `deepinv-pnn bench` from a source checkout")


def _cmd_bench(args) -> int:
    folder = benchmark_dir()
    scripts = sorted(folder.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if any(n in s.stem for n in args.names)]
    if not scripts:
        raise ValueError(f"no benchmark matches {args.names} in {folder}")
    status = 0
    for script in scripts:
        print(f"\n=== {script.stem}", flush=True)
        command = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        status |= subprocess.call(command)
    return 1 if status else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepinv-pnn",
        description="Learned, provably well-behaved regularisers and denoisers for DeepInverse.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered components")
    p.add_argument("--kind", choices=KINDS, default=None)

    p = sub.add_parser("demo", help="compare every applicable method on an embedded image")
    p.add_argument("--image", default="camera", help="embedded image name or path (default: camera)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--problem", choices=PROBLEMS, default="deblur")
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--methods", nargs="+", default=None, help="registered names (default: all that apply)")
    p.add_argument("--color", action="store_true", help="use colour images")
    p.add_argument("--output", default="deepinv_pnn_demo.png")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("reconstruct", help="reconstruct one image with one method")
    p.add_argument("--input", required=True, help="image path or embedded image name")
    p.add_argument("--physics", choices=PROBLEMS, required=True)
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--method", required=True, help="registered component (see `deepinv-pnn list`)")
    p.add_argument("--output", required=True, help="output PNG path")
    p.add_argument("--size", type=int, default=None, help="resize the input to this size first")
    p.add_argument("--observed", action="store_true",
                   help="the input is the observation y (default: it is the ground truth, degraded here)")
    p.add_argument("--color", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("train", help="run a training recipe (arguments after the name go to it)")
    p.add_argument("recipe", help="e.g. train_convpnn; `deepinv-pnn train list` lists them")

    p = sub.add_parser("bench", help="run the benchmarks in benchmarks/")
    p.add_argument("names", nargs="*", help="run only benchmarks whose name contains one of these")
    p.add_argument("--quick", action="store_true", help="small sizes, about a minute each")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deepinv-pnn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "train":
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "reconstruct":
            return _cmd_reconstruct(args)
        if args.command == "train":
            if args.recipe == "list":
                print("\n".join(_recipes()))
                return 0
            return _cmd_train(args, rest)
        return _cmd_bench(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        print(f"deepinv-pnn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
