"""``densecnn models --matrix``: every head on every backbone, parameters and GFLOPs measured.

Imports torch (through densecnn.backbones.matrix) only when called, so plain ``densecnn models``
stays fast.
"""

from __future__ import annotations

import json as _json
from typing import Any

import typer

from densecnn.backbones import BACKBONES
from densecnn.cli.common import err_console
from densecnn.cli.models import Col, print_table
from densecnn.zoo.heads import HEADS
from densecnn.zoo.store import WeightStore


def show_matrix(*, json: bool) -> None:
    """Measure (or read from the cache) and print the matrix as a table or JSON."""
    from densecnn.backbones.matrix import measure_matrix

    store = WeightStore()
    with _Bar() as bar:
        cells = measure_matrix(cache_dir=store.root, on_start=bar.start, on_cell=bar.step)
    by_key = {(c.backbone, c.head): c for c in cells}
    heads = [spec for _, spec in HEADS.items()]
    if json:
        typer.echo(_json.dumps(_records(by_key, store), indent=2))
        return
    cols = [
        Col("backbone"),
        Col("strides", 3),
        Col("ImageNet weights", 2),
        *(Col(f"{h.name} @{h.input_size}", 1, "right") for h in heads),
    ]
    rows = []
    for name, spec in BACKBONES.items():
        cells_row = []
        for h in heads:
            cell = by_key[(name, h.name)]
            if cell.reason is not None:
                missing = [s for s in h.strides if s not in spec.strides]
                cells_row.append(f"[dim]— no stride {', '.join(map(str, missing))}[/]")
            else:
                cells_row.append(f"{cell.params_m:.1f} / {cell.gflops:.2f}")
        weights = (
            "—"
            if spec.weights is None
            else "[green]cached[/]"
            if store.is_cached(spec.weights)
            else "[dim]not cached[/]"
        )
        rows.append([f"[bold]{name}[/]", ",".join(map(str, spec.strides)), weights, *cells_row])
    print_table(
        title="Heads x backbones: parameters (M) / GFLOPs",
        cols=cols,
        rows=rows,
        caption="Measured on the meta device on one SIZE x SIZE image (@SIZE in the header); "
        "GFLOPs = multiply-adds / 1e9 "
        "(convs + matmuls, torchvision's convention). classifier: 1000 classes; fasterrcnn: 91, box "
        "head on 1000 proposals; unet, deeplabv3plus: 21. '— no stride S': the backbone lacks a stage "
        "the head needs. Cached in " + str(store.root / "model_matrix.json") + ".",
    )


def _records(by_key: dict[tuple[str, str], Any], store: WeightStore) -> list[dict[str, Any]]:
    out = []
    for name, spec in BACKBONES.items():
        w = spec.weights
        out.append(
            {
                "backbone": name,
                "channels": [f.channels for f in spec.feature_info],
                "strides": spec.strides,
                "imagenet_weights": None
                if w is None
                else {"file": w.file_name, "cached": store.is_cached(w)},
                "heads": {
                    head: {k: v for k, v in vars(cell).items() if k not in ("backbone", "head")}
                    for (b, head), cell in by_key.items()
                    if b == name
                },
            }
        )
    return out


class _Bar:
    """A transient progress bar on stderr, shown only when there is something to measure."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, total: int) -> None:
        if not total:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]measuring"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=err_console,
            transient=True,
        )
        self._task = self._progress.add_task("matrix", total=total, current="")
        self._progress.start()

    def step(self, label: str) -> None:
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        if task.fields.get("current"):
            self._progress.advance(self._task)
        self._progress.update(self._task, current=label)
