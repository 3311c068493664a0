"""deepinv_pnn.nn."""
