"""Several models over one decode (``densecnn run SOURCE --detect M --segment M --classify M``).

Each frame is decoded once by the source; :class:`MultiPredictor` hands the same frames to every
task's predictor (in the order detect, segment, classify) and returns one :class:`TaskResults` per
frame. Everything downstream is the usual pipeline:

- ``predictions.jsonl`` of the run: one line per frame with every task's fields, the keys each
  single-task command writes (``detections``; ``segments`` and, for instance models, ``instances``;
  ``classes``) plus ``tasks``;
- one annotated image or video per input drawing every task (label map under the boxes, class label
  on top);
- each task's own files in ``<run>/<task>/``, made by the same sink factory as its own command
  (``densecnn.outputs``): predictions.jsonl, COCO json, masks/ and classes.json, crops/, labels/,
  predictions.csv; each task's sinks see only that task's result (:class:`TaskView`);
- ``--track``: a tracking stage on the detect task (or on an instance segment task without one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from densecnn.results import Frame, Prediction, Result
from densecnn.sinks.base import Sink
from densecnn.tasks.base import Predictor, StageTimer

if TYPE_CHECKING:
    from densecnn.config import OutputConfig, PredictConfig
    from densecnn.pipeline import RunSummary, Stage
    from densecnn.sources.base import InputEnd, InputFailure, InputStart

TASK_ORDER = ("detect", "segment", "classify")
"""The order tasks run and draw in: boxes, then label maps under them... see :func:`draw_all`."""


@dataclass
class TaskResults:
    """Every task's result for one frame, by task name (in :data:`TASK_ORDER`)."""

    results: dict[str, Result] = field(default_factory=dict)

    def __getitem__(self, task: str) -> Result:
        return self.results[task]

    def record(self) -> dict[str, Any]:
        """The fields of a predictions.jsonl line: each task's own (their keys never collide)."""
        row: dict[str, Any] = {"tasks": list(self.results)}
        for result in self.results.values():
            row.update(result.record())
        return row

    def labels(self) -> list[str]:
        """What the summary counts, per task: ``detect/person``, ``classify/cat``..."""
        return [f"{task}/{label}" for task, r in self.results.items() for label in r.labels()]


class MultiPredictor(Predictor):
    """The predictors of several tasks over the same frames: ``predict(frames)`` → one
    :class:`TaskResults` per frame. ``timers`` adds up every task's stage times."""

    def __init__(self, predictors: dict[str, Predictor]) -> None:
        self.classes = None
        self.predictors = {t: predictors[t] for t in TASK_ORDER if t in predictors}
        first = next(iter(self.predictors.values()))
        self.device = first.device
        self.names = {}
        self.instances = False

    @property
    def timers(self) -> StageTimer:  # type: ignore[override]
        total = StageTimer()
        for predictor in self.predictors.values():
            total.merge(predictor.timers)
        return total

    @property
    def label(self) -> str:
        """``detect person-yolov8n + segment person-unet``: the run header's model."""
        parts = []
        for task, p in self.predictors.items():
            name = p.spec.name if p.spec is not None else type(p).__name__
            tile = getattr(p, "tile", None)
            parts.append(f"{task} {name}" + (f" ({tile.size} px tiles)" if tile is not None else ""))
        return " + ".join(parts)

    def predict(self, frames: Sequence[Frame]) -> list[TaskResults]:  # type: ignore[override]
        per_task = {task: p.predict(frames) for task, p in self.predictors.items()}
        return [TaskResults({task: rs[i] for task, rs in per_task.items()}) for i in range(len(frames))]

    def warmup(self, frame: Frame) -> None:
        for predictor in self.predictors.values():
            predictor.warmup(frame)


class TaskView(Sink):
    """A task's sink in a multi-task run: it receives that task's result only."""

    def __init__(self, task: str, sink: Sink, *, tracked: bool = False) -> None:
        self.task, self.sink, self.tracked = task, sink, tracked
        self.needs_annotated = sink.needs_annotated

    def start_input(self, event: InputStart) -> None:
        self.sink.start_input(event)

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        results: TaskResults = prediction.result  # type: ignore[assignment]
        tracking = prediction.tracking if self.tracked else None
        self.sink.write(Prediction(prediction.frame, results[self.task], tracking), annotated)

    def fail_input(self, event: InputFailure) -> None:
        self.sink.fail_input(event)

    def end_input(self, event: InputEnd) -> None:
        self.sink.end_input(event)

    def close(self) -> None:
        self.sink.close()

    def outputs(self) -> list[Path]:
        return self.sink.outputs()


