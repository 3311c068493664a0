"""Specification of the ridge regularisers CRR-NN and WCRR-NN, their prox and their denoiser."""

import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models import RidgeDenoiser
from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer
from deepinv_pnn.pretrained import WEIGHTS_DIR

SHIPPED = {
    ConvexRidgeRegularizer: (WEIGHTS_DIR / "crr_bsd400.safetensors").is_file(),
    WeaklyConvexRidgeRegularizer: (WEIGHTS_DIR / "wcrr_bsd400.safetensors").is_file(),
}


def _randomised(cls, seed=0):
    """A small model with random, strongly nonlinear splines (a harder case than the init)."""
    torch.manual_seed(seed)
    if cls is ConvexRidgeRegularizer:
        prior = cls(channels=(1, 4, 8), kernel_size=5)
        splines = [prior.spline]
    else:
        prior = cls(channels=(1, 4, 8), kernel_size=3)
        splines = [prior.phi_plus, prior.phi_minus, prior.scaling]
    with torch.no_grad():
        for s in splines:  # slopes change by O(1)
            s.coefficients.add_(3 * s.h * torch.randn_like(s.coefficients))
        if cls is ConvexRidgeRegularizer:
            prior.log_lmbda.fill_(0.0)
            prior.log_mu.fill_(0.0)
    return prior.double().eval()


def _models(cls):
    models = [_randomised(cls)]
    if SHIPPED[cls]:
        models.append(cls(pretrained=True).double().eval())
    return models


def _natural_images(size=24, count=4):
    names = ("camera", "coins", "moon", "text")[:count]
    return torch.cat([load_image(n, size=size) for n in names]).double()


@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_ridge_grad_matches_autograd_in_float64(cls):
    for prior in _models(cls):
        x = _natural_images() + 0.05 * torch.randn(4, 1, 24, 24, dtype=torch.float64)
        sigma = torch.tensor([0.02, 0.05, 0.1, 0.2], dtype=torch.float64)
        xr = x.clone().requires_grad_()
        (auto,) = torch.autograd.grad(prior.fn(xr, sigma).sum(), xr)
        grad = prior.grad(x, sigma)
        assert float((grad - auto).norm() / auto.norm()) < 1e-10


@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_ridge_prox_satisfies_optimality(cls):
    for prior in _models(cls):
        y = _natural_images(count=2) + 0.1 * torch.randn(2, 1, 24, 24, dtype=torch.float64)
        for gamma in (0.3, 1.0):
            p = prior.prox(y, 0.1, gamma=gamma, tol=1e-9, max_iter=20000)
            residual = p - y + gamma * prior.grad(p, 0.1)
            assert float(residual.norm() / (y - p).norm()) < 1e-6
            # a minimiser: no random perturbation lowers the objective
            h = prior.denoise_objective(p, y, gamma, 0.1)
            for t in (1e-2, 1e-3):
                d = torch.randn_like(p)
                d = t * d / d.norm() * (y - p).norm()
                assert (h <= prior.denoise_objective(p + d, y, gamma, 0.1) + 1e-12).all()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_ridge_prox_with_cuda_graph_gives_the_eager_result(cls, device):
    prior = _randomised(cls).to(device)
    y = (_natural_images(count=2) + 0.1 * torch.randn(2, 1, 24, 24, dtype=torch.float64)).to(device)
    eager = prior.prox(y, 0.1, tol=1e-8, max_iter=3000)
    its = prior.last_prox_iterations
    prior.prox_cuda_graph = True  # ignored on the CPU
    graphed = prior.prox(y, 0.1, tol=1e-8, max_iter=3000)
    assert prior.last_prox_iterations == its
    assert float((graphed - eager).abs().max()) < 1e-12


