r"""
Training a ConvPNN on the Stiefel manifold: Cayley-SGD, Cayley-Adam and iSPALM
==============================================================================

The orthogonal matrices of a :class:`~deepinv_pnn.models.pnn.ConvPNN` live on the Stiefel
manifold. :class:`~deepinv_pnn.training.manifold.CayleySGD` and
:class:`~deepinv_pnn.training.manifold.CayleyAdam` move them along the manifold with an
exact Cayley retraction; :class:`~deepinv_pnn.training.ispalm.ISPALM` alternates inertial
stochastic gradient steps with the SARAH estimator and projections onto the manifold
:footcite:p:`hertrich2022ispalm`. Every iterate is exactly orthogonal.

A tiny network trained for a few steps on crops of an embedded image (CPU, seconds);
the full recipe is :mod:`deepinv_pnn.training.train_convpnn`.
"""

# %%
import matplotlib.pyplot as plt
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.training.ispalm import ISPALM
from deepinv_pnn.training.pnn_optimizers import make_optimizer

image = load_image("camera", size=128)[0]
sigma = 0.1
gen = torch.Generator().manual_seed(0)
batches = []
for _ in range(25):
    tops = torch.randint(0, 128 - 32, (2, 8), generator=gen)
    x = torch.stack([image[:, i : i + 32, j : j + 32] for i, j in tops.T.tolist()])
    batches.append((x, x + sigma * torch.randn(x.shape, generator=gen)))

curves = {}
for name, lr_stiefel in (("cayley-sgd", 0.05), ("cayley-adam", 0.05), ("ispalm", 0.05)):
    model = ConvPNN(width=16, state_channels=4, n_layers=3, sigma0=sigma, seed=0)
    opt = make_optimizer(model, name, lr=2e-3, lr_stiefel=lr_stiefel)
    losses = []
    for x, y in batches:

        def closure(x=x, y=y, model=model, opt=opt):
            opt.zero_grad()
            loss = ((model(y, sigma) - x) ** 2).mean()
            loss.backward()
            return loss

        if isinstance(opt, ISPALM):
            losses.append(float(opt.step(closure)))
        else:
            losses.append(float(closure()))
            opt.step()
    curves[name] = losses
    print(
        f"{name}: final loss {losses[-1]:.2e}, orthogonality error {model.orthogonality_error():.1e}"
    )

plt.figure(figsize=(5, 3.5))
for name, losses in curves.items():
    plt.semilogy(losses, label=name)
plt.xlabel("step")
plt.ylabel("training MSE")
plt.legend()
plt.tight_layout()
plt.show()

# %%
# :References:
#
# .. footbibliography::
