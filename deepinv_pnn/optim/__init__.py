"""deepinv_pnn.optim."""
