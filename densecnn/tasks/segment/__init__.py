"""Segmenter construction: a model name or a weight file + settings → a Predictor of label maps.

Which model runs:

- ``--weights`` a densecnn checkpoint (``.safetensors`` with densecnn metadata: ``unet``,
  ``deeplabv3plus`` or ``deeplabv3`` on a registry backbone, or a torchvision DeepLabV3 / LR-ASPP
  from ``densecnn train segment``): it names its own model, backbone, classes and normalisation;
  ``--model`` is not needed. Its images are resized so the shorter side is
  ``meta.input_size`` (``--imgsz`` overrides), as torchvision's preset does.
- otherwise ``--model`` (default: the registry's segment default), with ``--weights`` replacing its
  official weight file (a torchvision state dict).
- ``--weights`` an Ultralytics ``.pt`` (read as bytes to tell, never unpickled for that): a YOLO
  instance segmenter (``--model`` may name a ``-seg`` model; default ``yolov8n-seg``). ``--model
  yolov8n-seg`` / ``yolo11n-seg`` alone: the official file from the weight store.
- ``--model unet|deeplabv3plus --backbone NAME --weights plain_state_dict.pth`` with ``--num-classes``
  and/or ``class_names``: the head rebuilt on that backbone and the state dict loaded into it (ImageNet
  normalisation, shorter side ``--imgsz``, default 512).
- ``--model unet|deeplabv3plus`` without weights: a UsageError saying how to get them (a fresh
  decoder would only produce random masks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from densecnn.checkpoint import CheckpointMeta, read_meta
from densecnn.config import PredictConfig
from densecnn.device import select_device, use_half
from densecnn.errors import UsageError
from densecnn.tasks.base import Predictor
from densecnn.tasks.loading import check_checkpoint, model_weights, needs_weights, resolve_task_spec
from densecnn.zoo import MODELS, ModelSpec, fetch_default
from densecnn.zoo.specs import Preprocess
from densecnn.zoo.store import WeightStore

CHECKPOINT_ARCHS = ("unet", "deeplabv3plus", "deeplabv3")


def resolve_spec(model: str | None) -> ModelSpec:
    return resolve_task_spec(model, "segment")


def instance_spec(cfg: PredictConfig) -> ModelSpec | None:
    """The YOLO instance model ``cfg`` asks for (``--model`` or an Ultralytics ``--weights``), or None."""
    from densecnn.integrations.ultralytics import is_ultralytics_checkpoint
    from densecnn.zoo.segmentation import DEFAULT_INSTANCE

    spec = resolve_spec(cfg.model) if cfg.model else None
    meta = read_meta(cfg.weights) if cfg.weights is not None else None
    if meta is not None and _is_yolo_state(meta):
        return MODELS.get(meta.arch) if meta.arch in MODELS else MODELS.get(DEFAULT_INSTANCE)
    if cfg.weights is not None and is_ultralytics_checkpoint(cfg.weights):
        if spec is not None and spec.family != "yolo":
            raise UsageError(
                f"{cfg.weights} is an Ultralytics checkpoint; --model {spec.name} is not a YOLO model.",
                hint="Leave out --model, or name a YOLO one (yolov8n-seg, yolo11n-seg).",
            )
        return spec or MODELS.get(DEFAULT_INSTANCE)
    return spec if spec is not None and spec.family == "yolo" else None


def _is_yolo_state(meta: CheckpointMeta) -> bool:
    from densecnn.tasks.detect.yolo_state import is_yolo_state

    return is_yolo_state(meta, "segment")


def resolve_class_names(num_classes: int | None, class_names: Sequence[str] | None) -> tuple[str, ...] | None:
    """``--num-classes`` / ``--class-names`` → class names (``class0``... for a bare count); None: neither."""
    if class_names:
        if num_classes is not None and num_classes != len(class_names):
            raise UsageError(f"--num-classes {num_classes} but {len(class_names)} --class-names.")
        return tuple(class_names)
    if num_classes is None:
        return None
    if not 1 <= num_classes <= 255:
        raise UsageError(f"--num-classes must be between 1 and 255, got {num_classes}.")
    return tuple(f"class{i}" for i in range(num_classes))


def load_segmenter(
    cfg: PredictConfig, *, store: WeightStore | None = None, class_names: Sequence[str] | None = None
) -> tuple[Predictor, ModelSpec]:
    """Build the segmenter ``cfg`` names (see the module docstring). ``class_names`` (from
    ``--num-classes`` / ``--class-names``) name the outputs of a plain state dict.

    Official weights come from the store (downloaded once if missing and the network allows;
    WeightsUnavailableError otherwise).
    """
    from densecnn.tasks.segment.semantic import SemanticSegmenter, load_torchvision_segmenter
    from densecnn.zoo.segmentation import SEGMENTATION_PREPROCESS

    if cfg.weights is None and cfg.model is None:  # the default model, or the embedded one
        spec, path = fetch_default("segment", store or WeightStore())
        if spec.family == "densecnn":  # the embedded U-Net is a densecnn checkpoint
            return _from_checkpoint(replace(cfg, weights=path), read_meta(path))[0], spec
    meta = read_meta(cfg.weights) if cfg.weights is not None else None
    if meta is not None:
        if class_names:
            raise UsageError(f"{cfg.weights} names its own classes; leave out --num-classes/--class-names.")
        if _is_yolo_state(meta):  # an Ultralytics -seg model converted to safetensors
            from densecnn.zoo.segmentation import DEFAULT_INSTANCE

            spec = MODELS.get(meta.arch) if meta.arch in MODELS else MODELS.get(DEFAULT_INSTANCE)
            return _yolo(replace(cfg, imgsz=cfg.imgsz or meta.input_size), spec, store, None)
        return _from_checkpoint(cfg, meta)
    yolo = instance_spec(cfg)
    if yolo is not None:
        return _yolo(cfg, yolo, store, class_names)
    spec = resolve_spec(cfg.model)
    if spec.family == "densecnn" and spec.weights is not None and cfg.backbone is None:  # embedded
        path = (store or WeightStore()).fetch(spec.weights, model=spec.name)
        return _from_checkpoint(replace(cfg, model=None, weights=path), read_meta(path))[0], spec
    if spec.family == "densecnn":
        if cfg.weights is not None and cfg.backbone is not None and class_names:
            return _from_state_dict(cfg, spec, tuple(class_names))
        raise _needs_checkpoint(spec, cfg)
    if cfg.backbone is not None:
        raise UsageError(
            f"--backbone goes with --model unet or deeplabv3plus; {spec.name} has its own.",
            hint="A segmenter on a registry backbone comes from a densecnn checkpoint (--weights).",
        )
    device = select_device(cfg.device)
    weights, _ = model_weights(spec, cfg, store)
    model, names = load_torchvision_segmenter(spec.arch, weights, class_names or spec.classes)
    if class_names and len(class_names) != len(names):
        raise UsageError(f"{weights} has {len(names)} classes, not {len(class_names)}.")
    prep = (
        SEGMENTATION_PREPROCESS if cfg.imgsz is None else replace(SEGMENTATION_PREPROCESS, resize=cfg.imgsz)
    )
    predictor = SemanticSegmenter(
        model=model, preprocess=prep, names=names, device=device, half=use_half(device, cfg.half)
    )
    return predictor, spec


def _yolo(
    cfg: PredictConfig, spec: ModelSpec, store: WeightStore | None, class_names: Sequence[str] | None
) -> tuple[Predictor, ModelSpec]:
    """An Ultralytics instance segmenter: the user's ``--weights`` .pt or the official file."""
    from densecnn.tasks.segment.yolo_seg import YoloSegmenter

    if cfg.backbone is not None or class_names:
        raise UsageError(
            f"{spec.name} names its own backbone and classes; leave out --backbone, "
            "--num-classes and --class-names."
        )
    weights, user_named = model_weights(spec, cfg, store)
    device = select_device(cfg.device)
    predictor = YoloSegmenter(
        weights=weights,
        user_named=user_named,
        device=device,
        half=use_half(device, cfg.half),
        conf=spec.conf if cfg.conf is None else cfg.conf,
        iou=spec.iou if cfg.iou is None else cfg.iou,
        imgsz=cfg.imgsz or spec.imgsz,
        max_det=cfg.max_det or spec.max_det,
        trust_weights=cfg.trust_weights,
    )
    return predictor, spec


