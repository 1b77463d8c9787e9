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

from densecnn.checkpoint import CheckpointMeta, read_meta
from densecnn.config import PredictConfig
from densecnn.device import select_device, use_half
from densecnn.errors import UsageError
from densecnn.integrations.ultralytics import is_ultralytics_checkpoint
from densecnn.tasks.base import Predictor
from densecnn.tasks.detect.yolo_state import is_yolo_state
from densecnn.tasks.loading import check_checkpoint, model_weights, needs_weights, resolve_task_spec
from densecnn.zoo import MODELS, ModelSpec
from densecnn.zoo.specs import Preprocess
from densecnn.zoo.store import WeightStore

CHECKPOINT_ARCH = "classifier"


def resolve_spec(model: str | None) -> ModelSpec:
    return resolve_task_spec(model, "classify")


def load_classifier(cfg: PredictConfig, *, store: WeightStore | None = None) -> tuple[Predictor, ModelSpec]:
    """Build the classifier ``cfg`` names (see the module docstring); keeps the ``cfg.topk`` best classes.

    Official weights come from the store (downloaded once if missing and the network allows;
    WeightsUnavailableError otherwise).
    """
    meta = read_meta(cfg.weights) if cfg.weights is not None else None
    if meta is not None and is_yolo_state(meta, "classify"):  # an Ultralytics -cls model as safetensors
        from densecnn.tasks.classify.yolo_cls import YoloClassifier

        assert cfg.weights is not None
        device = select_device(cfg.device)
        yolo = YoloClassifier(
            weights=cfg.weights,
            user_named=True,
            device=device,
            half=use_half(device, cfg.half),
            imgsz=cfg.imgsz,
            topk=cfg.topk,
        )
        return yolo, MODELS.get(meta.arch) if meta.arch in MODELS else MODELS.get("yolov8n-cls")
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
    weights, user_named = model_weights(spec, cfg, store)
    if spec.family == "yolo":
        from densecnn.tasks.classify.yolo_cls import YoloClassifier

        predictor: Predictor = YoloClassifier(
            weights=weights,
            user_named=user_named,
            device=device,
            half=half,
            imgsz=cfg.imgsz,
            topk=cfg.topk,
            trust_weights=cfg.trust_weights,
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

    path = check_checkpoint(cfg, meta, task="classify", archs=(CHECKPOINT_ARCH,), what="a classifier")
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
    return needs_weights(
        spec,
        cfg,
        task="classify",
        fresh="a fresh head would guess at random",
        train=f"densecnn train classify --backbone {cfg.backbone}",
    )
