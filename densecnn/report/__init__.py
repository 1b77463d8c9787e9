"""report.html: a self-contained page of one prediction run, built from the run folder's own files.

``write_report(run_dir)`` (re)writes ``run_dir/report.html`` atomically; the engine calls it after
summary.json, and ``densecnn report RUN_DIR`` calls it for any run folder, also one from another
machine. What it shows: :mod:`densecnn.report.html`; what it reads: :mod:`densecnn.report.data`.
"""

from __future__ import annotations

from pathlib import Path

from densecnn.errors import UsageError

REPORT_NAME = "report.html"


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` and return its path. ``UsageError`` when ``run_dir`` is not a
    prediction run folder (it has neither predictions.jsonl nor summary.json)."""
    from densecnn.fsutil import atomic_open
    from densecnn.report.data import read_run
    from densecnn.report.html import render

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(
            f"{run_dir}: no such folder (give a prediction run folder, e.g. runs/detect/predict)."
        )
    if not (run_dir / "predictions.jsonl").is_file() and not (run_dir / "summary.json").is_file():
        raise UsageError(
            f"{run_dir}: not a prediction run folder (no predictions.jsonl or summary.json); "
            "give the folder a detect, segment or classify run wrote, e.g. runs/detect/predict."
        )
    text = render(read_run(run_dir))
    path = run_dir / REPORT_NAME
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return path
