"""``densecnn bench``: models x backends x input sizes on one video or folder, as a user runs them.

Each cell is a real prediction run (``densecnn.engine.PredictionRun``: decode, batching, the
backend's forward, drawing, H.264 and JSONL writing into a temporary run folder) over the first
``frames`` frames, after a short untimed warm-up run of the same predictor. Per cell: end-to-end FPS
of the pipeline, milliseconds per frame of each stage, the batch size it ran at, the process's peak
RSS during the cell (Linux: the high-water mark is reset before each cell), on CUDA the share of the
time the GPU was busy (``densecnn.gpu_busy``) and, given ``data``, the
headline metric of ``densecnn eval`` for that model and backend on it. A cell that fails is a row
with its error, like ``yolo benchmark``'s, and the others go on.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from densecnn.config import LiveConfig, OutputConfig, PredictConfig
from densecnn.pipeline import STAGES

HEADLINE = {"detect": "mAP50-95", "segment": "mIoU", "classify": "top1"}
"""The metric ``densecnn bench --data`` reports per task (``densecnn eval``'s first column)."""


@dataclass(frozen=True)
class Cell:
    """One model (a zoo name or a weights file) on one backend at one input size (None: its default)."""

    model: str | None
    weights: Path | None
    backend: str
    imgsz: int | None

    @property
    def label(self) -> str:
        return self.model or (self.weights.name if self.weights else "default")


@dataclass
class Row:
    """What one cell measured (every field is filled for a cell that ran; ``error`` otherwise)."""

    model: str
    task: str = ""
    backend: str = ""
    precision: str = ""
    imgsz: int | None = None
    batch: int = 0
    frames: int = 0
    fps: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    gpu_busy_pct: float | None = None  # CUDA: the share of the timed run the GPU ran kernels
    metric: str | None = None
    metric_value: float | None = None
    wall_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def cells(
    *, models: Sequence[str], weights: Sequence[Path], backends: Sequence[str], sizes: Sequence[int]
) -> list[Cell]:
    """Every combination; no models and no weights: each task's zoo default (``densecnn models``)."""
    from densecnn.runtimes import available_backends

    targets: list[tuple[str | None, Path | None]] = [(m, None) for m in models]
    targets += [(None, w) for w in weights]
    if not targets:
        from densecnn.zoo import default_model

        targets = [(default_model(task).name, None) for task in ("detect", "segment", "classify")]
    chosen = list(backends) or available_backends()
    return [
        Cell(model, path, backend, size)
        for model, path in targets
        for backend in chosen
        for size in (list(sizes) or [None])
    ]


def run_bench(
    source: str,
    *,
    cells: Sequence[Cell],
    frames: int = 100,
    data: Path | None = None,
    device: str = "auto",
    half: bool | None = None,
    batch: int | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Measure every cell on ``source`` (a video, folder, glob or list); see the module docstring."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="densecnn-bench-") as tmp:
        for i, cell in enumerate(cells):
            row = _measure(
                cell, source, Path(tmp) / f"cell{i}", frames=frames, device=device, half=half, batch=batch
            )
            if row.ok and data is not None:
                _add_metric(row, cell, data, device=device, half=half, out=Path(tmp) / f"eval{i}")
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def _measure(
    cell: Cell, source: str, out: Path, *, frames: int, device: str, half: bool | None, batch: int | None
) -> Row:
    from densecnn.errors import DenseCNNError
    from densecnn.tasks.loading import infer_task, load_predictor

    row = Row(model=cell.label, backend=cell.backend, imgsz=cell.imgsz)
    pcfg = PredictConfig(
        model=cell.model, weights=cell.weights, imgsz=cell.imgsz, device=device, backend=cell.backend,
        half=half, batch=batch,
    )  # fmt: skip
    try:
        row.task = infer_task(pcfg)
        predictor = load_predictor(pcfg, task=row.task)
        row.backend = str(getattr(predictor, "backend", cell.backend))
        row.precision = str(getattr(predictor, "precision", "fp32"))
        row.imgsz = _input_size(predictor) or cell.imgsz
        # untimed: lazy initialisation, the batch-size measurement (cached), kernel choices
        _run(predictor, row.task, source, pcfg, out, "warmup", max_frames=min(frames, 8))
        _reset_peak_rss()
        with _gpu_busy(predictor) as busy:
            run = _run(predictor, row.task, source, pcfg, out, "timed", max_frames=frames)
    except (DenseCNNError, OSError, RuntimeError, ValueError) as exc:
        row.error = _first_line(exc)
        return row
    summary = run.summary
    assert summary is not None and run.batch is not None
    row.batch = run.batch.size
    row.frames = summary.frames
    row.fps = round(summary.fps, 2)
    row.wall_s = round(summary.wall_s, 3)
    row.stage_ms = {s: round(summary.stage_ms.get(s, 0.0), 2) for s in STAGES}
    row.peak_rss_mb = round(_peak_rss_mb(), 1)
    row.gpu_busy_pct = busy.percent
    if summary.frames == 0:
        row.error = "no frame was processed (is the source empty or unreadable?)"
    return row


def _run(
    predictor: Any, task: str, source: str, pcfg: PredictConfig, out: Path, name: str, max_frames: int
) -> Any:
    """One prediction run of ``predictor``, as ``densecnn TASK SOURCE`` makes it, into ``out/name``."""
    from densecnn.engine import PredictionRun

    run = PredictionRun.open(
        task=task,
        source=source,
        pcfg=pcfg,
        ocfg=OutputConfig(project=out, name=name),
        lcfg=LiveConfig(max_frames=max_frames),
        predictor=predictor,
    )
    try:
        for _ in run.predictions():
            pass
    finally:
        run.finish()
    return run


def _gpu_busy(predictor: Any) -> Any:
    """A :class:`~densecnn.gpu_busy.GpuBusy` sampler for a model on CUDA, else one that takes nothing."""
    from densecnn.gpu_busy import GpuBusy

    device = getattr(predictor, "device", None)
    if getattr(device, "type", "cpu") != "cuda":
        return GpuBusy(exe="")  # no executable named "": no samples, percent None
    return GpuBusy(device.index or 0)


def _input_size(predictor: Any) -> int | None:
    size = getattr(predictor, "imgsz", None) or getattr(getattr(predictor, "prep", None), "resize", None)
    if isinstance(size, (list, tuple)):
        return int(max(size))
    return int(size) if size else None


def _add_metric(row: Row, cell: Cell, data: Path, *, device: str, half: bool | None, out: Path) -> None:
    """``densecnn eval``'s headline metric for the cell's weights, backend and size on ``data``."""
    import importlib

    from densecnn.errors import DenseCNNError
    from densecnn.eval.config import EvalConfig

    row.metric = HEADLINE[row.task]
    weights = cell.weights or _zoo_weights(cell.model)
    try:
        cfg = EvalConfig(
            task=row.task,  # type: ignore[arg-type]
            weights=weights,
            data=data,
            model=cell.model,
            imgsz=cell.imgsz,
            device=device,
            half=half,
            backend=row.backend,
            split="all",
            project=out,
            plots=False,
        )
        outcome = importlib.import_module(f"densecnn.eval.{row.task}").evaluate(cfg)
        row.metric_value = round(float(outcome.metrics[row.metric]), 4)
    except (DenseCNNError, OSError, RuntimeError, ValueError, KeyError) as exc:
        row.error = f"eval: {_first_line(exc)}"  # the speed figures stay


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or [""])[0]


def _zoo_weights(model: str | None) -> Path:
    from densecnn.zoo import MODELS
    from densecnn.zoo.store import WeightStore

    spec = MODELS.get(model or "")
    if spec.weights is None:
        raise ValueError(f"{model} has no weight file to evaluate")
    return WeightStore().fetch(spec.weights)


# ---- peak RSS of this process -----------------------------------------------------------------------


def _reset_peak_rss() -> None:
    """Linux: reset the process's RSS high-water mark (VmHWM) to its current RSS (``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    """VmHWM from /proc (since the last reset), else ``ru_maxrss`` (since the process started)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- report ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures were taken: CPU, cores, load average, library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("densecnn", "torch", "torchvision", "ultralytics", "onnxruntime", "openvino", "av"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def report(rows: Sequence[Row], *, source: str, frames: int, data: Path | None) -> dict[str, Any]:
    """The JSON document ``densecnn bench --json`` writes."""
    return {
        "source": source,
        "frames_per_cell": frames,
        "data": str(data) if data else None,
        "machine": machine(),
        "rows": [asdict(r) for r in rows],
    }
