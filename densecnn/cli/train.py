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

from densecnn.cli import options as opt
from densecnn.cli.common import App, console, err_console, user_errors
from densecnn.train.config import TrainConfig

if TYPE_CHECKING:
    from densecnn.train.config import TrainOutcome

app = App(
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
_SHORT = {
    "detect": "Train a detector (YOLO, Faster R-CNN) on a YOLO data.yaml or a COCO JSON.",
    "segment": "Train a segmenter (U-Net, DeepLabV3+, torchvision models) on a masks folder.",
    "classify": "Train a classifier on any backbone from an ImageFolder.",
}
_OUTPUTS = (
    " Writes runs/train/exp (exp2, ... on later runs): args.json, results.csv (one row per epoch), "
    "results.png, metrics.json, weights/best and weights/last. Ctrl-C keeps the last finished epoch: "
    "continue with --resume runs/train/exp. Exit code: 0 done, 2 usage error, 130 interrupted."
)


def train_command(
    ctx: typer.Context,
    data: opt.DataOrResume = None,
    model: opt.Model = TrainConfig.model,
    backbone: opt.TrainBackbone = TrainConfig.backbone,
    weights: opt.StartWeights = TrainConfig.weights,
    trust_weights: opt.TrustWeights = TrainConfig.trust_weights,
    pretrained: opt.Pretrained = TrainConfig.pretrained,
    epochs: opt.Epochs = TrainConfig.epochs,
    batch: opt.Batch = TrainConfig.batch,
    imgsz: opt.Imgsz = TrainConfig.imgsz,
    optimizer: opt.Optimizer = TrainConfig.optimizer,
    lr: opt.Lr = TrainConfig.lr,
    weight_decay: opt.WeightDecay = TrainConfig.weight_decay,
    warmup_epochs: opt.WarmupEpochs = TrainConfig.warmup_epochs,
    clip_grad: opt.ClipGrad = TrainConfig.clip_grad,
    patience: opt.Patience = TrainConfig.patience,
    freeze: opt.Freeze = TrainConfig.freeze,
    freeze_epochs: opt.FreezeEpochs = TrainConfig.freeze_epochs,
    amp: opt.Amp = TrainConfig.amp,
    seed: opt.TrainSeed = TrainConfig.seed,
    deterministic: opt.Deterministic = TrainConfig.deterministic,
    device: opt.Device = TrainConfig.device,
    workers: opt.Workers = TrainConfig.workers,
    val_fraction: opt.ValFraction = TrainConfig.val_fraction,
    num_classes: opt.DataNumClasses = TrainConfig.num_classes,
    class_names: opt.DataClassNames = None,
    mask_mode: opt.MaskMode = TrainConfig.mask_mode,
    augment: opt.Augment = TrainConfig.augment,
    decoder_channels: opt.DecoderChannels = None,
    cache: opt.Cache = TrainConfig.cache,
    out: opt.Out = TrainConfig.project,
    project: opt.Project = None,
    name: opt.Name = TrainConfig.name,
    exist_ok: opt.ExistOk = TrainConfig.exist_ok,
    resume: opt.ResumeTrain = TrainConfig.resume,
    verbose: opt.Verbose = False,
) -> None:
    task = ctx.info_name or ""
    from densecnn.cli.run import configure_logging
    from densecnn.errors import UsageError
    from densecnn.fsutil import ensure_writable_dir

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        # typer vendors its own click: compare the ParameterSource by name
        given = [p for p in ctx.params if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"]
        if data is None and resume is None:
            raise UsageError(f"train {task} needs --data (or --resume RUN_DIR).")
        project_dir = opt.out_dir(ctx, out, project)
        ensure_writable_dir(resume if resume is not None and resume.is_dir() else project_dir)
        if task != "segment" and ("mask_mode" in given):
            raise UsageError("--mask-mode applies to `train segment` only.")
        if task != "segment" and decoder_channels:
            raise UsageError("--decoder-channels applies to `train segment --model unet` only.")
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
            class_names=opt.split_names(class_names),
            mask_mode=str(mask_mode),  # type: ignore[arg-type]  # a choice of the CLI
            augment=augment,
            decoder_channels=opt.split_widths(decoder_channels),
            cache=cache,
            project=project_dir,
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
    app.command(_task, help=_HELP[_task] + _OUTPUTS, short_help=_SHORT[_task], no_args_is_help=True)(
        train_command
    )
