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
        return {"topk": pcfg.topk, "resumed": ocfg.resume}
    return {"resumed": ocfg.resume}


def drawer(task: str, ocfg: OutputConfig) -> Callable[[Any, Any], Any] | None:
    """The drawing of annotated frames, when it is not ``draw_result``'s default."""
    if task != "segment":
        return None
    from densecnn.draw import draw_result

    return partial(draw_result, alpha=ocfg.alpha)


def done_check(task: str, ocfg: OutputConfig) -> Callable[[Path, InputRef], bool] | None:
    """``is_done(run_dir, input)`` for a resumed run (``--resume``), else None: segment looks at the
    outputs themselves (mask, overlay, video marker), detect and classify at the ledger of finished
    inputs (``.done.jsonl``, written last for each input)."""
    if not ocfg.resume:
        return None
    if task == "segment":
        return partial(input_done, overlay=ocfg.save)
    from densecnn.sinks.done import Resume

    return Resume().is_done


def input_done(run_dir: Path, ref: InputRef, *, overlay: bool = False) -> bool:
    """An image is done when its mask and (``overlay``) its overlay exist (both written atomically,
    the overlay last), a video when its ``complete.json`` marker does (written after all its frames
    went through every sink)."""
    from densecnn.sinks.masks import is_complete

    return is_complete(run_dir, ref.source, video=ref.kind == "video", overlay=overlay)


def _detect_sinks(run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor) -> list[Sink]:
    """predictions.jsonl and .coco.json always; images, videos, labels, crops as asked; last, the
    ledger of finished inputs (``--resume`` keeps the earlier run's rows for those)."""
    from densecnn.sinks import CocoSink, CropsSink, ImageSink, LabelsSink
    from densecnn.sinks.done import DoneSink
    from densecnn.sinks.jsonl import read_jsonl

    jsonl, ledger = _resumable_jsonl(run_dir, ocfg)
    coco = CocoSink(run_dir / "predictions.coco.json", class_names=predictor.names)
    if ledger is not None:  # the earlier run's finished images, from their kept rows
        for row in ledger.image_rows(read_jsonl(jsonl.path)):
            coco.add_record(row)
    sinks: list[Sink] = [jsonl, coco]
    if ocfg.save:
        sinks += [ImageSink(run_dir), _video_sink(run_dir, pcfg, predictor)]
    if ocfg.save_txt:
        sinks.append(LabelsSink(run_dir, save_conf=ocfg.save_conf))
    if ocfg.save_crops:
        sinks.append(CropsSink(run_dir))
    sinks.append(DoneSink(run_dir, append=ledger is not None))  # last: after every other output
    return sinks


def _resumable_jsonl(run_dir: Path, ocfg: OutputConfig) -> tuple[Any, Any]:
    """predictions.jsonl, and with ``--resume`` the ledger whose finished inputs keep their rows."""
    from densecnn.sinks import JsonlSink
    from densecnn.sinks.done import Ledger

    ledger = Ledger(run_dir) if ocfg.resume else None
    keep = ledger.keep_row if ledger is not None else None
    return JsonlSink(run_dir / "predictions.jsonl", append=ledger is not None, keep=keep), ledger


def _segment_sinks(
    run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor
) -> list[Sink]:
    """predictions.jsonl and classes.json always; predictions.coco.json for instance models; masks and
    overlays as asked; last, the video completion markers (see ``input_done``)."""
    from densecnn.sinks import CocoSink, ImageSink, JsonlSink, MaskSink
    from densecnn.sinks.jsonl import read_jsonl
    from densecnn.sinks.masks import CompletionSink, write_classes_json

    write_classes_json(run_dir / "classes.json", predictor.names, instances=predictor.instances)
    keep = partial(_row_done, run_dir, overlay=ocfg.save) if ocfg.resume else None
    jsonl = JsonlSink(run_dir / "predictions.jsonl", append=ocfg.resume, keep=keep)
    sinks: list[Sink] = [jsonl]
    if predictor.instances:
        coco = CocoSink(run_dir / "predictions.coco.json", class_names=predictor.names)
        if ocfg.resume:  # the finished images of the earlier run, from their kept rows
            done = partial(_image_row_done, run_dir, overlay=ocfg.save)
            for row in read_jsonl(jsonl.path):
                if done(row):
                    coco.add_record(row)
        sinks.append(coco)
    if ocfg.save_masks:
        sinks.append(MaskSink(run_dir))
    if ocfg.save:
        sinks += [ImageSink(run_dir), _video_sink(run_dir, pcfg, predictor)]
    if ocfg.save_masks:
        sinks.append(CompletionSink(run_dir))
    return sinks


def _row_done(run_dir: Path, row: dict[str, Any], *, overlay: bool = False) -> bool:
    """Whether a predictions.jsonl row of an earlier run belongs to a finished input (kept on resume;
    the same test as :func:`input_done`, so a redone input never has two rows)."""
    from densecnn.sinks.masks import is_complete

    source = str(row.get("source", ""))
    finished_image = is_complete(run_dir, source, video=False, overlay=overlay)
    return finished_image or is_complete(run_dir, source, video=True)


def _image_row_done(run_dir: Path, row: dict[str, Any], *, overlay: bool = False) -> bool:
    """A kept row of a finished image input (what predictions.coco.json holds)."""
    from densecnn.sinks.masks import is_complete

    return is_complete(run_dir, str(row.get("source", "")), video=False, overlay=overlay)


def _classify_sinks(
    run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor
) -> list[Sink]:
    """predictions.jsonl and predictions.csv always; annotated images and videos with ``--save``;
    last, the ledger of finished inputs (``--resume``: the earlier run's rows are kept for those)."""
    from densecnn.sinks import CsvSink, ImageSink
    from densecnn.sinks.done import DoneSink
    from densecnn.sinks.jsonl import read_jsonl

    jsonl, ledger = _resumable_jsonl(run_dir, ocfg)
    csv = CsvSink(run_dir / "predictions.csv", topk=pcfg.topk)
    if ledger is not None:
        for row in read_jsonl(jsonl.path):
            csv.add_record(row)
    sinks: list[Sink] = [jsonl, csv]
    if ocfg.save:
        sinks += [ImageSink(run_dir), _video_sink(run_dir, pcfg, predictor)]
    sinks.append(DoneSink(run_dir, append=ledger is not None))  # last: after every other output
    return sinks


def _video_sink(run_dir: Path, pcfg: PredictConfig, predictor: Predictor) -> Sink:
    """H.264: NVENC when the model runs on CUDA and NVENC works, else libx264 with the preset measured
    on this machine (cached in the weight cache folder)."""
    from densecnn.sinks.video import VideoSink
    from densecnn.zoo.store import WeightStore

    gpu = getattr(getattr(predictor, "device", None), "type", "cpu") == "cuda"
    return VideoSink(run_dir, vid_stride=pcfg.vid_stride, cache_dir=WeightStore().root, gpu=gpu)
