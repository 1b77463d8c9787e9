"""How an evaluation is shown and kept: a rich table, ``metrics.json`` and the confusion-matrix PNG."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from densecnn import __version__
from densecnn.eval.config import EvalConfig, EvalOutcome
from densecnn.fsutil import atomic_write_bytes, atomic_write_json

MAX_TABLE_CLASSES = 40


def write_metrics(outcome: EvalOutcome, cfg: EvalConfig) -> Path:
    """``run_dir/metrics.json``: what was evaluated, by whom, the metrics and the per-class table."""
    path = outcome.run_dir / "metrics.json"
    settings = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("project", "name", "exist_ok", "plots")
    }
    atomic_write_json(
        path,
        {
            "task": cfg.task,
            "evaluator": outcome.evaluator,
            "densecnn_version": __version__,
            "num_images": outcome.num_images,
            "settings": settings,
            "metrics": outcome.metrics,
            "per_class": outcome.per_class,
        },
    )
    return path


def print_outcome(outcome: EvalOutcome, *, title: str, console: Console) -> None:
    """Headline metrics, then one row per class (all of its metrics as columns)."""
    head = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(justify="right")
    head.add_row("images", str(outcome.num_images))
    for key, value in outcome.metrics.items():
        head.add_row(key, _cell(value))
    head.add_row("evaluator", outcome.evaluator)
    console.print(head)
    if outcome.per_class:
        columns = list(next(iter(outcome.per_class.values())))
        table = Table(title="per class", title_justify="left")
        table.add_column("class")
        for col in columns:
            table.add_column(col, justify="right")
        for name, row in list(outcome.per_class.items())[:MAX_TABLE_CLASSES]:
            table.add_row(name, *(_cell(row.get(c, float("nan"))) for c in columns))
        console.print(table)
        if len(outcome.per_class) > MAX_TABLE_CLASSES:
            console.print(f"... {len(outcome.per_class) - MAX_TABLE_CLASSES} more classes in metrics.json")
    console.print(f"Results saved to [bold]{outcome.run_dir}[/]")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if np.isnan(value):
            return "-"
        return str(int(value)) if value.is_integer() and abs(value) > 1 else f"{value:.4f}"
    return str(value)


def plot_confusion(path: Path, matrix: np.ndarray, names: Sequence[str], *, title: str) -> None:
    """Row-normalised confusion matrix (rows: true class, columns: predicted) with the counts written
    in the cells when there are few classes."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    k = len(names)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    side = min(16, 3 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                colour = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