def _second_differences(prior, quad: float, lines: int = 100, size: int = 12, seed: int = 0):
    """Min over lines of the relative second differences of t -> R(x + t d) + quad/2 t^2 |d|^2."""
    g = torch.Generator().manual_seed(seed)
    images = _natural_images(size=size)
    t = torch.linspace(-1, 1, 11, dtype=torch.float64)
    x = images[torch.arange(lines) % len(images)]  # [L, 1, s, s]
    d = torch.randn(x.shape, generator=g, dtype=torch.float64)
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * x.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * 0.5
    z = (x[:, None] + t.view(1, -1, 1, 1, 1) * d[:, None]).reshape(-1, 1, size, size)
    f = prior.fn(z, 0.1).view(lines, -1) + 0.5 * quad * t**2 * d.flatten(1).pow(2).sum(1, keepdim=True)
    second = f[:, 2:] - 2 * f[:, 1:-1] + f[:, :-2]
    return float((second.min(1).values / f.abs().max(1).values.clamp_min(1e-12)).min())


@pytest.mark.parametrize("cls,quad", [(ConvexRidgeRegularizer, 0.0), (WeaklyConvexRidgeRegularizer, 1.0)])
def test_ridge_convexity_along_100_lines_through_natural_images(cls, quad):
    for prior in _models(cls):
        assert _second_differences(prior, quad) >= -1e-6


def test_wcrr_is_genuinely_nonconvex_without_the_quadratic():
    prior = _randomised(WeaklyConvexRidgeRegularizer)
    with torch.no_grad():
        prior.log_mu.fill_(-3.0)  # small convex part: the concave part dominates
    assert _second_differences(prior, 0.0, lines=20) < 0


def test_crr_lipschitz_bound_holds():
    prior = _randomised(ConvexRidgeRegularizer)
    lip = prior.grad_lipschitz()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 20, 20, generator=g, dtype=torch.float64)
    for _ in range(10):
        v = 0.01 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        ratio = (prior.grad(x + v) - prior.grad(x)).norm() / v.norm()
        assert float(ratio) <= lip * (1 + 1e-9)


def test_crr_table_selects_noise_dependent_parameters():
    prior = ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3)
    assert not prior.tuned()
    prior.set_table([5 / 255, 50 / 255], [1.0, 100.0], [10.0, 1.0])
    lm, mu = prior.parameters_for(torch.tensor([5 / 255, 50 / 255, (5 * 50) ** 0.5 / 255]))
    assert torch.allclose(lm.flatten(), torch.tensor([1.0, 100.0, 10.0]), rtol=1e-4)
    assert torch.allclose(mu.flatten(), torch.tensor([10.0, 1.0, 10**0.5]), rtol=1e-4)


def test_mask_weights_the_regulariser():
    prior = _randomised(ConvexRidgeRegularizer)
    x = _natural_images(size=16, count=2)
    full, full_grad = prior.fn(x), prior.grad(x)
    prior.set_mask(torch.full((1, 1, 16, 16), 2.0, dtype=torch.float64))
    assert torch.allclose(prior.fn(x), 2 * full)
    assert torch.allclose(prior.grad(x), 2 * full_grad)
    assert prior.grad_lipschitz() == pytest.approx(2 * _randomised(ConvexRidgeRegularizer).grad_lipschitz())
    prior.set_mask(None)
    with pytest.raises(ValueError, match="mask"):
        prior.set_mask(-torch.ones(1, 1, 16, 16))


def test_colour_images_are_regularised_channel_by_channel():
    prior = _randomised(WeaklyConvexRidgeRegularizer)
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    per_channel = sum(prior.fn(x[:, c : c + 1], 0.1) for c in range(3))
    assert torch.allclose(prior.fn(x, 0.1), per_channel)


def test_ridge_denoiser_is_nonexpansive_for_crr():
    denoiser = RidgeDenoiser(_randomised(ConvexRidgeRegularizer), tol=1e-9, max_iter=20000)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 1, 16, 16, generator=g, dtype=torch.float64)
    v = 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    a, b = denoiser(x, 0.1), denoiser(x + v, 0.1)
    ratio = (a - b).reshape(3, -1).norm(dim=1) / v.reshape(3, -1).norm(dim=1)
    assert (ratio <= 1 + 1e-6).all()


