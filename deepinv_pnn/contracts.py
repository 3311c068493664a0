"""Contract checks of deepinv components, shared by the test-suite and by users.

Each ``check_*`` function takes a registry :class:`~deepinv_pnn.registry.Component`
and raises :class:`AssertionError` (with a message saying what broke) when the
component breaks a contract of deepinv or of this package. The test-suite runs them
over every registered component; a third party can run them on its own components::

    from deepinv_pnn.contracts import check_denoiser_shapes
    check_denoiser_shapes(my_component)

Tolerances and switches come from ``component.contract`` (see the docstring of
:class:`~deepinv_pnn.registry.Component`).
"""

from __future__ import annotations

import re

import deepinv as dinv
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.problems import make_physics
from deepinv_pnn.registry import Component

PNP_ALGORITHMS = ("PGD", "ADMM", "DRS", "HQS")


def contract_image(channels: int, size=(32, 32), batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    """A natural test image (camera or astronaut) of the given size, repeated over a batch
    with small per-sample shifts so that the batch elements differ."""
    name = "camera" if channels == 1 else "astronaut"
    x = load_image(name, size=tuple(size), grayscale=channels == 1)
    if channels not in (1, 3):
        x = x[:, :1].repeat(1, channels, 1, 1)
    images = [torch.roll(x, shifts=(3 * b, 2 * b), dims=(-2, -1)) for b in range(batch)]
    return torch.cat(images).to(dtype)


def _sizes(component: Component) -> tuple[int, int]:
    return tuple(component.contract.get("img_size", (32, 32)))


def _eval(component: Component, dtype=torch.float32):
    model = component.build()
    if isinstance(model, torch.nn.Module):
        model = model.to(dtype).eval()
    return model


# --------------------------------------------------------------------------- denoisers
def check_denoiser_shapes(component: Component) -> None:
    """Shape kept for odd sizes, batch 1 and 3, sigma as float, 0-d tensor and [B] tensor."""
    model = _eval(component)
    size = component.contract.get("odd_size", (37, 31))
    for channels in component.channels:
        for batch in (1, 3):
            x = contract_image(channels, size, batch)
            y = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(batch))
            sigmas = {
                "float": 0.05,
                "0-d tensor": torch.tensor(0.05),
                "[B] tensor": torch.full((batch,), 0.05),
            }
            for form, sigma in sigmas.items():
                with torch.no_grad():
                    out = model(y, sigma)
                assert out.shape == y.shape, (
                    f"{component.name}: output shape {tuple(out.shape)} != input shape "
                    f"{tuple(y.shape)} (C={channels}, B={batch}, sigma as {form})"
                )
                assert torch.isfinite(out).all(), f"{component.name}: non-finite output (sigma as {form})"


def check_denoiser_dtypes_and_determinism(component: Component) -> None:
    """float32 and float64 inputs give outputs of the same dtype; eval mode is deterministic."""
    channels = component.channels[0]
    for dtype in (torch.float32, torch.float64):
        model = _eval(component, dtype)
        x = contract_image(channels, _sizes(component), 2, dtype)
        y = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
        with torch.no_grad():
            first = model(y, 0.05)
            second = model(y, 0.05)
        assert first.dtype == dtype, f"{component.name}: {dtype} input gave {first.dtype} output"
        assert torch.isfinite(first).all(), f"{component.name}: non-finite output in {dtype}"
        assert torch.equal(first, second), f"{component.name}: two calls in eval mode differ ({dtype})"


def _blur_problem(channels: int, size=(32, 32), dtype=torch.float32):
    x = contract_image(channels, size, 1, dtype)
    physics = dinv.physics.BlurFFT(
        img_size=(channels,) + tuple(size),
        filter=dinv.physics.functional.gaussian_blur(sigma=1.0).to(dtype),
        noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0)),
    )
    return x, physics, physics(x)


def check_denoiser_pnp_convergence(component: Component, algorithm: str) -> None:
    """As :class:`deepinv.optim.PnP` prior in ``algorithm`` on a circular blur, the iterates
    converge (relative residual below 1e-4) within the iteration cap."""
    model = _eval(component)
    max_iter = component.contract.get("pnp_max_iter", 500)
    g_param = component.contract.get("pnp_g_param", 0.05)
    for channels in component.channels:
        x, physics, y = _blur_problem(channels, _sizes(component))
        solver = getattr(dinv.optim, algorithm)(
            data_fidelity=dinv.optim.L2(),
            prior=dinv.optim.PnP(denoiser=model),
            stepsize=component.contract.get("pnp_stepsize", 1.0),
            lambda_reg=component.contract.get("pnp_lambda", 1.0),
            g_param=g_param,
            max_iter=max_iter,
            thres_conv=1e-4,
            crit_conv="residual",
            early_stop=True,
        )
        out = solver(y, physics)
        assert torch.isfinite(out).all(), f"{component.name}: PnP-{algorithm} produced non-finite values"
        assert solver.has_converged, (
            f"{component.name}: PnP-{algorithm} did not reach a relative residual of 1e-4 "
            f"within {max_iter} iterations (C={channels})"
        )


