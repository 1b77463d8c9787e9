"""``densecnn models``: a view of the model registry (no torch import)."""

from __future__ import annotations

import json as _json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from densecnn.cli import options as opt
from densecnn.cli.common import console, err_console, user_errors
from densecnn.errors import UsageError
from densecnn.zoo import MODELS, ModelSpec
from densecnn.zoo.specs import Task
from densecnn.zoo.store import WeightStore

_NOT_A_CLASS = frozenset({"__background__", "N/A"})


@dataclass(frozen=True)
class Col:
    """A table column; narrow terminals drop the columns with the highest ``priority`` first."""

    header: str
    priority: int = 0
    justify: Literal["left", "right", "center"] = "left"
    wrap: bool = False


def print_table(
    *, title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]], caption: str | None = None
) -> None:
    """Print a table on stdout, keeping every cell whole.

    Columns that do not fit the terminal are dropped, least important first (``--json`` has all).
    Piped output is not squeezed to 80 columns, so rows stay greppable.
    """
    out = console
    if not console.is_terminal and "COLUMNS" not in os.environ:
        out = Console(file=console.file, width=200)
    natural = [
        max([len(c.header), *(Text.from_markup(row[i]).cell_len for row in rows)]) + 3
        for i, c in enumerate(cols)
    ]
    keep: set[int] = set()
    used = 1
    for i in sorted(range(len(cols)), key=lambda i: cols[i].priority):
        need = min(natural[i], 19) if cols[i].wrap else natural[i]
        if cols[i].priority == 0 or used + need <= out.width:
            keep.add(i)
            used += need
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    shown = sorted(keep)
    for i in shown:
        col = cols[i]
        table.add_column(col.header, justify=col.justify, no_wrap=not col.wrap, overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    out.print(table)


def _num_classes(spec: ModelSpec) -> int:
    """Real classes only: torchvision's COCO ids include a background slot and unused ``N/A`` ids."""
    return sum(1 for name in spec.classes if name not in _NOT_A_CLASS)


def _cached_cell(spec: ModelSpec, store: WeightStore) -> str:
    if spec.weights is None:
        return "-"
    return "[green]cached[/]" if store.is_cached(spec.weights) else "[dim]no[/]"


def _record(spec: ModelSpec, store: WeightStore) -> dict[str, Any]:
    w = spec.weights
    return {
        "name": spec.name,
        "task": spec.task,
        "family": spec.family,
        "arch": spec.arch,
        "default": spec.default,
        "num_classes": _num_classes(spec),
        "classes": list(spec.classes),
        "conf": spec.conf,
        "iou": spec.iou,
        "imgsz": spec.imgsz,
        "description": spec.description,
        "weights": None
        if w is None
        else {
            "file": w.file_name,
            "url": w.url,
            "sha256": w.sha256,
            "size": w.size,
            "license": w.license,
            "cached": store.is_cached(w),
            "path": str(store.path(w).absolute()),
        },
    }


def models(
    name: opt.ModelName = None, task: opt.Task = None, json: opt.Json = False, matrix: opt.Matrix = False
) -> None:
    """List registered models: task, family, classes, default thresholds and whether weights are cached.

    `densecnn models NAME` shows one model in full, with its class names (what --classes takes).
    """
    if name is not None:
        with user_errors():
            _show_one(MODELS.get(name), json=json)
        return
    if matrix:
        from densecnn.cli.matrix import show_matrix

        with user_errors():
            show_matrix(json=json)
        return
    with user_errors():
        tasks = get_args(Task)
        if task is not None and task.lower() not in tasks:
            raise UsageError(f"Unknown task {task!r}.", hint=f"Tasks: {', '.join(tasks)}.")
        specs = [spec for _, spec in MODELS.items() if task is None or spec.task == task.lower()]
        store = WeightStore()
        if json:
            typer.echo(_json.dumps([_record(spec, store) for spec in specs], indent=2))
            return
        if not specs:
            err_console.print(f"No models registered for task {task!r}.", markup=False, highlight=False)
            return
        cols = [
            Col("name"),
            Col("task", 1),
            Col("family", 4),
            Col("classes", 3, "right"),
            Col("conf", 2, "right"),
            Col("iou", 2, "right"),
            Col("imgsz", 2, "right"),
            Col("weights", 1),
            Col("description", 5, wrap=True),
        ]
        rows = [
            [
                f"[bold]{spec.name}[/] *" if spec.default else f"[bold]{spec.name}[/]",
                spec.task,
                spec.family,
                str(_num_classes(spec)) if spec.classes else "-",
                "-" if spec.conf is None else f"{spec.conf:g}",
                "-" if spec.iou is None else f"{spec.iou:g}",
                str(spec.imgsz),
                _cached_cell(spec, store),
                escape(spec.description),
            ]
            for spec in specs
        ]
        print_table(title="Models", cols=cols, rows=rows, caption="* default for its task")


def _show_one(spec: ModelSpec, *, json: bool) -> None:
    """One model: its record as JSON, or a table with every class id and name."""
    store = WeightStore()
    record = _record(spec, store)
    if json:
        typer.echo(_json.dumps(record, indent=2))
        return
    w = record["weights"]
    rows = [
        ["task", spec.task],
        ["family", f"{spec.family} ({spec.arch})"],
        ["description", escape(spec.description)],
        ["input size", str(spec.imgsz)],
        ["conf / iou", f"{spec.conf} / {spec.iou}" if spec.conf is not None else "-"],
        ["weights", "from a densecnn checkpoint (--weights)" if w is None else f"{w['file']} ({w['path']})"],
        ["cached", "-" if w is None else ("yes" if w["cached"] else "no")],
        ["classes", str(_num_classes(spec)) if spec.classes else "from its checkpoint"],
    ]
    rows += [[f"  {i}", escape(c)] for i, c in enumerate(spec.classes) if c not in _NOT_A_CLASS]
    print_table(title=spec.name, cols=[Col("field"), Col("value", wrap=True)], rows=rows, caption=None)