class TaskStage:
    """A stage (the tracker) run on one task's result of each frame; the frame's other results and
    the stage's ``tracking`` info travel on with it."""

    def __init__(self, task: str, stage: Stage) -> None:
        self.task, self.stage = task, stage
        self.timers = getattr(stage, "timers", None)

    def start_input(self, event: InputStart) -> None:
        self.stage.start_input(event)

    def process(self, prediction: Prediction) -> Prediction:
        results: TaskResults = prediction.result  # type: ignore[assignment]
        done = self.stage.process(Prediction(prediction.frame, results[self.task]))
        merged = TaskResults({**results.results, self.task: done.result})
        return replace(prediction, result=merged, tracking=done.tracking)  # type: ignore[arg-type]

    def end_input(self, event: InputEnd) -> None:
        self.stage.end_input(event)

    def finish(self, summary: RunSummary) -> None:
        self.stage.finish(summary)


def draw_all(image: np.ndarray, result: TaskResults, *, alpha: float = 0.5) -> np.ndarray:
    """Every task on one image: the label map or masks first, then the boxes, then the class label."""
    from densecnn.draw import draw_result

    for task in ("segment", "detect", "classify"):
        if task in result.results:
            image = draw_result(image, result.results[task], alpha=alpha)
    return image


def make_sinks(
    run_dir: Path,
    ocfg: OutputConfig,
    configs: dict[str, PredictConfig],
    predictor: MultiPredictor,
    *,
    tracked: str | None = None,
) -> list[Sink]:
    """The run's sinks: errors.jsonl, the combined predictions.jsonl, the annotated images and videos
    (``ocfg.save``), then each task's own sinks writing into ``run_dir/<task>`` (no annotated
    outputs of their own: the combined ones show every task). ``tracked``: the tracked task."""
    from densecnn import outputs
    from densecnn.sinks import ErrorsSink, ImageSink, JsonlSink

    stride = next(iter(configs.values())).vid_stride
    sinks: list[Sink] = [ErrorsSink(run_dir / "errors.jsonl"), JsonlSink(run_dir / "predictions.jsonl")]
    if ocfg.save:
        sinks += [ImageSink(run_dir), outputs.video_sink(run_dir, stride, gpu=outputs.on_gpu(predictor))]
    own = replace(ocfg, save=False)
    for task, p in predictor.predictors.items():
        folder = run_dir / task
        folder.mkdir(exist_ok=True)
        for sink in outputs.task_sinks(task, folder, own, configs[task], p):
            sinks.append(TaskView(task, sink, tracked=task == tracked))
    return sinks


_TASK_KEYS = {
    "model",
    "weights",
    "backbone",
    "conf",
    "iou",
    "imgsz",
    "classes",
    "max_det",
    "topk",
    "trust_weights",
    "tile",
}
_SEGMENT_KEYS = {"num_classes", "class_names"}


def read_tasks_file(path: Path) -> dict[str, dict[str, Any]]:
    """A ``--tasks`` YAML file → task → its settings (``PredictConfig`` fields by their Python names,
    plus ``num_classes`` / ``class_names`` for segment; ``tile``: a size or a mapping of
    ``TileConfig`` fields). Relative ``weights`` paths are relative to the file's folder."""
    import yaml

    from densecnn.errors import UsageError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"--tasks {path}: cannot read it as YAML ({exc}).") from exc
    if not isinstance(data, dict) or not data:
        raise UsageError(f"--tasks {path}: expected a mapping of tasks (detect:, segment:, classify:).")
    out: dict[str, dict[str, Any]] = {}
    for task, values in data.items():
        if task not in TASK_ORDER:
            raise UsageError(
                f"--tasks {path}: unknown task {task!r}.", hint="Use detect, segment or classify."
            )
        values = values or {}
        if isinstance(values, str):
            values = {"model": values}
        allowed = _TASK_KEYS | (_SEGMENT_KEYS if task == "segment" else set())
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise UsageError(
                f"--tasks {path}: {task} has unknown key {unknown[0]!r}.",
                hint=f"Known: {', '.join(sorted(allowed))}.",
            )
        if values.get("weights") is not None:
            weights = Path(str(values["weights"])).expanduser()
            values["weights"] = weights if weights.is_absolute() else path.parent / weights
        out[task] = dict(values)
    return out


def task_config(
    values: dict[str, Any], shared: dict[str, Any]
) -> tuple[PredictConfig, tuple[str, ...] | None]:
    """One task's ``PredictConfig`` (``shared``: device, half, batch, vid_stride) and, for segment,
    its class names."""
    from densecnn.config import PredictConfig, TileConfig, resolve_class_names

    values = dict(values)
    names = resolve_class_names(values.pop("num_classes", None), _names(values.pop("class_names", None)))
    tile = values.get("tile")
    if isinstance(tile, int):
        values["tile"] = TileConfig(size=tile)
    elif isinstance(tile, dict):
        values["tile"] = TileConfig(**tile)
    classes = values.get("classes")
    if classes is not None:
        values["classes"] = tuple(str(c) for c in (classes if isinstance(classes, list) else [classes]))
    if values.get("weights") is not None:
        values["weights"] = Path(values["weights"])
    return PredictConfig(**values, **shared), names


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [n.strip() for n in value.split(",")]
    return [str(n) for n in value]
