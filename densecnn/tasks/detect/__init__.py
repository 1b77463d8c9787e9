"""Detector construction: a model name + weights + settings → a Predictor."""

from __future__ import annotations

from pathlib import Path

from densecnn.checkpoint import CheckpointMeta, read_meta
from densecnn.config import PredictConfig, resolve_classes
from densecnn.device import select_device, use_half
from densecnn.errors import UsageError
from densecnn.tasks.base import Predictor
from densecnn.zoo import MODELS, ModelSpec, default_model, fetch_default
from densecnn.zoo.store import WeightStore


def resolve_spec(model: str | None) -> ModelSpec:
    spec = MODELS.get(model) if model else default_model("detect")
    if spec.task != "detect":
        raise UsageError(f"{spec.name} is a {spec.task} model; `densecnn detect` needs a detection model.")
    return spec


def build_detector(cfg: PredictConfig, *, store: WeightStore | None = None) -> tuple[Predictor, ModelSpec]:
    """Build the detector ``cfg`` names. Weights: ``cfg.weights`` if given (a densecnn checkpoint
    names its own model, backbone and classes), else the store's file (downloaded once if missing
    and the network allows; WeightsUnavailableError otherwise)."""
    meta = read_meta(cfg.weights) if cfg.weights is not None else None
    if meta is not None:
        return _from_checkpoint(cfg, meta)
    spec = resolve_spec(cfg.model)
    if spec.family == "densecnn":
        _no_trained_weights(spec, cfg)
    if cfg.backbone is not None:
        raise UsageError(
            f"--backbone goes with a model built on a registry backbone; {spec.name} has its own.",
            hint=f"Use --model {', '.join(_backbone_models())} with --backbone.",
        )
    device = select_device(cfg.device)
    half = use_half(device, cfg.half)
    weights: Path
    if cfg.weights is not None:
        weights, user_named = cfg.weights, True
    elif cfg.model is None:  # the default model, or the embedded one when it is unavailable
        spec, weights = fetch_default("detect", store or WeightStore())
        user_named = False
    else:
        if spec.weights is None:
            raise UsageError(f"{spec.name} has no official weights; pass --weights FILE.")
        weights, user_named = (store or WeightStore()).fetch(spec.weights, model=spec.name), False
    conf = spec.conf if cfg.conf is None else cfg.conf
    iou = spec.iou if cfg.iou is None else cfg.iou
    max_det = cfg.max_det or spec.max_det
    if spec.family == "yolo":
        from densecnn.tasks.detect.yolo import YoloDetector

        predictor: Predictor = YoloDetector(
            weights=weights,
            user_named=user_named,
            device=device,
            half=half,
            conf=conf,
            iou=iou,
            imgsz=cfg.imgsz or spec.imgsz,
            max_det=max_det,
            trust_weights=cfg.trust_weights,
        )
    else:
        from densecnn.tasks.detect.rcnn import load_torchvision_detector

        predictor = load_torchvision_detector(
            arch=spec.arch,
            weights=weights,
            class_names=spec.classes,
            device=device,
            half=half,
            conf=conf,
            iou=iou,
            imgsz=cfg.imgsz,
            max_det=max_det,
        )
    # Class names come from the loaded weights (a custom .pt has its own), so --classes resolves last.
    predictor.set_classes(resolve_classes(cfg.classes, predictor.names))
    return predictor, spec


def _backbone_models() -> list[str]:
    return [name for name, spec in MODELS.items() if spec.task == "detect" and spec.family == "densecnn"]


def _check_backbone(spec: ModelSpec, backbone: str) -> None:
    """UsageError when ``backbone`` is unknown or cannot serve ``spec``'s head (no torch needed)."""
    from densecnn.backbones import BACKBONES
    from densecnn.backbones.heads import HEADS

    HEADS.get(spec.arch).check(BACKBONES.get(backbone))


