"""What each task writes into a run folder: its sinks, the summary's counted label, the extra
summary.json fields, the drawing, and (segment) which inputs an earlier run already finished.

Shared by the CLI commands and ``densecnn.predict(save=True)``, so both write the same files.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from densecnn.config import OutputConfig, PredictConfig
    from densecnn.sinks.base import Sink
    from densecnn.sources.base import InputRef
    from densecnn.tasks.base import Predictor


def make_sinks(
    task: str, run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor
) -> list[Sink]:
    """The sinks of ``task`` for this run (errors.jsonl first: failures are recorded whatever else)."""
    from densecnn.sinks import ErrorsSink

    maker = {"detect": _detect_sinks, "segment": _segment_sinks, "classify": _classify_sinks}[task]
    return [ErrorsSink(run_dir / "errors.jsonl"), *maker(run_dir, ocfg, pcfg, predictor)]


def counts_label(task: str, predictor: Predictor) -> str:
    """What the summary table's class counts count."""
    if task == "segment":
        return "Instances per class" if predictor.instances else "Images per class"
    return {"detect": "Detections", "classify": "Top-1 classes"}[task]


def summary_fields(task: str, ocfg: OutputConfig, pcfg: PredictConfig) -> dict[str, Any]:
    """The task's own summary.json fields."""
    if task == "segment":
        return {"alpha": ocfg.alpha, "resumed": ocfg.resume}
    if task == "classify":
        return {"topk": pcfg.topk}
    return {}


def drawer(task: str, ocfg: OutputConfig) -> Callable[[Any, Any], Any] | None:
    """The drawing of annotated frames, when it is not ``draw_result``'s default."""
    if task != "segment":
        return None
    from densecnn.draw import draw_result

    return partial(draw_result, alpha=ocfg.alpha)


def done_check(task: str, ocfg: OutputConfig) -> Callable[[Path, InputRef], bool] | None:
    """``is_done(run_dir, input)`` for a resumed run (segment --resume), else None."""
    return input_done if task == "segment" and ocfg.resume else None


def input_done(run_dir: Path, ref: InputRef) -> bool:
    """An image is done when its mask file exists (masks are written atomically), a video when its
    ``complete.json`` marker does (written after all its frames went through every sink)."""
    from densecnn.sinks.masks import is_complete

    return is_complete(run_dir, ref.source, video=ref.kind == "video")


def _detect_sinks(run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor) -> list[Sink]:
    from densecnn.sinks import CocoSink, CropsSink, ImageSink, JsonlSink, LabelsSink, VideoSink

    sinks: list[Sink] = [
        JsonlSink(run_dir / "predictions.jsonl"),
        CocoSink(run_dir / "predictions.coco.json", class_names=predictor.names),
    ]
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    if ocfg.save_txt:
        sinks.append(LabelsSink(run_dir, save_conf=ocfg.save_conf))
    if ocfg.save_crops:
        sinks.append(CropsSink(run_dir))
    return sinks


def _segment_sinks(
    run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor
) -> list[Sink]:
    """predictions.jsonl and classes.json always; predictions.coco.json for instance models; masks and
    overlays as asked; last, the video completion markers (see ``input_done``)."""
    from densecnn.sinks import CocoSink, ImageSink, JsonlSink, MaskSink, VideoSink
    from densecnn.sinks.masks import CompletionSink, write_classes_json

    write_classes_json(run_dir / "classes.json", predictor.names, instances=predictor.instances)
    keep = partial(_row_done, run_dir) if ocfg.resume else None
    sinks: list[Sink] = [JsonlSink(run_dir / "predictions.jsonl", append=ocfg.resume, keep=keep)]
    if predictor.instances:
        sinks.append(CocoSink(run_dir / "predictions.coco.json", class_names=predictor.names))
    if ocfg.save_masks:
        sinks.append(MaskSink(run_dir))
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    if ocfg.save_masks:
        sinks.append(CompletionSink(run_dir))
    return sinks


def _row_done(run_dir: Path, row: dict[str, Any]) -> bool:
    """Whether a predictions.jsonl row of an earlier run belongs to a finished input (kept on resume)."""
    from densecnn.sinks.masks import is_complete

    source = str(row.get("source", ""))
    return is_complete(run_dir, source, video=False) or is_complete(run_dir, source, video=True)


def _classify_sinks(
    run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor
) -> list[Sink]:
    """predictions.jsonl and predictions.csv always; annotated images and videos with ``--save``."""
    from densecnn.sinks import CsvSink, ImageSink, JsonlSink, VideoSink

    sinks: list[Sink] = [
        JsonlSink(run_dir / "predictions.jsonl"),
        CsvSink(run_dir / "predictions.csv", topk=pcfg.topk),
    ]
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    return sinks