def _from_state_dict(
    cfg: PredictConfig, spec: ModelSpec, class_names: tuple[str, ...]
) -> tuple[Predictor, ModelSpec]:
    """``--model unet|deeplabv3plus --backbone B --weights plain.pth`` with the classes given."""
    from densecnn.tasks.segment.semantic import SemanticSegmenter
    from densecnn.tasks.segment.smp_heads import load_segmentation_state_dict
    from densecnn.zoo.segmentation import SEGMENTATION_PREPROCESS

    assert cfg.weights is not None and cfg.backbone is not None
    model = load_segmentation_state_dict(cfg.weights, spec.arch, cfg.backbone, len(class_names))
    size = cfg.imgsz or spec.imgsz
    device = select_device(cfg.device)
    predictor = SemanticSegmenter(
        model=model,
        preprocess=replace(SEGMENTATION_PREPROCESS, resize=size, crop=size),
        names=dict(enumerate(class_names)),
        device=device,
        half=use_half(device, cfg.half),
    )
    predictor.backbone = cfg.backbone
    return predictor, spec


def _from_checkpoint(cfg: PredictConfig, meta: CheckpointMeta) -> tuple[Predictor, ModelSpec]:
    """A densecnn segmentation checkpoint (a head on a registry backbone, or a torchvision DeepLabV3 /
    LR-ASPP trained by ``densecnn train segment``), rebuilt and loaded."""
    from densecnn.tasks.segment.semantic import SemanticSegmenter, load_torchvision_checkpoint
    from densecnn.tasks.segment.smp_heads import load_segmentation_checkpoint
    from densecnn.zoo.segmentation import TORCHVISION_SEGMENTERS

    path = check_checkpoint(
        cfg,
        meta,
        task="segment",
        archs=CHECKPOINT_ARCHS,
        what="a U-Net, DeepLabV3(+) or torchvision segmenter",
        whole=TORCHVISION_SEGMENTERS,
    )
    whole = meta.arch in TORCHVISION_SEGMENTERS
    model, _ = (load_torchvision_checkpoint if whole else load_segmentation_checkpoint)(path)
    size = cfg.imgsz or int(meta.input_size)
    prep = Preprocess(resize=size, crop=size, mean=tuple(meta.mean), std=tuple(meta.std))
    device = select_device(cfg.device)
    predictor = SemanticSegmenter(
        model=model,
        preprocess=prep,
        names=dict(enumerate(meta.class_names)),
        device=device,
        half=use_half(device, cfg.half),
        in_channels=meta.in_channels,
    )
    predictor.backbone = meta.backbone  # shown in the run header and summary.json
    return predictor, MODELS.get(meta.arch)


def _needs_checkpoint(spec: ModelSpec, cfg: PredictConfig) -> UsageError:
    """A backbone-built model without a densecnn checkpoint: why it cannot run, and what to do."""
    if cfg.weights is not None:
        return UsageError(
            f"{cfg.weights} is not a densecnn checkpoint, so it does not say what {spec.name} it holds.",
            hint=f"For a plain state dict pass --backbone NAME and --num-classes N (or --class-names "
            f"a,b,c): `densecnn segment SRC --model {spec.name} --backbone {cfg.backbone or 'resnet18'} "
            f"--weights {cfg.weights} --num-classes N`. A .safetensors checkpoint from `densecnn train "
            "segment` names all of that itself.",
        )
    return needs_weights(
        spec,
        cfg,
        task="segment",
        fresh="a fresh decoder would give random masks",
        train=f"densecnn train segment --model {spec.name} --backbone {cfg.backbone}",
    )
