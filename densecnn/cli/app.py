"""The Typer application: one sub-command per module, imported lazily where they are heavy."""

from __future__ import annotations

import typer

from densecnn import __version__

app = typer.Typer(
    name="densecnn",
    help="Dense prediction from the command line: detect, segment and classify images, folders, "
    "videos and streams.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"densecnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """densecnn: detection, segmentation and classification over images, folders, videos and streams."""


def _register() -> None:
    from densecnn.cli import classify, detect, models, segment, weights
    from densecnn.cli import data as data_cli
    from densecnn.cli import eval as eval_cli
    from densecnn.cli import train as train_cli

    app.command("detect", no_args_is_help=True)(detect.detect)
    app.command("segment", no_args_is_help=True)(segment.segment)
    app.command("classify", no_args_is_help=True)(classify.classify)
    app.command("models")(models.models)
    app.add_typer(weights.app, name="weights")
    app.add_typer(train_cli.app, name="train")
    app.add_typer(eval_cli.app, name="eval")
    app.add_typer(data_cli.app, name="data")


_register()


def run() -> None:
    app()
