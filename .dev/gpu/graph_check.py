"""Device check before a WCRR-NN training call: does ``--cuda-graph`` give the eager inner solve, and how much
faster are the solve and a whole implicit-gradient step (inner solve and conjugate gradient graphed)?

Models: the reference start (``reference_init``, mu = e^4), the shipped file, and the shipped file with mu = 900
(a reference run's mu, which needs many more inner iterations). Batch of BATCH (default 128) random 40x40 images, noise levels in
[0, 30]/255. Prints two lines per model (iterations, largest deviation, seconds per solve and per step, eager and
graphed; then, except for mu = 900, the same for the prox of the evaluation, 8 images at tol 1e-5) and exits 1 unless every
deviation is below 1e-4, the iteration counts agree and the graphed step is faster.
Usage: python .dev/gpu/graph_check.py [cuda|cpu] [BATCH]
"""
import json
import math
import sys
import time
import warnings

import torch

import deepinv_pnn.training.train_wcrr as train_wcrr
from deepinv_pnn.optim import WeaklyConvexRidgeRegularizer
from deepinv_pnn.training.train_wcrr import implicit_loss, inner_solve, reference_init

_solver = train_wcrr.accelerated_gradient
iterations = []


def counted(*args, **kwargs):
    out = _solver(*args, **kwargs)
    iterations.append(out[1])
    return out


train_wcrr.accelerated_gradient = counted

# a capture that falls back to the eager solve is a failed check, not a slow pass
warnings.filterwarnings("error", message=".*CUDA graph capture failed")
dev = sys.argv[1] if len(sys.argv) > 1 else "cuda"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
if dev == "cuda":  # as the training loop (train_crr.train) sets it: kernel choices by autotuning, before capture
    torch.backends.cudnn.benchmark = True


def timed(fn, repeats=3):
    fn()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    sync()
    return out, (time.perf_counter() - start) / repeats


def models():
    start = reference_init(WeaklyConvexRidgeRegularizer())
    yield "reference_start", start
    yield "shipped", WeaklyConvexRidgeRegularizer(pretrained=True)
    high = WeaklyConvexRidgeRegularizer(pretrained=True)
    with torch.no_grad():
        high.log_mu.fill_(math.log(900.0))
    yield "shipped_mu900", high


g = torch.Generator().manual_seed(0)
clean = torch.rand(batch, 1, 40, 40, generator=g).to(dev)
sigma = (30 / 255 * torch.rand(batch, generator=g)).to(dev)
noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g).to(dev)
ok = True
for name, prior in models():
    prior = prior.to(dev)
    row = {"model": name, "batch": batch, "device": dev}
    for graph in (False, True):
        tag = "graphed" if graph else "eager"
        x, row[f"solve_s_{tag}"] = timed(lambda: inner_solve(prior, noisy, sigma, 1e-4, 150, cuda_graph=graph))
        row[f"x_{tag}"] = x
        row[f"iterations_{tag}"] = iterations[-1]

        def step():
            prior.zero_grad(set_to_none=True)
            implicit_loss(prior, noisy, clean, sigma, 1e-4, 150, 50, 1e-3, "l1", cuda_graph=graph).backward()

        _, row[f"step_s_{tag}"] = timed(step)
    row["max_dev"] = float((row.pop("x_eager") - row.pop("x_graphed")).abs().max())
    row["solve_speedup"] = round(row["solve_s_eager"] / row["solve_s_graphed"], 2)
    row["step_speedup"] = round(row["step_s_eager"] / row["step_s_graphed"], 2)
    ok &= row["max_dev"] < 1e-4 and (dev != "cuda" or row["step_speedup"] > 1.0)
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if name == "shipped_mu900":  # its prox runs into the 2000-iteration cap: no evaluation meets it
        continue
    # the evaluation's prox (bench_ridge_denoising.py --cuda-graph): 8 images, tol 1e-5
    for graph in (False, True):
        tag = "graphed" if graph else "eager"
        prior.prox_cuda_graph = graph
        out, seconds = timed(lambda: prior.prox(noisy[:8], 25 / 255, tol=1e-5))
        row[f"prox_{tag}"] = (out, seconds, prior.last_prox_iterations)
    (pe, se, ie), (pg, sg, ig) = row.pop("prox_eager"), row.pop("prox_graphed")
    prox_row = {"model": name, "prox_iterations": [ie, ig], "prox_s_eager": se, "prox_s_graphed": sg,
                "prox_speedup": round(se / sg, 2), "prox_max_dev": float((pe - pg).abs().max())}
    ok &= prox_row["prox_max_dev"] < 1e-4 and ie == ig
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in prox_row.items()}), flush=True)
print("graph_check", "ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
