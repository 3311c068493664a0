"""deepinv_pnn.sampling."""
