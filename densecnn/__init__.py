"""densecnn: dense prediction (detection, segmentation, classification) from the command line and
from Python: ``densecnn.load`` a model, ``densecnn.predict`` over images, folders, videos and streams.

Importing densecnn stays light (no torch): the API loads it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Classification",
    "Detections",
    "Frame",
    "InstanceSegmentation",
    "Prediction",
    "Predictions",
    "Predictor",
    "Segmentation",
    "UsageError",
    "__version__",
    "load",
    "predict",
]

if TYPE_CHECKING:
    from densecnn.api import Predictions, load, predict
    from densecnn.errors import UsageError
    from densecnn.results import (
        Classification,
        Detections,
        Frame,
        InstanceSegmentation,
        Prediction,
        Segmentation,
    )
    from densecnn.tasks.base import Predictor

_LAZY = {
    "load": "densecnn.api",
    "predict": "densecnn.api",
    "Predictions": "densecnn.api",
    "UsageError": "densecnn.errors",
    "Classification": "densecnn.results",
    "Detections": "densecnn.results",
    "Frame": "densecnn.results",
    "InstanceSegmentation": "densecnn.results",
    "Prediction": "densecnn.results",
    "Segmentation": "densecnn.results",
    "Predictor": "densecnn.tasks.base",
}


def __getattr__(name: str) -> Any:
    """Public names, imported on first use (``import densecnn`` stays cheap for the CLI's --help)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'densecnn' has no attribute {name!r}")
