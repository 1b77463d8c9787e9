"""``densecnn bench SOURCE``: speed (and, with --data, accuracy) of models x backends x sizes.

The measuring is :mod:`densecnn.bench`'s; this module reads the options, prints a row per cell as it
finishes, the table at the end, and writes bench.json into the run folder.
"""

from __future__ import annotations

import json as _json
from pathlib import Path

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import console, err_console, user_errors


def bench(
    source: opt.BenchSource,
    model: opt.BenchModels = None,
    weights: opt.BenchWeights = None,
    backend: opt.BenchBackends = None,
    imgsz: opt.BenchSizes = None,
    frames: opt.BenchFrames = 100,
    data: opt.BenchData = None,
    device: opt.Device = "auto",
    half: opt.Half = None,
    batch: opt.PredictBatch = None,
    out: opt.Out = Path("runs/bench"),
    name: opt.Name = "exp",
    exist_ok: opt.ExistOk = False,
    json: opt.Json = False,
    verbose: opt.Verbose = False,
) -> None:
    """Benchmark models x backends x input sizes on a video or folder: end-to-end FPS, ms per stage,
    peak RSS, on CUDA the share of the time the GPU was busy, and, with --data, the accuracy metric of
    `densecnn eval` (mAP50-95, mIoU or top-1).

    Every cell is a real prediction run over the first --frames frames (decode, batching, inference,
    drawing, H.264 and JSONL writing, into a temporary folder) after an untimed warm-up. Defaults: the
    zoo default model of each task, on every installed backend (torch, onnxruntime, openvino), at the
    model's own size. Prints a table (--json: JSON) and writes runs/bench/exp/bench.json. A cell that
    fails shows its error and the others go on (exit 1 if any failed).
    """
    from densecnn import bench as core
    from densecnn.config import check_run_name
    from densecnn.errors import UsageError
    from densecnn.fsutil import atomic_write_json, claim_run_dir, ensure_writable_dir, release_run_dir

    with user_errors(verbose=verbose):
        if frames < 1:
            raise UsageError(f"--frames must be at least 1, got {frames}.")
        if batch is not None and batch < 1:
            raise UsageError(f"--batch must be at least 1, got {batch}.")
        check_run_name(name)
        for size in imgsz or []:
            if not 32 <= size <= 8192:
                raise UsageError(f"--imgsz must be between 32 and 8192 pixels, got {size}.")
        chosen = [str(b.value if hasattr(b, "value") else b) for b in backend or []]
        if "auto" in chosen:
            raise UsageError("bench: name the backends to compare (torch, onnxruntime, openvino), not auto.")
        if data is not None and not data.exists():
            raise UsageError(f"--data {data}: no such file or folder.")
        cells = core.cells(models=model or [], weights=weights or [], backends=chosen, sizes=imgsz or [])
        ensure_writable_dir(out)
        run_dir = claim_run_dir(out, name, exist_ok=exist_ok)
        try:

            def show(row: core.Row) -> None:
                if json:
                    return
                state = f"{row.fps:.1f} FPS" if row.ok else f"[red]failed[/]: {row.error}"
                err_console.print(f"  {row.model} / {row.backend} / {row.imgsz}: {state}")

            rows = core.run_bench(
                source,
                cells=cells,
                frames=frames,
                data=data,
                device=device,
                half=half,
                batch=batch,
                on_row=show,
            )
            doc = core.report(rows, source=source, frames=frames, data=data)
            atomic_write_json(run_dir / "bench.json", doc)
        finally:
            release_run_dir(run_dir)
    if json:
        typer.echo(_json.dumps(doc, indent=2))
    else:
        _table(rows, doc["machine"], run_dir)
    if not all(r.ok for r in rows):
        raise typer.Exit(1)


def _table(rows: list, machine: dict, run_dir: Path) -> None:
    from densecnn.cli.models import Col, print_table
    from densecnn.pipeline import STAGES

    cols = [
        Col("model"),
        Col("task"),
        Col("backend"),
        Col("precision"),
        Col("imgsz", 0, "right"),
        Col("batch", 0, "right"),
        Col("frames", 0, "right"),
        Col("FPS", 0, "right"),
        *(Col(s, 1, "right") for s in STAGES),
        Col("peak RSS MB", 0, "right"),
        Col("metric", 0, "right"),
    ]
    gpu = any(r.gpu_busy_pct is not None for r in rows)  # CUDA rows: their GPU busy share
    if gpu:
        cols.insert(-1, Col("GPU busy %", 0, "right"))
    table = []
    for r in rows:
        if not r.frames:
            table.append([r.model, r.task, r.backend, r.precision, str(r.imgsz or ""), "", "",
                          "[red]failed[/]", *([""] * len(STAGES)), "", *([""] if gpu else []),
                          r.error or ""])  # fmt: skip
            continue
        metric = (
            f"{r.metric} {r.metric_value:.4f}"
            if r.metric_value is not None
            else f"[red]{r.error}[/]"
            if r.error
            else "— (no --data)"
        )
        table.append([r.model, r.task, r.backend, r.precision, str(r.imgsz), str(r.batch), str(r.frames),
                      f"{r.fps:.2f}", *(f"{r.stage_ms[s]:.1f}" for s in STAGES), f"{r.peak_rss_mb:.0f}",
                      *([_percent(r.gpu_busy_pct)] if gpu else []), metric])  # fmt: skip
    load = ", ".join(map(str, machine.get("load_average") or []))
    print_table(
        title="densecnn bench",
        cols=cols,
        rows=table,
        caption=f"{machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch threads, "
        f"load average {load}. FPS: frames / pipeline wall time; stage columns: ms per frame (stages "
        f"overlap on threads)"
        + (". GPU busy %: share of the run's time the GPU ran kernels (nvidia-smi)" if gpu else "")
        + f". All figures: {run_dir / 'bench.json'}",
    )
    console.print(str(run_dir))


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"
