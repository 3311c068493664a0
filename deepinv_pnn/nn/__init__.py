"""deepinv_pnn.nn."""
from deepinv_pnn.nn.multiconv import MultiConv2d
from deepinv_pnn.nn.orthogonal import ParsevalConv2d, StiefelLinear, constrain
from deepinv_pnn.nn.splines import LinearSpline
