"""Compare registered methods on one problem: PSNR, SSIM, time, and a figure.

This is what ``deepinv-pnn demo`` runs; the gallery uses it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import deepinv as dinv
import torch
from tqdm.auto import tqdm

from deepinv_pnn.problems import make_physics
from deepinv_pnn.registry import Component, components
from deepinv_pnn.solve import make_reconstructor


@dataclass
class Result:
    """One method's outcome on one problem."""

    method: str
    kind: str
    psnr: float
    ssim: float
    seconds: float
    image: torch.Tensor | None = None
    error: str = ""


def applicable(problem: str, channels: int, names: list[str] | None = None) -> list[Component]:
    """Registered denoisers, priors and reconstructors that can solve ``problem`` on
    ``channels``-channel images (optionally only those in ``names``)."""
    chosen = []
    for component in components():
        if component.kind == "sampler" or problem not in component.problems:
            continue
        if channels not in component.channels and not component.contract.get("any_channels"):
            continue
        if names is not None and component.name not in names:
            continue
        if names is None and not component.in_demo:
            continue
        chosen.append(component)
    if names is not None:
        missing = set(names) - {c.name for c in chosen}
        if missing:
            raise ValueError(f"methods {sorted(missing)} are unknown or do not apply to {problem} "
                             f"on {channels}-channel images")
    return chosen


def compare_methods(
    x: torch.Tensor,
    problem: str = "deblur",
    noise_level: float = 0.01,
    methods: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, list[Result]]:
    r"""Degrade ``x`` with a standard problem and reconstruct it with every applicable method.

    :param torch.Tensor x: the ground truth ``[1, C, H, W]`` in [0, 1].
    :param str problem: ``denoise``, ``deblur``, ``sr`` or ``inpaint``.
    :param float noise_level: Gaussian noise standard deviation.
    :param list methods: registered names to run (default: all applicable).
    :param int seed: seed of the noise (and inpainting mask).
    :param bool progress: show a tqdm progress bar.
    :return: the observation and one :class:`Result` per method (the first row is the
        observation itself, or its adjoint/back-projection when it is not an image of the
        right size).
    """
    physics = make_physics(problem, tuple(x.shape[1:]), noise_level, device=x.device, seed=seed)
    y = physics(x)
    psnr, ssim = dinv.metric.PSNR(max_pixel=1.0), dinv.metric.SSIM(max_pixel=1.0)
    baseline = y if y.shape == x.shape else physics.A_adjoint(y)
    results = [Result("observation" if y.shape == x.shape else "A^T y", "-",
                      float(psnr(baseline.clamp(0, 1), x)), float(ssim(baseline.clamp(0, 1), x)), 0.0, baseline)]
    bar = tqdm(applicable(problem, x.shape[1], methods), desc=f"{problem} methods", disable=not progress)
    for component in bar:
        bar.set_postfix_str(component.name)
        start = time.perf_counter()
        try:
            model = component.build()
            if isinstance(model, torch.nn.Module):
                model = model.to(x.device).eval()
            solver = make_reconstructor(component, model, physics, tuple(x.shape[1:]))
            with torch.no_grad():
                estimate = solver(y, physics)
            if isinstance(estimate, tuple):
                estimate = estimate[0]
            estimate = estimate.clamp(0, 1)
            results.append(Result(component.name, component.kind, float(psnr(estimate, x)),
                                  float(ssim(estimate, x)), time.perf_counter() - start, estimate))
        except Exception as err:  # the demo reports a failing method and goes on
            results.append(Result(component.name, component.kind, float("nan"), float("nan"),
                                  time.perf_counter() - start, None, f"{type(err).__name__}: {err}"))
    return y, results


def format_table(results: list[Result]) -> str:
    """A plain-text table of the results."""
    width = max(len(r.method) for r in results)
    lines = [f"{'method':<{width}}  {'kind':<13}  {'PSNR':>7}  {'SSIM':>6}  {'time (s)':>8}",
             "-" * (width + 44)]
    for r in results:
        if r.error:
            lines.append(f"{r.method:<{width}}  {r.kind:<13}  failed: {r.error}")
        else:
            lines.append(f"{r.method:<{width}}  {r.kind:<13}  {r.psnr:7.2f}  {r.ssim:6.3f}  {r.seconds:8.2f}")
    return "\n".join(lines)


def save_figure(x: torch.Tensor, results: list[Result], path: str, title: str = "") -> None:
    """Save a grid of the ground truth and every result (PSNR in the titles) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [("ground truth", x)] + [
        (f"{r.method}\n{r.psnr:.2f} dB", r.image) for r in results if r.image is not None
    ]
    cols = min(4, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, image) in zip(axes.flat, shown):
        array = image[0].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(array[..., 0] if array.shape[2] == 1 else array, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
