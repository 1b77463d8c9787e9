"""The predictor protocol: ``preprocess`` → ``forward`` → ``postprocess``, timed per stage.

Subclasses implement the three steps; :meth:`Predictor.predict` runs them under
``torch.inference_mode`` and adds the time of each to :attr:`Predictor.timers`. Results are
always in original-image pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from densecnn.results import Frame, Result

if TYPE_CHECKING:
    from densecnn.runtimes.base import Runtime
    from densecnn.zoo.specs import ModelSpec


@dataclass
class StageTimer:
    """Seconds and calls per named stage. One thread adds to a given stage (the pipeline's
    postprocessing thread adds "postprocess" while the predict thread adds the others)."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, seconds: float, calls: int = 1) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + calls

    def merge(self, other: StageTimer) -> None:
        for stage, secs in other.seconds.items():
            self.add(stage, secs, other.calls.get(stage, 0))


class Predictor:
    """Base class of every model adapter. ``names`` maps class id → class name.

    ``densecnn.load`` sets ``spec`` (the model spec it resolved) and ``weights_path`` (the file
    loaded); ``backbone`` names the registry backbone of a head built on one; ``instances`` says the
    results carry instance masks (YOLO -seg), which decides the segment outputs.

    ``backend`` names where ``forward`` runs: "torch" (the adapter's module), or "onnxruntime" /
    "openvino", whose :class:`~densecnn.runtimes.base.Runtime` (``runtime``) then takes the batch
    instead of the module and returns the same outputs (preprocess and postprocess are shared).
    """

    names: dict[int, str]
    device: torch.device
    spec: ModelSpec | None = None
    weights_path: Path | None = None
    backbone: str | None = None
    instances: bool = False
    backend: str = "torch"
    runtime: Runtime | None = None
    static_input = False
    """The model takes one fixed input size (a static exported graph): preprocess must make exactly it."""

    def __init__(self) -> None:
        self.timers = StageTimer()
        self.classes: list[int] | None = None

    def set_classes(self, class_ids: Sequence[int] | None) -> None:
        """Keep only these class ids in the results (None: all)."""
        self.classes = list(class_ids) if class_ids is not None else None

    def preprocess(self, frames: Sequence[Frame]) -> Any:
        raise NotImplementedError

    def forward(self, batch: Any) -> Any:
        raise NotImplementedError

    @property
    def precision(self) -> str:
        """What ``forward`` computes in: its runtime's (fp32, fp16, bf16, int8), else fp16 for a
        CUDA ``--half`` and fp32."""
        if self.runtime is not None:
            return self.runtime.precision
        return "fp16" if getattr(self, "fp16", False) or getattr(self, "half", False) is True else "fp32"

    def run_model(self, x: torch.Tensor) -> Any:
        """The model on one input tensor: the backend's runtime when one is set, else ``self.model``."""
        if self.runtime is not None:
            return self.runtime(x)
        return self.model(x)  # type: ignore[attr-defined]

    def postprocess(self, raw: Any, batch: Any, frames: Sequence[Frame]) -> list[Result]:
        raise NotImplementedError

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def batch_key(self, frame: Frame) -> Hashable:
        """Frames with equal keys can share one forward pass with results identical to one at a time.

        The default (one key for all) suits predictors whose input size does not depend on the
        frame's (a fixed crop). Predictors whose network input follows the image size return that
        size, so a batch of mixed sizes is run as one forward pass per size, never padded to the
        largest (padding would change what the network sees, and so its outputs).
        """
        return None

    def predict(self, frames: Sequence[Frame]) -> list[Result]:
        """One result for each frame, in order. Frames are BGR uint8 ``HxWx3`` of any sizes; those
        with equal :meth:`batch_key` go through one ``preprocess`` → ``forward`` → ``postprocess``."""
        return self.predict_deferred(frames)()

    def predict_deferred(self, frames: Sequence[Frame]) -> Callable[[], list[Result]]:
        """:meth:`predict` in two halves: ``preprocess`` and ``forward`` now, ``postprocess`` when the
        returned function is called, possibly on another thread (the pipeline overlaps one batch's
        postprocessing with the next batch's forward pass). A subclass that overrides ``predict``
        runs it whole now."""
        if type(self).predict is not Predictor.predict:
            results = self.predict(frames)
            return lambda: results
        groups: dict[Hashable, list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(self.batch_key(frame), []).append(i)
        forwarded = [
            (indices, *self._forward_group([frames[i] for i in indices])) for indices in groups.values()
        ]

        def postprocess() -> list[Result]:
            results: list[Result | None] = [None] * len(frames)
            for indices, batch, raw in forwarded:
                group = [frames[i] for i in indices]
                with torch.inference_mode():  # per thread: entered again on the caller's
                    t0 = time.perf_counter()
                    out = self.postprocess(raw, batch, group)
                    self.timers.add("postprocess", time.perf_counter() - t0, len(group))
                for i, result in zip(indices, out, strict=True):
                    results[i] = result
            return results  # type: ignore[return-value]  # every index was filled

        return postprocess

    def _forward_group(self, frames: Sequence[Frame]) -> tuple[Any, Any]:
        """``(batch, raw)``: frames of one :meth:`batch_key` preprocessed and through the model."""
        n = len(frames)
        with torch.inference_mode():
            t0 = time.perf_counter()
            batch = self.preprocess(frames)
            self._sync()
            t1 = time.perf_counter()
            raw = self.forward(batch)
            self._sync()
            t2 = time.perf_counter()
        self.timers.add("preprocess", t1 - t0, n)
        self.timers.add("inference", t2 - t1, n)
        return batch, raw

    def warmup(self, frame: Frame) -> None:
        """One untimed pass so the first real batch does not pay for lazy initialisation."""
        timers, self.timers = self.timers, StageTimer()
        try:
            self.predict([frame])
        finally:
            self.timers = timers
