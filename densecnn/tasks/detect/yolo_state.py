"""Ultralytics models stored without pickle: a safetensors state dict + the model yaml.

An Ultralytics ``.pt`` is a pickle (loading one runs code). densecnn's own YOLO weights (the
embedded ``person-yolov8n``, and files made by ``densecnn weights convert``) are a densecnn
checkpoint instead: the tensors (fp16 where that loses nothing, or where asked) and, in the
metadata, the model's yaml dict, from which Ultralytics' ``DetectionModel``, ``SegmentationModel``
or ``ClassificationModel`` (by ``meta.task``) is rebuilt before the tensors are loaded. A classifier
also records its preprocessing (resize, crop, interpolation; mean/std in the metadata fields).
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
FUSED_KEY = "ultralytics_fused"
TRANSFORMS_KEY = "ultralytics_transforms"
TASKS = ("detect", "segment", "classify")


def save_yolo_state(
    model: torch.nn.Module,
    path: Path,
    *,
    imgsz: int,
    half: bool | None = True,
    metrics: dict[str, float] | None = None,
) -> CheckpointMeta:
    """Write an Ultralytics detection, segmentation or classification model to ``path``
    (.safetensors). Floats as fp16 if ``half``; ``half=None``: fp16 only for tensors that fp16 holds
    exactly (an Ultralytics ``.pt`` stores fp16 already), so the file predicts exactly as the model."""
    cfg: dict[str, Any] = copy.deepcopy(model.yaml)  # type: ignore[arg-type]
    names = model.names  # type: ignore[union-attr]
    task = str(getattr(model, "task", "detect"))
    if task not in TASKS:
        raise UsageError(f"Ultralytics {task!r} models cannot be stored as densecnn checkpoints yet.")
    state = {k: _stored(v, half) for k, v in model.state_dict().items()}
    stem = Path(str(cfg.get("yaml_file", "yolo"))).stem
    extra: dict[str, Any] = {YAML_KEY: cfg}
    if _is_fused(model):
        extra[FUSED_KEY] = True
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if task == "classify":
        steps = _classify_steps(getattr(model, "transforms", None))
        if steps is not None:
            extra[TRANSFORMS_KEY], mean, std = steps
    meta = CheckpointMeta(
        task=task,
        arch=stem.replace(".yaml", ""),
        class_names=tuple(str(names[i]) for i in range(len(names))),
        input_size=imgsz,
        mean=mean,
        std=std,
        in_channels=int(cfg.get("channels", 3)),
        metrics=dict(metrics or {}),
        extra=extra,
    )
    save_checkpoint(path, state, meta)
    return meta


def _stored(v: torch.Tensor, half: bool | None) -> torch.Tensor:
    if not v.is_floating_point():
        return v
    if half is None:
        h = v.half()
        return h if torch.equal(h.float(), v.float()) else v.float()
    return v.half() if half else v.float()


def _is_fused(model: torch.nn.Module) -> bool:
    """Whether ``fuse()`` folded the BatchNorms into the convs (Ultralytics saves such models as held)."""
    return any(
        hasattr(m, "conv") and hasattr(m, "forward_fuse") and not hasattr(m, "bn") for m in model.modules()
    )


def _classify_steps(transforms: Any) -> tuple[dict[str, Any], tuple[float, ...], tuple[float, ...]] | None:
    """(resize/crop/interpolation, mean, std) of the standard Resize, CenterCrop, ToTensor, Normalize."""
    import torchvision.transforms as T

    steps = getattr(transforms, "transforms", ())
    if tuple(map(type, steps)) != (T.Resize, T.CenterCrop, T.ToTensor, T.Normalize):
        return None
    resize, crop, _, norm = steps
    info = {
        "resize": resize.size if isinstance(resize.size, int) else list(resize.size),
        "crop": list(crop.size),
        "interpolation": resize.interpolation.value,
    }
    return info, tuple(float(x) for x in norm.mean), tuple(float(x) for x in norm.std)


def _classify_transforms(info: dict[str, Any], meta: CheckpointMeta) -> Any:
    import torchvision.transforms as T

    return T.Compose(
        [
            T.Resize(info["resize"], interpolation=T.InterpolationMode(info["interpolation"])),
            T.CenterCrop(info["crop"]),
            T.ToTensor(),
            T.Normalize(mean=list(meta.mean), std=list(meta.std)),
        ]
    )


def is_yolo_state(meta: CheckpointMeta, task: str = "detect") -> bool:
    """Whether ``meta`` describes an Ultralytics model of ``task`` stored by :func:`save_yolo_state`."""
    return meta.task == task and isinstance(meta.extra.get(YAML_KEY), dict)


def load_yolo_state(path: Path) -> torch.nn.Module:
    """Rebuild and load a model written by :func:`save_yolo_state` (fp32, eval mode; no pickle)."""
    state, meta = load_checkpoint(path)
    if not any(is_yolo_state(meta, task) for task in TASKS):
        raise UsageError(f"{path} is a densecnn {meta.task} checkpoint ({meta.arch}), not a YOLO model.")
    import_ultralytics()
    from ultralytics.nn import tasks

    cls = {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "classify": tasks.ClassificationModel,
    }[meta.task]
    cfg = copy.deepcopy(meta.extra[YAML_KEY])
    model = cls(cfg=cfg, ch=meta.in_channels, nc=meta.num_classes, verbose=False)
    if meta.extra.get(FUSED_KEY):
        model.fuse(verbose=False)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise UsageError(f"{path} does not fit its own model yaml: {str(exc).splitlines()[0]}") from exc
    model.names = dict(enumerate(meta.class_names))
    model.task = meta.task
    model.args = {"imgsz": meta.input_size, "task": meta.task}
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    if isinstance(meta.extra.get(TRANSFORMS_KEY), dict):
        model.transforms = _classify_transforms(meta.extra[TRANSFORMS_KEY], meta)
    return model.float().eval()


def convert_ultralytics(source: Path, out: Path, *, trust: bool = False) -> CheckpointMeta:
    """``densecnn weights convert``: an Ultralytics ``.pt`` (a pickle) → ``out``, a densecnn
    ``.safetensors`` checkpoint that predicts exactly as the ``.pt`` does and loads without unpickling.

    The ``.pt`` is loaded as ``--weights`` would load it (restricted first; a full unpickle only with
    ``trust``). ``input_size`` is the size densecnn runs the ``.pt`` at by default: the zoo default
    (640) for detectors and segmenters, the trained size for classifiers (as Ultralytics does).
    """
    from densecnn.tasks.detect.yolo import load_yolo_module

    if source.suffix == ".safetensors":
        raise UsageError(f"{source} is already a .safetensors file: nothing to convert.")
    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out}: the converted file must end in .safetensors.")
    model = load_yolo_module(source, user_named=True, trust=trust)
    task = str(getattr(model, "task", "detect"))
    args = getattr(model, "args", None)
    trained = args.get("imgsz") if isinstance(args, dict) else None
    default = int(trained) if isinstance(trained, int) else 224
    imgsz = default if task == "classify" else 640
    return save_yolo_state(model, out, imgsz=imgsz, half=None)
