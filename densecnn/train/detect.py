"""``densecnn train detect``: YOLO models through Ultralytics' trainer, ``fasterrcnn`` on a registry
backbone through densecnn's own loop."""

from __future__ import annotations

from pathlib import Path

from densecnn.errors import UsageError
from densecnn.train.config import TrainConfig, TrainOutcome


def is_yolo(model: str | None) -> bool:
    """YOLO: the default, a ``.yaml`` model config, or a registered YOLO model name."""
    if model is None or model.endswith((".yaml", ".yml", ".pt")):
        return True
    from densecnn.zoo import MODELS

    spec = MODELS.get(model)
    if spec.task != "detect":
        raise UsageError(f"--model {model} is a {spec.task} model; `train detect` needs a detector.")
    return spec.family == "yolo"


def train(cfg: TrainConfig) -> TrainOutcome:
    """Train the detector ``cfg.model`` names (default ``yolov8n``) on ``cfg.data``."""
    from_rcnn = cfg.model is None and cfg.weights is not None and _rcnn_checkpoint(cfg.weights)
    if cfg.model == "fasterrcnn" or from_rcnn or _rcnn_run(cfg):
        from densecnn.train.detect_rcnn import train_rcnn

        if cfg.cache:
            raise UsageError("--cache applies to YOLO models (Ultralytics' trainer), not fasterrcnn.")

        return train_rcnn(cfg)
    if not is_yolo(cfg.model):
        raise UsageError(
            f"--model {cfg.model}: densecnn trains YOLO models and `fasterrcnn` (with --backbone).",
            hint="torchvision's fasterrcnn_* zoo models: use --model fasterrcnn --backbone resnet50 etc.",
        )
    if cfg.backbone is not None:
        raise UsageError("--backbone goes with --model fasterrcnn; YOLO models have their own backbone.")
    from densecnn.train.detect_yolo import train_yolo

    return train_yolo(cfg)


def _rcnn_run(cfg: TrainConfig) -> bool:
    """``--resume`` of a Faster R-CNN run: its last.safetensors, or a run folder holding one."""
    if cfg.resume is None:
        return False
    return cfg.resume.suffix == ".safetensors" or (cfg.resume / "weights" / "last.safetensors").is_file()


def _rcnn_checkpoint(weights: Path) -> bool:
    """A densecnn .safetensors that is not a YOLO state file (those fine-tune through Ultralytics)."""
    if weights.suffix != ".safetensors":
        return False
    if not weights.is_file():
        return True  # train_rcnn names the missing file
    from densecnn.checkpoint import read_meta
    from densecnn.tasks.detect.yolo_state import is_yolo_state

    meta = read_meta(weights)
    return meta is None or not is_yolo_state(meta)
