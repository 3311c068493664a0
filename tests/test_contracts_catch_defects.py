"""The contract suite must fail on deliberately broken components."""

import deepinv as dinv
import pytest
import torch

from deepinv_pnn import contracts
from deepinv_pnn.baselines import TVDenoiser, TVPrior
from deepinv_pnn.registry import Component


class CroppingDenoiser(TVDenoiser):
    def forward(self, y, sigma=0.1, **kwargs):
        return super().forward(y, sigma)[..., 1:, :]


class NaNDenoiser(TVDenoiser):
    def forward(self, y, sigma=0.1, **kwargs):
        out = super().forward(y, sigma)
        return out / (out - out)


class RandomDenoiser(dinv.models.Denoiser):
    def forward(self, x, sigma=0.1, **kwargs):
        return x + 1e-3 * torch.randn_like(x)


class ExpansiveDenoiser(TVDenoiser):
    def forward(self, y, sigma=0.1, **kwargs):
        return 1.5 * super().forward(y, sigma) - 0.25


class UncheckedDenoiser(dinv.models.Denoiser):
    def forward(self, x, sigma=0.1, **kwargs):
        return x * 0.9


class WrongGradPrior(dinv.optim.Tikhonov):
    def grad(self, x, *args, **kwargs):
        return 2 * x


class IdentityProxPrior(dinv.optim.Tikhonov):
    def prox(self, x, *args, gamma=1.0, **kwargs):
        return x


class BadShapePrior(dinv.optim.Tikhonov):
    def fn(self, x, *args, **kwargs):
        return (x**2).sum() / 2


class WrongShapeReconstructor(dinv.models.Reconstructor):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, y, physics, **kwargs):
        return self.scale * physics.A_adjoint(y)[..., :-1]


def entry(kind, factory, **contract):
    return Component(name=factory.__name__, kind=kind, factory=factory, problems=("denoise", "deblur"),
                     channels=(1,), contract=contract)


@pytest.mark.parametrize(
    "check, component",
    [
        (contracts.check_denoiser_shapes, entry("denoiser", CroppingDenoiser)),
        (contracts.check_denoiser_shapes, entry("denoiser", NaNDenoiser)),
        (contracts.check_denoiser_dtypes_and_determinism, entry("denoiser", RandomDenoiser)),
        (lambda c: contracts.check_denoiser_pnp_convergence(c, "PGD"),
         entry("denoiser", ExpansiveDenoiser, pnp_max_iter=100)),
        (contracts.check_bad_input, entry("denoiser", UncheckedDenoiser)),
        (contracts.check_prior_grad, entry("prior", WrongGradPrior)),
        (contracts.check_prior_prox, entry("prior", IdentityProxPrior)),
        (contracts.check_prior_fn, entry("prior", BadShapePrior)),
        (contracts.check_reconstructor, entry("reconstructor", WrongShapeReconstructor)),
    ],
    ids=["cropping", "nan", "random", "expansive", "unchecked", "wrong-grad", "identity-prox",
         "scalar-fn", "wrong-shape-reconstructor"],
)
def test_contract_detects_broken_component(check, component):
    with pytest.raises(AssertionError):
        check(component)


def test_contract_accepts_tikhonov_prior():
    """A correct deepinv prior passes the prior checks (the suite is not vacuous)."""
    component = Component(name="tikhonov", kind="prior", factory=dinv.optim.Tikhonov, channels=(1,))
    contracts.check_prior_fn(component)
    contracts.check_prior_grad(component)
    contracts.check_prior_prox(component)


def test_tv_prior_passes_prox_check():
    component = Component(name="tv", kind="prior", factory=TVPrior, channels=(1,),
                          contract={"grad_smooth": False, "prox_gamma": 0.05})
    contracts.check_prior_prox(component)
