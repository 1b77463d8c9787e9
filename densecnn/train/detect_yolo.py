"""YOLO detectors trained by Ultralytics' own trainer, offline.

densecnn decides what Ultralytics cannot do well by itself: where the data is (a data.yaml resolved
against its own folder, a COCO JSON converted, a seeded val split when there is none, all written as
links + label files in ``RUN/data``), which starting weights (the weight store's file, never a
download; a ``.yaml`` from scratch), and the run folder. Ultralytics writes ``weights/best.pt``,
``weights/last.pt``, ``results.csv`` and ``results.png`` itself.

Options map onto Ultralytics' arguments (``--lr`` → ``lr0``, ``--freeze N`` → its first N modules,
10 = the whole YOLOv8 backbone). Gradient clipping is Ultralytics' fixed max-norm 10.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import pickle
from pathlib import Path
from typing import Any

from rich.console import Console

from densecnn.data.detection import load_detection_data, read_items, train_val
from densecnn.data.detection_export import write_ultralytics_data
from densecnn.device import select_device
from densecnn.errors import UsageError, WeightsUnavailableError
from densecnn.fsutil import atomic_open, atomic_write_json, next_run_dir
from densecnn.integrations.ultralytics import (
    full_unpickling,
    import_ultralytics,
    needs_full_unpickling,
    offline_training,
    restricted_unpickling,
    untrusted_error,
    weights_trusted,
)
from densecnn.train.config import TrainConfig, TrainOutcome

DEFAULT_IMGSZ = 640
_METRICS = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
}


def train_yolo(cfg: TrainConfig, *, console: Console | None = None) -> TrainOutcome:
    """Train (or resume) a YOLO detector as ``cfg`` says; see the module docstring."""
    console = console or Console(stderr=True, soft_wrap=True)
    import_ultralytics()
    from ultralytics import YOLO

    if cfg.resume is not None:
        last = _resume_checkpoint(cfg.resume)
        run_dir = last.parent.parent
        _trim_results(run_dir / "results.csv", _saved_epoch(last, run_dir))
        model, args = YOLO(str(last)), {"resume": str(last), "workers": cfg.workers}
        if cfg.device != "auto":
            args["device"] = _device(cfg)
    else:
        run_dir = next_run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok).absolute()
        data_yaml = _prepare_data(cfg, run_dir)
        source, pretrained = _model_source(cfg)
        model = _start_model(YOLO, source, cfg)
        args = _train_args(cfg, data_yaml, run_dir, pretrained)
        atomic_write_json(run_dir / "args.json", _jsonable(dataclasses.asdict(cfg)))
    _add_progress(model, console)
    if cfg.freeze and cfg.freeze_epochs is not None and cfg.resume is None:
        _add_unfreeze(model, cfg.freeze_epochs, console)
    try:
        with offline_training(), _trusted(cfg):
            model.train(**args)
    except (TypeError, pickle.UnpicklingError) as exc:
        if cfg.weights is not None and needs_full_unpickling(exc):
            raise untrusted_error(cfg.weights) from exc
        raise
    except AssertionError as exc:
        if "nothing to resume" in str(exc):
            raise UsageError(
                f"{run_dir} already finished all its epochs: nothing to resume.",
                hint=f"Start a new run from its weights: --weights {run_dir / 'weights' / 'last.pt'}.",
            ) from None
        raise
    return _outcome(cfg, run_dir, model.trainer)


def _start_model(yolo: Any, source: str, cfg: TrainConfig) -> Any:
    """``YOLO(source)``: restricted loading; a ``--weights`` file that needs a full (code-running)
    unpickle loads only with ``--trust-weights`` / ``DENSECNN_TRUST_WEIGHTS=1`` (else exit 3).
    A densecnn YOLO ``.safetensors`` (the embedded person-yolov8n, a converted .pt) is fine-tuned
    without unpickling: its model yaml becomes the architecture and its tensors are loaded in."""
    if source.endswith(".safetensors"):
        return _from_yolo_state(yolo, Path(source))
    try:
        with _trusted(cfg):
            return yolo(source)
    except (TypeError, ModuleNotFoundError, pickle.UnpicklingError) as exc:
        if cfg.weights is not None and needs_full_unpickling(exc):
            raise untrusted_error(cfg.weights) from exc
        raise


def _from_yolo_state(yolo: Any, path: Path) -> Any:
    """``YOLO`` built from the yaml stored in a densecnn YOLO state file, its weights loaded
    (``Model.load`` with a module: the trainer then starts from those weights)."""
    import tempfile

    import yaml

    from densecnn.checkpoint import read_meta
    from densecnn.tasks.detect.yolo_state import YAML_KEY, load_yolo_state

    meta = read_meta(path)
    if meta is None or meta.task != "detect" or YAML_KEY not in meta.extra:
        raise UsageError(
            f"--weights {path}: not a densecnn YOLO detector file "
            f"({f'a {meta.task} checkpoint, {meta.arch}' if meta else 'no densecnn metadata'})."
        )
    module = load_yolo_state(path)
    with tempfile.TemporaryDirectory() as tmp:
        # Ultralytics' YOLO() takes a yaml path; the file name keeps the scale letter (yolov8n).
        cfg_path = Path(tmp) / f"{meta.arch}.yaml"
        cfg_path.write_text(yaml.safe_dump(dict(meta.extra[YAML_KEY]), sort_keys=False))
        model = yolo(str(cfg_path))
    model.load(module)
    return model


def _trusted(cfg: TrainConfig) -> contextlib.AbstractContextManager[None]:
    """Full unpickling while this run loads the user's ``--weights``, if the user allowed it."""
    if cfg.weights is not None and weights_trusted(cfg.trust_weights):
        return full_unpickling()
    return restricted_unpickling()


