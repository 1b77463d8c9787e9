"""``densecnn data check D``: list every problem of a dataset before training on it."""

from __future__ import annotations

from pathlib import Path

import typer

from densecnn.cli.common import console, user_errors

app = typer.Typer(help="Inspect datasets in the formats `densecnn train` reads.", no_args_is_help=True)

_PATH = typer.Argument(..., help="data.yaml, COCO .json, masks folder or ImageFolder root.")
MAX_SHOWN = 50


@app.command("check", no_args_is_help=True)
def check(
    path: Path = _PATH,
    num_classes: int | None = typer.Option(None, "--num-classes", help="Class count (masks folders)."),
    class_names: str | None = typer.Option(None, "--class-names", help="Class names a,b,c (masks folders)."),
    mask_mode: str = typer.Option(
        "labels", "--mask-mode", help="labels or instances-to-foreground (masks folders)."
    ),
    ignore_index: int = typer.Option(255, "--ignore-index", help="Mask value that is not scored."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Held-out share (seeded split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks."),
) -> None:
    """Check a dataset: its format, classes, split, and every problem with file (and line) and what is
    wrong. Exit code: 0 no problems, 1 problems found, 2 not a dataset densecnn knows."""
    from densecnn.data.check import check as run_check

    with user_errors(verbose=verbose):
        names = tuple(n.strip() for n in class_names.split(",") if n.strip()) if class_names else ()
        report = run_check(
            path,
            mask_mode=mask_mode,
            num_classes=num_classes,
            class_names=names,
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
