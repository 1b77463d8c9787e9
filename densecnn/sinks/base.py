"""The sink contract: every output format is one class with these four methods.

The pipeline calls, from its single writer thread and in source order:
``start_input(event)`` → ``write(prediction, annotated)`` per frame → ``end_input(event)`` per input
(also after a failure, so files are finalized) → ``close()`` once at the end of the run (also on
Ctrl-C and errors). ``annotated`` is the drawn BGR frame when any sink has ``needs_annotated``,
else None: the drawing happens once per frame, whatever the number of sinks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from densecnn.results import Prediction
from densecnn.sources.base import InputEnd, InputFailure, InputStart


class Sink:
    """Base class with no-op hooks; subclasses override what they need."""

    needs_annotated: bool = False

    def start_input(self, event: InputStart) -> None:
        pass

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        pass

    def fail_input(self, event: InputFailure) -> None:
        pass

    def end_input(self, event: InputEnd) -> None:
        pass

    def close(self) -> None:
        pass

    def outputs(self) -> list[Path]:
        """Files or folders this sink wrote (for the summary)."""
        return []
