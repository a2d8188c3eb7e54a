"""Loaders and the index build/update commands."""