@pytest.mark.skipif(not SHIPPED[ConvexRidgeRegularizer], reason="no shipped CRR weights")
def test_shipped_crr_denoises_camera():
    x = load_image("camera", size=64).double()
    y = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = RidgeDenoiser(ConvexRidgeRegularizer(pretrained=True).double())(y, 25 / 255)
    gain = 10 * torch.log10((y - x).pow(2).mean() / (out - x).pow(2).mean())
    assert float(gain) > 5.0


def test_bad_inputs_name_the_argument():
    prior = ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3)
    with pytest.raises(ValueError, match="x"):
        prior.fn(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="gamma"):
        prior.prox(torch.zeros(1, 1, 8, 8), gamma=-1.0)
    with pytest.raises(ValueError, match="g_param"):
        prior.fn(torch.zeros(1, 1, 8, 8), -0.1)
    with pytest.raises(TypeError, match="prior"):
        RidgeDenoiser(torch.nn.Identity())


def test_mask_networks_condition_the_prior_and_keep_convexity():
    from deepinv_pnn.optim.ridge_mask import EdgeMask, RidgeMaskNet

    assert torch.allclose(RidgeMaskNet()(torch.rand(1, 1, 8, 8)), torch.ones(1, 1, 8, 8))
    prior = _randomised(ConvexRidgeRegularizer)
    prior.mask_net = EdgeMask().double()
    y = _natural_images(size=16, count=2)
    mask = prior.condition_on(y)
    assert mask.shape == (2, 1, 16, 16) and (mask > 0).all() and (mask <= 1).all()
    assert mask.min() < 0.9  # edges of natural images are detected
    p = prior.prox(y, gamma=0.5, tol=1e-9, max_iter=20000)
    residual = p - y + 0.5 * prior.grad(p)
    assert float(residual.norm() / (y - p).norm()) < 1e-6
    prior.set_mask(mask[:1, :, :12, :12])
    assert _second_differences(prior, 0.0, lines=20) >= -1e-6


def test_crr_pruning_removes_dead_pairs_and_keeps_the_gradient():
    prior = _randomised(ConvexRidgeRegularizer)
    with torch.no_grad():
        prior.spline.coefficients[2:5] = 0.0  # three dead splines
    x = _natural_images(size=16, count=2)
    before = prior.grad(x)
    kept = prior.prune(threshold=1e-8)
    assert kept == 5 and prior.conv.channels[-1] == 5
    assert torch.allclose(prior.grad(x), before, atol=1e-10)


def _calibrated(table=((10 / 255, 40 / 255), (0.5, 2.0), (3.0, 0.5))):
    prior = _randomised(WeaklyConvexRidgeRegularizer)
    prior.set_table(*table)
    return prior


def test_wcrr_untuned_table_is_the_identity_calibration():
    prior = _randomised(WeaklyConvexRidgeRegularizer)
    assert not prior.tuned() and prior.calibration(torch.tensor([0.1])) == (None, None)
    x = _natural_images(size=16, count=2)
    before = (prior.fn(x, 0.1), prior.grad(x, 0.1))
    prior.set_table([10 / 255, 40 / 255], [1.0, 1.0], [1.0, 1.0])
    assert prior.tuned()
    assert torch.allclose(prior.fn(x, 0.1), before[0], rtol=1e-12)
    assert torch.allclose(prior.grad(x, 0.1), before[1], rtol=1e-12)


