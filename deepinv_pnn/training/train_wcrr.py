r"""Training recipe of the weakly convex ridge regulariser (WCRR-NN) on a folder of images.

Method: **Jacobian-free backpropagation** (JFB) through the exact denoiser. For noisy
crops :math:`y = x + \sigma n` with :math:`\sigma` drawn uniformly per crop in
``[--sigma-min, --sigma-max]`` (/255), the fixed point
:math:`x^* = \operatorname{argmin}_z \tfrac12\|z - y\|^2 + R_\sigma(z)` (a convex problem,
since :math:`R_\sigma` is 1-weakly convex) is computed without a graph by accelerated
gradient with restart to a tolerance; then ``--jfb-steps`` differentiable gradient steps
:math:`x \leftarrow x - \tau\big(x - y + \nabla R_\sigma(x)\big)`,
:math:`\tau = 1/(1 + \operatorname{Lip}\nabla R_\sigma)`, are taken from :math:`x^*` and
the loss :math:`\|x - x_{\mathrm{clean}}\|^2` is backpropagated through them only. This
trains the regulariser at the solution that is deployed (unlike a truncated t-step
denoiser) at the cost of one inner solve per batch, and fits a CPU budget. The noise
conditioning :math:`s_i(\sigma)` makes one model serve all noise levels of the range.

Held-out validation: the last ``--val-count`` images of the sorted folder are denoised
with the exact prox at 15/255 and 25/255 (mean PSNR in ``PATH.json``). Data parallel and
checkpointing as in :mod:`deepinv_pnn.training.train_crr`.

Command line::

    python -m deepinv_pnn.training.train_wcrr --data-dir ../shared/data/bsd400 \
        --out wcrr.safetensors --device cpu --minutes 5 --seed 0
"""

from __future__ import annotations

import torch

from deepinv_pnn.optim.ridge import accelerated_gradient
from deepinv_pnn.optim.ridge_weakly_convex import WeaklyConvexRidgeRegularizer
from deepinv_pnn.training.train_crr import denoise_psnr, finish, parse_args, train


def jfb_denoiser(
    prior: WeaklyConvexRidgeRegularizer,
    y: torch.Tensor,
    sigma: torch.Tensor,
    steps: int = 1,
    tol: float = 1e-4,
    max_iter: int = 200,
) -> torch.Tensor:
    r"""The WCRR denoiser :math:`\operatorname{prox}_{R_\sigma}(y)` with a JFB graph.

    :param WeaklyConvexRidgeRegularizer prior: the model.
    :param torch.Tensor y: noisy images ``[B, 1, H, W]``.
    :param torch.Tensor sigma: noise levels ``[B]``.
    :param int steps: differentiable gradient steps taken from the fixed point.
    :param float tol: tolerance of the graph-free inner solve.
    :param int max_iter: iteration cap of the inner solve.
    """
    lip = 1.0 + float(prior.activation_lipschitz(sigma).detach().max())
    with torch.no_grad():
        x, _ = accelerated_gradient(
            lambda z: z - y + prior._grad(z, sigma), y, lip, max_iter=max_iter, tol=tol
        )
    tau = 1.0 / (1.0 + prior.activation_lipschitz(sigma).reshape(-1).max())
    for _ in range(steps):
        x = x - tau * (x - y + prior._grad(x, sigma))
    return x


def main(argv=None) -> None:
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--sigma-min", type=float, default=2.0)
    extra.add_argument("--sigma-max", type=float, default=30.0)
    extra.add_argument("--jfb-steps", type=int, default=2)
    extra.add_argument("--inner-tol", type=float, default=1e-4)
    extra.add_argument("--inner-iter", type=int, default=150)
    known, rest = extra.parse_known_args(argv)
    args = parse_args(rest, description=__doc__)
    for k, v in vars(known).items():
        setattr(args, k, v)
    if args.lr_spline is None:
        args.lr_spline = 1e-3
    if args.threads:
        torch.set_num_threads(args.threads)
    prior = WeaklyConvexRidgeRegularizer()
    lo, hi = args.sigma_min / 255, args.sigma_max / 255

    def loss_fn(prior, x, g, step):
        sigma = (lo + (hi - lo) * torch.rand(x.shape[0], generator=g)).to(x.device)
        y = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g).to(x.device)
        out = jfb_denoiser(prior, y, sigma, args.jfb_steps, args.inner_tol, args.inner_iter)
        tv2 = prior.phi_plus.tv2() + prior.phi_minus.tv2()
        return (out - x).pow(2).mean() + args.tv2 * tv2

    def validate(prior, val_images, start):
        out = {}
        for s in (15, 25):
            out[f"val_psnr_sigma{s}"] = round(
                denoise_psnr(prior, val_images[: args.val_images], s / 255, 1000 + s, tol=args.val_tol), 3
            )
        out["val_images"] = min(args.val_images, len(val_images))
        out["mu"] = float(prior.mu.detach())
        return out

    metrics = train(args, prior, loss_fn, "wcrr", validate)
    metrics.update({"sigma_range": [args.sigma_min, args.sigma_max], "method": "JFB",
                    "jfb_steps": args.jfb_steps})
    finish(args, prior, metrics, "python -m deepinv_pnn.training.train_wcrr " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False)))


if __name__ == "__main__":
    main()
