"""Compute engines past one process (Ray)."""
