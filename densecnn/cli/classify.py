"""``densecnn classify SOURCE``: top-k classes of every image and video frame."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, PredictConfig

if TYPE_CHECKING:
    from densecnn.sinks.base import Sink
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec


@opt.shared_options("classify")
def classify(
    source: opt.Source,
    model: opt.Model = PredictConfig.model,
    weights: opt.Weights = PredictConfig.weights,
    backbone: opt.Backbone = PredictConfig.backbone,
    topk: opt.TopK = PredictConfig.topk,
    imgsz: opt.ClassifyImgsz = PredictConfig.imgsz,
    save: opt.Save = OutputConfig.save,
    *,
    shared: opt.Shared,
) -> None:
    """Classify images, folders, videos and live streams (torchvision ImageNet models, YOLO-cls,
    densecnn checkpoints).

    Writes to runs/classify/predict (predict2, ... on later runs): predictions.jsonl and
    predictions.csv (top-k classes per image or frame), annotated images and H.264 videos with the top
    classes drawn, summary.json and, when inputs fail, errors.jsonl. Exit code: 0 all inputs done,
    1 some failed, 2 usage error, 3 weights unavailable, 130 interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        pcfg = PredictConfig(
            model=model, weights=weights, backbone=backbone, imgsz=imgsz, topk=topk, **shared.predict_kwargs()
        )
        ocfg = shared.output_config(save=save)
        code = run_prediction(
            task="classify",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            quiet=shared.quiet,
            lcfg=shared.live_config(),
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
