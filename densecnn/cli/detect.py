"""``densecnn detect`` (being written)."""

from __future__ import annotations


def detect() -> None:
    """Detect objects in images, folders and videos."""
