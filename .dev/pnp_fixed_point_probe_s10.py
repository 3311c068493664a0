"""Probe: PnP-aware fine-tuning of the small-sigma ConvPNN through the PnP-FBS fixed point (JFB)."""
import math, sys, time, json
import torch
from deepinv_pnn.data import split_files, step_batch
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.problems import make_physics
from deepinv_pnn.training.train_convpnn import load_stack, make_optimizer

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
MIN = float(sys.argv[2]) if len(sys.argv) > 2 else 10
K = int(sys.argv[3]) if len(sys.argv) > 3 else 25
B, S = int(sys.argv[4]) if len(sys.argv) > 4 else 4, int(sys.argv[5]) if len(sys.argv) > 5 else 48
LR, LRS = float(sys.argv[6]) if len(sys.argv) > 6 else 1e-4, float(sys.argv[7]) if len(sys.argv) > 7 else 0.01
OUT = sys.argv[8] if len(sys.argv) > 8 else "/work/notes/s10/jfb.safetensors"
SIG, GAMMA, NOISE = 0.008, 1.98, 0.01
START = sys.argv[9] if len(sys.argv) > 9 else "y"
SKIP_BEFORE = len(sys.argv) > 10
train_files, _ = split_files("../shared/data/bsd400", 68)
train_imgs = load_stack(train_files[:-8], "cpu")
val_imgs = [im[:, :96, :96] for im in load_stack(train_files[-8:], "cpu")][:4]
model = ConvPNN(sigma0=0.01, pretrained=True)
phys_tr = make_physics("deblur", (1, S, S), noise_level=0.0)
phys_val = make_physics("deblur", (1, 96, 96), noise_level=0.0)

def T(z, y, phys, sig):
    return model(z - GAMMA * phys.A_adjoint(phys.A(z) - y), sig)

@torch.no_grad()
def evaluate(n_iter=150, sigmas=(SIG / 2**0.5, SIG, SIG * 2**0.5)):
    model.eval()
    g = torch.Generator().manual_seed(7)
    x = torch.stack(val_imgs)
    y = phys_val.A(x) + NOISE * torch.randn(x.shape, generator=g)
    res = {}
    for s in sigmas:
        z = y.clone(); curve = {}
        for k in range(1, n_iter + 1):
            z = T(z, y, phys_val, s)
            if k in (25, 50, n_iter):
                mse = (z - x).pow(2).flatten(1).mean(1)
                curve[k] = round(float((10 * torch.log10(1 / mse)).mean()), 3)
        res[round(s, 5)] = curve
    model.train()
    return res

t0 = time.time()
if not SKIP_BEFORE:
    print("before", evaluate(), round(time.time() - t0, 1), flush=True)
opt = make_optimizer(model, "cayley-adam", LR, LRS)
step, t0 = 0, time.time()
losses = []
while time.time() - t0 < MIN * 60:
    x, g = step_batch(train_imgs, step, 5, B, S)
    y = phys_tr.A(x) + NOISE * torch.randn(x.shape, generator=g)
    with torch.no_grad():
        z = y.clone() if START == "y" else phys_tr.prox_l2(y, y, 50.0)
        for _ in range(K):
            z = T(z, y, phys_tr, SIG)
    out = T(z.detach(), y, phys_tr, SIG)
    loss = (out - x).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(float(loss)); step += 1
    if step % 50 == 0:
        print(step, round(time.time() - t0), -10 * math.log10(sum(losses[-50:]) / 50), flush=True)
print("steps", step, "orth", model.orthogonality_error(), "t", model.t)
print("after", evaluate(), flush=True)
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT)