# --------------------------------------------------------------------------- priors
def _prior_input(component: Component, dtype=torch.float64, batch: int = 2) -> torch.Tensor:
    x = contract_image(component.channels[0], _sizes(component), batch, dtype)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return x + 0.1 * noise


def check_prior_fn(component: Component) -> None:
    """``fn`` returns shape (B,), accepts the positional ``g_param`` and ``reduce=False``."""
    prior = _eval(component)
    g_param = component.contract.get("g_param")
    x = _prior_input(component, torch.float32)
    value = prior.fn(x, g_param)
    assert value.shape == (x.shape[0],), f"{component.name}: fn gave shape {tuple(value.shape)}, expected ({x.shape[0]},)"
    assert torch.isfinite(value).all(), f"{component.name}: fn is not finite"
    called = prior(x, g_param, reduce=False)
    assert called.shape[0] == x.shape[0], f"{component.name}: prior(x, g_param, reduce=False) lost the batch"


def check_prior_grad(component: Component) -> None:
    """``grad`` agrees with autograd of ``fn`` (relative error < 1e-4 in float64)."""
    if not component.contract.get("grad_autograd", True):
        return
    prior = _eval(component, torch.float64)
    g_param = component.contract.get("g_param")
    x = _prior_input(component)
    grad = prior.grad(x, g_param)
    with torch.enable_grad():
        xr = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(prior.fn(xr, g_param).sum(), xr)
    assert grad.shape == x.shape, f"{component.name}: grad has shape {tuple(grad.shape)}"
    error = float((grad - auto).norm() / auto.norm().clamp_min(1e-30))
    assert error < 1e-4, f"{component.name}: grad differs from autograd of fn by {error:.2e} (relative)"


def check_prior_prox(component: Component) -> None:
    r"""``prox(x, g_param, gamma=g)`` minimises :math:`h(z) = g\,\mathrm{fn}(z) + \tfrac12\|z-x\|^2`.

    Zero-order test: :math:`h(p) \le h(p + t d)` for random directions ``d`` at several
    scales ``t`` and for ``z = x``; for smooth priors also the first-order residual
    :math:`\|p - x + g\nabla \mathrm{fn}(p)\| / \|x - p\|` < ``prox_tol``.
    """
    prior = _eval(component, torch.float64)
    g_param = component.contract.get("g_param")
    gamma = component.contract.get("prox_gamma", 0.1)
    x = _prior_input(component, batch=1)
    p = prior.prox(x, g_param, gamma=gamma)
    assert p.shape == x.shape and torch.isfinite(p).all(), f"{component.name}: prox output malformed"

    def h(z):
        return float(gamma * prior.fn(z, g_param).sum() + 0.5 * ((z - x) ** 2).sum())

    h_p = h(p)
    slack = component.contract.get("prox_slack", 1e-6) * max(abs(h_p), 1.0)
    assert h_p <= h(x) + slack, f"{component.name}: prox is worse than the identity ({h_p} > {h(x)})"
    generator = torch.Generator().manual_seed(2)
    for trial in range(4):
        d = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        d = d / d.norm()
        for t in (1e-1, 1e-2) if trial % 2 else (3e-1, 3e-2):
            step = t * (x - p).norm().clamp_min(1e-3)
            for z in (p + step * d, p - step * d):
                assert h_p <= h(z) + slack, (
                    f"{component.name}: prox is not a minimiser: h(p)={h_p:.8g} > h(p+td)={h(z):.8g}"
                )
    if component.contract.get("grad_smooth", True):
        residual = p - x + gamma * prior.grad(p, g_param)
        ratio = float(residual.norm() / (x - p).norm().clamp_min(1e-30))
        tol = component.contract.get("prox_tol", 1e-3)
        assert ratio < tol, f"{component.name}: prox optimality residual {ratio:.2e} >= {tol}"


def check_prior_in_solvers(component: Component) -> None:
    """Usable by PGD (cost decreases), GD (finite) and ``optim_builder`` on a small deblurring."""
    prior = _eval(component)
    channels = component.channels[0]
    x, physics, y = _blur_problem(channels, _sizes(component))
    g_param = component.contract.get("g_param")
    lam = component.contract.get("lambda_reg", component.solver.get("lambda_reg", 0.05))
    if callable(lam):
        lam = lam(0.01)
    fidelity = dinv.optim.L2()

    def cost(z):
        return float(fidelity(z, y, physics).sum() + lam * prior.fn(z, g_param).sum())

    init = physics.A_adjoint(y)
    pgd = dinv.optim.PGD(
        data_fidelity=fidelity, prior=prior, stepsize=1.0, lambda_reg=lam, g_param=g_param, max_iter=20
    )
    out = pgd(y, physics)
    assert out.shape == x.shape and torch.isfinite(out).all(), f"{component.name}: PGD output malformed"
    assert cost(out) <= cost(init) + 1e-6, f"{component.name}: PGD increased the cost"
    gd = dinv.optim.GD(
        data_fidelity=fidelity, prior=prior, stepsize=component.contract.get("gd_stepsize", 0.5),
        lambda_reg=lam, g_param=g_param, max_iter=10,
    )
    out = gd(y, physics)
    assert out.shape == x.shape and torch.isfinite(out).all(), f"{component.name}: GD output malformed"
    built = dinv.optim.optim_builder(
        iteration="PGD",
        prior=prior,
        data_fidelity=fidelity,
        max_iter=10,
        params_algo={"stepsize": 1.0, "lambda": lam, "g_param": g_param},
    )
    out = built(y, physics)
    assert out.shape == x.shape and torch.isfinite(out).all(), f"{component.name}: optim_builder output malformed"


