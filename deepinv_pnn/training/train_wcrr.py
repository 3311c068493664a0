r"""Training recipe of the weakly convex ridge regulariser (WCRR-NN) on a folder of images.

Method: for noisy crops :math:`y = x + \sigma n` with :math:`\sigma` drawn uniformly per
crop in ``[--sigma-min, --sigma-max]`` (/255), the exact denoiser
:math:`x^* = \operatorname{argmin}_z \tfrac12\|z - y\|^2 + R_\sigma(z)` (a convex problem,
since :math:`R_\sigma` is 1-weakly convex) is computed without a graph by accelerated
gradient with restart to a tolerance, and the loss, :math:`\|x^* - x_{\mathrm{clean}}\|^2`
(``--loss mse``, default) or :math:`\|x^* - x_{\mathrm{clean}}\|_1` (``--loss l1``, the
reference implementation's loss, which weighs the crops of low noise more), is
differentiated through it:

- ``--backward implicit`` (default, as in the paper's deep-equilibrium training):
  implicit differentiation, :math:`(I + \nabla^2 R_\sigma(x^*))\,u = \partial L/\partial x^*`
  solved by conjugate gradient (``--cg-iter``, ``--cg-tol``), see :func:`implicit_loss`;
- ``--backward jfb``: Jacobian-free backpropagation through ``--jfb-steps`` gradient steps
  taken from :math:`x^*`. With step :math:`1/(1+\operatorname{Lip})` and a learned
  :math:`\mu \approx 10` each step contracts by only about 0.9, so the JFB gradient
  underweights the smooth directions (about 0.7 of the exact one on a toy model).

After each optimiser step the spline coefficients are projected onto their slope
constraints (:meth:`~deepinv_pnn.optim.WeaklyConvexRidgeRegularizer.project_`). The noise
conditioning :math:`s_i(\sigma)` makes one model serve all noise levels of the range.
``--init-resample`` starts from a weights file on another spline grid (``--num-knots``,
``--x-range``), see :func:`resampled_init`; ``--reference-init`` starts where the reference
implementation starts (:func:`reference_init`; with ``--schedule step``, ``--lr-scaling`` and its rates,
see the user guide).

Held-out validation: the ``--holdout`` images before the last ``--val-count`` of the sorted
folder (``test_325..test_332`` of BSD400) are denoised with the exact prox at 15/255 and 25/255 (mean PSNR in ``PATH.json``). Data parallel and
checkpointing as in :mod:`deepinv_pnn.training.train_crr`.

Command line::

    python -m deepinv_pnn.training.train_wcrr --data-dir ../shared/data/bsd400 \
        --out wcrr.safetensors --device cpu --minutes 5 --seed 0
"""

from __future__ import annotations

import math

import torch

from deepinv_pnn.optim.accelerated_gradient import accelerated_gradient
from deepinv_pnn.optim.conjugate_gradient import conjugate_gradient
from deepinv_pnn.optim.ridge_weakly_convex import WeaklyConvexRidgeRegularizer
from deepinv_pnn.pretrained import load_state_dict, save_weights
from deepinv_pnn.training.command_line import command_line
from deepinv_pnn.training.train_crr import denoise_psnr, finish, parse_args, train


@torch.no_grad()
def resampled_init(
    path, num_knots: int, x_range: float, outer_slope: float = 0.0, outer_start: float = 1.0,
    old_x_range: float = 2.0,
) -> WeaklyConvexRidgeRegularizer:
    r"""A model on a new spline grid initialised from the weights file ``path`` (any grid).

    The convolutions, :math:`\mu` and the noise conditioning are copied; :math:`\varphi_\pm`
    are resampled on the new knots (constant beyond the old range), and the slope of
    :math:`\varphi_-` is set to ``outer_slope`` where :math:`|t| > ` ``outer_start`` (a
    decreasing part of :math:`\psi'` that the old grid could not hold; an interior slope
    also lets the gradient move it either way). ``old_x_range``: the range of the file's splines.
    """
    state = load_state_dict(path)
    old_knots = state["phi_plus.coefficients"].shape[-1]
    old = WeaklyConvexRidgeRegularizer(num_knots=old_knots, x_range=old_x_range)
    old.load_state_dict(state)
    new = WeaklyConvexRidgeRegularizer(num_knots=num_knots, x_range=x_range)
    new.load_state_dict({k: v for k, v in old.state_dict().items() if not k.startswith("phi_")}, strict=False)
    knots = new.phi_plus.knots
    inner = knots.clamp(-old.phi_plus.x_range, old.phi_plus.x_range).view(1, 1, -1)
    new.phi_plus.coefficients.copy_(old.phi_plus(inner).view(1, -1))
    minus = old.phi_minus(inner).view(-1)
    if outer_slope:
        h = new.phi_minus.h
        slopes = (minus[1:] - minus[:-1]) / h
        mid = 0.5 * (knots[1:] + knots[:-1])
        slopes = torch.where(mid.abs() > outer_start, torch.full_like(slopes, outer_slope), slopes)
        minus = torch.cat([minus.new_zeros(1), torch.cumsum(slopes * h, 0)])
    new.phi_minus.coefficients.copy_(minus.view(1, -1))
    new.project_()
    return new


