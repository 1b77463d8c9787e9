"""``densecnn report RUN_DIR``: (re)build a prediction run folder's report.html from its own files.

(The console output of a run, its progress bar and summary table, is :mod:`densecnn.cli.report`.)
"""

from __future__ import annotations

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors


def report(run_dir: opt.RunDir) -> None:
    """Build RUN_DIR/report.html from the run's predictions.jsonl, summary.json and errors.jsonl: its
    settings, model, device, time per stage and errors; each video with a per-class plot over time
    (click to seek) and the current frame's detections; image folders as a paged, filterable grid
    of thumbnails that open full size with their boxes and masks; tracks and line/zone counts when the
    run has them. Every run writes it already; this rebuilds it (e.g. for a run from another machine
    or an older densecnn). The page is self-contained and needs no network.
    """
    from densecnn.report import write_report

    with user_errors():
        path = write_report(run_dir)
    typer.echo(f"Wrote {path}")
