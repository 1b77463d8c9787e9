"""Segmenter construction: a model name or a weight file + settings → a Predictor of label maps.

Which model runs:

- ``--weights`` a densecnn checkpoint (``.safetensors`` with densecnn metadata, ``unet`` or
  ``deeplabv3plus`` on a registry backbone): it names its own head, backbone, classes and
  normalisation; ``--model`` is not needed. Its images are resized so the shorter side is
  ``meta.input_size`` (``--imgsz`` overrides), as torchvision's preset does.
- otherwise ``--model`` (default: the registry's segment default), with ``--weights`` replacing its
  official weight file (a torchvision state dict).
- ``--model unet|deeplabv3plus`` without a checkpoint: a UsageError saying how to get one (a fresh
  decoder would only produce random masks).
"""

from __future__ import annotations

from dataclasses import replace

from densecnn.checkpoint import CheckpointMeta, read_meta
from densecnn.config import PredictConfig
from densecnn.device import select_device, use_half
from densecnn.errors import UsageError
from densecnn.tasks.base import Predictor
from densecnn.zoo import MODELS, ModelSpec, default_model, fetch_default
from densecnn.zoo.specs import Preprocess
from densecnn.zoo.store import WeightStore

CHECKPOINT_ARCHS = ("unet", "deeplabv3plus")


def resolve_spec(model: str | None) -> ModelSpec:
    spec = MODELS.get(model) if model else default_model("segment")
    if spec.task != "segment":
        raise UsageError(
            f"{spec.name} is a {spec.task} model; `densecnn segment` needs a segmentation model.",
            hint="See `densecnn models --task segment`.",
        )
    return spec


def load_segmenter(cfg: PredictConfig, *, store: WeightStore | None = None) -> tuple[Predictor, ModelSpec]:
    """Build the segmenter ``cfg`` names (see the module docstring).

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
        return _from_checkpoint(cfg, meta)
    spec = resolve_spec(cfg.model)
    if spec.family == "densecnn" and spec.weights is not None and cfg.backbone is None:  # embedded
        path = (store or WeightStore()).fetch(spec.weights, model=spec.name)
        return _from_checkpoint(replace(cfg, model=None, weights=path), read_meta(path))[0], spec
    if spec.family == "densecnn":
        raise _needs_checkpoint(spec, cfg)
    if spec.family != "torchvision":
        raise UsageError(f"{spec.name}: {spec.family} segmentation models are not supported yet.")
    if cfg.backbone is not None:
        raise UsageError(
            f"--backbone goes with --model unet or deeplabv3plus; {spec.name} has its own.",
            hint="A segmenter on a registry backbone comes from a densecnn checkpoint (--weights).",
        )
    device = select_device(cfg.device)
    if cfg.weights is not None:
        weights = cfg.weights
    else:
        if spec.weights is None:
            raise UsageError(f"{spec.name} has no official weights; pass --weights FILE.")
        weights = (store or WeightStore()).fetch(spec.weights, model=spec.name)
    model, names = load_torchvision_segmenter(spec.arch, weights, spec.classes)
    prep = (
        SEGMENTATION_PREPROCESS if cfg.imgsz is None else replace(SEGMENTATION_PREPROCESS, resize=cfg.imgsz)
    )
    predictor = SemanticSegmenter(
        model=model, preprocess=prep, names=names, device=device, half=use_half(device, cfg.half)
    )
    return predictor, spec


def _from_checkpoint(cfg: PredictConfig, meta: CheckpointMeta) -> tuple[Predictor, ModelSpec]:
    """A densecnn U-Net / DeepLabV3+ checkpoint on a registry backbone, rebuilt and loaded."""
    from densecnn.tasks.segment.semantic import SemanticSegmenter
    from densecnn.tasks.segment.smp_heads import load_segmentation_checkpoint

    path = cfg.weights
    if path is None:
        raise UsageError("A densecnn checkpoint needs --weights.")
    if meta.task != "segment" or meta.arch not in CHECKPOINT_ARCHS or meta.backbone is None:
        raise UsageError(
            f"{path} is a densecnn {meta.task} checkpoint ({meta.arch}), not a U-Net or DeepLabV3+.",
            hint=f"Use it with `densecnn {meta.task}`." if meta.task != "segment" else None,
        )
    if cfg.model is not None and cfg.model.lower() != meta.arch:
        raise UsageError(f"{path} holds a {meta.arch} on {meta.backbone}; leave out --model {cfg.model}.")
    if cfg.backbone is not None and cfg.backbone != meta.backbone:
        raise UsageError(f"{path} was trained on backbone {meta.backbone}, not {cfg.backbone}.")
    model, _ = load_segmentation_checkpoint(path)
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
    from densecnn.backbones import BACKBONES

    if cfg.weights is not None:
        return UsageError(
            f"{cfg.weights} is not a densecnn checkpoint; {spec.name} loads only those "
            "(.safetensors from `densecnn train segment`, naming backbone and classes).",
        )
    if cfg.backbone is None:
        return UsageError(
            f"{spec.name} is built on a registry backbone and needs trained weights.",
            hint=f"Pass --weights CKPT.safetensors from `densecnn train segment` (it names its backbone); "
            f"backbones: {', '.join(BACKBONES.names())}.",
        )
    BACKBONES.get(cfg.backbone)  # an unknown name fails here with close matches
    return UsageError(
        f"{spec.name} on {cfg.backbone} has no trained weights: a fresh decoder would give random masks.",
        hint=f"Train one with `densecnn train segment --model {spec.name} --backbone {cfg.backbone}`, then "
        "pass its checkpoint with --weights CKPT.safetensors (it names its backbone and classes itself).",
    )
