"""``densecnn segment SOURCE``: label maps (semantic models) and instance masks (YOLO -seg models)
of images, folders and videos."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.config import OutputConfig, PredictConfig
    from densecnn.sinks.base import Sink
    from densecnn.sources.base import InputRef
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec


_WEIGHTS = typer.Option(
    None,
    "--weights",
    "-w",
    help="An Ultralytics -seg .pt (instance masks), a state dict for --model (U-Net / DeepLabV3+ "
    "ones need --backbone and --num-classes or --class-names), or a densecnn .safetensors checkpoint "
    "(names its own backbone and classes).",
)
_NUM_CLASSES = typer.Option(
    None, "--num-classes", help="Outputs of a plain state dict's head (classes named class0, class1...)."
)
_CLASS_NAMES = typer.Option(
    None,
    "--class-names",
    help="Names of a plain state dict's classes, in output order: comma-separated or repeated.",
)
_BACKBONE = typer.Option(
    None,
    "--backbone",
    "-b",
    help="Registry backbone of --model unet / deeplabv3plus (checkpoints name theirs).",
)
_IMGSZ = typer.Option(
    None,
    "--imgsz",
    help="Shorter image side at inference, in pixels (default: the model's, 520 for the torchvision "
    "zoo); YOLO: the letterbox size (default 640).",
)
_CONF = typer.Option(None, "--conf", help="Instance models: confidence threshold (default 0.25).")
_IOU = typer.Option(None, "--iou", help="Instance models: NMS IoU threshold (default 0.7).")
_ALPHA = typer.Option(0.5, "--alpha", help="Overlay opacity of the class colours, 0 to 1.")
_SAVE_MASKS = typer.Option(
    True,
    "--save-masks/--no-save-masks",
    help="Write label maps (uint8 PNG, value = class id) under masks/.",
)
_SAVE_OVERLAY = typer.Option(
    True, "--save-overlay/--no-save-overlay", help="Write colour overlays of images and H.264 videos."
)
_RESUME = typer.Option(
    False,
    "--resume",
    help="Continue the run folder --name (default predict) instead of numbering a new one: images "
    "whose mask is there and videos marked complete are skipped; the rest is redone (their old "
    "predictions.jsonl rows are dropped first, so none appears twice).",
)


@opt.shared_options
def segment(
    source: str = opt.Source,
    model: str | None = opt.Model,
    weights: Path | None = _WEIGHTS,
    trust_weights: bool = opt.TrustWeights,
    backbone: str | None = _BACKBONE,
    num_classes: int | None = _NUM_CLASSES,
    class_names: list[str] | None = _CLASS_NAMES,
    imgsz: int | None = _IMGSZ,
    conf: float | None = _CONF,
    iou: float | None = _IOU,
    alpha: float = _ALPHA,
    save_masks: bool = _SAVE_MASKS,
    save_overlay: bool = _SAVE_OVERLAY,
    resume: bool = _RESUME,
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
    from densecnn.config import PredictConfig
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
            trust_weights=trust_weights,
            backbone=backbone,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config("segment", exist_ok=shared.exist_ok or resume, save=save_overlay)
        names = resolve_class_names(num_classes, _split_names(class_names))
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
            is_done=partial(input_done, overlay=save_overlay) if resume else None,
        )
    raise typer.Exit(code)


def _split_names(values: list[str] | None) -> list[str] | None:
    """``--class-names a,b --class-names c`` → ``[a, b, c]``."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",")]
    if not all(names):
        raise UsageError("--class-names has an empty name.")
    return names


def _build(pcfg: PredictConfig, names: tuple[str, ...] | None) -> tuple[Predictor, ModelSpec]:
    from densecnn.tasks.segment import load_segmenter

    return load_segmenter(pcfg, class_names=names)


def _drawer(alpha: float) -> Any:
    """``draw_result`` with this overlay opacity."""
    from densecnn.draw import draw_result

    return partial(draw_result, alpha=alpha)


def input_done(run_dir: Path, ref: InputRef, *, overlay: bool = False) -> bool:
    """An image is done when its mask and (``overlay``) its overlay exist (both written atomically,
    the overlay last), a video when its ``complete.json`` marker does (written after all its frames
    went through every sink)."""
    from densecnn.sinks.masks import is_complete

    return is_complete(run_dir, ref.source, video=ref.kind == "video", overlay=overlay)


def _row_done(run_dir: Path, row: dict[str, Any], *, overlay: bool = False) -> bool:
    """Whether a predictions.jsonl row of an earlier run belongs to a finished input (kept on resume;
    the same test as :func:`input_done`, so a redone input never has two rows)."""
    from densecnn.sinks.masks import is_complete

    source = str(row.get("source", ""))
    return is_complete(run_dir, source, video=False, overlay=overlay) or is_complete(
        run_dir, source, video=True
    )


def _image_row_done(run_dir: Path, row: dict[str, Any], *, overlay: bool = False) -> bool:
    """A kept row of a finished image input (what predictions.coco.json holds)."""
    from densecnn.sinks.masks import is_complete

    return is_complete(run_dir, str(row.get("source", "")), video=False, overlay=overlay)


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
    from densecnn.sinks import CocoSink, ImageSink, JsonlSink, MaskSink, VideoSink
    from densecnn.sinks.masks import CompletionSink, write_classes_json

    write_classes_json(run_dir / "classes.json", names, instances=instances)
    keep = partial(_row_done, run_dir, overlay=ocfg.save) if append else None
    jsonl = JsonlSink(run_dir / "predictions.jsonl", append=append, keep=keep)
    sinks: list[Sink] = [jsonl]
    if instances:
        coco = CocoSink(run_dir / "predictions.coco.json", class_names=names)
        if append:  # the finished images of the earlier run, from their kept rows
            from densecnn.sinks.jsonl import read_jsonl

            done = partial(_image_row_done, run_dir, overlay=ocfg.save)
            for row in read_jsonl(jsonl.path):
                if done(row):
                    coco.add_record(row)
        sinks.append(coco)
    if save_masks:
        sinks.append(MaskSink(run_dir))
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    if save_masks:
        sinks.append(CompletionSink(run_dir))
    return sinks
