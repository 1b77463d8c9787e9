"""``densecnn eval detect|segment|classify``: metrics of a checkpoint on held-out data.

One function serves the three commands (the task is the command name). ``--split val`` evaluates
what ``densecnn train`` held out: the dataset's own val split, else the seeded split, whose
``--val-fraction`` and ``--seed`` default to the values a densecnn checkpoint was trained with.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer

from densecnn.cli import options
from densecnn.cli.common import console, user_errors

app = typer.Typer(help="Evaluate a checkpoint on a dataset; writes runs/eval/exp.", no_args_is_help=True)

_HELP = {
    "detect": "COCO mAP@[.5:.95], AP50, AP75, AP S/M/L, AR and per-class AP (faster-coco-eval) of a "
    "detector on a YOLO data.yaml or COCO JSON.",
    "segment": "mIoU, per-class IoU, Dice and pixel accuracy of a segmenter on a masks folder "
    "(pixels labelled --ignore-index are not scored).",
    "classify": "top-1, top-5, per-class precision / recall and a confusion matrix of a classifier on "
    "an ImageFolder.",
}
_OUTPUTS = (
    " Prints a table; writes runs/eval/exp (exp2, ...): metrics.json and plots. The same checkpoint "
    "and data give the same numbers on every run."
)

_WEIGHTS = typer.Option(..., "--weights", "-w", help="Checkpoint to evaluate.")
_DATA = typer.Option(..., "--data", "-d", help="Dataset, in the format `densecnn train` reads.")
_PROJECT = typer.Option(Path("runs/eval"), "--project", help="Parent folder of run folders.")


def eval_command(
    ctx: typer.Context,
    weights: Path = _WEIGHTS,
    trust_weights: bool = options.TrustWeights,
    data: Path = _DATA,
    model: str | None = typer.Option(None, "--model", "-m", help="Model for a weight file that needs one."),
    backbone: str | None = typer.Option(None, "--backbone", "-b", help="Backbone for --model."),
    split: str = typer.Option("val", "--split", help="val (what training held out), train or all."),
    imgsz: int | None = typer.Option(None, "--imgsz", help="Inference size (default: the checkpoint's)."),
    batch: int = typer.Option(8, "--batch", help="Images per forward pass."),
    conf: float = typer.Option(0.001, "--conf", help="Detection score threshold (detect)."),
    iou: float = typer.Option(0.7, "--iou", help="NMS IoU threshold (detect)."),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction", help="Held-out share of a dataset without a val split (default: training's)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of that split (default: training's)."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Class count (masks folders)."),
    class_names: str | None = typer.Option(None, "--class-names", help="Class names a,b,c (masks folders)."),
    mask_mode: str | None = typer.Option(
        None, "--mask-mode", help="labels or instances-to-foreground (default: the checkpoint's)."
    ),
    ignore_index: int = typer.Option(255, "--ignore-index", help="Mask value that is not scored."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    project: Path = _PROJECT,
    name: str = typer.Option("exp", "--name", help="Run folder name; exp2, exp3... when it exists."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse an existing run folder."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the plots."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and library logs."),
) -> None:
    task = ctx.info_name or ""
    from densecnn.cli.run import configure_logging
    from densecnn.errors import UsageError
    from densecnn.eval.config import EvalConfig
    from densecnn.eval.report import print_outcome, write_metrics

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        if mask_mode is not None and task != "segment":
            raise UsageError("--mask-mode applies to `eval segment` only.")
        from densecnn.fsutil import ensure_writable_dir

        ensure_writable_dir(project, option="--project")
        trained = _training_split(weights)
        cfg = EvalConfig(
            task=task,  # type: ignore[arg-type]  # one of the registered command names
            weights=weights,
            trust_weights=trust_weights,
            data=data,
            model=model,
            backbone=backbone,
            imgsz=imgsz,
            batch=batch,
            device=device,
            conf=conf,
            iou=iou,
            split=split,  # type: ignore[arg-type]  # checked in EvalConfig
            val_fraction=val_fraction if val_fraction is not None else trained.get("val_fraction", 0.2),
            seed=seed if seed is not None else trained.get("seed", 0),
            ignore_index=ignore_index,
            num_classes=num_classes,
            class_names=tuple(n.strip() for n in class_names.split(",") if n.strip()) if class_names else (),
            project=project,
            name=name,
            exist_ok=exist_ok,
            plots=plots,
            mask_mode=mask_mode or trained.get("mask_mode"),  # type: ignore[arg-type]
        )
        outcome = importlib.import_module(f"densecnn.eval.{task}").evaluate(cfg)
        write_metrics(outcome, cfg)
        print_outcome(outcome, title=f"eval {task}: {weights} on {data} ({split})", console=console)


def _training_split(weights: Path) -> dict[str, Any]:
    """``val_fraction``, ``seed`` (and ``mask_mode``) a densecnn checkpoint was trained with (empty
    for other files)."""
    from densecnn.checkpoint import read_meta

    meta = read_meta(weights) if weights.is_file() else None
    data = (meta.extra.get("data") or {}) if meta is not None else {}
    return {k: data[k] for k in ("val_fraction", "seed", "mask_mode") if k in data}


for _task in ("detect", "segment", "classify"):
    app.command(_task, help=_HELP[_task] + _OUTPUTS, no_args_is_help=True)(eval_command)
