"""Predictions over a dataset's images for ``densecnn eval`` and training validation: the same
``densecnn.predict`` pipeline the CLI runs (decode thread, batches, the predictor), in input order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.results import Prediction
    from densecnn.tasks.base import Predictor


def predictions_for(predictor: Predictor, images: Sequence[Path], *, batch: int) -> Iterator[Prediction]:
    """One prediction per image of ``images``, in order. An image that cannot be decoded is a
    UsageError naming it (a metric over a silently shorter set would mislead)."""
    import densecnn

    if not images:
        return
    stream = densecnn.predict(list(images), model=predictor, batch=max(1, batch), on_error="fail")
    yield from stream
    summary = stream.summary
    if summary is not None and summary.errors:
        first = summary.errors[0]
        raise UsageError(f"{first['path']}: {first['error']}")
    if summary is not None and summary.interrupted:
        raise KeyboardInterrupt
