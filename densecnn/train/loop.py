"""The generic training loop every densecnn trainer plugs into (segment, classify, Faster R-CNN).

How a task plugs in: build a :class:`TrainTask` and call :func:`fit`::

    cfg = resolve_resume(cfg)                         # --resume: the run's own args.json, more epochs
    task = TrainTask(
        model=model,                                  # nn.Module, on CPU; fit() moves it to the device
        train_data=train_ds, val_data=val_ds,         # torch Datasets (val may be empty)
        collate_fn=None,                              # e.g. a list-collate for detection targets
        train_step=lambda model, batch, device: ...,  # → loss Tensor, or dict of loss Tensors (summed)
        validate=lambda model, loader, device: {...}, # → metrics dict with a 'fitness' key (higher = better)
        meta=CheckpointMeta(...),                     # what best/last.safetensors say about themselves
        stages=backbone_stages(model.backbone),       # for --freeze (optional)
        default_lr=1e-3,
    )
    outcome = fit(cfg, task)                          # → TrainOutcome

``fit`` owns the rest, the same way for every task: seeding (``--seed``, ``--deterministic``), the
run folder (``runs/train/exp``, ``exp2``...), ``args.json``, AdamW or SGD (no weight decay on biases
and norm weights), linear warmup then cosine decay to 1% of ``--lr`` (stepped per batch), AMP on
CUDA only, gradient clipping, ``--freeze`` N backbone stages for ``--freeze-epochs``, per-epoch table
rows, ``results.csv``, ``results.png``, ``weights/best.safetensors`` (best ``fitness``) and
``weights/last.safetensors`` (+ the resume state, see :mod:`densecnn.train.records`), early stopping
after ``--patience`` epochs without a better fitness, and ``metrics.json``. ``validate`` runs under
``torch.no_grad`` with the model in eval mode; when there is no validation data, fitness is the
negative mean training loss. Ctrl-C leaves ``last`` from the previous complete epoch and re-raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Dataset

from densecnn.checkpoint import CheckpointMeta, save_checkpoint
from densecnn.device import select_device
from densecnn.errors import UsageError
from densecnn.fsutil import atomic_write_json, next_run_dir
from densecnn.train.config import TrainConfig, TrainOutcome
from densecnn.train.freeze import StageFreezer
from densecnn.train.records import (
    load_train_state,
    resolve_resume,
    resume_dir,
    save_train_state,
    write_results_csv,
    write_results_png,
)

__all__ = ["TrainTask", "fit", "resolve_resume", "seed_everything"]

StepFn = Callable[[nn.Module, Any, torch.device], "torch.Tensor | dict[str, torch.Tensor]"]
ValidateFn = Callable[[nn.Module, DataLoader, torch.device], dict[str, float]]


@dataclass
class TrainTask:
    """One task's pieces for :func:`fit` (see the module docstring)."""

    model: nn.Module
    train_data: Dataset
    val_data: Dataset | None
    train_step: StepFn
    validate: ValidateFn
    meta: CheckpointMeta
    collate_fn: Callable[[list[Any]], Any] | None = None
    val_collate_fn: Callable[[list[Any]], Any] | None = None  # None: collate_fn
    stages: Sequence[Sequence[nn.Module]] = ()
    default_lr: float = 1e-3  # for AdamW; SGD gets 10x
    val_batch: int | None = None
    notes: list[str] = field(default_factory=list)  # printed once before the first epoch


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; with ``deterministic``, ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # warn_only: a few CUDA ops (e.g. bilinear upsampling backward) have no deterministic kernel
        torch.use_deterministic_algorithms(True, warn_only=True)


def fit(cfg: TrainConfig, task: TrainTask, *, console: Console | None = None) -> TrainOutcome:
    """Train ``task`` as ``cfg`` says; see the module docstring for everything this does."""
    console = console or Console(soft_wrap=True)  # log lines never wrap: paths stay whole at any width
    seed_everything(cfg.seed, deterministic=cfg.deterministic)
    device = select_device(cfg.device)
    run = _Run(cfg, task, device, console)
    return run.fit()


