"""Training settings as one frozen dataclass; every check of a user-given value happens here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from densecnn.config import MaskMode, check_choice, check_run_name
from densecnn.errors import UsageError

Task = Literal["detect", "segment", "classify"]


@dataclass(frozen=True)
class TrainConfig:
    """What ``densecnn train TASK`` was asked to do. ``None`` means: the model's own default.

    ``model`` names a zoo/registry model (``yolov8n``, ``yolov8n.yaml``, ``fasterrcnn``, ``unet``,
    ``classifier``...); ``weights`` a starting checkpoint the user named (transfer learning);
    ``freeze`` the number of backbone stages kept frozen for the first ``freeze_epochs`` epochs
    (0 = all epochs when ``freeze_epochs`` is None).
    """

    task: Task
    data: Path
    model: str | None = None
    backbone: str | None = None
    weights: Path | None = None
    trust_weights: bool = False  # consent to a full (code-running) unpickle of ``weights``
    pretrained: bool = True
    epochs: int = 50
    batch: int = 8
    imgsz: int | None = None
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float | None = None
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    clip_grad: float | None = 10.0
    patience: int = 20
    freeze: int = 0
    freeze_epochs: int | None = None
    amp: bool = True
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    workers: int = 2
    val_fraction: float = 0.2
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    augment: bool = True
    decoder_channels: tuple[int, ...] = ()  # U-Net decoder widths (empty: the default)
    cache: bool = False  # YOLO: decoded training images kept in RAM (Ultralytics' cache=ram)
    project: Path = Path("runs/train")
    name: str = "exp"
    exist_ok: bool = False
    resume: Path | None = None
    mask_mode: MaskMode = "labels"
    ignore_index: int = 255
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}.")
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}.")
        if self.imgsz is not None and not 32 <= self.imgsz <= 8192:
            raise UsageError(f"--imgsz must be between 32 and 8192 pixels, got {self.imgsz}.")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}.")
        if self.patience < 0:
            raise UsageError(f"--patience must be 0 (off) or more, got {self.patience}.")
        if self.freeze < 0:
            raise UsageError(f"--freeze must be 0 or more backbone stages, got {self.freeze}.")
        if any(w < 1 for w in self.decoder_channels):
            raise UsageError(f"--decoder-channels must be positive widths, got {self.decoder_channels}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must be in [0, 1), got {self.val_fraction}.")
        if self.num_classes is not None and self.num_classes < 1:
            raise UsageError(f"--num-classes must be at least 1, got {self.num_classes}.")
        check_choice("--mask-mode", self.mask_mode, MaskMode)
        if self.optimizer not in ("adamw", "sgd"):
            raise UsageError(f"--optimizer must be adamw or sgd, got {self.optimizer!r}.")
        check_run_name(self.name)
        if self.resume is None and not self.data.exists():
            raise UsageError(
                f"--data {self.data}: no such file or folder.",
                hint="Give a data.yaml (YOLO), a COCO JSON, a masks folder or an ImageFolder root.",
            )


@dataclass(frozen=True)
class TrainOutcome:
    """Where a finished (or early-stopped) run left its files, and its best validation metrics."""

    run_dir: Path
    best: Path
    last: Path
    epochs_run: int
    best_epoch: int
    metrics: dict[str, float]
    stopped_early: bool = False
