"""Console output of a prediction run: the progress bar and the closing summary table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from densecnn.latest import latency_stats
from densecnn.pipeline import STAGES, RunSummary
from densecnn.pipeline import Progress as PipelineProgress


class RichProgress(PipelineProgress):
    """Frames done / total with rate and ETA; the current input's name on the left."""

    def __init__(self, console: Console, label: str) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=console,
            transient=False,
        )
        self._label = label
        self._task = self._bar.add_task(label, total=None, rate="", current="")

    def start(self, total: int) -> None:
        self._bar.update(self._task, total=total or None)
        self._bar.start()

    def advance(self, frames: int, current: str) -> None:
        task = self._bar.tasks[0]
        rate = f"{task.speed:.1f} fps" if task.speed else ""
        self._bar.update(self._task, advance=frames, rate=rate, current=_short(current))

    def stop(self) -> None:
        task = self._bar.tasks[0]
        if task.total is not None and task.completed < task.total and not task.finished:
            self._bar.update(self._task, total=task.completed)  # estimates can overshoot
        self._bar.stop()


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


_NAMED_AT_MOST = 5  # more top-level files of one kind than this are counted, not named


def describe_outputs(run_dir: Path) -> list[str]:
    """Top-level entries of the run folder: folders with their file count; files by name, or by kind
    with their count when there are many of that kind (a folder of photos gives one overlay each)."""
    if not run_dir.is_dir():
        return []
    entries = [e for e in sorted(run_dir.iterdir()) if not e.name.startswith(".")]
    kinds = Counter(e.suffix.lower() for e in entries if e.is_file())
    lines, counted = [], set()
    for entry in entries:
        if entry.is_dir():
            n = sum(1 for p in entry.rglob("*") if p.is_file())
            lines.append(f"{entry.name}/ ({n} files)")
        elif kinds[entry.suffix.lower()] <= _NAMED_AT_MOST:
            lines.append(entry.name)
        elif entry.suffix.lower() not in counted:
            counted.add(entry.suffix.lower())
            lines.append(f"*{entry.suffix.lower()} ({kinds[entry.suffix.lower()]} files)")
    return lines


def summary_table(
    summary: RunSummary, *, run_dir: Path, title: str, counts_label: str = "Detections"
) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    ok = summary.inputs - summary.inputs_failed
    cut = ", the last one cut short" if summary.interrupted and summary.inputs else ""
    table.add_row("Inputs", f"{summary.inputs} ({ok} ok, {summary.inputs_failed} failed{cut})")
    table.add_row("Frames", str(summary.frames))
    total = sum(summary.class_counts.values())
    per_class = ", ".join(f"{name} {n}" for name, n in summary.class_counts.most_common(12))
    more = len(summary.class_counts) - 12
    table.add_row(
        counts_label,
        f"{total}" + (f": {per_class}" if per_class else "") + (f", +{more} classes" if more > 0 else ""),
    )
    if summary.tracking is not None:
        _tracking_rows(table, summary.tracking)
    if summary.errors:
        first = summary.errors[0]
        table.add_row(
            "Errors",
            f"[red]{len(summary.errors)}[/] (first: {first['source']}: {first['error']}) → errors.jsonl",
        )
    names = [*STAGES, *(s for s in summary.stage_ms if s not in STAGES)]
    stages = "  ".join(f"{s} {summary.stage_ms.get(s, 0.0):.1f}" for s in names)
    table.add_row("ms / frame", stages)
    table.add_row("Speed", f"{summary.fps:.1f} frames/s end to end ({summary.wall_s:.1f} s)")
    _live_rows(table, summary)
    if summary.interrupted:
        table.add_row("Stopped", "[yellow]interrupted: outputs so far are complete and kept[/]")
    elif summary.stopped_on_error:
        table.add_row("Stopped", "[yellow]first failed input (--on-error fail)[/]")
    table.add_row("Outputs", str(run_dir))
    for line in describe_outputs(run_dir):
        table.add_row("", f"  {line}")
    return table


def _per_class(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    inner = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} ({inner})" if inner else str(total)


def _tracking_rows(table: Table, tracking: dict[str, Any]) -> None:
    """Confirmed tracks per class; each line's in / out and each zone's entries, exits and objects
    inside at the end (``inside``: each source's last frame), all per class."""
    tracks = tracking.get("tracks", {})
    kind = tracking.get("tracker", {}).get("tracker_type", "")
    table.add_row("Tracks", f"{_per_class(tracks.get('per_class', {}))}" + (f", {kind}" if kind else ""))
    counts = tracking.get("counts", {})
    for name, c in counts.get("lines", {}).items():
        table.add_row(f"Line {name}", f"in {_per_class(c['in'])}  out {_per_class(c['out'])}")
    for name, c in counts.get("zones", {}).items():
        table.add_row(
            f"Zone {name}",
            f"entered {_per_class(c['entered'])}  exited {_per_class(c['exited'])}  "
            f"inside at the end {_per_class(c['inside'])}",
        )


_STOP_REASONS = {
    "max-frames": "--max-frames reached",
    "duration": "--duration reached",
    "user": "quit from the window (q / Esc)",
}


def _live_rows(table: Table, summary: RunSummary) -> None:
    """Stream mode with drops and reconnects; capture-to-written latency when frames had a capture
    time (live sources); why the run stopped, when a limit or the user ended it."""
    stats = latency_stats(summary.latencies_ms)
    if stats is not None or summary.dropped or summary.reconnects or summary.stream_mode == "latest":
        mode = "latest (newest frame wins)" if summary.stream_mode == "latest" else "all (every frame)"
        table.add_row(
            "Stream mode",
            f"{mode}: {summary.dropped} frames dropped, {summary.reconnects} reconnects",
        )
    if stats is not None:
        table.add_row(
            "Latency",
            f"p50 {stats['p50']:.0f} ms  p95 {stats['p95']:.0f} ms  max {stats['max']:.0f} ms "
            "(capture to outputs written)",
        )
    if summary.stopped_by in _STOP_REASONS:
        table.add_row("Stopped", _STOP_REASONS[summary.stopped_by])
