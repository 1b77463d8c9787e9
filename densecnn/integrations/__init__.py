"""Doors to upstream libraries that need care when imported (network switches, pickles)."""