def test_wcrr_calibration_rescales_noise_level_and_convex_part():
    # at the grid point 20/255 (log-midpoint of 10/255 and 40/255): c = 1, m = 3^0.5 * 0.5^0.5
    prior = _calibrated()
    c, m = prior.calibration(torch.tensor([20 / 255], dtype=torch.float64))
    assert float(c) == pytest.approx(1.0) and float(m) == pytest.approx(1.5**0.5)
    reference = _randomised(WeaklyConvexRidgeRegularizer)
    with torch.no_grad():
        reference.log_mu.add_(torch.log(m).squeeze())
    x = _natural_images(size=16, count=2)
    assert torch.allclose(prior.fn(x, 20 / 255), reference.fn(x, 20 / 255), rtol=1e-10)
    # at the table's end 40/255: c = 2 (the model sees the noise level 80/255), m = 0.5
    reference = _randomised(WeaklyConvexRidgeRegularizer)
    with torch.no_grad():
        reference.log_mu.add_(torch.log(torch.tensor(0.5)))
    assert torch.allclose(prior.fn(x, 40 / 255), reference.fn(x, 80 / 255), rtol=1e-6)  # float32 table


def test_wcrr_calibrated_model_stays_weakly_convex_and_consistent():
    prior = _calibrated()
    assert _second_differences(prior, 1.0) >= -1e-6
    x = _natural_images() + 0.05 * torch.randn(4, 1, 24, 24, dtype=torch.float64)
    sigma = torch.tensor([0.02, 0.05, 0.1, 0.2], dtype=torch.float64)
    xr = x.clone().requires_grad_()
    (auto,) = torch.autograd.grad(prior.fn(xr, sigma).sum(), xr)
    assert float((prior.grad(x, sigma) - auto).norm() / auto.norm()) < 1e-10
    # the Lipschitz bound accounts for the convex-part factor m (up to 3 here)
    lip = prior.grad_lipschitz(10 / 255)
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        v = 1e-3 * torch.randn(x[:1].shape, generator=g, dtype=torch.float64)
        ratio = (prior.grad(x[:1] + v, 10 / 255) - prior.grad(x[:1], 10 / 255)).norm() / v.norm()
        assert float(ratio) <= lip * (1 + 1e-9)


