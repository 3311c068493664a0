"""Recipe-protocol validation (PnP deblurring after 100 iterations, test_333..336) and plain
denoising at sigma 0.01 (test_333..338) of the denoising-trained and the deblur-tuned weights."""
import sys, torch
from deepinv_pnn.data import split_files
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.training.train_convpnn import load_stack, validate
from deepinv_pnn.training.pnp_objective import pnp_deblur_psnr
torch.set_num_threads(1)
_, val = split_files("../shared/data/bsd400", 68)
imgs = load_stack(val[:6], "cpu")
for name, pre in [("denoising", True), ("deblur-tuned", sys.argv[1])]:
    m = ConvPNN(sigma0=0.01, pretrained=pre).eval()
    print(name, "pnp-val(4, 100 it)", round(pnp_deblur_psnr(m, imgs[:4], 0.008, 1.98, 100), 3),
          "denoise sigma 0.01 (6)", round(validate(m, imgs, 0.01), 3), flush=True)
