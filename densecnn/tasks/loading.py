"""One way to get a predictor: :func:`load_predictor`, behind ``densecnn.load`` and every command.

Five steps, each written once:

1. identify the weight file (``--weights``) as a typed :class:`~densecnn.tasks.builders.WeightsRef`;
2. resolve the model spec: a densecnn checkpoint's own architecture wins (and must agree with
   ``--model`` / ``--backbone``); an Ultralytics file picks the task's YOLO model; otherwise
   ``--model`` or the task's default, whose official file comes from the weight store (the embedded
   model stands in for the default when that is unavailable);
3. resolve device and precision;
4. merge the model's threshold defaults with the user's values;
5. call the builder registered for (task, family), beside its adapter (an exported .onnx /
   OpenVINO file: the adapter rebuilt around it from the file's own metadata);
6. put it on the backend ``--backend`` asks for (``densecnn.runtimes.attach``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from densecnn.config import PredictConfig, resolve_classes
from densecnn.errors import UsageError
from densecnn.tasks.builders import NO_WEIGHTS, BuildRequest, WeightsRef, builder_for, identify
from densecnn.zoo import MODELS, ModelSpec, default_model, fetch_default
from densecnn.zoo.heads import HEADS
from densecnn.zoo.segmentation import DEFAULT_INSTANCE
from densecnn.zoo.store import WeightStore

if TYPE_CHECKING:
    from densecnn.checkpoint import CheckpointMeta
    from densecnn.tasks.base import Predictor

TASKS = ("detect", "segment", "classify")
_NOUN = {"detect": "detection", "segment": "segmentation", "classify": "classification"}
# The YOLO model an Ultralytics file stands for when no --model names one.
_ULTRALYTICS_DEFAULT = {"detect": "yolov8n", "segment": DEFAULT_INSTANCE, "classify": "yolov8n-cls"}
# What a densecnn checkpoint of each task may hold: heads on a registry backbone, or whole models.
_CHECKPOINT_WHAT = {
    "segment": "a U-Net, DeepLabV3(+) or torchvision segmenter",
    "classify": "a classifier",
}


def load_predictor(
    cfg: PredictConfig,
    *,
    task: str | None = None,
    store: WeightStore | None = None,
    class_names: Sequence[str] | None = None,
) -> Predictor:
    """Build the predictor ``cfg`` asks for (see the module docstring). ``task`` None: the task of
    ``--model`` or of the checkpoint, else detect. The predictor carries its ``spec`` and ``weights``.

    Official weights come from the store (downloaded once if missing and the network allows;
    WeightsUnavailableError otherwise).
    """
    from densecnn.runtimes.attach import apply_backend, exported_predictor

    request = resolve_request(cfg, task=task, store=store, class_names=class_names)
    if request.weights.kind == "exported":
        predictor = exported_predictor(request)
    else:
        predictor = builder_for(request.spec.task, request.spec.family)(request)
    predictor.spec = request.spec
    predictor.weights_path = request.weights.path
    apply_backend(predictor, request, store)  # 6. torch, or the graph on ONNX Runtime / OpenVINO
    # Class names come from the loaded weights (a custom .pt has its own), so --classes resolves last.
    predictor.set_classes(resolve_classes(cfg.classes, predictor.names))
    if cfg.tile is not None:
        from densecnn.tasks.tiling import TiledPredictor

        if request.spec.task == "classify":
            raise UsageError("--tile applies to detect and segment, not classify.")
        predictor = TiledPredictor(predictor, cfg.tile)
    return predictor


def resolve_request(
    cfg: PredictConfig,
    *,
    task: str | None = None,
    store: WeightStore | None = None,
    class_names: Sequence[str] | None = None,
) -> BuildRequest:
    """Steps 1-4: what to build, from which file, on which device, with which thresholds."""
    from densecnn.device import select_device, use_half

    weights = identify(cfg.weights) if cfg.weights is not None else NO_WEIGHTS
    task = task or infer_task(cfg, weights)
    if task not in TASKS:
        raise UsageError(f"Unknown task {task!r}.", hint=f"Use one of: {', '.join(TASKS)}.")
    names = tuple(class_names) if class_names else None
    spec, weights = _resolve(cfg, task, weights, store or WeightStore(), names)
    device = select_device(cfg.device)
    return BuildRequest(
        spec=spec,
        weights=weights,
        device=device,
        half=use_half(device, cfg.half),
        cfg=cfg,
        conf=spec.conf if cfg.conf is None else cfg.conf,
        iou=spec.iou if cfg.iou is None else cfg.iou,
        max_det=cfg.max_det or spec.max_det,
        class_names=names,
    )


def infer_task(cfg: PredictConfig, weights: WeightsRef | None = None) -> str:
    """The task of ``--model``, else of the weight file, else detect."""
    if weights is None:
        weights = identify(cfg.weights) if cfg.weights is not None else NO_WEIGHTS
    if cfg.model is not None:
        check_model_name(cfg.model, None)
        return MODELS.get(cfg.model).task
    if weights.meta is not None:
        return weights.meta.task
    if weights.export is not None:
        return weights.export.task
    if weights.kind == "ultralytics" and weights.path is not None:
        from densecnn.integrations.ultralytics import ultralytics_task

        return ultralytics_task(weights.path)
    return "detect"


def check_model_name(model: str | None, task: str | None) -> None:
    """An unknown ``--model`` fails here, before torch loads, with the closest names of its task."""
    if model is None or model in MODELS:
        return
    import difflib

    names = [n for n, s in MODELS.items() if task is None or s.task == task]
    close = difflib.get_close_matches(model.lower(), names, n=3, cutoff=0.4)
    what = f"{task} model" if task else "model"
    listing = f"`densecnn models --task {task}`" if task else "`densecnn models`"
    hint = f"Did you mean: {', '.join(close)}? All: {listing}." if close else f"See {listing}."
    raise UsageError(f"Unknown {what} {model!r}.", hint=hint)


def resolve_task_spec(model: str | None, task: str) -> ModelSpec:
    """``--model`` (default: the task's default) → its spec; UsageError when it is another task's."""
    check_model_name(model, task)
    spec = MODELS.get(model) if model else default_model(task)
    if spec.task != task:
        raise UsageError(
            f"{spec.name} is a {spec.task} model; `densecnn {task}` needs a {_NOUN[task]} model.",
            hint=f"See `densecnn models --task {task}`.",
        )
    return spec


def _resolve(
    cfg: PredictConfig, task: str, weights: WeightsRef, store: WeightStore, names: tuple[str, ...] | None
) -> tuple[ModelSpec, WeightsRef]:
    """Step 2: the spec, and the weight file it loads (fetched from the store when none was named)."""
    if weights.export is not None:
        return _exported_spec(cfg, task, weights), weights
    if weights.meta is not None:
        from densecnn.tasks.detect.yolo_state import is_yolo_state

        if names:
            raise UsageError(f"{cfg.weights} names its own classes; leave out --num-classes/--class-names.")
        if task != "detect" and is_yolo_state(weights.meta, task):  # an Ultralytics model as safetensors
            return _yolo_spec(weights.meta.arch, task), weights
        return _checkpoint_spec(cfg, weights.meta, task), weights
    if weights.kind == "ultralytics":
        spec = resolve_task_spec(cfg.model or _ULTRALYTICS_DEFAULT[task], task)
        if task == "segment" and spec.family != "yolo":
            raise UsageError(
                f"{cfg.weights} is an Ultralytics checkpoint; --model {spec.name} is not a YOLO model.",
                hint="Leave out --model, or name a YOLO one (yolov8n-seg, yolo11n-seg).",
            )
        _no_backbone(spec, cfg)
        return spec, weights
    if weights.kind == "none" and cfg.model is None:  # the default model, or the embedded one
        spec, path = fetch_default(task, store)
        origin = "embedded" if spec.weights is not None and spec.weights.embedded else "store"
        return spec, identify(path, origin)
    spec = resolve_task_spec(cfg.model, task)
    if spec.family == "densecnn" and spec.head is not None:
        return spec, weights  # its builder explains what a head needs (a densecnn checkpoint)
    _no_backbone(spec, cfg)
    if weights.kind != "none" or spec.weights is None:
        return spec, weights  # a family without an official file: its builder knows what it needs
    path = store.fetch(spec.weights, model=spec.name)
    return spec, identify(path, "embedded" if spec.weights.embedded else "store")


def _exported_spec(cfg: PredictConfig, task: str, weights: WeightsRef) -> ModelSpec:
    """The zoo spec an exported file names (its task must be this command's)."""
    meta = weights.export
    assert meta is not None
    if meta.task != task:
        raise UsageError(
            f"{weights.path} is an exported {meta.task} model; `densecnn {task}` needs a {_NOUN[task]} one.",
            hint=f"Use `densecnn {meta.task}` with it.",
        )
    if cfg.model is not None and cfg.model != meta.model:
        raise UsageError(
            f"--model {cfg.model}, but {weights.path} holds {meta.model}.", hint="Leave out --model."
        )
    return MODELS.get(meta.model) if meta.model in MODELS else default_model(task)


def _yolo_spec(arch: str, task: str) -> ModelSpec:
    """The zoo's YOLO model of ``arch`` for ``task``, else the task's default YOLO model."""
    spec = MODELS.get(arch) if arch in MODELS else None
    if spec is not None and spec.task == task and spec.family == "yolo":
        return spec
    return MODELS.get(_ULTRALYTICS_DEFAULT[task])


def _no_backbone(spec: ModelSpec, cfg: PredictConfig) -> None:
    """``--backbone`` only goes with a head built on a registry backbone."""
    if cfg.backbone is None:
        return
    heads = [name for name, head in HEADS.items() if head.task == spec.task]
    raise UsageError(
        f"--backbone goes with a model built on a registry backbone ({', '.join(heads)}); "
        f"{spec.name} has its own: leave out --backbone.",
        hint=f"Use --model {' or '.join(heads)} with --backbone; a densecnn checkpoint (--weights) "
        "names its own.",
    )


def _checkpoint_spec(cfg: PredictConfig, meta: CheckpointMeta, task: str) -> ModelSpec:
    """The spec of a densecnn checkpoint the user named, checked against the command line."""
    if task == "detect":
        return _detect_checkpoint_spec(cfg, meta)
    # whole models (their own backbone) that `densecnn train segment` writes as densecnn checkpoints
    whole = [n for n, s in MODELS.items() if s.task == task == "segment" and s.family == "torchvision"]
    archs = [n for n, h in HEADS.items() if h.task == task]
    check_checkpoint(cfg, meta, task=task, archs=archs, what=_CHECKPOINT_WHAT[task], whole=whole)
    return MODELS.get(meta.arch)


def _detect_checkpoint_spec(cfg: PredictConfig, meta: CheckpointMeta) -> ModelSpec:
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


def needs_weights(request: BuildRequest, *, fresh: str, train: str) -> UsageError:
    """Why a head on a registry backbone without a densecnn checkpoint cannot run, and what to do.
    ``fresh`` says what an untrained head would do; ``train`` is the ``densecnn train`` command line
    that makes its weights."""
    from densecnn.backbones import BACKBONES

    spec, cfg = request.spec, request.cfg
    if cfg.backbone is None:
        return UsageError(
            f"{spec.name} is built on a registry backbone and needs trained weights.",
            hint=f"Pass --weights CKPT.safetensors from `densecnn train {spec.task}` (it names its "
            f"backbone); backbones: {', '.join(BACKBONES.names())}.",
        )
    backbone = BACKBONES.get(cfg.backbone)  # an unknown name fails here with close matches
    if spec.head is not None:
        spec.head.check(backbone)
    return UsageError(
        f"{spec.name} on {cfg.backbone} has no trained weights: {fresh}.",
        hint=f"Train one with `{train}`, then pass its checkpoint with --weights CKPT.safetensors "
        "(it names its backbone and classes itself).",
    )