def test_wcrr_set_table_rejects_bad_input():
    prior = _randomised(WeaklyConvexRidgeRegularizer)
    with pytest.raises(ValueError, match="same length"):
        prior.set_table([0.05, 0.1], [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        prior.set_table([0.1, 0.05], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        prior.set_table([0.05, 0.1], [1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        prior.set_table([0.05, 0.1], [1.0, 1.0], [float("nan"), 1.0])
    assert not prior.tuned()


def test_crr_set_table_rejects_bad_input_and_keeps_its_table():
    prior = _randomised(ConvexRidgeRegularizer)
    before = (prior.lmbda_table.clone(), prior.mu_table.clone())
    with pytest.raises(ValueError, match="same length"):
        prior.set_table([0.05, 0.1], [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        prior.set_table([0.1, 0.05], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        prior.set_table([0.05, 0.1], [1.0, 1.0], [1.0, -1.0])
    for table, old in zip((prior.lmbda_table, prior.mu_table), before):  # untuned: NaN, unchanged
        assert torch.allclose(table, old, rtol=0, atol=0, equal_nan=True)


def test_wcrr_loads_weights_saved_without_a_calibration_table():
    state = {k: v for k, v in _calibrated().state_dict().items() if "table" not in k}
    prior = _randomised(WeaklyConvexRidgeRegularizer, seed=1)
    prior.load_state_dict(state)
    assert not prior.tuned()
    x = _natural_images(size=16, count=1)
    assert torch.allclose(prior.fn(x, 0.1), _randomised(WeaklyConvexRidgeRegularizer).fn(x, 0.1))


def _autograd_hvp(prior, x, v, *args):
    z = x.clone().requires_grad_()
    (hv,) = torch.autograd.grad(prior.grad(z, *args), z, v)
    return hv


@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_hessian_operator_equals_autograd_hessian_vector_products(cls):
    """The explicit Hessian map (used by the WCRR training's conjugate gradient) against
    autograd of grad: per-sample / scalar / no noise level, colour images, a mask."""
    torch.manual_seed(3)
    for prior in _models(cls):
        x = _natural_images() + 0.05 * torch.randn(4, 1, 24, 24, dtype=torch.float64)
        v = torch.randn_like(x)
        for sigma in (torch.tensor([0.02, 0.05, 0.1, 0.2], dtype=torch.float64), 0.1, None):
            args = () if sigma is None else (sigma,)
            ref = _autograd_hvp(prior, x, v, *args)
            hv = prior.hessian_operator(x, *args)(v)
            assert float((hv - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
        colour, vc = x.view(2, 2, 24, 24), v.view(2, 2, 24, 24)
        assert torch.allclose(prior.hessian_operator(colour, 0.1)(vc), _autograd_hvp(prior, colour, vc, 0.1),
                              rtol=0, atol=1e-12)
        prior.set_mask(torch.rand(4, 1, 24, 24, dtype=torch.float64))
        assert torch.allclose(prior.hessian_operator(x, 0.1)(v), _autograd_hvp(prior, x, v, 0.1), rtol=0, atol=1e-12)
        prior.set_mask(None)
        with pytest.raises(ValueError, match="shape"):
            prior.hessian_operator(x, 0.1)(v[:2])
        with pytest.raises(ValueError):
            prior.hessian_operator(x, -0.1)


@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_hessian_quadratic_form_meets_the_convexity_bound(cls):
    """<v, H v> >= -rho ||v||^2 (rho = 0 for the CRR-NN, 1 for the WCRR-NN) at natural
    images, along random directions and along the Hessian's most negative direction found
    by power iteration on rho I + ... (shifted so that it converges to the smallest eigenvalue)."""
    torch.manual_seed(4)
    rho = cls.weak_convexity
    for prior in _models(cls):
        x = _natural_images() + 0.05 * torch.randn(4, 1, 24, 24, dtype=torch.float64)
        hess = prior.hessian_operator(x, 0.1)
        v = torch.randn(16, *x.shape[1:], dtype=torch.float64)
        for w in v.split(4):
            q = (w * hess(w)).sum((1, 2, 3)) / (w * w).sum((1, 2, 3))
            assert bool((q >= -rho - 1e-9).all())
        # smallest eigenvalue: power iteration on (L I - H), L an upper bound of the spectrum
        upper = float(prior.activation_lipschitz(torch.full((4,), 0.1, dtype=torch.float64)).detach().max()) + 1.0
        w = torch.randn_like(x)
        for _ in range(300):
            w = upper * w - hess(w)
            w = w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        smallest = (w * hess(w)).sum((1, 2, 3))
        assert bool((smallest >= -rho - 1e-6).all()), smallest
        if cls is WeaklyConvexRidgeRegularizer:  # the bound is not vacuous: there is negative curvature
            assert float(smallest.min()) < -1e-3


@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_grad_operator_equals_grad(cls):
    """The prepared gradient map (used by the prox, the solver and the training) is grad itself:
    per-sample and scalar noise levels, the calibration table, colour images, a mask."""
    for prior in _models(cls):
        x = _natural_images() + 0.05 * torch.randn(4, 1, 24, 24, dtype=torch.float64)
        for sigma in (torch.tensor([0.02, 0.05, 0.1, 0.2], dtype=torch.float64), 0.1, None):
            args = () if sigma is None else (sigma,)
            grad = prior.grad_operator(x, *args)
            assert torch.allclose(grad(x), prior.grad(x, *args), rtol=0, atol=1e-12)
        colour = x.view(2, 2, 24, 24)
        assert torch.allclose(prior.grad_operator(colour, 0.1)(colour), prior.grad(colour, 0.1), atol=1e-12)
        prior.set_mask(torch.rand(4, 1, 24, 24, dtype=torch.float64))
        assert torch.allclose(prior.grad_operator(x, 0.1)(x), prior.grad(x, 0.1), atol=1e-12)
        prior.set_mask(None)
        with pytest.raises(ValueError, match="shape"):
            prior.grad_operator(x, 0.1)(x[:2])
        with pytest.raises(ValueError):
            prior.grad_operator(x, -0.1)
