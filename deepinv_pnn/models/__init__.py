"""deepinv_pnn.models."""
