"""``densecnn segment SOURCE``: semantic label maps of images, folders and videos."""

from __future__ import annotations

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
    help="A torchvision state dict for --model, or a densecnn .safetensors checkpoint (U-Net / "
    "DeepLabV3+: names its own backbone and classes).",
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
    help="Shorter image side at inference, in pixels (default: the model's, 520 for the zoo).",
)
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
    "whose mask is already there are skipped, predictions.jsonl is appended to. Videos are redone.",
)


@opt.shared_options
def segment(
    source: str = opt.Source,
    model: str | None = opt.Model,
    weights: Path | None = _WEIGHTS,
    backbone: str | None = _BACKBONE,
    imgsz: int | None = _IMGSZ,
    alpha: float = _ALPHA,
    save_masks: bool = _SAVE_MASKS,
    save_overlay: bool = _SAVE_OVERLAY,
    resume: bool = _RESUME,
    *,
    shared: opt.Shared,
) -> None:
    """Segment images, folders and videos: a class per pixel (torchvision DeepLabV3 / LR-ASPP, or U-Net
    and DeepLabV3+ from a densecnn checkpoint).

    Writes to runs/segment/predict (predict2, ... on later runs; --resume continues one): masks/
    (single-channel uint8 PNG label maps the size of each input; video frames as
    masks/<video>/<frame>.png), classes.json (ids, names, overlay colours), overlays under the inputs'
    relative paths and H.264 videos, predictions.jsonl (per-class pixel fractions per image or frame),
    summary.json and, when inputs fail, errors.jsonl. Exit code: 0 all inputs done, 1 some failed,
    2 usage error, 3 weights unavailable, 130 interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction
    from densecnn.config import PredictConfig

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
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config("segment", exist_ok=shared.exist_ok or resume, save=save_overlay)
        code = run_prediction(
            task="segment",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            quiet=shared.quiet,
            lcfg=shared.live_config(),
            build=lambda: _build(pcfg),
            make_sinks=lambda run_dir, predictor: make_sinks(
                run_dir, ocfg, pcfg, predictor.names, save_masks=save_masks, append=resume
            ),
            counts_label="Images per class",
            record={"alpha": alpha, "resumed": resume},
            draw=_drawer(alpha),
            is_done=mask_exists if resume else None,
        )
    raise typer.Exit(code)


def _build(pcfg: PredictConfig) -> tuple[Predictor, ModelSpec]:
    from densecnn.tasks.segment import load_segmenter

    return load_segmenter(pcfg)


def _drawer(alpha: float) -> Any:
    """``draw_result`` with this overlay opacity."""
    from functools import partial

    from densecnn.draw import draw_result

    return partial(draw_result, alpha=alpha)


def mask_exists(run_dir: Path, ref: InputRef) -> bool:
    """An image is done when its mask file exists (masks are written atomically). Videos never are."""
    from densecnn.sinks.masks import mask_path

    return ref.kind == "image" and mask_path(run_dir, ref.source).is_file()


def make_sinks(
    run_dir: Path,
    ocfg: OutputConfig,
    pcfg: PredictConfig,
    names: dict[int, str],
    *,
    save_masks: bool,
    append: bool = False,
) -> list[Sink]:
    """predictions.jsonl and classes.json always; masks and overlays as asked."""
    from densecnn.sinks import ImageSink, JsonlSink, MaskSink, VideoSink
    from densecnn.sinks.masks import write_classes_json

    write_classes_json(run_dir / "classes.json", names)
    sinks: list[Sink] = [JsonlSink(run_dir / "predictions.jsonl", append=append)]
    if save_masks:
        sinks.append(MaskSink(run_dir))
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    return sinks
