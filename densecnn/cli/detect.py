"""``densecnn detect SOURCE``: detection over images, folders, globs, lists and videos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, PredictConfig

if TYPE_CHECKING:
    from densecnn.config import LiveConfig
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec


@opt.shared_options("detect")
def detect(
    source: opt.Source,
    model: opt.Model = PredictConfig.model,
    weights: opt.Weights = PredictConfig.weights,
    backbone: opt.Backbone = PredictConfig.backbone,
    conf: opt.Conf = PredictConfig.conf,
    iou: opt.Iou = PredictConfig.iou,
    classes: opt.Classes = None,
    imgsz: opt.Imgsz = PredictConfig.imgsz,
    max_det: opt.MaxDet = PredictConfig.max_det,
    save: opt.Save = OutputConfig.save,
    save_txt: opt.SaveTxt = OutputConfig.save_txt,
    save_conf: opt.SaveConf = OutputConfig.save_conf,
    save_crops: opt.SaveCrops = OutputConfig.save_crops,
    *,
    shared: opt.Shared,
) -> None:
    """Detect objects in images, folders, videos and live streams (YOLO, or Faster R-CNN on its own or
    any backbone).

    Writes to runs/detect/predict (predict2, ... on later runs): annotated images and H.264 videos
    (live streams: a recording), predictions.jsonl (one line per frame), predictions.coco.json
    (images), summary.json and, when inputs fail, errors.jsonl. Exit code: 0 all inputs done, 1 some
    failed, 2 usage error, 3 weights unavailable, 130 interrupted.
    """
    from densecnn.cli.run import configure_logging

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        pcfg = PredictConfig(
            model=model,
            weights=weights,
            backbone=backbone,
            conf=conf,
            iou=iou,
            imgsz=imgsz,
            classes=tuple(classes or ()),
            max_det=max_det,
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config(save=save, save_txt=save_txt, save_conf=save_conf, save_crops=save_crops)
        code = run_detect(source, pcfg, ocfg, quiet=shared.quiet, lcfg=shared.live_config())
    raise typer.Exit(code)


def run_detect(
    source: str, pcfg: PredictConfig, ocfg: OutputConfig, *, quiet: bool, lcfg: LiveConfig | None = None
) -> int:
    """Open the source, build the detector, run the pipeline, report. Returns the exit code."""
    from densecnn.cli.run import run_prediction

    return run_prediction(
        task="detect",
        source=source,
        pcfg=pcfg,
        ocfg=ocfg,
        quiet=quiet,
        lcfg=lcfg,
        build=lambda: _build(pcfg),
        make_sinks=lambda run_dir, predictor: _make_sinks(run_dir, ocfg, pcfg.vid_stride, predictor.names),
        counts_label="Detections",
    )


def _build(pcfg: PredictConfig) -> tuple[Predictor, ModelSpec]:
    from densecnn.tasks.detect import build_detector

    return build_detector(pcfg)


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
