"""How a model family turns a resolved request into a Predictor: one builder per (task, family),
registered beside its adapter with :func:`register_builder`.

``densecnn.load`` (``tasks/loading.py``) does everything families share — identify the weight file,
resolve the spec, pick device and precision, merge threshold defaults — and hands the builder a
:class:`BuildRequest`. A new model family is one module: a ``ModelSpec`` in ``MODELS`` with its
``family`` and a builder registered here for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from densecnn.registry import Registry

if TYPE_CHECKING:
    import torch

    from densecnn.checkpoint import CheckpointMeta
    from densecnn.config import PredictConfig
    from densecnn.runtimes.meta import ExportMeta
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec

WeightsKind = Literal["none", "densecnn", "ultralytics", "state_dict", "exported"]
WeightsOrigin = Literal["user", "store", "embedded"]


@dataclass(frozen=True)
class WeightsRef:
    """A weight file, identified without running code from it.

    ``kind``: ``densecnn`` (a .safetensors checkpoint with densecnn metadata in ``meta``),
    ``ultralytics`` (a pickled Ultralytics ``.pt``, told from its bytes), ``state_dict`` (anything
    else: a torchvision state dict), ``exported`` (an .onnx / OpenVINO model from ``densecnn export``,
    its metadata in ``export``), or ``none``. ``origin``: the user named it (``--weights``), the
    weight store fetched the model's official file, or it ships with densecnn (``embedded``).
    """

    kind: WeightsKind
    path: Path | None = None
    meta: CheckpointMeta | None = None
    origin: WeightsOrigin = "user"
    export: ExportMeta | None = None

    @property
    def user_named(self) -> bool:
        return self.origin == "user"


NO_WEIGHTS = WeightsRef("none")


def identify(path: Path, origin: WeightsOrigin = "user") -> WeightsRef:
    """What ``path`` holds (reads the safetensors header or scans bytes; never unpickles)."""
    from densecnn.checkpoint import read_meta
    from densecnn.integrations.ultralytics import is_ultralytics_checkpoint
    from densecnn.runtimes.meta import exported_model_file

    model_file = exported_model_file(path)
    if model_file is not None:
        from densecnn.runtimes.meta import read_meta as read_export_meta

        return WeightsRef("exported", model_file, None, origin, read_export_meta(model_file))
    meta = read_meta(path)
    if meta is not None:
        return WeightsRef("densecnn", path, meta, origin)
    if is_ultralytics_checkpoint(path):
        return WeightsRef("ultralytics", path, None, origin)
    return WeightsRef("state_dict", path, None, origin)


@dataclass(frozen=True)
class BuildRequest:
    """Everything a builder needs, resolved once by ``densecnn.load``.

    ``cfg`` holds the user's values as given (None: not given); ``conf``/``iou``/``max_det`` are
    merged with the spec's defaults. ``imgsz`` stays the user's (None: the family's own default,
    which differs: letterbox size, shorter side, crop). ``class_names`` name a plain state dict's
    outputs (``--num-classes``/``--class-names``).
    """

    spec: ModelSpec
    weights: WeightsRef
    device: torch.device
    half: bool
    cfg: PredictConfig
    conf: float | None
    iou: float | None
    max_det: int
    class_names: tuple[str, ...] | None = None

    def weights_file(self) -> Path:
        """The weight file to load; a UsageError for a model without one (no official file, none named)."""
        if self.weights.path is None:
            from densecnn.errors import UsageError

            raise UsageError(f"{self.spec.name} has no official weights; pass --weights FILE.")
        return self.weights.path

    @property
    def imgsz(self) -> int | None:
        return self.cfg.imgsz

    def checkpoint_size(self) -> int:
        """``--imgsz``, else the checkpoint's training size, else the spec's default."""
        meta = self.weights.meta
        return self.cfg.imgsz or (int(meta.input_size) if meta is not None else self.spec.imgsz)


Builder = Callable[[BuildRequest], "Predictor"]

BUILDERS: Registry[Builder] = Registry("model family")

# Where the built-in builders live: only the module a run needs is imported (torchvision's detection
# models, smp and Ultralytics each take seconds to import).
_BUILTIN = {
    "detect/yolo": "densecnn.tasks.detect.yolo",
    "detect/torchvision": "densecnn.tasks.detect.rcnn",
    "detect/densecnn": "densecnn.tasks.detect.rcnn_backbone",
    "segment/yolo": "densecnn.tasks.segment.yolo_seg",
    "segment/torchvision": "densecnn.tasks.segment.semantic",
    "segment/densecnn": "densecnn.tasks.segment.smp_heads",
    "classify/yolo": "densecnn.tasks.classify.yolo_cls",
    "classify/torchvision": "densecnn.tasks.classify.torch_cls",
    "classify/densecnn": "densecnn.tasks.classify.head",
}


def _key(task: str, family: str) -> str:
    return f"{task}/{family}"


def register_builder(task: str, family: str) -> Callable[[Builder], Builder]:
    """Decorator: ``fn`` builds the predictors of ``family`` models for ``task``."""
    return BUILDERS.register(_key(task, family))


def builder_for(task: str, family: str) -> Builder:
    """The builder of (task, family), importing the built-in module that registers it on first use."""
    key = _key(task, family)
    if key not in BUILDERS and key in _BUILTIN:
        importlib.import_module(_BUILTIN[key])
    return BUILDERS.get(key)
