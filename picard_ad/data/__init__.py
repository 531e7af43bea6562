"""Patch sampling, synthetic breast phantoms, tissue masks and synthetic anomalies."""
