"""What the task loaders (``classify``, ``segment``) share once a model is named: resolving the spec,
checking a densecnn checkpoint against the command line, explaining a backbone-built model without
weights, and fetching official weights."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from densecnn.checkpoint import CheckpointMeta
from densecnn.config import PredictConfig
from densecnn.errors import UsageError
from densecnn.zoo import MODELS, ModelSpec, default_model
from densecnn.zoo.store import WeightStore

_NOUN = {"detect": "detection", "segment": "segmentation", "classify": "classification"}


def resolve_task_spec(model: str | None, task: str) -> ModelSpec:
    """``--model`` (default: the task's default) → its spec; UsageError when it is another task's."""
    spec = MODELS.get(model) if model else default_model(task)
    if spec.task != task:
        raise UsageError(
            f"{spec.name} is a {spec.task} model; `densecnn {task}` needs a {_NOUN[task]} model.",
            hint=f"See `densecnn models --task {task}`.",
        )
    return spec


def check_checkpoint(
    cfg: PredictConfig,
    meta: CheckpointMeta,
    *,
    task: str,
    archs: Collection[str],
    what: str,
    whole: Collection[str] = (),
) -> Path:
    """A densecnn checkpoint given with ``--weights`` must hold one of ``archs`` on a backbone, or one
    of the ``whole`` models (their own backbone, none named), and agree with ``--model`` /
    ``--backbone``; ``what`` names them for the user. Returns its path."""
    path = cfg.weights
    if path is None:
        raise UsageError("A densecnn checkpoint needs --weights.")
    if meta.arch in whole and meta.task == task:
        if cfg.backbone is not None:
            raise UsageError(f"{path} holds a {meta.arch}, which has its own backbone; leave out --backbone.")
    elif meta.task != task or meta.arch not in archs or meta.backbone is None:
        raise UsageError(
            f"{path} is a densecnn {meta.task} checkpoint ({meta.arch}), not {what}.",
            hint=f"Use it with `densecnn {meta.task}`." if meta.task != task else None,
        )
    if cfg.model is not None and cfg.model.lower() != meta.arch:
        on = f" on {meta.backbone}" if meta.backbone else ""
        raise UsageError(f"{path} holds a {meta.arch}{on}; leave out --model {cfg.model}.")
    if cfg.backbone is not None and cfg.backbone != meta.backbone:
        raise UsageError(f"{path} was trained on backbone {meta.backbone}, not {cfg.backbone}.")
    return path


def needs_weights(spec: ModelSpec, cfg: PredictConfig, *, task: str, fresh: str, train: str) -> UsageError:
    """Why a backbone-built model without trained weights cannot run, and what to do. ``fresh`` says
    what an untrained head would do; ``train`` is the ``densecnn train`` command line that makes them."""
    from densecnn.backbones import BACKBONES

    if cfg.backbone is None:
        return UsageError(
            f"{spec.name} is built on a registry backbone and needs trained weights.",
            hint=f"Pass --weights CKPT.safetensors from `densecnn train {task}` (it names its backbone); "
            f"backbones: {', '.join(BACKBONES.names())}.",
        )
    BACKBONES.get(cfg.backbone)  # an unknown name fails here with close matches
    return UsageError(
        f"{spec.name} on {cfg.backbone} has no trained weights: {fresh}.",
        hint=f"Train one with `{train}`, then pass its checkpoint with --weights CKPT.safetensors "
        "(it names its backbone and classes itself).",
    )


def model_weights(spec: ModelSpec, cfg: PredictConfig, store: WeightStore | None) -> tuple[Path, bool]:
    """(weight file, whether the user named it): ``--weights``, else the official file from the store
    (downloaded once if missing and the network allows; WeightsUnavailableError otherwise)."""
    if cfg.weights is not None:
        return cfg.weights, True
    if spec.weights is None:
        raise UsageError(f"{spec.name} has no official weights; pass --weights FILE.")
    return (store or WeightStore()).fetch(spec.weights, model=spec.name), False
