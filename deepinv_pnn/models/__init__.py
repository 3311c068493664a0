"""deepinv_pnn.models."""
from deepinv_pnn.models.param_map import TVParameterMapNet
from deepinv_pnn.models.pnn import ConvPNN, ParsevalPNN
from deepinv_pnn.models.ridge_denoiser import RidgeDenoiser
from deepinv_pnn.models.unrolled_pdhg import UnrolledPDHG
from deepinv_pnn.models.wppflow import WPPFlow
from deepinv_pnn.models.wppnet import WPPNet
