r"""Ridge regularisers :math:`R(x) = \sum_i \sum_k M_{i,k}\, \psi_i((Wx)_{i,k})`: the shared base.

:math:`W` is a multi-convolution (:class:`deepinv_pnn.nn.multiconv.MultiConv2d`) with
:math:`\|W\| \le 1`, :math:`\psi_i` are learned potentials with derivatives
:math:`\varphi_i = \psi_i'` (linear splines), and :math:`M \ge 0` is an optional spatial
mask, given as a tensor or predicted from the observation by a small network
(data-dependent ridge regularisation :footcite:t:`neumayer2024stability`). Then

.. math::

    \nabla R(x) = W^\top\big(M \odot \varphi(Wx)\big), \qquad
    \operatorname{Lip}(\nabla R) \le \|W\|^2 \max_{i} \operatorname{Lip}(\varphi_i) \max M .

The proximal operator :math:`\operatorname{prox}_{\gamma R}(x) = \operatorname{argmin}_z
\tfrac12\|z - x\|^2 + \gamma R(z)` is computed by accelerated gradient descent with
adaptive (gradient) restart to a relative tolerance; when :math:`\gamma\rho > 1` for a
:math:`\rho`-weakly convex :math:`R` (the objective may be nonconvex) it falls back to
plain gradient descent with step :math:`1/L`, which decreases the objective
monotonically.

Images with several channels are regularised channel by channel (each channel is one
grayscale image), so a model trained on grayscale images serves colour images too.
Subclasses define :meth:`RidgeRegularizer.activation`, :meth:`RidgeRegularizer.potential`
and :meth:`RidgeRegularizer.activation_lipschitz`.
"""

from __future__ import annotations

import torch
from deepinv.optim import Prior

from deepinv_pnn.nn.multiconv import MultiConv2d
from deepinv_pnn.optim.accelerated_gradient import accelerated_gradient
from deepinv_pnn.validation import (
    check_batch_values,
    check_count,
    check_image,
    check_positive,
    check_sigma,
)

__all__ = ["RidgeRegularizer", "accelerated_gradient"]


