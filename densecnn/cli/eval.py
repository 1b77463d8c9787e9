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

from densecnn.cli import options as opt
from densecnn.cli.common import App, console, user_errors
from densecnn.eval.config import EvalConfig

app = App(help="Evaluate a checkpoint on a dataset; writes runs/eval/exp.", no_args_is_help=True)

_HELP = {
    "detect": "COCO mAP@[.5:.95], AP50, AP75, AP S/M/L, AR and per-class AP (faster-coco-eval) of a "
    "detector on a YOLO data.yaml or COCO JSON.",
    "segment": "mIoU, per-class IoU, Dice and pixel accuracy of a segmenter on a masks folder "
    "(pixels labelled --ignore-index are not scored).",
    "classify": "top-1, top-5, per-class precision / recall and a confusion matrix of a classifier on "
    "an ImageFolder.",
}
_SHORT = {
    "detect": "COCO mAP of a detector on a YOLO data.yaml or a COCO JSON.",
    "segment": "mIoU, Dice and pixel accuracy of a segmenter on a masks folder.",
    "classify": "Top-1 / top-5 accuracy and a confusion matrix of a classifier on an ImageFolder.",
}
_OUTPUTS = (
    " Prints a table; writes runs/eval/exp (exp2, ...): metrics.json and plots. The same checkpoint "
    "and data give the same numbers on every run."
)


def eval_command(
    ctx: typer.Context,
    weights: opt.EvalWeights,
    data: opt.Data,
    trust_weights: opt.TrustWeights = EvalConfig.trust_weights,
    model: opt.Model = EvalConfig.model,
    backbone: opt.Backbone = EvalConfig.backbone,
    split: opt.Split = EvalConfig.split,
    imgsz: opt.Imgsz = EvalConfig.imgsz,
    batch: opt.Batch = EvalConfig.batch,
    conf: opt.EvalConf = EvalConfig.conf,
    iou: opt.EvalIou = EvalConfig.iou,
    val_fraction: opt.EvalValFraction = None,
    seed: opt.EvalSeed = None,
    num_classes: opt.DataNumClasses = EvalConfig.num_classes,
    class_names: opt.DataClassNames = None,
    mask_mode: opt.EvalMaskMode = EvalConfig.mask_mode,
    ignore_index: opt.IgnoreIndex = EvalConfig.ignore_index,
    device: opt.Device = EvalConfig.device,
    backend: opt.BackendOpt = EvalConfig.backend,  # type: ignore[assignment]
    half: opt.Half = EvalConfig.half,
    out: opt.Out = EvalConfig.project,
    project: opt.Project = None,
    name: opt.Name = EvalConfig.name,
    exist_ok: opt.ExistOk = EvalConfig.exist_ok,
    plots: opt.Plots = EvalConfig.plots,
    verbose: opt.Verbose = False,
) -> None:
    task = ctx.info_name or ""
    from densecnn.cli.run import configure_logging
    from densecnn.errors import UsageError
    from densecnn.eval.report import print_outcome, write_metrics
    from densecnn.fsutil import ensure_writable_dir

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        if mask_mode is not None and task != "segment":
            raise UsageError("--mask-mode applies to `eval segment` only.")
        project_dir = opt.out_dir(ctx, out, project)
        ensure_writable_dir(project_dir)
        # --val-fraction, --seed, --mask-mode not given: the ones the checkpoint was trained with
        trained = {
            "val_fraction": EvalConfig.val_fraction,
            "seed": EvalConfig.seed,
            **_training_split(weights),
        }
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
            backend=str(backend),  # type: ignore[arg-type]
            half=half,
            conf=conf,
            iou=iou,
            split=split,  # type: ignore[arg-type]  # checked in EvalConfig
            val_fraction=trained["val_fraction"] if val_fraction is None else val_fraction,
            seed=trained["seed"] if seed is None else seed,
            ignore_index=ignore_index,
            num_classes=num_classes,
            class_names=opt.split_names(class_names),
            project=project_dir,
            name=name,
            exist_ok=exist_ok,
            plots=plots,
            mask_mode=str(mask_mode) if mask_mode else trained.get("mask_mode"),  # type: ignore[arg-type]
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
    app.command(_task, help=_HELP[_task] + _OUTPUTS, short_help=_SHORT[_task], no_args_is_help=True)(
        eval_command
    )