# --------------------------------------------------------------------------- reconstructors
def check_reconstructor(component: Component) -> None:
    """``forward(y, physics)`` returns the image shape for each problem; gradients flow."""
    model = _eval(component)
    channels = component.channels[0]
    for problem in component.problems:
        x = contract_image(channels, _sizes(component))
        physics = make_physics(problem, tuple(x.shape[1:]), noise_level=0.01)
        y = physics(x)
        with torch.no_grad():
            out = model(y, physics)
        assert out.shape == x.shape, f"{component.name}: {problem} output {tuple(out.shape)} != {tuple(x.shape)}"
        assert torch.isfinite(out).all(), f"{component.name}: non-finite output for {problem}"
    params = [p for p in model.parameters() if p.requires_grad]
    if params and component.contract.get("trainable", True):
        model.train()
        with torch.enable_grad():
            model(y, physics).square().mean().backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, f"{component.name}: no gradient reached the trainable parameters"
        assert all(torch.isfinite(g).all() for g in grads), f"{component.name}: non-finite gradients"
        assert any(g.abs().sum() > 0 for g in grads), f"{component.name}: all gradients are zero"


def check_sampler(component: Component) -> None:
    """``sample(n)`` returns a finite tensor with leading dimension n."""
    sampler = _eval(component)
    samples = sampler.sample(3, **component.contract.get("sample_kwargs", {}))
    assert samples.shape[0] == 3 and torch.isfinite(samples).all(), f"{component.name}: bad samples"


# --------------------------------------------------------------------------- bad input
def _bad_inputs(component: Component) -> dict:
    """Named bad inputs: (tensor or object, exception types, names the message must contain)."""
    channels = component.channels[0]
    good = contract_image(channels, _sizes(component))
    wrong_channels = next(c for c in (2, 4, 1, 3) if c not in component.channels)
    nan = good.clone()
    nan[..., 0, 0] = float("nan")
    inf = good.clone()
    inf[..., 1, 1] = float("inf")
    bad = {
        "wrong rank": good[0],
        "wrong channel count": contract_image(wrong_channels, _sizes(component)),
        "NaN": nan,
        "Inf": inf,
        "not a tensor": good.numpy(),
    }
    if component.contract.get("any_channels", False):
        del bad["wrong channel count"]
    return bad


def _expect_error(component: Component, what: str, call, names: tuple) -> None:
    try:
        call()
    except (ValueError, TypeError) as err:
        message = str(err)
        assert any(re.search(rf"\b{re.escape(n)}\b", message) for n in names), (
            f"{component.name}: error for {what} does not name the argument {names}: {message!r}"
        )
        return
    raise AssertionError(f"{component.name}: {what} was accepted (expected ValueError/TypeError)")


def check_bad_input(component: Component) -> None:
    """Wrong rank, channels, NaN/Inf, non-tensors and negative noise levels are refused."""
    model = _eval(component)
    image_names = ("x", "y", "input", "image")
    g_param = component.contract.get("g_param")
    good = contract_image(component.channels[0], _sizes(component))
    if component.kind == "reconstructor":
        physics = make_physics(component.problems[0], tuple(good.shape[1:]))
    for what, bad in _bad_inputs(component).items():
        if component.kind == "denoiser":
            _expect_error(component, what, lambda bad=bad: model(bad, 0.05), image_names)
        elif component.kind == "prior":
            _expect_error(component, f"fn({what})", lambda bad=bad: model.fn(bad, g_param), image_names)
            _expect_error(
                component, f"prox({what})", lambda bad=bad: model.prox(bad, g_param, gamma=0.1), image_names
            )
        elif component.kind == "reconstructor" and what in ("wrong rank", "NaN", "Inf", "not a tensor"):
            _expect_error(component, what, lambda bad=bad: model(bad, physics), image_names)
    if component.kind == "denoiser":
        _expect_error(component, "negative sigma", lambda: model(good, -0.1), ("sigma",))
    elif component.kind == "prior":
        _expect_error(
            component, "negative gamma",
            lambda: model.prox(good, component.contract.get("g_param"), gamma=-0.1), ("gamma",),
        )
    elif component.kind == "reconstructor":
        _expect_error(component, "physics of the wrong type", lambda: model(good, "blur"), ("physics",))
