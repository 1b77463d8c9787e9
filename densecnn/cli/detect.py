"""``densecnn detect SOURCE``: detection over images, folders, globs, lists and videos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors

if TYPE_CHECKING:
    from densecnn.config import LiveConfig, OutputConfig, PredictConfig
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec


@opt.shared_options
def detect(
    source: str = opt.Source,
    model: str | None = opt.Model,
    weights: Path | None = opt.Weights,
    trust_weights: bool = opt.TrustWeights,
    backbone: str | None = opt.Backbone,
    conf: float | None = opt.Conf,
    iou: float | None = opt.Iou,
    classes: list[str] | None = opt.Classes,
    imgsz: int | None = opt.Imgsz,
    max_det: int | None = opt.MaxDet,
    save: bool = opt.Save,
    save_txt: bool = opt.SaveTxt,
    save_conf: bool = opt.SaveConf,
    save_crops: bool = opt.SaveCrops,
    resume: bool = opt.Resume,
    *,
    shared: opt.Shared,
) -> None:
    """Detect objects in images, folders, videos and live streams (YOLO, or Faster R-CNN on its own or
    any backbone).

    Writes to runs/detect/predict (predict2, ... on later runs): annotated images and H.264 videos
    (live streams: a recording), predictions.jsonl (one line per frame), predictions.coco.json
    (images), summary.json and, when inputs fail, errors.jsonl. Exit code: 0 all inputs done, 1 some
    failed, 2 usage error, 3 weights unavailable or untrusted, 4 outputs could not be written (disk
    full...), 130 interrupted.
    """
    from densecnn.cli.run import configure_logging
    from densecnn.config import PredictConfig

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        pcfg = PredictConfig(
            model=model,
            weights=weights,
            trust_weights=trust_weights,
            backbone=backbone,
            conf=conf,
            iou=iou,
            imgsz=imgsz,
            classes=tuple(classes or ()),
            max_det=max_det,
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config(
            "detect",
            save=save,
            save_txt=save_txt,
            save_conf=save_conf,
            save_crops=save_crops,
            exist_ok=shared.exist_ok or resume,
        )
        code = run_detect(source, pcfg, ocfg, quiet=shared.quiet, lcfg=shared.live_config(), resume=resume)
    raise typer.Exit(code)


def run_detect(
    source: str,
    pcfg: PredictConfig,
    ocfg: OutputConfig,
    *,
    quiet: bool,
    lcfg: LiveConfig | None = None,
    resume: bool = False,
) -> int:
    """Open the source, build the detector, run the pipeline, report. Returns the exit code."""
    from densecnn.cli.run import run_prediction
    from densecnn.sinks.done import Resume

    state = Resume() if resume else None
    return run_prediction(
        task="detect",
        source=source,
        pcfg=pcfg,
        ocfg=ocfg,
        quiet=quiet,
        lcfg=lcfg,
        build=lambda: _build(pcfg),
        make_sinks=lambda run_dir, predictor: _make_sinks(
            run_dir, ocfg, pcfg.vid_stride, predictor.names, resume=state
        ),
        counts_label="Detections",
        record={"resumed": resume},
        is_done=state.is_done if state is not None else None,
    )


def _build(pcfg: PredictConfig) -> tuple[Predictor, ModelSpec]:
    from densecnn.tasks.detect import build_detector

    return build_detector(pcfg)


def _make_sinks(
    run_dir: Path, ocfg: Any, vid_stride: int, names: dict[int, str], *, resume: Any = None
) -> list[Any]:
    from densecnn.sinks import CocoSink, CropsSink, ImageSink, JsonlSink, LabelsSink, VideoSink
    from densecnn.sinks.done import DoneSink
    from densecnn.sinks.jsonl import read_jsonl

    ledger = resume.ledger(run_dir) if resume is not None else None
    jsonl = JsonlSink(
        run_dir / "predictions.jsonl",
        append=ledger is not None,
        keep=ledger.keep_row if ledger is not None else None,
    )
    coco = CocoSink(run_dir / "predictions.coco.json", class_names=names)
    if ledger is not None:  # the earlier run's finished images, from their kept rows
        for row in ledger.image_rows(read_jsonl(jsonl.path)):
            coco.add_record(row)
    sinks: list[Any] = [jsonl, coco]
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=vid_stride)]
    if ocfg.save_txt:
        sinks.append(LabelsSink(run_dir, save_conf=ocfg.save_conf))
    if ocfg.save_crops:
        sinks.append(CropsSink(run_dir))
    sinks.append(DoneSink(run_dir, append=ledger is not None))  # last: after every other output
    return sinks
