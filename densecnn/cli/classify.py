"""``densecnn classify SOURCE``: top-k classes of every image and video frame."""

from __future__ import annotations

from pathlib import Path

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors


@opt.shared_options
def classify(
    source: str = opt.Source,
    model: str | None = opt.Model,
    weights: Path | None = opt.Weights,
    backbone: str | None = typer.Option(
        None, "--backbone", "-b", help="Registry backbone for --model classifier (checkpoints name theirs)."
    ),
    topk: int = opt.TopK,
    imgsz: int | None = typer.Option(
        None, "--imgsz", help="Centre-crop size in pixels (default: the model's, 224 for the zoo models)."
    ),
    save: bool = opt.Save,
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
    from densecnn.config import PredictConfig

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        pcfg = PredictConfig(
            model=model, weights=weights, backbone=backbone, imgsz=imgsz, topk=topk, **shared.predict_kwargs()
        )
        ocfg = shared.output_config("classify", save=save)
        code = run_prediction(
            task="classify",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=shared.live_config(),
            quiet=shared.quiet,
        )
    raise typer.Exit(code)
