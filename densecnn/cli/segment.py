"""``densecnn segment SOURCE``: label maps (semantic models) and instance masks (YOLO -seg models)
of images, folders and videos."""

from __future__ import annotations

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, PredictConfig, TileConfig


@opt.shared_options("segment")
def segment(
    source: opt.Source,
    model: opt.Model = PredictConfig.model,
    weights: opt.SegmentWeights = PredictConfig.weights,
    trust_weights: opt.TrustWeights = PredictConfig.trust_weights,
    backbone: opt.Backbone = PredictConfig.backbone,
    num_classes: opt.NumClasses = None,
    class_names: opt.ClassNames = None,
    imgsz: opt.SegmentImgsz = PredictConfig.imgsz,
    conf: opt.InstanceConf = PredictConfig.conf,
    iou: opt.InstanceIou = PredictConfig.iou,
    alpha: opt.Alpha = OutputConfig.alpha,
    save_masks: opt.SaveMasks = OutputConfig.save_masks,
    save_overlay: opt.SaveOverlay = OutputConfig.save,
    tile: opt.Tile = None,
    tile_overlap: opt.TileOverlap = TileConfig.overlap,
    tile_merge: opt.TileMerge = None,
    tile_match: opt.TileMatch = TileConfig.match,
    tile_threshold: opt.TileThreshold = TileConfig.threshold,
    tile_full: opt.TileFull = TileConfig.full,
    tile_batch: opt.TileBatch = TileConfig.batch,
    resume: opt.ResumeSegment = OutputConfig.resume,
    *,
    shared: opt.Shared,
) -> None:
    """Segment images, folders and videos: a class per pixel (torchvision DeepLabV3 / LR-ASPP, U-Net
    and DeepLabV3+ on a registry backbone) or instance masks (yolov8n-seg, yolo11n-seg, any
    Ultralytics -seg .pt).

    Writes to runs/segment/predict (predict2, ... on later runs; --resume continues one): masks/
    (single-channel uint8 PNG label maps the size of each input, named after the whole input name:
    a.jpg → masks/a.jpg.png; video frames as masks/<video>/<frame>.png), classes.json (ids, names,
    overlay colours; 255 = no class / no instance), overlays under the inputs' relative paths and
    H.264 videos, predictions.jsonl (per image or frame: per-class pixel fractions, and for instance
    models each instance's class, score, box and COCO RLE mask), predictions.coco.json (instance
    models, image inputs), summary.json and, when inputs fail, errors.jsonl. Exit code: 0 all inputs
    done, 1 some failed, 2 usage error, 3 weights unavailable or untrusted, 4 outputs could not be
    written (disk full...), 130 interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction
    from densecnn.config import resolve_class_names

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        pcfg = PredictConfig(
            model=model,
            weights=weights,
            trust_weights=trust_weights,
            backbone=backbone,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            tile=opt.tile_config(
                tile, tile_overlap, tile_merge, tile_match, tile_threshold, tile_full, tile_batch
            ),
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config(save=save_overlay, save_masks=save_masks, alpha=alpha, resume=resume)
        code = run_prediction(
            task="segment",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=shared.live_config(),
            ecfg=shared.engine_config(),
            quiet=shared.quiet,
            verbose=shared.verbose,
            class_names=resolve_class_names(num_classes, opt.split_names(class_names)),
        )
    raise typer.Exit(code)
