"""Detector construction: a model name + weights + settings → a Predictor."""

from __future__ import annotations

from pathlib import Path

from densecnn.config import PredictConfig, resolve_classes
from densecnn.device import select_device, use_half
from densecnn.errors import UsageError
from densecnn.tasks.base import Predictor
from densecnn.zoo import MODELS, ModelSpec, default_model
from densecnn.zoo.store import WeightStore


def resolve_spec(model: str | None) -> ModelSpec:
    spec = MODELS.get(model) if model else default_model("detect")
    if spec.task != "detect":
        raise UsageError(f"{spec.name} is a {spec.task} model; `densecnn detect` needs a detection model.")
    return spec


def build_detector(cfg: PredictConfig, *, store: WeightStore | None = None) -> tuple[Predictor, ModelSpec]:
    """Build the detector ``cfg`` names. Weights: ``cfg.weights`` if given, else the store's file
    (downloaded once if missing and the network allows; WeightsUnavailableError otherwise)."""
    spec = resolve_spec(cfg.model)
    device = select_device(cfg.device)
    half = use_half(device, cfg.half)
    weights: Path
    if cfg.weights is not None:
        weights, user_named = cfg.weights, True
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
        )
    else:
        from densecnn.tasks.detect.rcnn import TorchvisionDetector

        predictor = TorchvisionDetector(
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
