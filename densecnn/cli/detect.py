"""``densecnn detect SOURCE``: detection over images, folders, globs, lists and videos."""

from __future__ import annotations

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, PredictConfig, TileConfig


@opt.shared_options("detect")
def detect(
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
    save: opt.Save = OutputConfig.save,
    save_txt: opt.SaveTxt = OutputConfig.save_txt,
    save_conf: opt.SaveConf = OutputConfig.save_conf,
    save_crops: opt.SaveCrops = OutputConfig.save_crops,
    tile: opt.Tile = None,
    tile_overlap: opt.TileOverlap = TileConfig.overlap,
    tile_merge: opt.TileMerge = None,
    tile_match: opt.TileMatch = TileConfig.match,
    tile_threshold: opt.TileThreshold = TileConfig.threshold,
    tile_full: opt.TileFull = TileConfig.full,
    tile_batch: opt.TileBatch = TileConfig.batch,
    resume: opt.ResumePredict = OutputConfig.resume,
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
    from densecnn.cli.run import configure_logging, run_prediction

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
            tile=opt.tile_config(
                tile, tile_overlap, tile_merge, tile_match, tile_threshold, tile_full, tile_batch
            ),
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config(
            save=save, save_txt=save_txt, save_conf=save_conf, save_crops=save_crops, resume=resume
        )
        code = run_prediction(
            task="detect",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=shared.live_config(),
            quiet=shared.quiet,
            verbose=shared.verbose,
            ecfg=shared.engine_config(),
        )
    raise typer.Exit(code)
