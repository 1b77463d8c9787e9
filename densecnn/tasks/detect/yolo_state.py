"""Ultralytics detection models stored without pickle: a safetensors state dict + the model yaml.

An Ultralytics ``.pt`` is a pickle (loading one runs code). densecnn's own YOLO weights (the
embedded ``person-yolov8n``) are a densecnn checkpoint instead: the tensors (fp16 where the model
allows it, as Ultralytics' own ``best.pt`` is) and, in the metadata, the model's yaml dict, from
which :class:`ultralytics.nn.tasks.DetectionModel` is rebuilt before the tensors are loaded.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from densecnn.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from densecnn.errors import UsageError
from densecnn.integrations.ultralytics import import_ultralytics

YAML_KEY = "ultralytics_yaml"


def save_yolo_state(
    model: torch.nn.Module,
    path: Path,
    *,
    imgsz: int,
    half: bool = True,
    metrics: dict[str, float] | None = None,
) -> CheckpointMeta:
    """Write an Ultralytics ``DetectionModel`` to ``path`` (.safetensors); floats as fp16 if ``half``."""
    cfg: dict[str, Any] = copy.deepcopy(model.yaml)  # type: ignore[arg-type]
    names = model.names  # type: ignore[union-attr]
    state = {
        k: (v.half() if half and v.is_floating_point() else v.float() if v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    stem = Path(str(cfg.get("yaml_file", "yolo"))).stem
    meta = CheckpointMeta(
        task="detect",
        arch=stem.replace(".yaml", ""),
        class_names=tuple(str(names[i]) for i in range(len(names))),
        input_size=imgsz,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        metrics=dict(metrics or {}),
        extra={YAML_KEY: cfg},
    )
    save_checkpoint(path, state, meta)
    return meta


def is_yolo_state(meta: CheckpointMeta) -> bool:
    return meta.task == "detect" and isinstance(meta.extra.get(YAML_KEY), dict)


def load_yolo_state(path: Path) -> torch.nn.Module:
    """Rebuild and load a model written by :func:`save_yolo_state` (fp32, eval mode; no pickle)."""
    state, meta = load_checkpoint(path)
    if not is_yolo_state(meta):
        raise UsageError(f"{path} is a densecnn {meta.task} checkpoint ({meta.arch}), not a YOLO detector.")
    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    cfg = copy.deepcopy(meta.extra[YAML_KEY])
    model = DetectionModel(cfg=cfg, ch=meta.in_channels, nc=meta.num_classes, verbose=False)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise UsageError(f"{path} does not fit its own model yaml: {str(exc).splitlines()[0]}") from exc
    model.names = dict(enumerate(meta.class_names))
    return model.float().eval()