class _Run:
    """The state of one training run; ``fit`` is the epoch loop."""

    def __init__(self, cfg: TrainConfig, task: TrainTask, device: torch.device, console: Console) -> None:
        self.cfg, self.task, self.device, self.console = cfg, task, device, console
        self.run_dir = (
            resume_dir(cfg.resume)
            if cfg.resume is not None
            else next_run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok)
        )
        self.weights_dir = self.run_dir / "weights"
        self.model = task.model.to(device)
        self.amp = cfg.amp and device.type == "cuda"  # fp16 autocast only pays off (and is safe) on CUDA
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.workers = cfg.workers
        if self.workers and not _forkserver_fits():
            self.workers = 0
            console.print(
                f"TMPDIR ({tempfile.gettempdir()}) is too long for the data loader workers' socket "
                "(107 bytes at most): loading data in this process. A shorter TMPDIR brings them back.",
                soft_wrap=True,
            )
        self.train_loader = self._loader(task.train_data, shuffle=True, batch=cfg.batch)
        self.val_loader = self._loader(task.val_data, shuffle=False, batch=task.val_batch or cfg.batch)
        # default_lr is AdamW's; SGD without Adam's per-parameter scaling wants about 10x
        sgd_scale = 10.0 if cfg.optimizer == "sgd" else 1.0
        self.lr = cfg.lr if cfg.lr is not None else task.default_lr * sgd_scale
        self.optimizer = _optimizer(self.model, cfg, self.lr)
        self.steps_per_epoch = max(1, len(self.train_loader))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.freezer = StageFreezer(task.stages, cfg.freeze) if cfg.freeze else None
        self.rows: list[dict[str, float]] = []
        self.best_fitness, self.best_epoch, self.start_epoch, self.step = -math.inf, 0, 0, 0
        self.printed_header = False

    # -- setup -------------------------------------------------------------------------------------
    def _loader(self, data: Dataset | None, *, shuffle: bool, batch: int) -> DataLoader | None:
        if data is None or len(data) == 0:  # type: ignore[arg-type]
            if shuffle:
                raise UsageError("No training images: the dataset (or its train split) is empty.")
            return None
        gen = torch.Generator().manual_seed(self.cfg.seed)
        if shuffle:
            self.train_gen = gen  # re-seeded every epoch, so a resumed run shuffles as the original
        return DataLoader(
            data,
            batch_size=batch,
            shuffle=shuffle,
            drop_last=shuffle and len(data) > batch,  # type: ignore[arg-type]  # BatchNorm dislikes a batch of 1
            num_workers=self.workers,
            collate_fn=self.task.collate_fn
            if shuffle
            else (self.task.val_collate_fn or self.task.collate_fn),
            generator=gen,
            worker_init_fn=_seed_worker,
            persistent_workers=self.workers > 0,
            # fork() copies locks held by other threads (progress bars, a host's I/O threads) into the
            # workers, which can then hang; forkserver children start from a clean single-threaded parent.
            multiprocessing_context="forkserver" if self.workers > 0 else None,
            pin_memory=self.device.type == "cuda",
        )

    def _lr_factor(self, step: int) -> float:
        """Linear warmup from 1% over ``warmup_epochs``, then cosine from 1 to 1% at the last step."""
        warmup = int(self.cfg.warmup_epochs * self.steps_per_epoch)
        total = self.cfg.epochs * self.steps_per_epoch
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    def _restore(self) -> None:
        info = load_train_state(self.weights_dir, optimizer=self.optimizer)
        from densecnn.checkpoint import load_checkpoint

        state, _ = load_checkpoint(self.weights_dir / "last.safetensors")
        self.model.load_state_dict(state)
        self.start_epoch, self.step = int(info["epoch"]), int(info["step"])
        self.best_fitness, self.best_epoch = float(info["best_fitness"]), int(info["best_epoch"])
        self.rows = list(info.get("history", []))
        if info.get("scaler") and self.amp:
            self.scaler.load_state_dict(info["scaler"])
        self.scheduler.last_epoch = self.step  # the schedule continues at the restored step
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * self._lr_factor(self.step)
        if self.start_epoch >= self.cfg.epochs:
            raise UsageError(
                f"--resume: {self.run_dir} already ran {self.start_epoch} of {self.cfg.epochs} epochs.",
                hint=f"Pass --epochs N with N > {self.start_epoch} to train further.",
            )
        self.console.print(f"Resuming {self.run_dir} from epoch {self.start_epoch + 1}/{self.cfg.epochs}")

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainOutcome:
        if self.cfg.resume is not None:
            self._restore()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # on resume too: a later --resume reads the new --epochs from here
        atomic_write_json(self.run_dir / "args.json", _jsonable(dataclasses.asdict(self.cfg)))
        self._header()
        stopped_early = False
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs):
                row = self._epoch(epoch)
                with _sigint_deferred():  # an epoch's files are saved completely or not at all
                    self._save(epoch, row)
                self._print_row(row)
                if self.cfg.patience and epoch + 1 - self.best_epoch >= self.cfg.patience:
                    stopped_early = epoch + 1 < self.cfg.epochs
                    if stopped_early:
                        self.console.print(
                            f"Early stop: no better fitness for {self.cfg.patience} epochs "
                            f"(best: epoch {self.best_epoch})."
                        )
                    break
        finally:
            write_results_png(self.run_dir / "results.png", self.rows)
        return self._outcome(stopped_early)

    def _epoch(self, epoch: int) -> dict[str, float]:
        start = time.perf_counter()
        if self.freezer is not None:
            frozen = self.cfg.freeze_epochs is None or epoch < self.cfg.freeze_epochs
            if self.freezer.apply(frozen):
                state = "frozen" if frozen else "unfrozen"
                self.console.print(f"Epoch {epoch + 1}: first {self.cfg.freeze} backbone stages {state}")
        losses = self._train_epoch(epoch)
        metrics = self._validate(losses)
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **losses, **metrics}
        row["time_s"] = round(time.perf_counter() - start, 2)
        return row

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.train_gen.manual_seed(self.cfg.seed * 100_003 + epoch)
        self.model.train()
        if self.freezer is not None:
            self.freezer.keep_eval()
        sums: dict[str, float] = {}
        n = 0
        for batch in self.train_loader or ():
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                out = self.task.train_step(self.model, batch, self.device)
            parts = out if isinstance(out, dict) else {"loss": out}
            loss = sum(parts.values()) if len(parts) > 1 else next(iter(parts.values()))
            if not torch.isfinite(loss):
                raise UsageError(
                    f"The training loss became {loss.item()} at step {self.step + 1}.",
                    hint="Lower --lr, keep --clip-grad on, or check the labels (densecnn data check).",
                )
            self._backward(loss)
            n += 1
            sums["train/loss"] = sums.get("train/loss", 0.0) + float(loss.detach())
            if len(parts) > 1:
                for name, value in parts.items():
                    sums[f"train/{name}"] = sums.get(f"train/{name}", 0.0) + float(value.detach())
        return {k: v / max(1, n) for k, v in sums.items()}

    def _backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1

    def _validate(self, losses: dict[str, float]) -> dict[str, float]:
        if self.val_loader is None:
            return {"fitness": -losses.get("train/loss", math.inf)}
        self.model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            metrics = self.task.validate(self.model, self.val_loader, self.device)
        if "fitness" not in metrics:
            raise ValueError("validate() must return a 'fitness' metric (higher is better)")
        return {k: float(v) for k, v in metrics.items()}

    # -- outputs -----------------------------------------------------------------------------------
    def _save(self, epoch: int, row: dict[str, float]) -> None:
        self.rows.append(row)
        metrics = {k: v for k, v in row.items() if k not in ("lr", "time_s")}
        meta = dataclasses.replace(
            self.task.meta, metrics=metrics, extra={**self.task.meta.extra, "epoch": epoch + 1}
        )
        state = self.model.state_dict()
        improved = row["fitness"] > self.best_fitness
        if improved:
            self.best_fitness, self.best_epoch = row["fitness"], epoch + 1
            save_checkpoint(self.weights_dir / "best.safetensors", state, meta)
        save_checkpoint(self.weights_dir / "last.safetensors", state, meta)
        info = {
            "epoch": epoch + 1,
            "step": self.step,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "history": self.rows,
            "scaler": self.scaler.state_dict() if self.amp else None,
        }
        write_results_csv(self.run_dir / "results.csv", self.rows)
        save_train_state(self.weights_dir, optimizer=self.optimizer, info=info)

    def _header(self) -> None:
        cfg, n_val = self.cfg, len(self.task.val_data or ())  # type: ignore[arg-type]
        self.console.print(
            f"[bold]Training[/] {self.task.meta.arch}"
            + (f" on {self.task.meta.backbone}" if self.task.meta.backbone else "")
            + f": {len(self.task.train_data)} train / {n_val} val images, "  # type: ignore[arg-type]
            f"{cfg.epochs} epochs, batch {cfg.batch}, {cfg.optimizer} lr {self.lr:g}, "
            f"device {self.device}{' (AMP)' if self.amp else ''} → {self.run_dir}"
        )
        for note in self.task.notes:
            self.console.print(note)

    def _print_row(self, row: dict[str, float]) -> None:
        """One line per epoch under a header of the column names (``*``: new best fitness)."""
        keys = [k for k in row if k != "epoch"]
        widths = [max(len(k), 9) for k in keys]
        epoch_w = 2 * len(str(self.cfg.epochs)) + 1
        if not self.printed_header:
            self.printed_header = True
            header = [f"{'epoch':>{max(epoch_w, 5)}}"] + [
                f"{k:>{w}}" for k, w in zip(keys, widths, strict=True)
            ]
            self.console.print(" ".join(header), style="bold", highlight=False, soft_wrap=True)
        star = " *" if self.best_epoch == row["epoch"] else ""
        epoch = f"{int(row['epoch'])}/{self.cfg.epochs}"
        cells = [f"{epoch:>{max(epoch_w, 5)}}"] + [
            f"{_short(row[k]):>{w}}" for k, w in zip(keys, widths, strict=True)
        ]
        self.console.print(" ".join(cells) + star, highlight=False, soft_wrap=True)

    def _outcome(self, stopped_early: bool) -> TrainOutcome:
        last = self.rows[-1] if self.rows else {}
        best_row = next((r for r in self.rows if r["epoch"] == self.best_epoch), last)
        metrics = {k: v for k, v in best_row.items() if k not in ("lr", "time_s")}
        summary = {
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.rows),
            "stopped_early": stopped_early,
            "best": metrics,
            "last": self.rows[-1] if self.rows else {},
        }
        atomic_write_json(self.run_dir / "metrics.json", summary)
        return TrainOutcome(
            run_dir=self.run_dir,
            best=self.weights_dir / "best.safetensors",
            last=self.weights_dir / "last.safetensors",
            epochs_run=len(self.rows),
            best_epoch=self.best_epoch,
            metrics=metrics,
            stopped_early=stopped_early,
        )


def _optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9, Nesterov); biases and norm weights (1-D) get no weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done, then raise it (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # set per worker by the DataLoader from its generator
    np.random.seed(seed)
    random.seed(seed)


def _short(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else f"{value:.4g}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _forkserver_fits() -> bool:
    """Whether the forkserver's socket, ``$TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX``, fits AF_UNIX's
    107-byte path limit under this TMPDIR (spawn, the other clean start, hung in-process under pytest)."""
    return len(os.fsencode(tempfile.gettempdir())) + 36 <= 107
