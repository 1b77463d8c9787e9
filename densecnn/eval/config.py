"""Evaluation settings and outcome, shared by the task evaluators."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from densecnn.config import Backend, MaskMode, check_run_name
from densecnn.errors import UsageError


@dataclass(frozen=True)
class EvalConfig:
    """What ``densecnn eval TASK`` was asked to do.

    ``split``: ``val`` evaluates the held-out part that ``densecnn train`` used for validation (the
    dataset's own val split, else the seeded ``val_fraction`` split); ``all`` evaluates every item.
    """

    task: Literal["detect", "segment", "classify"]
    weights: Path
    data: Path
    trust_weights: bool = False
    model: str | None = None
    backbone: str | None = None
    imgsz: int | None = None
    batch: int = 8
    device: str = "auto"
    backend: Backend = "auto"
    half: bool | None = None
    conf: float = 0.001
    iou: float = 0.7
    split: Literal["val", "train", "all"] = "val"
    val_fraction: float = 0.2
    seed: int = 0
    ignore_index: int = 255
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    project: Path = Path("runs/eval")
    name: str = "exp"
    exist_ok: bool = False
    plots: bool = True
    mask_mode: MaskMode | None = None  # None: the checkpoint's

    def predictor(self, **settings: Any) -> Any:
        """The predictor under evaluation, built as ``densecnn.load`` builds it (``settings``: the
        task's own, e.g. conf/iou/max_det or topk; ``imgsz`` replaces the given one)."""
        from densecnn.config import PredictConfig
        from densecnn.tasks.loading import load_predictor

        given = {
            "model": self.model,
            "weights": self.weights,
            "trust_weights": self.trust_weights,
            "backbone": self.backbone,
            "imgsz": self.imgsz,
            "device": self.device,
            "backend": self.backend,
            "half": self.half,
        }
        return load_predictor(PredictConfig(**{**given, **settings}), task=self.task)

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if not (self.weights.is_file() or (self.weights / "model.xml").is_file()):
            raise UsageError(f"--weights {self.weights}: no such file.")
        if not self.data.exists():
            raise UsageError(f"--data {self.data}: no such file or folder.")
        if self.split not in ("val", "train", "all"):
            raise UsageError(f"--split must be val, train or all, got {self.split!r}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must be in [0, 1), got {self.val_fraction}.")
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}.")


@dataclass(frozen=True)
class EvalOutcome:
    """Headline metrics (flat, JSON-ready), per-class metrics, and who computed them."""

    run_dir: Path
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluator: str = "densecnn"
    num_images: int = 0
