"""Specification of deepinv_pnn.nn.flows: exact inverses and exact log-determinants."""

import pytest
import torch

from deepinv_pnn.nn.flows import (
    ActNorm,
    AffineCoupling,
    InvertibleMixing,
    Permutation,
    SequentialFlow,
    conv_net,
    patch_flow,
    squeeze,
    unsqueeze,
)


def _perturb(flow, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def _jacobian_logdet(fn, x):
    """log|det J| of fn at each sample of x, by autograd (dense Jacobian)."""
    out = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        jac = torch.autograd.functional.jacobian(lambda v, xb=xb: fn(v.view_as(xb)).reshape(-1), xb.reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


@pytest.mark.parametrize("mixing", ["lu", "permutation", "none"])
def test_patch_flow_is_invertible_and_its_logdet_is_exact(mixing):
    torch.manual_seed(0)
    flow = _perturb(patch_flow(8, n_blocks=3, hidden=16, mixing=mixing)).double()
    flow.train()
    flow(torch.randn(64, 8, dtype=torch.float64))  # ActNorm data initialisation
    x = torch.randn(4, 8, dtype=torch.float64)
    z, logdet = flow(x)
    back, inv_logdet = flow(z, rev=True)
    assert torch.allclose(back, x, atol=1e-10)
    assert torch.allclose(inv_logdet, -logdet, atol=1e-10)
    assert torch.allclose(logdet, _jacobian_logdet(lambda v: flow(v)[0], x), atol=1e-8)


def test_actnorm_initialises_to_zero_mean_unit_variance():
    norm = ActNorm(3)
    x = 5 + 2 * torch.randn(500, 3)
    y, _ = norm(x)
    assert y.mean(0).abs().max() < 1e-5 and (y.std(0) - 1).abs().max() < 1e-4
    assert bool(norm.initialized)
    z, _ = norm(x + 1)  # no re-initialisation
    assert torch.allclose(z.mean(0), 1 / x.std(0), atol=1e-4)


def test_conditional_convolutional_flow_on_images():
    torch.manual_seed(1)
    channels, cond_channels = 4, 3
    blocks = []
    for k in range(2):
        blocks += [ActNorm(channels), InvertibleMixing(channels, seed=k), Permutation(channels, seed=k),
                   AffineCoupling(channels, conv_net(8), cond_channels=cond_channels)]
    flow = _perturb(SequentialFlow(blocks)).double()
    flow.eval()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    cond = torch.randn(2, cond_channels, 3, 3, dtype=torch.float64)

    def forward(v, c=cond):
        return unsqueeze(flow(squeeze(v), c)[0])

    z, logdet = flow(squeeze(x), cond)
    back, _ = flow(z, cond, rev=True)
    assert torch.allclose(unsqueeze(back), x, atol=1e-10)
    jac_logdet = torch.stack([
        _jacobian_logdet(lambda v, c=cond[b : b + 1]: forward(v, c), x[b : b + 1])[0] for b in range(2)
    ])
    assert torch.allclose(logdet, jac_logdet, atol=1e-8)
    # the condition matters
    z2, _ = flow(squeeze(x), cond + 1)
    assert (z2 - z).abs().max() > 1e-3


def test_coupling_starts_as_identity():
    block = AffineCoupling(6, conv_net(4))
    x = torch.randn(2, 6, 5, 5)
    y, logdet = block(x)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(2))


def test_bad_mixing_name():
    with pytest.raises(ValueError, match="mixing"):
        patch_flow(4, mixing="shuffle")