def _prepare_data(cfg: TrainConfig, run_dir: Path) -> Path:
    """Check every label, then write ``RUN/data/data.yaml`` for the train/val images."""
    data = load_detection_data(cfg.data)
    if cfg.class_names and tuple(cfg.class_names) != data.names:
        raise UsageError(
            f"--class-names {','.join(cfg.class_names)} differ from the names in {cfg.data} "
            f"({','.join(data.names)}).",
            hint="Leave out --class-names: YOLO and COCO data name their classes.",
        )
    train, val = train_val(data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    read_items(data, [*train, *val])  # fail before training, naming file and line of a bad label
    return write_ultralytics_data(data, train, val, run_dir / "data")


def _model_source(cfg: TrainConfig) -> tuple[str, bool]:
    """``(model for YOLO(), pretrained)``: --weights FILE.pt, a .yaml (scratch), or a zoo model's
    file from the weight store (never downloaded here)."""
    if cfg.weights is not None:
        if cfg.weights.suffix not in (".pt", ".safetensors"):
            raise UsageError(
                f"--weights {cfg.weights}: YOLO training starts from an Ultralytics .pt file or a "
                "densecnn YOLO .safetensors file (`densecnn weights convert` writes one).",
            )
        if not cfg.weights.is_file():
            raise UsageError(f"--weights {cfg.weights}: no such file.")
        if cfg.weights.suffix == ".safetensors":
            return str(cfg.weights), True  # a YOLO state file: no pickle, see _start_model
        if cfg.model and cfg.model.endswith((".yaml", ".yml")):
            return cfg.model, True  # architecture from the yaml, matching weights from --weights
        return str(cfg.weights), True
    name = cfg.model or "yolov8n"
    if name.endswith((".yaml", ".yml")):
        return name, False
    from densecnn.zoo import MODELS
    from densecnn.zoo.store import WeightStore

    spec = MODELS.get(name)
    if spec.family != "yolo" or spec.weights is None:
        raise UsageError(f"--model {name} is not a YOLO detector.", hint="Try yolov8n or yolov8n.yaml.")
    if not cfg.pretrained:
        return f"{spec.name}.yaml", False
    store = WeightStore()
    if not store.is_cached(spec.weights):
        raise WeightsUnavailableError(
            f"{spec.weights.file_name} is not in the weight store ({store.path(spec.weights)}); "
            "training never downloads.",
            hint=f"Run `densecnn weights pull {spec.name}` where the network is reachable, pass "
            f"--weights FILE.pt, or train from scratch with --model {spec.name}.yaml.",
        )
    return str(store.fetch(spec.weights, model=spec.name, verify=True)), True


def _train_args(cfg: TrainConfig, data_yaml: Path, run_dir: Path, pretrained: bool) -> dict[str, Any]:
    device = select_device(cfg.device)
    args: dict[str, Any] = {
        "data": str(data_yaml),
        "epochs": cfg.epochs,
        "batch": cfg.batch,
        "imgsz": cfg.imgsz or DEFAULT_IMGSZ,
        **_optimizer_args(cfg),
        "patience": cfg.patience,
        "freeze": cfg.freeze or None,
        "seed": cfg.seed,
        "deterministic": cfg.deterministic,
        "workers": cfg.workers,
        "device": _device(cfg),
        "amp": cfg.amp and device.type == "cuda",
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,  # next_run_dir chose the folder; RUN/data is already in it
        "pretrained": pretrained,
        "verbose": False,
        # Not only speed: with cache=ram, Ultralytics' mosaic draws its partner images from the whole
        # dataset instead of its recent-image buffer, so the two settings train differently.
        "cache": "ram" if cfg.cache else False,
    }
    if not cfg.augment:
        args.update(mosaic=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, translate=0.0, scale=0.0)
    args.update(dict(cfg.extra.get("ultralytics") or {}))  # expert overrides (API use, tests)
    return args


def _optimizer_args(cfg: TrainConfig) -> dict[str, Any]:
    """The optimizer settings the user typed; the rest stay Ultralytics' own tuned defaults
    (``optimizer=auto``: AdamW at a class-count-based lr for short runs, SGD for long ones; weight
    decay 5e-4; 3 warmup epochs). Without a CLI record of what was typed, ``cfg``'s values hold."""
    given = cfg.extra.get("given")
    typed = set(given) if isinstance(given, list | tuple) else None
    out: dict[str, Any] = {}
    if typed is None or typed & {"optimizer", "lr"}:
        out["optimizer"] = {"adamw": "AdamW", "sgd": "SGD"}[cfg.optimizer]
        out["lr0"] = cfg.lr or (0.001 if cfg.optimizer == "adamw" else 0.01)
    if typed is None or "weight_decay" in typed:
        out["weight_decay"] = cfg.weight_decay
    if typed is None or "warmup_epochs" in typed:
        out["warmup_epochs"] = cfg.warmup_epochs
    return out


def _device(cfg: TrainConfig) -> str:
    device = select_device(cfg.device)
    return "cpu" if device.type == "cpu" else str(device.index or 0)


def _resume_checkpoint(path: Path) -> Path:
    """``RUN_DIR`` or ``RUN_DIR/weights/last.pt`` → the last.pt to resume."""
    last = path / "weights" / "last.pt" if path.is_dir() else path
    if last.suffix != ".pt" or not last.is_file():
        raise UsageError(
            f"--resume {path}: no Ultralytics last.pt there.",
            hint="Give the YOLO run folder (runs/train/exp) or its weights/last.pt.",
        )
    return last.absolute()


def _saved_epoch(last: Path, run_dir: Path) -> int:
    """The 1-based epoch ``last.pt`` holds; UsageError when the run finished (nothing to resume)."""
    from ultralytics.nn.tasks import load_checkpoint

    _, ckpt = load_checkpoint(str(last))
    epoch = int(ckpt.get("epoch", -1)) if isinstance(ckpt, dict) else -1
    if epoch < 0 or ckpt.get("optimizer") is None:
        raise UsageError(
            f"{run_dir} already finished all its epochs: nothing to resume.",
            hint=f"Start a new run from its weights: --weights {last}.",
        )
    return epoch + 1


def _trim_results(path: Path, epochs: int) -> None:
    """Drop results.csv rows after the saved epoch: Ultralytics writes an epoch's row before its
    checkpoint, so an interrupt between the two would leave that epoch twice after --resume."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if ln.strip() and int(float(ln.split(",")[0])) <= epochs]
    if len(keep) != len(lines):
        with atomic_open(path, "w") as fh:
            fh.write("".join(keep))


def _add_unfreeze(model: Any, epoch: int, console: Console) -> None:
    """``--freeze N --freeze-epochs E``: Ultralytics freezes for the whole run; thaw at epoch E + 1.
    Its optimizer holds the frozen parameters too, so they train from then on."""

    def on_train_epoch_start(trainer: Any) -> None:
        if trainer.epoch != epoch:
            return
        for name, p in trainer.model.named_parameters():
            if ".dfl" not in name and p.dtype.is_floating_point:  # the DFL projection stays fixed
                p.requires_grad_(True)
        console.print(f"Epoch {epoch + 1}: frozen layers unfrozen")

    model.add_callback("on_train_epoch_start", on_train_epoch_start)


def _add_progress(model: Any, console: Console) -> None:
    """One table row per epoch (Ultralytics' own log is silenced by YOLO_VERBOSE=false)."""
    state = {"header": False}

    def on_fit_epoch_end(trainer: Any) -> None:
        if not trainer.validator.training:
            return  # the final validation of best.pt: reported by the outcome
        items = trainer.label_loss_items(trainer.tloss, prefix="train")
        losses = {k.split("/", 1)[1]: float(v) for k, v in items.items()}
        metrics = {_METRICS[k]: float(v) for k, v in (trainer.metrics or {}).items() if k in _METRICS}
        cols = {**losses, **metrics}
        if not state["header"]:
            console.print("epoch".rjust(7) + "".join(k.rjust(11) for k in cols), soft_wrap=True)
            state["header"] = True
        row = f"{trainer.epoch + 1}/{trainer.epochs}".rjust(7) + "".join(f"{v:11.4f}" for v in cols.values())
        console.print(row, soft_wrap=True)

    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)


def _outcome(cfg: TrainConfig, run_dir: Path, trainer: Any) -> TrainOutcome:
    rows = _results_rows(run_dir / "results.csv")
    fitness = [r.get("metrics/mAP50-95(B)", 0.0) for r in rows]
    best_epoch = int(rows[fitness.index(max(fitness))]["epoch"]) if rows else 0
    metrics = {_METRICS[k]: float(v) for k, v in (trainer.metrics or {}).items() if k in _METRICS}
    epochs = int(getattr(trainer, "epochs", cfg.epochs))
    outcome = TrainOutcome(
        run_dir=run_dir,
        best=run_dir / "weights" / "best.pt",
        last=run_dir / "weights" / "last.pt",
        epochs_run=len(rows),
        best_epoch=best_epoch,
        metrics=metrics,
        stopped_early=len(rows) < epochs,
    )
    atomic_write_json(run_dir / "metrics.json", {"best_epoch": best_epoch, **metrics})
    return outcome


def _results_rows(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as fh:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return str(obj) if isinstance(obj, Path) else obj
