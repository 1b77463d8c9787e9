"""Model zoo: typed model specs and the weight store."""

from __future__ import annotations

import sys
from pathlib import Path

from densecnn.errors import WeightsUnavailableError
from densecnn.zoo import classification as _classification  # noqa: F401  (fills MODELS)
from densecnn.zoo import detection as _detection  # noqa: F401  (fills MODELS)
from densecnn.zoo import embedded as _embedded  # noqa: F401  (fills MODELS)
from densecnn.zoo import heads as _heads  # noqa: F401  (fills MODELS)
from densecnn.zoo import segmentation as _segmentation  # noqa: F401  (fills MODELS)
from densecnn.zoo.registry import MODELS
from densecnn.zoo.specs import ModelSpec, WeightsFile
from densecnn.zoo.store import WeightStore

__all__ = ["MODELS", "ModelSpec", "WeightsFile", "default_model", "fallback_model", "fetch_default"]


def default_model(task: str) -> ModelSpec:
    """The registered default for ``task`` (e.g. ``yolov8n`` for detect)."""
    for _, spec in MODELS.items():
        if spec.task == task and spec.default:
            return spec
    raise LookupError(f"no default model registered for task {task!r}")


def fallback_model(task: str) -> ModelSpec | None:
    """The embedded model for ``task`` (shipped in ``weights/``), or None if it has none."""
    return next((spec for _, spec in MODELS.items() if spec.task == task and spec.fallback), None)


def fetch_default(task: str, store: WeightStore) -> tuple[ModelSpec, Path]:
    """The default model of ``task`` and its weight file, for a run that named no model.

    The official default when its file is cached or downloadable, else the embedded model, with
    one line on stderr saying which model runs and why. When neither is there, the official
    default's WeightsUnavailableError (its hints say how to get the file).
    """
    official = default_model(task)
    assert official.weights is not None
    try:
        return official, store.fetch(official.weights, model=official.name)
    except WeightsUnavailableError as exc:
        reason = exc.message.split(" and ", 1)[-1].rstrip(".")  # "downloading URL failed: why"
        fallback = fallback_model(task)
        if fallback is None or fallback.weights is None or not store.is_cached(fallback.weights):
            raise
        path = store.fetch(fallback.weights, model=fallback.name)
    why = "offline mode is on" if store.offline else reason
    print(
        f"densecnn: using the embedded model {fallback.name} (classes: {', '.join(fallback.classes)}): "
        f"the default {official.name} is not in {store.root} and {why}.",
        file=sys.stderr,
    )
    return fallback, path