def _no_trained_weights(spec: ModelSpec, cfg: PredictConfig) -> None:
    """A backbone-built model without a densecnn checkpoint: say why it cannot run, and what to do."""
    if cfg.backbone is not None:
        _check_backbone(spec, cfg.backbone)
    backbone = cfg.backbone or "NAME"
    how = (
        f"Train one with `densecnn train detect --model {spec.name} --backbone {backbone}` (coming in "
        "a later version of densecnn), or pass --weights CKPT.safetensors, a densecnn checkpoint from "
        "such a run (it names its backbone and classes itself; `densecnn models --matrix` lists backbones)."
    )
    if cfg.weights is not None:
        raise UsageError(
            f"--weights {cfg.weights} is not a densecnn checkpoint; {spec.name} loads its weights "
            "only from one (a .safetensors file written by densecnn).",
            hint=how,
        )
    on = f" on {cfg.backbone}" if cfg.backbone else ""
    raise UsageError(
        f"{spec.name}{on} has no trained weights yet: densecnn ships no detection weights for models "
        "built on a registry backbone (ImageNet backbone weights alone do not detect).",
        hint=how,
    )


def _from_checkpoint(cfg: PredictConfig, meta: CheckpointMeta) -> tuple[Predictor, ModelSpec]:
    """A detector from a densecnn checkpoint: its metadata names the model, backbone and classes."""
    if meta.task != "detect":
        raise UsageError(
            f"{cfg.weights} is a {meta.task} checkpoint ({meta.arch}); `densecnn detect` needs a "
            "detection one.",
            hint=f"Use `densecnn {meta.task}` with it.",
        )
    if meta.arch not in MODELS:
        raise UsageError(f"{cfg.weights}: unknown detection model {meta.arch!r} in its metadata.")
    spec = MODELS.get(meta.arch)
    if cfg.model is not None and MODELS.get(cfg.model) is not spec:
        raise UsageError(
            f"--model {cfg.model}, but {cfg.weights} holds a {spec.name} model.", hint="Leave out --model."
        )
    if cfg.backbone is not None and cfg.backbone.lower() != (meta.backbone or "").lower():
        raise UsageError(
            f"--backbone {cfg.backbone}, but {cfg.weights} was trained on {meta.backbone}.",
            hint="Leave out --backbone: the checkpoint names its own.",
        )
    if meta.in_channels != 3:
        raise UsageError(f"{cfg.weights} takes {meta.in_channels}-channel images; detect feeds RGB.")
    device = select_device(cfg.device)
    half = use_half(device, cfg.half)
    conf = spec.conf if cfg.conf is None else cfg.conf
    iou = spec.iou if cfg.iou is None else cfg.iou
    max_det = cfg.max_det or spec.max_det
    from densecnn.tasks.detect.rcnn import TorchvisionDetector, configure_rcnn, load_torchvision_detector
    from densecnn.tasks.detect.yolo_state import is_yolo_state

    predictor: TorchvisionDetector
    if spec.family == "densecnn":
        from densecnn.tasks.detect.rcnn_backbone import load_fasterrcnn_checkpoint

        assert cfg.weights is not None
        model, _ = load_fasterrcnn_checkpoint(cfg.weights)
        configure_rcnn(model, conf=conf, iou=iou, max_det=max_det, imgsz=cfg.imgsz)
        predictor = TorchvisionDetector(
            model=model,
            names=dict(enumerate(meta.class_names)),
            device=device,
            half=half,
            backbone=meta.backbone,
        )
    elif spec.family == "torchvision":
        assert cfg.weights is not None
        predictor = load_torchvision_detector(
            arch=spec.arch,
            weights=cfg.weights,
            class_names=meta.class_names,
            device=device,
            half=half,
            conf=conf,
            iou=iou,
            imgsz=cfg.imgsz,
            max_det=max_det,
        )
    elif spec.family == "yolo" and is_yolo_state(meta):
        from densecnn.tasks.detect.yolo import YoloDetector

        assert cfg.weights is not None
        yolo = YoloDetector(
            weights=cfg.weights,
            user_named=True,
            device=device,
            half=half,
            conf=conf,
            iou=iou,
            imgsz=cfg.imgsz or meta.input_size,
            max_det=max_det,
        )
        yolo.set_classes(resolve_classes(cfg.classes, yolo.names))
        return yolo, spec
    else:
        raise UsageError(f"{cfg.weights}: {spec.name} models do not load from densecnn checkpoints.")
    predictor.set_classes(resolve_classes(cfg.classes, predictor.names))
    return predictor, spec
