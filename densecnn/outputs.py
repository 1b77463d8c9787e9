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

    return [ErrorsSink(run_dir / "errors.jsonl"), *task_sinks(task, run_dir, ocfg, pcfg, predictor)]


def task_sinks(
    task: str, run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor
) -> list[Sink]:
    """The task's own sinks, without errors.jsonl (``densecnn run`` writes one for all its tasks)."""
    maker = {
        "detect": _detect_sinks,
        "segment": _segment_sinks,
        "classify": _classify_sinks,
        "track": _track_sinks,
    }[task]
    return maker(run_dir, ocfg, pcfg, predictor)


def counts_label(task: str, predictor: Predictor) -> str:
    """What the summary table's class counts count."""
    if task == "run":
        return "Per task and class"
    if task == "segment":
        return "Instances per class" if predictor.instances else "Images per class"
    return {"detect": "Detections", "classify": "Top-1 classes", "track": "Tracked detections"}[task]


def summary_fields(task: str, ocfg: OutputConfig, pcfg: PredictConfig) -> dict[str, Any]:
    """The task's own summary.json fields."""
    if task == "segment":
        return {"alpha": ocfg.alpha, "resumed": ocfg.resume}
    if task == "classify":
        return {"topk": pcfg.topk, "resumed": ocfg.resume}
    if task in ("track", "run"):
        return {}  # the tracker's fields come from its stage (RunSummary.tracking), run's: its tasks
    return {"resumed": ocfg.resume}


def drawer(task: str, ocfg: OutputConfig) -> Callable[[Any, Any], Any] | None:
    """The drawing of annotated frames, when it is not ``draw_result``'s default."""
    if task == "run":
        from densecnn.multitask import draw_all

        return partial(draw_all, alpha=ocfg.alpha)
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


def input_sinks(
    task: str, run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, *, gpu: bool = False
) -> list[Sink]:
    """The outputs named after each input, in the order the local engine writes them: masks,
    overlays or annotated images and videos, labels, crops. Both engines write these under
    ``run_dir`` (the Ray engine from its workers): their names depend only on the input. ``gpu``:
    the model runs on CUDA (the video encoder may too)."""
    from densecnn.sinks import CropsSink, ImageSink, LabelsSink, MaskSink

    sinks: list[Sink] = []
    if task == "segment" and ocfg.save_masks:
        sinks.append(MaskSink(run_dir))
    if ocfg.save:
        sinks += [ImageSink(run_dir), video_sink(run_dir, pcfg.vid_stride, gpu=gpu)]
    if task == "detect" and ocfg.save_txt:
        sinks.append(LabelsSink(run_dir, save_conf=ocfg.save_conf))
    if task == "detect" and ocfg.save_crops:
        sinks.append(CropsSink(run_dir))
    return sinks


def video_sink(run_dir: Path, vid_stride: int, *, gpu: bool) -> Sink:
    """H.264: NVENC when the model runs on CUDA (``gpu``) and NVENC works, else libx264 with the
    preset measured on this machine (cached in the weight cache folder)."""
    from densecnn.sinks.video import VideoSink
    from densecnn.zoo.store import WeightStore

    return VideoSink(run_dir, vid_stride=vid_stride, cache_dir=WeightStore().root, gpu=gpu)


def on_gpu(predictor: Predictor) -> bool:
    """The predictor runs on CUDA."""
    return getattr(getattr(predictor, "device", None), "type", "cpu") == "cuda"


def finish_sink(task: str, root: Path, ocfg: OutputConfig, *, append: bool) -> Sink | None:
    """The sink listed last, which records finished inputs once every other output is written:
    segment's video completion markers (with ``--save-masks``), the ledger ``.done.jsonl`` of detect
    and classify under ``root`` (``append`` keeps an earlier run's lines)."""
    from densecnn.sinks.done import DoneSink
    from densecnn.sinks.masks import CompletionSink

    if task == "segment":
        return CompletionSink(root) if ocfg.save_masks else None
    return DoneSink(root, append=append)


