"""Model zoo: typed model specs and the weight store."""

from densecnn.zoo import classification as _classification  # noqa: F401  (fills MODELS)
from densecnn.zoo import detection as _detection  # noqa: F401  (fills MODELS)
from densecnn.zoo import segmentation as _segmentation  # noqa: F401  (fills MODELS)
from densecnn.zoo.registry import MODELS
from densecnn.zoo.specs import ModelSpec, WeightsFile

__all__ = ["MODELS", "ModelSpec", "WeightsFile", "default_model"]


def default_model(task: str) -> ModelSpec:
    """The registered default for ``task`` (e.g. ``yolov8n`` for detect)."""
    for _, spec in MODELS.items():
        if spec.task == task and spec.default:
            return spec
    raise LookupError(f"no default model registered for task {task!r}")
