"""``densecnn data check D``: list every problem of a dataset before training on it."""

from __future__ import annotations

from pathlib import Path

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import App, console, user_errors
from densecnn.train.config import TrainConfig

app = App(help="Inspect datasets in the formats `densecnn train` reads.", no_args_is_help=True)

_PATH = typer.Argument(..., help="data.yaml, COCO .json, masks folder or ImageFolder root.")
MAX_SHOWN = 50


@app.command("check", no_args_is_help=True, short_help="List every problem of a dataset, with file and line.")
def check(
    path: Path = _PATH,
    num_classes: opt.DataNumClasses = TrainConfig.num_classes,
    class_names: opt.DataClassNames = None,
    mask_mode: opt.MaskMode = TrainConfig.mask_mode,
    ignore_index: opt.IgnoreIndex = TrainConfig.ignore_index,
    val_fraction: opt.ValFraction = TrainConfig.val_fraction,
    seed: opt.Seed = TrainConfig.seed,
    verbose: opt.Verbose = False,
) -> None:
    """Check a dataset: its format, classes, split, and every problem with file (and line) and what
    is wrong (options default to `densecnn train`'s). Exit code: 0 no problems, 1 problems found,
    2 not a dataset densecnn knows."""
    from densecnn.cli.run import configure_logging
    from densecnn.data.check import check as run_check

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        report = run_check(
            path,
            mask_mode=str(mask_mode),
            num_classes=num_classes,
            class_names=opt.split_names(class_names),
            ignore_index=ignore_index,
            val_fraction=val_fraction,
            seed=seed,
        )
    console.print(f"[bold]{path}[/]: {report.format}", highlight=False)
    for line in report.summary:
        console.print(f"  {line}", highlight=False)
    if not report.problems:
        console.print("[green]OK[/]: no problems found.")
        return
    console.print(f"[red]{len(report.problems)} problem(s)[/]:")
    for problem in report.problems[:MAX_SHOWN]:
        console.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
    if len(report.problems) > MAX_SHOWN:
        console.print(f"  ... and {len(report.problems) - MAX_SHOWN} more")
    raise typer.Exit(1)