def table_sinks(task: str, run_dir: Path, pcfg: PredictConfig, predictor: Predictor) -> list[Sink]:
    """The run-wide tables built from every image's predictions: predictions.coco.json (detect,
    instance segmentation), predictions.csv (classify). The Ray engine fills them from the merged
    predictions.jsonl rows (``add_record``)."""
    from densecnn.sinks import CocoSink, CsvSink

    if task == "classify":
        return [CsvSink(run_dir / "predictions.csv", topk=pcfg.topk)]
    if task == "detect" or predictor.instances:
        return [CocoSink(run_dir / "predictions.coco.json", class_names=predictor.names)]
    return []


def write_run_files(task: str, run_dir: Path, predictor: Predictor) -> None:
    """The files a run writes once, before any input: segment's classes.json."""
    from densecnn.sinks.masks import write_classes_json

    if task == "segment":
        write_classes_json(run_dir / "classes.json", predictor.names, instances=predictor.instances)


def _detect_sinks(run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor) -> list[Sink]:
    """predictions.jsonl and .coco.json always; images, videos, labels, crops as asked; last, the
    ledger of finished inputs (``--resume`` keeps the earlier run's rows for those)."""
    return _ledger_task_sinks("detect", run_dir, ocfg, pcfg, predictor)


def _ledger_task_sinks(
    task: str, run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor
) -> list[Sink]:
    """detect and classify: predictions.jsonl, the table, the per-input outputs, the ledger."""
    from densecnn.sinks.jsonl import read_jsonl

    jsonl, ledger = _resumable_jsonl(run_dir, ocfg)
    tables = table_sinks(task, run_dir, pcfg, predictor)
    if ledger is not None:  # the earlier run's kept rows (COCO: of images only)
        kept = read_jsonl(jsonl.path)
        for row in ledger.image_rows(kept) if task == "detect" else kept:
            for table in tables:
                table.add_record(row)  # type: ignore[attr-defined]
    finish = finish_sink(task, run_dir, ocfg, append=ledger is not None)
    assert finish is not None
    return [jsonl, *tables, *input_sinks(task, run_dir, ocfg, pcfg, gpu=on_gpu(predictor)), finish]


def _track_sinks(run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, predictor: Predictor) -> list[Sink]:
    """predictions.jsonl (with track ids and counts) and predictions.csv (a row per tracked detection)
    always; annotated images and videos (ids, trails, lines, zones), labels and crops as asked. No
    COCO file and no --resume: a tracker's state cannot be picked up half-way through a video."""
    from densecnn.sinks import CropsSink, DetectionsCsvSink, ImageSink, JsonlSink, LabelsSink

    sinks: list[Sink] = [
        JsonlSink(run_dir / "predictions.jsonl"),
        DetectionsCsvSink(run_dir / "predictions.csv"),
    ]
    if ocfg.save:
        sinks += [ImageSink(run_dir), video_sink(run_dir, pcfg.vid_stride, gpu=on_gpu(predictor))]
    if ocfg.save_txt:
        sinks.append(LabelsSink(run_dir, save_conf=ocfg.save_conf))
    if ocfg.save_crops:
        sinks.append(CropsSink(run_dir))
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
    from densecnn.sinks import JsonlSink
    from densecnn.sinks.jsonl import read_jsonl

    write_run_files("segment", run_dir, predictor)
    keep = partial(_row_done, run_dir, overlay=ocfg.save) if ocfg.resume else None
    jsonl = JsonlSink(run_dir / "predictions.jsonl", append=ocfg.resume, keep=keep)
    tables = table_sinks("segment", run_dir, pcfg, predictor)
    if tables and ocfg.resume:  # the finished images of the earlier run, from their kept rows
        done = partial(_image_row_done, run_dir, overlay=ocfg.save)
        for row in read_jsonl(jsonl.path):
            if done(row):
                for table in tables:
                    table.add_record(row)  # type: ignore[attr-defined]
    finish = finish_sink("segment", run_dir, ocfg, append=ocfg.resume)
    return [
        jsonl,
        *tables,
        *input_sinks("segment", run_dir, ocfg, pcfg, gpu=on_gpu(predictor)),
        *([finish] if finish else []),
    ]


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
    return _ledger_task_sinks("classify", run_dir, ocfg, pcfg, predictor)
