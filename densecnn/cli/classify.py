"""``densecnn classify SOURCE``: top-k classes of every image and video frame."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors

if TYPE_CHECKING:
    from densecnn.config import OutputConfig, PredictConfig
    from densecnn.sinks.base import Sink
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec


def classify(
    source: str = typer.Argument(
        ..., help="Image, video, folder (recursive), glob ('imgs/*.jpg', quoted) or .txt list of paths."
    ),
    model: str | None = opt.Model,
    weights: Path | None = opt.Weights,
    backbone: str | None = typer.Option(
        None, "--backbone", "-b", help="Registry backbone for --model classifier (checkpoints name theirs)."
    ),
    topk: int = opt.TopK,
    imgsz: int | None = typer.Option(
        None, "--imgsz", help="Centre-crop size in pixels (default: the model's, 224 for the zoo models)."
    ),
    device: str = opt.Device,
    half: bool = opt.Half,
    batch: int = opt.Batch,
    vid_stride: int = opt.VidStride,
    out: Path | None = opt.Out,
    name: str = opt.Name,
    exist_ok: bool = opt.ExistOk,
    save: bool = opt.Save,
    on_error: opt.ErrorPolicy = opt.OnError,
    quiet: bool = opt.Quiet,
    verbose: bool = opt.Verbose,
) -> None:
    """Classify images, folders and videos (torchvision ImageNet models, YOLO-cls, densecnn checkpoints).

    Writes to runs/classify/predict (predict2, ... on later runs): predictions.jsonl and
    predictions.csv (top-k classes per image or frame), annotated images and H.264 videos with the top
    classes drawn, summary.json and, when inputs fail, errors.jsonl. Exit code: 0 all inputs done,
    1 some failed, 2 usage error, 3 weights unavailable, 130 interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction
    from densecnn.config import OutputConfig, PredictConfig

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        pcfg = PredictConfig(
            model=model,
            weights=weights,
            backbone=backbone,
            imgsz=imgsz,
            device=device,
            half=half,
            batch=batch,
            vid_stride=vid_stride,
            topk=topk,
        )
        ocfg = OutputConfig(
            project=opt.default_project("classify", out),
            name=name,
            exist_ok=exist_ok,
            save=save,
            on_error=on_error.value,  # type: ignore[arg-type]  # validated in OutputConfig
        )
        code = run_prediction(
            task="classify",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            quiet=quiet,
            build=lambda: _build(pcfg),
            make_sinks=lambda run_dir, predictor: make_sinks(run_dir, ocfg, pcfg),
            counts_label="Top-1 classes",
            record={"topk": pcfg.topk},
        )
    raise typer.Exit(code)


def _build(pcfg: PredictConfig) -> tuple[Predictor, ModelSpec]:
    from densecnn.tasks.classify import load_classifier

    return load_classifier(pcfg)


def make_sinks(run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig) -> list[Sink]:
    """predictions.jsonl and predictions.csv always; annotated images and videos with ``--save``."""
    from densecnn.sinks import CsvSink, ImageSink, JsonlSink, VideoSink

    sinks: list[Sink] = [
        JsonlSink(run_dir / "predictions.jsonl"),
        CsvSink(run_dir / "predictions.csv", topk=pcfg.topk),
    ]
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    return sinks
