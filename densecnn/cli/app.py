"""The Typer application: one sub-command per module, imported lazily where they are heavy."""

from __future__ import annotations

from densecnn.cli import options as opt
from densecnn.cli.common import App

app = App(
    name="densecnn",
    help="Dense prediction from the command line: detect, segment and classify images, folders, "
    "videos and streams.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(version: opt.Version = False) -> None:
    """densecnn: detection, segmentation and classification over images, folders, videos and streams."""


def _register() -> None:
    from densecnn.cli import (
        bench,
        classify,
        detect,
        doctor,
        export,
        html_report,
        models,
        multi,
        segment,
        track,
        weights,
    )
    from densecnn.cli import data as data_cli
    from densecnn.cli import eval as eval_cli
    from densecnn.cli import train as train_cli

    # short_help: the one line `densecnn --help` shows (the docstrings' first paragraphs run longer)
    app.command(
        "detect", no_args_is_help=True, short_help="Detect objects in images, videos and live streams."
    )(detect.detect)
    app.command(
        "segment",
        no_args_is_help=True,
        short_help="Segment images, videos and live streams: label maps or instance masks.",
    )(segment.segment)
    app.command(
        "classify", no_args_is_help=True, short_help="Classify images, video frames and live streams."
    )(classify.classify)
    app.command(
        "track",
        no_args_is_help=True,
        short_help="Track objects through videos and streams; count them across lines and in zones.",
    )(track.track)
    app.command(
        "run",
        no_args_is_help=True,
        short_help="Several models over one decode: detect, segment and classify each frame at once.",
    )(multi.run)
    app.command("models")(models.models)
    app.command(
        "export",
        no_args_is_help=True,
        short_help="Export a model to ONNX or OpenVINO (self-describing, for --weights).",
    )(export.export)
    app.command(
        "bench",
        no_args_is_help=True,
        short_help="Benchmark models x backends x sizes on a video or folder: FPS, stages, RSS, accuracy.",
    )(bench.bench)
    app.command(
        "doctor",
        short_help="Check what this machine offers densecnn: libraries, GPU, codecs, display, weights.",
    )(doctor.doctor)
    app.command("report", no_args_is_help=True, short_help="Rebuild a prediction run folder's report.html.")(
        html_report.report
    )
    app.add_typer(weights.app, name="weights")
    app.add_typer(train_cli.app, name="train")
    app.add_typer(eval_cli.app, name="eval")
    app.add_typer(data_cli.app, name="data")


_register()


def run() -> None:
    app()
