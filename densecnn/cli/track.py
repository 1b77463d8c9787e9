"""``densecnn track SOURCE``: multi-object tracking with line and zone counts over videos and streams."""

from __future__ import annotations

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, PredictConfig, TrackConfig


@opt.shared_options("track")
def track(
    source: opt.Source,
    model: opt.Model = PredictConfig.model,
    weights: opt.Weights = PredictConfig.weights,
    trust_weights: opt.TrustWeights = PredictConfig.trust_weights,
    backbone: opt.Backbone = PredictConfig.backbone,
    conf: opt.Conf = PredictConfig.conf,
    iou: opt.Iou = PredictConfig.iou,
    classes: opt.Classes = None,
    imgsz: opt.Imgsz = PredictConfig.imgsz,
    max_det: opt.MaxDet = PredictConfig.max_det,
    tracker: opt.Tracker = TrackConfig.tracker,
    line: opt.CountLine = None,
    zone: opt.CountZone = None,
    anchor: opt.Anchor = TrackConfig.anchor,
    trail: opt.Trail = TrackConfig.trail,
    save: opt.Save = OutputConfig.save,
    save_txt: opt.SaveTxt = OutputConfig.save_txt,
    save_conf: opt.SaveConf = OutputConfig.save_conf,
    save_crops: opt.SaveCrops = OutputConfig.save_crops,
    *,
    shared: opt.Shared,
) -> None:
    """Track objects through videos and live streams (Ultralytics' BoT-SORT or ByteTrack over a YOLO or
    Faster R-CNN detector, or a YOLO -seg instance model), and count them across lines and in zones.

    Each confirmed track gets an id (unconfirmed tracks get none and are never counted). Writes to
    runs/track/predict (predict2, ... on later runs): annotated videos with ids, trails, lines, zones
    and counts; predictions.jsonl (per frame: the tracked detections with their track_id, and the
    cumulative counts per line and zone and class); predictions.csv (one row per tracked detection);
    summary.json (tracks per class, count totals) and, when inputs fail, errors.jsonl. A crossing is
    decided by the side of the line of a track's anchor point when last seen and when seen again, so
    frames dropped in latest mode never invent or double a crossing. Exit code: 0 all inputs done, 1
    some failed, 2 usage error, 3 weights unavailable or untrusted, 4 outputs could not be written,
    130 interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        tcfg = TrackConfig(
            tracker=tracker, lines=tuple(line or ()), zones=tuple(zone or ()), anchor=anchor, trail=trail
        )
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
        ocfg = shared.output_config(save=save, save_txt=save_txt, save_conf=save_conf, save_crops=save_crops)
        code = run_prediction(
            task="track",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=shared.live_config(),
            ecfg=shared.engine_config(),
            quiet=shared.quiet,
            track=tcfg,
        )
    raise typer.Exit(code)
