"""deepinv_pnn.training."""
