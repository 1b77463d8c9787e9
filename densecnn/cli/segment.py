"""``densecnn segment SOURCE``: label maps (semantic models) and instance masks (YOLO -seg models)
of images, folders and videos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, PredictConfig
from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.sinks.base import Sink
    from densecnn.sources.base import InputRef
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec


@opt.shared_options("segment")
def segment(
    source: opt.Source,
    model: opt.Model = PredictConfig.model,
    weights: opt.SegmentWeights = PredictConfig.weights,
    backbone: opt.Backbone = PredictConfig.backbone,
    num_classes: opt.NumClasses = None,
    class_names: opt.ClassNames = None,
    imgsz: opt.SegmentImgsz = PredictConfig.imgsz,
    conf: opt.InstanceConf = PredictConfig.conf,
    iou: opt.InstanceIou = PredictConfig.iou,
    alpha: opt.Alpha = 0.5,
    save_masks: opt.SaveMasks = True,
    save_overlay: opt.SaveOverlay = OutputConfig.save,
    resume: opt.ResumeSegment = False,
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
    done, 1 some failed, 2 usage error, 3 weights unavailable, 130 interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction
    from densecnn.tasks.segment import instance_spec, resolve_class_names

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        if not 0.0 <= alpha <= 1.0:
            raise UsageError(f"--alpha must be between 0 and 1, got {alpha}.")
        if resume and not save_masks:
            raise UsageError("--resume finds finished images by their masks; it needs --save-masks.")
        pcfg = PredictConfig(
            model=model,
            weights=weights,
            backbone=backbone,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config(exist_ok=shared.exist_ok or resume, save=save_overlay)
        names = resolve_class_names(num_classes, opt.split_names(class_names))
        instances = instance_spec(pcfg) is not None
        if not instances and (conf is not None or iou is not None):
            raise UsageError(
                "--conf and --iou apply to instance models (yolov8n-seg, yolo11n-seg, -seg .pt)."
            )
        code = run_prediction(
            task="segment",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            quiet=shared.quiet,
            lcfg=shared.live_config(),
            build=lambda: _build(pcfg, names),
            make_sinks=lambda run_dir, predictor: make_sinks(
                run_dir,
                ocfg,
                pcfg,
                predictor.names,
                save_masks=save_masks,
                append=resume,
                instances=instances,
            ),
            counts_label="Instances per class" if instances else "Images per class",
            record={"alpha": alpha, "resumed": resume},
            draw=_drawer(alpha),
            is_done=input_done if resume else None,
        )
    raise typer.Exit(code)


def _build(pcfg: PredictConfig, names: tuple[str, ...] | None) -> tuple[Predictor, ModelSpec]:
    from densecnn.tasks.segment import load_segmenter

    return load_segmenter(pcfg, class_names=names)


def _drawer(alpha: float) -> Any:
    """``draw_result`` with this overlay opacity."""
    from functools import partial

    from densecnn.draw import draw_result

    return partial(draw_result, alpha=alpha)


def input_done(run_dir: Path, ref: InputRef) -> bool:
    """An image is done when its mask file exists (masks are written atomically), a video when its
    ``complete.json`` marker does (written after all its frames went through every sink)."""
    from densecnn.sinks.masks import is_complete

    return is_complete(run_dir, ref.source, video=ref.kind == "video")


def _row_done(run_dir: Path, row: dict[str, Any]) -> bool:
    """Whether a predictions.jsonl row of an earlier run belongs to a finished input (kept on resume)."""
    from densecnn.sinks.masks import is_complete

    source = str(row.get("source", ""))
    return is_complete(run_dir, source, video=False) or is_complete(run_dir, source, video=True)


def make_sinks(
    run_dir: Path,
    ocfg: OutputConfig,
    pcfg: PredictConfig,
    names: dict[int, str],
    *,
    save_masks: bool,
    append: bool = False,
    instances: bool = False,
) -> list[Sink]:
    """predictions.jsonl and classes.json always; predictions.coco.json for instance models; masks and
    overlays as asked; last, the video completion markers (see ``input_done``)."""
    from functools import partial

    from densecnn.sinks import CocoSink, ImageSink, JsonlSink, MaskSink, VideoSink
    from densecnn.sinks.masks import CompletionSink, write_classes_json

    write_classes_json(run_dir / "classes.json", names, instances=instances)
    keep = partial(_row_done, run_dir) if append else None
    sinks: list[Sink] = [JsonlSink(run_dir / "predictions.jsonl", append=append, keep=keep)]
    if instances:
        sinks.append(CocoSink(run_dir / "predictions.coco.json", class_names=names))
    if save_masks:
        sinks.append(MaskSink(run_dir))
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    if save_masks:
        sinks.append(CompletionSink(run_dir))
    return sinks
