"""Step 6 of ``densecnn.load``: put the predictor on the backend ``--backend`` asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from densecnn.errors import UsageError
from densecnn.runtimes import require

if TYPE_CHECKING:
    from densecnn.tasks.base import Predictor
    from densecnn.tasks.builders import BuildRequest


def apply_backend(predictor: Predictor, request: BuildRequest) -> None:
    """Set ``predictor.backend`` (and its runtime) from ``request.cfg.backend``."""
    backend = request.cfg.backend
    if backend in ("auto", "torch"):
        predictor.backend = "torch"
        return
    require(backend)
    raise UsageError(f"--backend {backend} is not wired up yet.")