class RidgeRegularizer(Prior):
    r"""Base class of ridge regularisers (see the module docstring).

    :param MultiConv2d conv: the multi-convolution :math:`W` (normalised, :math:`\|W\|\le1`).
    :param torch.Tensor mask: optional nonnegative mask ``[B or 1, 1 or C_out, H, W]``.
    :param torch.nn.Module mask_net: optional network ``y -> M`` used by :meth:`condition_on`.
    """

    #: weak-convexity modulus rho of R (R + rho/2 ||.||^2 is convex)
    weak_convexity: float = 0.0

    def __init__(self, conv: MultiConv2d, mask: torch.Tensor | None = None, mask_net=None):
        super().__init__()
        if conv.channels[0] != 1:
            raise ValueError(
                f"the first entry of channels must be 1 (images are regularised channel by channel, "
                f"so colour images need no extra input channels), got channels={tuple(conv.channels)}"
            )
        self.explicit_prior = True
        self.conv = conv
        self.mask_net = mask_net
        self.mask = None
        if mask is not None:
            self.set_mask(mask)
        self.prox_max_iter = 2000
        self.prox_tol = 1e-6
        self.prox_cuda_graph = False  # replay the prox's iterations as a CUDA graph on a GPU
        self.last_prox_iterations = 0

    # ---------------------------------------------------------- to override
    def activation(self, z: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        r""":math:`\varphi_i(z)`, channel-wise on ``[N, C_out, H, W]``."""
        raise NotImplementedError

    def potential(self, z: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        r""":math:`\psi_i(z)`, channel-wise on ``[N, C_out, H, W]``."""
        raise NotImplementedError

    def activation_lipschitz(self, sigma: torch.Tensor | None) -> torch.Tensor:
        r"""Per-sample bound of :math:`\max_i \operatorname{Lip}(\varphi_i)`, shape ``[N]`` or 0-d."""
        raise NotImplementedError

    # --------------------------------------------------------------- mask
    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Set (or clear with ``None``) the spatial mask :math:`M \\ge 0`."""
        if mask is not None:
            check_image(mask, "mask")
            if (mask < 0).any():
                raise ValueError("mask must be nonnegative")
            if mask.shape[1] not in (1, self.conv.channels[-1]):
                raise ValueError(
                    f"mask must have 1 or {self.conv.channels[-1]} channels, got {mask.shape[1]}"
                )
        self.mask = mask

    def condition_on(self, y: torch.Tensor) -> torch.Tensor:
        """Predict the mask from an observation (image-domain, e.g. ``A^T y``) with ``mask_net``."""
        if self.mask_net is None:
            raise ValueError("condition_on needs a mask_net")
        check_image(y, "y")
        mask = self.mask_net(y)
        self.mask = mask
        return mask

    def _mask_for(self, z: torch.Tensor, channels: int) -> torch.Tensor | None:
        if self.mask is None:
            return None
        mask = self.mask.to(dtype=z.dtype, device=z.device)
        if mask.shape[-2:] != z.shape[-2:]:
            raise ValueError(f"mask has spatial size {tuple(mask.shape[-2:])}, image {tuple(z.shape[-2:])}")
        if mask.shape[0] not in (1, z.shape[0] // channels):
            raise ValueError(f"mask batch {mask.shape[0]} does not fit the image batch {z.shape[0] // channels}")
        if mask.shape[0] != 1 and channels > 1:
            mask = mask.repeat_interleave(channels, dim=0)
        return mask

    # ------------------------------------------------------------- helpers
    def _sigma(self, args: tuple, kwargs: dict, x: torch.Tensor) -> torch.Tensor | None:
        """The noise level passed positionally (deepinv's g_param) or as ``sigma=``, as ``[B]``."""
        sigma = kwargs.get("sigma", args[0] if args else None)
        if sigma is None:
            return None
        check_sigma(sigma, "g_param")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.numel() not in (1, x.shape[0]):
            raise ValueError(f"g_param must be a scalar or have {x.shape[0]} entries, got {sigma.numel()}")
        sigma = check_batch_values(sigma, x.shape[0], "g_param").reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        return sigma

    def _flatten(self, x: torch.Tensor, sigma: torch.Tensor | None):
        """``[B, C, H, W] -> [B*C, 1, H, W]`` and the matching per-image sigma."""
        b, c = x.shape[:2]
        if sigma is not None and c > 1:
            sigma = sigma.repeat_interleave(c)
        return x.reshape(b * c, 1, *x.shape[-2:]), sigma

    def _check(self, x: torch.Tensor, name: str = "x") -> None:
        check_image(x, name)
        if 0 in x.shape:
            raise ValueError(f"{name} must hold B >= 1 images of at least 1x1 pixels, got shape {tuple(x.shape)}")

    # ------------------------------------------------------ prior interface
    def fn(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        r"""The regulariser :math:`R(x)`, shape ``[B]``.

        :param torch.Tensor x: image ``[B, C, H, W]``.
        :param args: optional noise level ``g_param`` (float or ``[B]``) selecting the
            noise-dependent parameters.
        :return: :math:`R(x)` per batch element.
        """
        self._check(x)
        sigma = self._sigma(args, kwargs, x)
        b, c = x.shape[:2]
        xf, sig = self._flatten(x, sigma)
        z = self.conv._forward(xf)  # x is checked: no second check per call
        values = self.potential(z, sig)
        mask = self._mask_for(z, c)
        if mask is not None:
            values = values * mask
        return values.reshape(b, -1).sum(-1)

    def grad(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        r"""The gradient :math:`\nabla R(x) = W^\top(M\odot\varphi(Wx))`, shape of ``x``.

        :param torch.Tensor x: image ``[B, C, H, W]``.
        :param args: optional noise level ``g_param``.
        """
        self._check(x)
        return self._grad(x, self._sigma(args, kwargs, x))

    def _grad(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        c = x.shape[1]
        xf, sig = self._flatten(x, sigma)
        z = self.conv._forward(xf)  # x is checked: no second check per call
        phi = self.activation(z, sig)
        mask = self._mask_for(z, c)
        if mask is not None:
            phi = phi * mask
        return self.conv._adjoint(phi).reshape(x.shape)

    def grad_operator(self, x: torch.Tensor, *args, **kwargs):
        r"""The map :math:`z \mapsto \nabla R(z)` for images shaped like ``x`` at a fixed noise level,
        with everything that does not depend on :math:`z` (normalised kernels, spline tables,
        noise-level factors, mask) prepared once.

        For iterative solvers (:meth:`prox`, :class:`~deepinv_pnn.optim.ridge_solver.RidgeSolver`):
        each call then costs the convolutions and a few element-wise passes, where
        :meth:`grad` re-derives the constants (120 to 170 tensor operations per call, which
        dominate on small images and on GPUs). The map does not track gradients; its values
        match :meth:`grad` to rounding.

        :param torch.Tensor x: an image ``[B, C, H, W]`` of the shape (and dtype) of the inputs.
        :param args: optional noise level ``g_param``.
        :return: a function of ``z`` (same shape as ``x``).

        :Examples:

        >>> import torch
        >>> from deepinv_pnn.optim import WeaklyConvexRidgeRegularizer
        >>> prior = WeaklyConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3)
        >>> x = torch.rand(2, 1, 16, 16)
        >>> grad = prior.grad_operator(x, 0.1)
        >>> bool(torch.allclose(grad(x), prior.grad(x, 0.1), atol=1e-6))
        True
        """
        self._check(x)
        return self._grad_operator(self._sigma(args, kwargs, x), x)

    @torch.no_grad()
    def _grad_operator(self, sigma: torch.Tensor | None, like: torch.Tensor):
        """:meth:`grad_operator` for a checked ``[B]`` (or ``None``) noise level."""
        shape = tuple(like.shape)
        flat_like, sigma = self._flatten(like, sigma)
        flat = tuple(flat_like.shape)
        forward, adjoint = self.conv.frozen(like.dtype)
        activation = self._activation_operator(sigma, like)
        mask = self._mask_for(flat_like, shape[1])

        def grad(z: torch.Tensor) -> torch.Tensor:
            if tuple(z.shape) != shape:
                raise ValueError(f"this gradient map takes images of shape {shape}, got {tuple(z.shape)}")
            with torch.no_grad():
                phi = activation(forward(z.reshape(flat)))
                if mask is not None:
                    phi = phi.mul_(mask)
                return adjoint(phi).reshape(shape)

        return grad

    def hessian_operator(self, x: torch.Tensor, *args, **kwargs):
        r"""The map :math:`v \mapsto \nabla^2 R(x)\,v = W^\top\big(M \odot \varphi'(Wx) \odot Wv\big)`
        at a fixed point ``x`` and noise level.

        The activations act entry by entry, so the Hessian of a ridge regulariser is
        explicit: :math:`\varphi'(Wx)` (the slopes of the spline segments the filter responses
        fall in) is computed once, and each product costs one application of :math:`W` and of
        :math:`W^\top`, without an autograd graph. This is what the implicit differentiation
        of the WCRR training needs (conjugate gradient on :math:`I + \nabla^2 R(x^*)`), and it
        gives the curvature along any direction (for a WCRR-NN,
        :math:`\langle v, \nabla^2 R(x) v\rangle \ge -\|v\|^2`). Values match
        Hessian-vector products by automatic differentiation of :meth:`grad` to rounding.

        :param torch.Tensor x: the point ``[B, C, H, W]``.
        :param args: optional noise level ``g_param``.
        :return: a function of ``v`` (shape of ``x``).

        :Examples:

        >>> import torch
        >>> from deepinv_pnn.optim import WeaklyConvexRidgeRegularizer
        >>> prior = WeaklyConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3)
        >>> x, v = torch.rand(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
        >>> hess = prior.hessian_operator(x, 0.1)
        >>> bool((v * hess(v)).sum() >= -(v * v).sum())  # 1-weakly convex
        True
        """
        self._check(x)
        return self._hessian_operator(x, self._sigma(args, kwargs, x))

    @torch.no_grad()
    def _hessian_operator(self, x: torch.Tensor, sigma: torch.Tensor | None):
        """:meth:`hessian_operator` for a checked ``[B]`` (or ``None``) noise level."""
        shape = tuple(x.shape)
        c = shape[1]
        xf, sig = self._flatten(x.detach(), sigma)
        forward, adjoint = self.conv.frozen(x.dtype)
        z = forward(xf)
        with torch.enable_grad():  # the activation is entry-wise: one backward pass gives phi'
            z = z.requires_grad_()
            (slope,) = torch.autograd.grad(self.activation(z, sig).sum(), z)
        mask = self._mask_for(slope, c)
        if mask is not None:
            slope = slope * mask
        flat = tuple(xf.shape)

        def hessian(v: torch.Tensor) -> torch.Tensor:
            if tuple(v.shape) != shape:
                raise ValueError(f"this Hessian map takes images of shape {shape}, got {tuple(v.shape)}")
            with torch.no_grad():
                return adjoint(forward(v.reshape(flat)).mul_(slope)).reshape(shape)

        return hessian

    def _activation_operator(self, sigma: torch.Tensor | None, like: torch.Tensor):
        r"""``z -> activation(z, sigma)`` with its constants prepared once (override for speed);
        ``sigma`` is per flattened image (``[B*C]``) or ``None``."""
        return lambda z: self.activation(z, sigma)

    def grad_lipschitz(self, *args, **kwargs) -> float:
        r"""An upper bound of the Lipschitz constant of :math:`\nabla R` (worst case over the batch).

        :param args: optional noise level ``g_param``.
        """
        ref = self.conv.weights[0]
        sigma = kwargs.get("sigma", args[0] if args else None)
        if sigma is not None:
            check_sigma(sigma, "g_param")
            sigma = torch.as_tensor(sigma, dtype=ref.dtype, device=ref.device).reshape(-1)
        lip = float(torch.as_tensor(self.activation_lipschitz(sigma)).detach().max())
        if self.mask is not None:
            lip *= float(self.mask.max())
        return lip

    def prox(
        self,
        x: torch.Tensor,
        *args,
        gamma: float | torch.Tensor = 1.0,
        tol: float | None = None,
        max_iter: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        r"""Proximal operator :math:`\operatorname{argmin}_z \tfrac12\|z-x\|^2 + \gamma R(z)`.

        :param torch.Tensor x: image ``[B, C, H, W]``.
        :param args: optional noise level ``g_param``.
        :param float gamma: the step :math:`\gamma \ge 0` (a float or a ``[B]`` tensor).
        :param float tol: tolerance :math:`\ge 0` on the gradient step relative to the
            displacement :math:`\|z - x\|` (``None``: ``self.prox_tol``).
        :param int max_iter: maximum number of iterations :math:`\ge 1` (``None``: ``self.prox_max_iter``).
        :return: the proximal point; ``self.last_prox_iterations`` holds the iteration count.

        Set ``prior.prox_cuda_graph = True`` to run the iterations as replays of a CUDA graph on
        a GPU (same result; see
        :func:`~deepinv_pnn.optim.accelerated_gradient.accelerated_gradient`), where small
        images otherwise leave the device waiting for the host's kernel launches.
        """
        self._check(x)
        check_sigma(gamma, "gamma")
        max_iter = self.prox_max_iter if max_iter is None else check_count(max_iter, "max_iter")
        tol = self.prox_tol if tol is None else check_positive(tol, "tol", allow_zero=True)
        sigma = self._sigma(args, kwargs, x)
        g = torch.as_tensor(gamma, dtype=x.dtype, device=x.device)
        g = check_batch_values(g, x.shape[0], "gamma").reshape(-1)
        if float(g.max()) == 0:
            return x.clone()
        gview = g.view(-1, *([1] * (x.dim() - 1))) if g.numel() > 1 else g.reshape(())
        lip = 1.0 + float(g.max()) * self.grad_lipschitz(sigma)
        convex = float(g.max()) * self.weak_convexity <= 1.0

        with torch.no_grad():
            grad_r = self._grad_operator(sigma, x)

            def grad_fn(z):
                return grad_r(z).mul_(gview).add_(z).sub_(x)

            out, its = accelerated_gradient(
                grad_fn,
                x,
                lip,
                max_iter=max_iter,
                tol=tol,
                accelerate=convex,
                reference=x,
                cuda_graph=self.prox_cuda_graph,
            )
        self.last_prox_iterations = its
        return out

    def denoise_objective(self, z: torch.Tensor, y: torch.Tensor, gamma: float = 1.0, *args) -> torch.Tensor:
        r""":math:`\tfrac12\|z - y\|^2 + \gamma R(z)` per batch element (for tests and solvers)."""
        if tuple(z.shape) != tuple(y.shape):
            raise ValueError(f"z and y must have the same shape, got {tuple(z.shape)} and {tuple(y.shape)}")
        return 0.5 * (z - y).reshape(z.shape[0], -1).pow(2).sum(-1) + gamma * self.fn(z, *args)

    @staticmethod
    def _positive(value: float, name: str) -> float:
        return check_positive(value, name)
