"""``densecnn detect SOURCE``: detection over images, folders, globs, lists and videos."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import console, err_console, user_errors

EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 130


def detect(
    source: str = typer.Argument(
        ..., help="Image, video, folder (recursive), glob ('imgs/*.jpg', quoted) or .txt list of paths."
    ),
    model: str | None = opt.Model,
    weights: Path | None = opt.Weights,
    conf: float | None = opt.Conf,
    iou: float | None = opt.Iou,
    classes: list[str] | None = opt.Classes,
    imgsz: int | None = opt.Imgsz,
    device: str = opt.Device,
    half: bool = opt.Half,
    batch: int = opt.Batch,
    max_det: int | None = opt.MaxDet,
    vid_stride: int = opt.VidStride,
    out: Path | None = opt.Out,
    name: str = opt.Name,
    exist_ok: bool = opt.ExistOk,
    save: bool = opt.Save,
    save_txt: bool = opt.SaveTxt,
    save_conf: bool = opt.SaveConf,
    save_crops: bool = opt.SaveCrops,
    on_error: opt.ErrorPolicy = opt.OnError,
    quiet: bool = opt.Quiet,
    verbose: bool = opt.Verbose,
) -> None:
    """Detect objects in images, folders and videos (YOLO or Faster R-CNN).

    Writes to runs/detect/predict (predict2, ... on later runs): annotated images and H.264 videos,
    predictions.jsonl (one line per frame), predictions.coco.json (images), summary.json and, when
    inputs fail, errors.jsonl. Exit code: 0 all inputs done, 1 some failed, 2 usage error,
    3 weights unavailable, 130 interrupted.
    """
    from densecnn.config import OutputConfig, PredictConfig

    _configure_logging(verbose)
    with user_errors(verbose=verbose):
        pcfg = PredictConfig(
            model=model,
            weights=weights,
            conf=conf,
            iou=iou,
            imgsz=imgsz,
            classes=tuple(classes or ()),
            device=device,
            half=half,
            batch=batch,
            max_det=max_det,
            vid_stride=vid_stride,
        )
        ocfg = OutputConfig(
            project=opt.default_project("detect", out),
            name=name,
            exist_ok=exist_ok,
            save=save,
            save_txt=save_txt,
            save_conf=save_conf,
            save_crops=save_crops,
            on_error=on_error.value,  # type: ignore[arg-type]  # validated in OutputConfig
        )
        code = run_detect(source, pcfg, ocfg, quiet=quiet)
    raise typer.Exit(code)


def run_detect(source: str, pcfg: Any, ocfg: Any, *, quiet: bool) -> int:
    """Open the source, build the model, run the pipeline, report. Returns the exit code."""
    from densecnn.device import describe
    from densecnn.fsutil import atomic_write_json, next_run_dir
    from densecnn.pipeline import run
    from densecnn.sources import open_source
    from densecnn.tasks.detect import build_detector

    src = open_source(source, vid_stride=pcfg.vid_stride, exclude=[ocfg.project])
    predictor, spec = build_detector(pcfg)
    run_dir = next_run_dir(ocfg.project, ocfg.name, exist_ok=ocfg.exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    sinks = _make_sinks(run_dir, ocfg, pcfg.vid_stride, predictor.names)
    n_videos = sum(1 for i in src.inputs if i.kind == "video")
    total = src.estimated_frames()
    if not quiet:
        if pcfg.half and predictor.device.type != "cuda":
            console.print("[yellow]--half is ignored on CPU (fp16 runs only on CUDA).[/]")
        console.print(
            f"[bold]densecnn detect[/] {spec.name} on {describe(predictor.device)}: "
            f"{len(src.inputs) - n_videos} images, {n_videos} videos (~{total} frames) → {run_dir}"
        )
    progress = None
    if not quiet:
        from densecnn.cli.report import RichProgress

        progress = RichProgress(console, "detect")
    with _sigterm_as_interrupt():
        summary = run(
            events=src.events(),
            predictor=predictor,
            sinks=sinks,
            errors_path=run_dir / "errors.jsonl",
            batch=pcfg.batch,
            on_error=ocfg.on_error,
            progress=progress,
            total_frames=total,
        )
    record = {
        "command": "detect",
        "source": source,
        "model": spec.name,
        "weights": str(pcfg.weights) if pcfg.weights else spec.weights.file_name if spec.weights else None,
        "device": str(predictor.device),
        "classes": predictor.names,
        **summary.to_dict(),
    }
    atomic_write_json(run_dir / "summary.json", record)
    if quiet:
        console.print(str(run_dir))
    else:
        from densecnn.cli.report import summary_table

        console.print(summary_table(summary, run_dir=run_dir, title="Summary"))
    if summary.interrupted:
        err_console.print("[yellow]Interrupted.[/] Outputs written so far are complete and kept.")
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary.errors else 0


def _make_sinks(run_dir: Path, ocfg: Any, vid_stride: int, names: dict[int, str]) -> list[Any]:
    from densecnn.sinks import CocoSink, CropsSink, ImageSink, JsonlSink, LabelsSink, VideoSink

    sinks: list[Any] = [
        JsonlSink(run_dir / "predictions.jsonl"),
        CocoSink(run_dir / "predictions.coco.json", class_names=names),
    ]
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=vid_stride)]
    if ocfg.save_txt:
        sinks.append(LabelsSink(run_dir, save_conf=ocfg.save_conf))
    if ocfg.save_crops:
        sinks.append(CropsSink(run_dir))
    return sinks


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run the way Ctrl-C does: outputs finalized, summary printed, exit 130."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not verbose:
        logging.getLogger("ultralytics").setLevel(logging.ERROR)
