"""``densecnn classify SOURCE``: top-k classes of every image and video frame."""

from __future__ import annotations

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, PredictConfig


@opt.shared_options("classify")
def classify(
    source: opt.Source,
    model: opt.Model = PredictConfig.model,
    weights: opt.Weights = PredictConfig.weights,
    trust_weights: opt.TrustWeights = PredictConfig.trust_weights,
    backbone: opt.Backbone = PredictConfig.backbone,
    topk: opt.TopK = PredictConfig.topk,
    imgsz: opt.ClassifyImgsz = PredictConfig.imgsz,
    save: opt.Save = OutputConfig.save,
    resume: opt.ResumePredict = OutputConfig.resume,
    *,
    shared: opt.Shared,
) -> None:
    """Classify images, folders, videos and live streams (torchvision ImageNet models, YOLO-cls,
    densecnn checkpoints).

    Writes to runs/classify/predict (predict2, ... on later runs): predictions.jsonl and
    predictions.csv (top-k classes per image or frame), annotated images and H.264 videos with the top
    classes drawn, summary.json and, when inputs fail, errors.jsonl. Exit code: 0 all inputs done,
    1 some failed, 2 usage error, 3 weights unavailable or untrusted, 4 outputs could not be written
    (disk full...), 130 interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        pcfg = PredictConfig(
            model=model,
            weights=weights,
            trust_weights=trust_weights,
            backbone=backbone,
            imgsz=imgsz,
            topk=topk,
            **shared.predict_kwargs(),
        )
        ocfg = shared.output_config(save=save, resume=resume)
        code = run_prediction(
            task="classify",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=shared.live_config(),
            ecfg=shared.engine_config(),
            quiet=shared.quiet,
            verbose=shared.verbose,
        )
    raise typer.Exit(code)
