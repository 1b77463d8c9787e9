"""Classifier construction: a model name or a weight file + settings → a Predictor of top-k classes.

Which model runs:

- ``--weights`` a densecnn checkpoint (``.safetensors`` with densecnn metadata): it names its own head,
  backbone, classes and preprocessing; ``--model`` is not needed.
- ``--weights`` an Ultralytics ``.pt`` and no ``--model``: the YOLO classifier in that file.
- otherwise ``--model`` (default: the registry's classify default), with ``--weights`` replacing its
  official weight file (a torchvision state dict, or an Ultralytics ``.pt`` for a YOLO model).

Densecnn checkpoints preprocess as their metadata says: ``input_size`` is the centre crop, and the
shorter side is resized to ``extra["preprocess"]["resize"]`` when given (else to ``input_size``), with
``extra["preprocess"]["interpolation"]`` (default bilinear), then normalised with ``mean``/``std``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from densecnn.checkpoint import CheckpointMeta, read_meta
from densecnn.config import PredictConfig
from densecnn.device import select_device, use_half
from densecnn.errors import UsageError
from densecnn.tasks.base import Predictor
from densecnn.zoo import MODELS, ModelSpec, default_model
from densecnn.zoo.specs import Preprocess
from densecnn.zoo.store import WeightStore

CHECKPOINT_ARCH = "classifier"


def resolve_spec(model: str | None) -> ModelSpec:
    spec = MODELS.get(model) if model else default_model("classify")
    if spec.task != "classify":
        raise UsageError(
            f"{spec.name} is a {spec.task} model; `densecnn classify` needs a classification model.",
            hint="See `densecnn models --task classify`.",
        )
    return spec


def is_ultralytics_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a torch zip whose pickle references Ultralytics classes (read, not unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return bool(pickles) and b"ultralytics." in archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile):
        return False


def load_classifier(cfg: PredictConfig, *, store: WeightStore | None = None) -> tuple[Predictor, ModelSpec]:
    """Build the classifier ``cfg`` names (see the module docstring); keeps the ``cfg.topk`` best classes.

    Official weights come from the store (downloaded once if missing and the network allows;
    WeightsUnavailableError otherwise).
    """
    meta = read_meta(cfg.weights) if cfg.weights is not None else None
    if meta is not None:
        return _from_checkpoint(cfg, meta)
    if cfg.model is None and cfg.weights is not None and is_ultralytics_checkpoint(cfg.weights):
        spec = MODELS.get("yolov8n-cls")
    else:
        spec = resolve_spec(cfg.model)
    if spec.family == "densecnn":
        raise _needs_checkpoint(spec, cfg)
    if cfg.backbone is not None:
        raise UsageError(
            f"--backbone goes with --model classifier; {spec.name} has its own.",
            hint="A classifier on a registry backbone comes from a densecnn checkpoint (--weights).",
        )
    device = select_device(cfg.device)
    half = use_half(device, cfg.half)
    if cfg.weights is not None:
        weights, user_named = cfg.weights, True
    else:
        if spec.weights is None:
            raise UsageError(f"{spec.name} has no official weights; pass --weights FILE.")
        weights, user_named = (store or WeightStore()).fetch(spec.weights, model=spec.name), False
    if spec.family == "yolo":
        from densecnn.tasks.classify.yolo_cls import YoloClassifier

        predictor: Predictor = YoloClassifier(
            weights=weights, user_named=user_named, device=device, half=half, imgsz=cfg.imgsz, topk=cfg.topk
        )
        return predictor, spec
    from densecnn.tasks.classify.torch_cls import (
        TensorClassifier,
        load_torchvision_classifier,
        scaled_preprocess,
    )
    from densecnn.zoo.classification import preprocess_for

    model, names = load_torchvision_classifier(spec.arch, weights, spec.classes)
    predictor = TensorClassifier(
        model=model,
        preprocess=scaled_preprocess(preprocess_for(spec), cfg.imgsz),
        names=names,
        device=device,
        half=half,
        topk=cfg.topk,
    )
    return predictor, spec


def checkpoint_preprocess(meta: CheckpointMeta) -> Preprocess:
    """How a densecnn classifier checkpoint wants its images (see the module docstring)."""
    extra = meta.extra.get("preprocess") or {}
    return Preprocess(
        resize=int(extra.get("resize", meta.input_size)),
        crop=int(meta.input_size),
        mean=tuple(meta.mean),
        std=tuple(meta.std),
        interpolation=str(extra.get("interpolation", "bilinear")),
    )


def _from_checkpoint(cfg: PredictConfig, meta: CheckpointMeta) -> tuple[Predictor, ModelSpec]:
    """A densecnn classifier checkpoint: registry backbone + pooled linear head, rebuilt and loaded."""
    from densecnn.tasks.classify.head import load_classifier_checkpoint
    from densecnn.tasks.classify.torch_cls import TensorClassifier, scaled_preprocess

    path = cfg.weights
    if path is None:
        raise UsageError("A densecnn checkpoint needs --weights.")
    if meta.task != "classify" or meta.arch != CHECKPOINT_ARCH or meta.backbone is None:
        raise UsageError(
            f"{path} is a densecnn {meta.task} checkpoint ({meta.arch}), not a classifier.",
            hint=f"Use it with `densecnn {meta.task}`." if meta.task != "classify" else None,
        )
    if cfg.model is not None and cfg.model.lower() != CHECKPOINT_ARCH:
        raise UsageError(f"{path} holds a classifier on {meta.backbone}; leave out --model {cfg.model}.")
    if cfg.backbone is not None and cfg.backbone != meta.backbone:
        raise UsageError(f"{path} was trained on backbone {meta.backbone}, not {cfg.backbone}.")
    model, _ = load_classifier_checkpoint(path)
    device = select_device(cfg.device)
    predictor = TensorClassifier(
        model=model,
        preprocess=scaled_preprocess(checkpoint_preprocess(meta), cfg.imgsz),
        names=dict(enumerate(meta.class_names)),
        device=device,
        half=use_half(device, cfg.half),
        topk=cfg.topk,
        in_channels=meta.in_channels,
    )
    predictor.backbone = meta.backbone  # shown in the run header and summary.json
    return predictor, MODELS.get(CHECKPOINT_ARCH)


def _needs_checkpoint(spec: ModelSpec, cfg: PredictConfig) -> UsageError:
    """A backbone-built model without a densecnn checkpoint: why it cannot run, and what to do."""
    from densecnn.backbones import BACKBONES

    if cfg.backbone is None:
        return UsageError(
            f"{spec.name} is built on a registry backbone and needs trained weights.",
            hint=f"Pass --weights CKPT.safetensors from `densecnn train classify` (it names its backbone); "
            f"backbones: {', '.join(BACKBONES.names())}.",
        )
    BACKBONES.get(cfg.backbone)  # an unknown name fails here with close matches
    return UsageError(
        f"{spec.name} on {cfg.backbone} has no trained weights: a fresh head would guess at random.",
        hint=f"Train one with `densecnn train classify --backbone {cfg.backbone}`, then pass its "
        "checkpoint with --weights CKPT.safetensors (it names its backbone and classes itself).",
    )
