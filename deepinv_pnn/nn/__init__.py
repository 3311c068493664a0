"""deepinv_pnn.nn."""
from deepinv_pnn.nn.multiconv import MultiConv2d
from deepinv_pnn.nn.splines import LinearSpline
