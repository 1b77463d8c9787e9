"""``densecnn classify SOURCE``: top-k classes of every image and video frame."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors

if TYPE_CHECKING:
    from densecnn.config import OutputConfig, PredictConfig
    from densecnn.sinks.base import Sink
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec


@opt.shared_options
def classify(
    source: str = opt.Source,
    model: str | None = opt.Model,
    weights: Path | None = opt.Weights,
    trust_weights: bool = opt.TrustWeights,
    backbone: str | None = typer.Option(
        None, "--backbone", "-b", help="Registry backbone for --model classifier (checkpoints name theirs)."
    ),
    topk: int = opt.TopK,
    imgsz: int | None = typer.Option(
        None, "--imgsz", help="Centre-crop size in pixels (default: the model's, 224 for the zoo models)."
    ),
    save: bool = opt.Save,
    resume: bool = opt.Resume,
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
    from densecnn.config import PredictConfig
    from densecnn.sinks.done import Resume

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
        ocfg = shared.output_config("classify", save=save, exist_ok=shared.exist_ok or resume)
        state = Resume() if resume else None
        code = run_prediction(
            task="classify",
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            quiet=shared.quiet,
            lcfg=shared.live_config(),
            build=lambda: _build(pcfg),
            make_sinks=lambda run_dir, predictor: make_sinks(run_dir, ocfg, pcfg, resume=state),
            counts_label="Top-1 classes",
            record={"topk": pcfg.topk, "resumed": resume},
            is_done=state.is_done if state is not None else None,
        )
    raise typer.Exit(code)


def _build(pcfg: PredictConfig) -> tuple[Predictor, ModelSpec]:
    from densecnn.tasks.classify import load_classifier

    return load_classifier(pcfg)


def make_sinks(run_dir: Path, ocfg: OutputConfig, pcfg: PredictConfig, *, resume: Any = None) -> list[Sink]:
    """predictions.jsonl and predictions.csv always; annotated images and videos with ``--save``;
    last, the ledger of finished inputs (``--resume``: the earlier run's rows are kept for those)."""
    from densecnn.sinks import CsvSink, ImageSink, JsonlSink, VideoSink
    from densecnn.sinks.done import DoneSink
    from densecnn.sinks.jsonl import read_jsonl

    ledger = resume.ledger(run_dir) if resume is not None else None
    jsonl = JsonlSink(
        run_dir / "predictions.jsonl",
        append=ledger is not None,
        keep=ledger.keep_row if ledger is not None else None,
    )
    csv = CsvSink(run_dir / "predictions.csv", topk=pcfg.topk)
    if ledger is not None:
        for row in read_jsonl(jsonl.path):
            csv.add_record(row)
    sinks: list[Sink] = [jsonl, csv]
    if ocfg.save:
        sinks += [ImageSink(run_dir), VideoSink(run_dir, vid_stride=pcfg.vid_stride)]
    sinks.append(DoneSink(run_dir, append=ledger is not None))  # last: after every other output
    return sinks
