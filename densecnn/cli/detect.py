"""``densecnn detect SOURCE``: detection over images, folders, globs, lists and videos."""

from __future__ import annotations

from pathlib import Path

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors


@opt.shared_options
def detect(
    source: str = opt.Source,
    model: str | None = opt.Model,
    weights: Path | None = opt.Weights,
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
    from densecnn.cli.run import configure_logging, run_prediction
    from densecnn.config import PredictConfig

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
        ocfg = shared.output_config(
            "detect", save=save, save_txt=save_txt, save_conf=save_conf, save_crops=save_crops
        )
        code = run_prediction(
            task="detect", source=source, pcfg=pcfg, ocfg=ocfg, lcfg=shared.live_config(), quiet=shared.quiet
        )
    raise typer.Exit(code)
