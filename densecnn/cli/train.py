"""``densecnn train detect|segment|classify``: one option set, one config, the task's trainer.

The three commands share this function (Typer reads the task from the command name), so every
option means the same in each; a task ignores nothing silently: options that do not apply to it
are refused.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from densecnn.cli import options
from densecnn.cli.common import console, err_console, user_errors

if TYPE_CHECKING:
    from densecnn.train.config import TrainOutcome

app = typer.Typer(
    help="Train a detector, segmenter or classifier on your data; writes runs/train/exp.",
    no_args_is_help=True,
)

_HELP = {
    "detect": "Train a detector: YOLO through Ultralytics' own trainer (--model yolov8n.pt or "
    "yolov8n.yaml), or Faster R-CNN on any --backbone (--model fasterrcnn). Data: a YOLO data.yaml or "
    "a COCO JSON.",
    "segment": "Train U-Net, DeepLabV3+ or DeepLabV3 (--model unet|deeplabv3plus|deeplabv3) on any "
    "--backbone, or a torchvision model (--model deeplabv3_mobilenet_v3_large, deeplabv3_resnet50, "
    "deeplabv3_resnet101, lraspp_mobilenet_v3_large: from the zoo's VOC weights when the store has them, "
    "--weights a torchvision state dict, or from scratch; new class count: new last convs). Data: a masks "
    "folder (images/ + masks/ with the same stems; classes.json, --class-names or --num-classes; "
    "instance-id masks with --mask-mode instances-to-foreground).",
    "classify": "Train the classification head on any --backbone. Data: an ImageFolder "
    "(ROOT/<class>/*.jpg, or ROOT/train/<class>/ + ROOT/val/<class>/).",
}
_OUTPUTS = (
    " Writes runs/train/exp (exp2, ... on later runs): args.json, results.csv (one row per epoch), "
    "results.png, metrics.json, weights/best and weights/last. Ctrl-C keeps the last finished epoch: "
    "continue with --resume runs/train/exp. Exit code: 0 done, 2 usage error, 130 interrupted."
)

# Path-typed options as module singletons (a call in a default is evaluated once anyway)
_DATA = typer.Option(None, "--data", "-d", help="Dataset (see above).")
_WEIGHTS = typer.Option(
    None, "--weights", "-w", help="Start from this checkpoint (a new class count re-initialises the head)."
)
_PROJECT = typer.Option(Path("runs/train"), "--project", help="Parent folder of run folders.")
_RESUME = typer.Option(
    None, "--resume", help="Continue an interrupted run: its folder or weights/last.safetensors."
)


def train_command(
    ctx: typer.Context,
    data: Path | None = _DATA,
    model: str | None = typer.Option(None, "--model", "-m", help="Model to train (default: the task's)."),
    backbone: str | None = typer.Option(
        None, "--backbone", "-b", help="Registry backbone (`densecnn models --matrix`); default resnet18."
    ),
    weights: Path | None = _WEIGHTS,
    trust_weights: bool = options.TrustWeights,
    pretrained: bool = typer.Option(
        True,
        "--pretrained/--no-pretrained",
        help="Backbone ImageNet weights (torchvision segmenters: their VOC weights) when the weight "
        "store has them.",
    ),
    epochs: int = typer.Option(50, "--epochs", help="Epochs (with --resume: the new total)."),
    batch: int = typer.Option(8, "--batch", help="Images per training batch."),
    imgsz: int | None = typer.Option(None, "--imgsz", help="Training size in pixels (default: the model's)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd (momentum 0.9, Nesterov)."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default: the task's; SGD 10x)."),
    weight_decay: float = typer.Option(
        1e-4, "--weight-decay", help="Weight decay (not on biases and norms)."
    ),
    warmup_epochs: float = typer.Option(
        1.0, "--warmup-epochs", help="Linear warmup before the cosine decay."
    ),
    clip_grad: float | None = typer.Option(10.0, "--clip-grad", help="Max gradient norm (0: off)."),
    patience: int = typer.Option(
        20, "--patience", help="Stop after N epochs without a better fitness (0: off)."
    ),
    freeze: int = typer.Option(0, "--freeze", help="Freeze the first N backbone stages..."),
    freeze_epochs: int | None = typer.Option(
        None, "--freeze-epochs", help="...for this many epochs, then unfreeze (default: all epochs)."
    ),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision (CUDA only)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the init and the augmentation."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic torch kernels."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(2, "--workers", help="Data-loading worker processes (0: in the main one)."),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", help="Held-out share when the dataset has no val split (seeded)."
    ),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Class count (masks folders)."),
    class_names: str | None = typer.Option(None, "--class-names", help="Class names a,b,c (masks folders)."),
    mask_mode: str = typer.Option(
        "labels",
        "--mask-mode",
        help="labels: pixel = class id (255 ignored); instances-to-foreground: 0 background, any "
        "instance id → class 1 (Penn-Fudan style masks).",
    ),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random crops, flips, colour jitter."),
    cache: bool = typer.Option(
        False, "--cache", help="YOLO: keep the decoded training images in RAM (Ultralytics' cache=ram)."
    ),
    project: Path = _PROJECT,
    name: str = typer.Option("exp", "--name", help="Run folder name; exp2, exp3... when it exists."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse an existing run folder."),
    resume: Path | None = _RESUME,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and library logs."),
) -> None:
    task = ctx.info_name or ""
    from densecnn.cli.run import configure_logging
    from densecnn.errors import UsageError
    from densecnn.train.config import TrainConfig

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        # typer vendors its own click: compare the ParameterSource by name
        given = [p for p in ctx.params if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"]
        if data is None and resume is None:
            raise UsageError(f"train {task} needs --data (or --resume RUN_DIR).")
        from densecnn.fsutil import ensure_writable_dir

        ensure_writable_dir(resume if resume is not None and resume.is_dir() else project, option="--project")
        if task != "segment" and ("mask_mode" in given):
            raise UsageError("--mask-mode applies to `train segment` only.")
        if task != "detect" and cache:
            raise UsageError("--cache applies to YOLO models in `train detect` only.")
        cfg = TrainConfig(
            task=task,  # type: ignore[arg-type]  # one of the registered command names
            data=data if data is not None else Path("."),
            model=model,
            backbone=backbone,
            weights=weights,
            trust_weights=trust_weights,
            pretrained=pretrained,
            epochs=epochs,
            batch=batch,
            imgsz=imgsz,
            optimizer=optimizer,  # type: ignore[arg-type]  # checked in TrainConfig
            lr=lr,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            clip_grad=clip_grad or None,
            patience=patience,
            freeze=freeze,
            freeze_epochs=freeze_epochs,
            amp=amp,
            seed=seed,
            deterministic=deterministic,
            device=device,
            workers=workers,
            val_fraction=val_fraction,
            num_classes=num_classes,
            class_names=tuple(n.strip() for n in class_names.split(",") if n.strip()) if class_names else (),
            mask_mode=mask_mode,  # type: ignore[arg-type]  # checked in TrainConfig
            augment=augment,
            cache=cache,
            project=project,
            name=name,
            exist_ok=exist_ok,
            resume=resume,
            extra={"given": given},
        )
        trainer = importlib.import_module(f"densecnn.train.{task}")
        try:
            outcome = trainer.train(cfg)
        except KeyboardInterrupt:
            err_console.print(
                "[yellow]Interrupted.[/] The last finished epoch is saved; continue with "
                f"`densecnn train {task} --resume RUN_DIR` (the run folder printed above)."
            )
            raise typer.Exit(130) from None
    _report(outcome)


def _report(outcome: TrainOutcome) -> None:
    stop = " (early stop)" if outcome.stopped_early else ""
    console.print(
        f"[bold]Done[/]: {outcome.epochs_run} epochs{stop}; best epoch {outcome.best_epoch}: "
        + ", ".join(f"{k} {v:.4g}" for k, v in outcome.metrics.items() if k not in ("epoch",))
    )
    console.print(f"Best weights: [bold]{outcome.best}[/]")
    console.print(f"Results saved to [bold]{outcome.run_dir}[/]")


for _task in ("detect", "segment", "classify"):
    app.command(_task, help=_HELP[_task] + _OUTPUTS, no_args_is_help=True)(train_command)