REFERENCE_LOG_MU = 4.0
REFERENCE_LOG_SCALING = 5.0 - math.log(255.0)
REFERENCE_X_RANGE = 0.1


@torch.no_grad()
def reference_init(prior: WeaklyConvexRidgeRegularizer) -> WeaklyConvexRidgeRegularizer:
    r"""The reference implementation's starting point (``--reference-init``), in place.

    The reference starts from :math:`\varphi_+ = 0`, :math:`\varphi_-` the identity on its
    splines' range :math:`[-0.1, 0.1]` (101 knots; the outer segments flat, as its clamp makes
    them), :math:`\mu = e^4` and :math:`s_i(\sigma) = e^5 / (255\,\sigma)`: at the start the
    regulariser is :math:`-\sum \psi_-`, concave in the range and still 1-weakly convex.
    On our grid of range :math:`r` (default 8, 201 knots) the same regulariser is had with the
    scalings :math:`r/0.1` times larger: :math:`\psi(s z)/s^2` with the spline's input and
    output both scaled by :math:`k` is the same function, and with rates :math:`k` times larger
    (the reference's spline rate :math:`5\cdot10^{-5}` becomes :math:`4\cdot10^{-3}` for
    :math:`r = 8`) Adam follows the same path. :math:`\theta_i(\sigma)` is set at the knots
    :math:`\sigma \ne 0` (:class:`~deepinv_pnn.nn.splines.LinearSpline` pins
    :math:`\theta_i(0) = 0`, so below the first knot, :math:`6.4/255`, it rises linearly to 0).

    Our default start (:math:`\varphi_+` a soft clip, :math:`\varphi_- = 0`, :math:`\mu = 1`) is
    convex; from it a 6000-step run of batch 128 (session 17, H200) learned almost no concave
    part and stayed ~0.9 dB short of the shipped file.

    :param WeaklyConvexRidgeRegularizer prior: the model to initialise.
    """
    k = prior.phi_minus.x_range / REFERENCE_X_RANGE
    prior.phi_plus.coefficients.zero_()
    knots = prior.phi_minus.knots
    prior.phi_minus.coefficients.copy_(knots.view(1, -1).expand_as(prior.phi_minus.coefficients))
    prior.log_mu.fill_(REFERENCE_LOG_MU)
    scaling = prior.scaling.coefficients
    scaling.fill_(REFERENCE_LOG_SCALING + math.log(k))
    scaling[:, prior.scaling.num_knots // 2] = 0.0
    prior.project_()
    return prior


@torch.no_grad()
def inner_solve(prior: WeaklyConvexRidgeRegularizer, y: torch.Tensor, sigma: torch.Tensor, tol: float,
                max_iter: int, cuda_graph: bool = False) -> torch.Tensor:
    r"""The graph-free denoiser :math:`\operatorname{argmin}_z \tfrac12\|z - y\|^2 + R_\sigma(z)`
    (accelerated gradient with restart, tolerance relative to the iterate), with the gradient
    map prepared once: the parameters are constant during the solve. ``cuda_graph``: replay
    the iterations as a CUDA graph on a GPU (see
    :func:`~deepinv_pnn.optim.accelerated_gradient.accelerated_gradient`)."""
    lip = 1.0 + float(prior.activation_lipschitz(sigma).detach().max())
    grad_r = prior._grad_operator(sigma, y)
    return accelerated_gradient(lambda z: grad_r(z).add_(z).sub_(y), y, lip, max_iter=max_iter, tol=tol,
                                cuda_graph=cuda_graph)[0]


def jfb_denoiser(
    prior: WeaklyConvexRidgeRegularizer,
    y: torch.Tensor,
    sigma: torch.Tensor,
    steps: int = 1,
    tol: float = 1e-4,
    max_iter: int = 200,
    cuda_graph: bool = False,
) -> torch.Tensor:
    r"""The WCRR denoiser :math:`\operatorname{prox}_{R_\sigma}(y)` with a JFB graph.

    :param WeaklyConvexRidgeRegularizer prior: the model.
    :param torch.Tensor y: noisy images ``[B, 1, H, W]``.
    :param torch.Tensor sigma: noise levels ``[B]``.
    :param int steps: differentiable gradient steps taken from the fixed point.
    :param float tol: tolerance of the graph-free inner solve.
    :param int max_iter: iteration cap of the inner solve.
    :param bool cuda_graph: replay the inner solve's iterations as a CUDA graph on a GPU.
    """
    x = inner_solve(prior, y, sigma, tol, max_iter, cuda_graph)
    tau = 1.0 / (1.0 + prior.activation_lipschitz(sigma).reshape(-1).max())
    for _ in range(steps):
        x = x - tau * (x - y + prior._grad(x, sigma))
    return x


def implicit_loss(
    prior: WeaklyConvexRidgeRegularizer,
    y: torch.Tensor,
    x: torch.Tensor,
    sigma: torch.Tensor,
    tol: float = 1e-4,
    max_iter: int = 200,
    cg_iter: int = 50,
    cg_tol: float = 1e-3,
    loss: str = "mse",
    cuda_graph: bool = False,
) -> torch.Tensor:
    r"""MSE (or mean absolute error) of the exact denoiser :math:`x^* = \operatorname{prox}_{R_\sigma}(y)` with its
    implicit gradient.

    :math:`x^* - y + \nabla R_\theta(x^*) = 0` gives
    :math:`\partial_\theta L = -(\partial_\theta \nabla R_\theta(x^*))^\top u` with
    :math:`(I + \nabla^2 R(x^*))\,u = \partial L/\partial x^*` (a positive semidefinite
    system since :math:`R` is 1-weakly convex and :math:`\|W\| \le 1`), solved by
    conjugate gradient with the explicit Hessian-vector products of
    :meth:`~deepinv_pnn.optim.ridge.RidgeRegularizer.hessian_operator` (one :math:`W` and one
    :math:`W^\top` each; by automatic differentiation of the gradient a product took 2.7x
    longer on a batch of 16 crops). The returned tensor has the value of the loss and this
    gradient.

    :param torch.Tensor y: noisy images; ``x``: clean images; ``sigma``: noise levels ``[B]``.
    :param float tol: tolerance of the inner solve; ``max_iter`` its iteration cap.
    :param int cg_iter: conjugate-gradient iterations; ``cg_tol``: their relative residual.
    :param str loss: ``"mse"`` (mean squared error) or ``"l1"`` (mean absolute error, the
        reference implementation's training loss; it weighs the crops of low noise more, since
        its gradient :math:`\operatorname{sign}(x^* - x)` does not grow with the error).
    :param bool cuda_graph: replay the iterations of the inner solve and of the conjugate
        gradient as CUDA graphs on a GPU.
    """
    if loss not in ("mse", "l1"):
        raise ValueError(f"loss must be 'mse' or 'l1', got {loss!r}")
    x_star = inner_solve(prior, y, sigma, tol, max_iter, cuda_graph)
    diff = x_star - x
    if loss == "mse":
        value, dloss = diff.pow(2).mean(), (2.0 / diff.numel()) * diff
    else:
        value, dloss = diff.abs().mean(), diff.sign() / diff.numel()
    hessian = prior._hessian_operator(x_star, sigma)  # explicit: W^T(phi'(W x*) W v), no graph

    def matvec(v):
        return v + hessian(v)

    # the whole batch is one vector; eps tiny: b is O(1e-6) per entry
    u = conjugate_gradient(matvec, dloss, max_iter=cg_iter, tol=cg_tol, eps=1e-30, cuda_graph=cuda_graph)[0]
    surrogate = -(prior._grad(x_star, sigma) * u).sum()
    return surrogate + (value - surrogate).detach()


def parse_wcrr_args(argv=None):
    """The options of :func:`main`: :func:`~deepinv_pnn.training.train_crr.parse_args`'s and
    the WCRR-NN's own."""
    import argparse

    extra = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    extra.add_argument("--sigma-min", type=float, default=2.0)
    extra.add_argument("--sigma-max", type=float, default=30.0)
    extra.add_argument("--jfb-steps", type=int, default=2)
    extra.add_argument("--inner-tol", type=float, default=1e-4)
    extra.add_argument("--inner-iter", type=int, default=150)
    extra.add_argument("--backward", choices=["implicit", "jfb"], default="implicit",
                       help="implicit differentiation (conjugate gradient) or Jacobian-free")
    extra.add_argument("--cg-iter", type=int, default=50)
    extra.add_argument("--cg-tol", type=float, default=1e-3)
    extra.add_argument("--cuda-graph", action="store_true",
                       help="replay the inner solve and the conjugate gradient as CUDA graphs (GPU; the host's "
                            "kernel dispatch bounds them)")
    extra.add_argument("--loss", choices=["mse", "l1"], default="mse",
                       help="training loss of the denoiser output (l1: the reference implementation's)")
    extra.add_argument("--num-knots", type=int, default=None, help="knots of phi_+- (default: the model's)")
    extra.add_argument("--x-range", type=float, default=None, help="range of phi_+- (default: the model's)")
    extra.add_argument("--init-resample", default=None,
                       help="weights file (any spline grid) resampled onto this grid as the start")
    extra.add_argument("--minus-outer-slope", type=float, default=0.0,
                       help="with --init-resample: slope of phi_- beyond --minus-outer-start")
    extra.add_argument("--minus-outer-start", type=float, default=1.0)
    extra.add_argument("--init-x-range", type=float, default=2.0, help="spline range of --init-resample")
    extra.add_argument("--reference-init", action="store_true",
                       help="start as the reference implementation does (see reference_init; its spline "
                            "rate 5e-5 is --lr-spline 4e-3 on the default grid)")
    extra.add_argument("--lr-scaling", type=float, default=None,
                       help="learning rate of the noise conditioning s_i (default: --lr-spline)")
    extra.add_argument("--schedule", choices=["cosine", "step"], default="cosine",
                       help="learning-rate schedule over the run (step: the reference's 0.75 per twelfth)")
    known, rest = extra.parse_known_args(argv)
    args = parse_args(rest, description=__doc__)
    for k, v in vars(known).items():
        setattr(args, k, v)
    if args.lr_spline is None:
        args.lr_spline = 1e-3
    return args


def main(argv=None) -> None:
    args = parse_wcrr_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference_init and (args.init or args.init_resample):
        raise ValueError("--reference-init starts from scratch: drop --init / --init-resample")
    grid = {k: v for k, v in (("num_knots", args.num_knots), ("x_range", args.x_range)) if v is not None}
    prior = WeaklyConvexRidgeRegularizer(**grid)
    if args.reference_init:
        reference_init(prior)
    if args.init_resample:
        start = resampled_init(args.init_resample, prior.phi_plus.num_knots, prior.phi_plus.x_range,
                               args.minus_outer_slope, args.minus_outer_start, args.init_x_range)
        args.init = str(args.out).removesuffix(".safetensors") + ".init.safetensors"
        save_weights(start, args.init)
    lo, hi = args.sigma_min / 255, args.sigma_max / 255

    def loss_fn(prior, x, g, step):
        prior.project_()  # projected gradient: the previous optimiser step back onto the constraints
        sigma = (lo + (hi - lo) * torch.rand(x.shape[0], generator=g)).to(x.device)
        y = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g).to(x.device)
        tv2 = prior.phi_plus.tv2() + prior.phi_minus.tv2()
        if args.backward == "implicit":
            loss = implicit_loss(prior, y, x, sigma, args.inner_tol, args.inner_iter, args.cg_iter, args.cg_tol,
                                 args.loss, args.cuda_graph)
        else:
            out = jfb_denoiser(prior, y, sigma, args.jfb_steps, args.inner_tol, args.inner_iter, args.cuda_graph)
            loss = (out - x).pow(2).mean() if args.loss == "mse" else (out - x).abs().mean()
        return loss + args.tv2 * tv2

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
    metrics.update({"sigma_range": [args.sigma_min, args.sigma_max], "method": args.backward, "loss": args.loss,
                    "jfb_steps": args.jfb_steps})
    finish(args, prior, metrics, command_line("deepinv_pnn.training.train_wcrr", args))


if __name__ == "__main__":
    main()
