"""What a training run leaves beside its weights: ``results.csv``, ``results.png`` and the resume
state (optimizer, scheduler, scaler, RNG, epoch) as ``last.state.safetensors`` + ``last.state.json``.

The resume state is written without pickle: every tensor of the optimizer state goes into the
safetensors file under a flat key, and everything else (step counts, hyper-parameters, history)
into the JSON file. Both are written atomically, the JSON last, so a run killed mid-write resumes
from the previous complete epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from densecnn.errors import UsageError
from densecnn.fsutil import atomic_open, atomic_write_bytes, atomic_write_json
from densecnn.train.config import TrainConfig

STATE_TENSORS = "last.state.safetensors"
STATE_JSON = "last.state.json"


def write_results_csv(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """All epoch rows so far (rewritten each epoch: the file is always complete)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    with atomic_open(path, "w") as fh:
        fh.write(buf.getvalue())


def _fmt(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9):
        return str(int(value))
    return f"{value:.6g}"


def write_results_png(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """Loss curves (every ``*loss*`` column) and metric curves (the other numeric columns), per epoch."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    skip = {"epoch", "lr", "time_s"}
    keys = [k for k in rows[-1] if k not in skip]
    losses = [k for k in keys if "loss" in k]
    metrics = [k for k in keys if "loss" not in k]
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, group, title in ((axes[0], losses, "loss"), (axes[1], metrics, "validation metrics")):
        for key in group:
            ys = [r.get(key, math.nan) for r in rows]
            ax.plot(epochs, ys, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_train_state(weights_dir: Path, *, optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    """Optimizer tensors → ``last.state.safetensors``; its scalars and ``info`` → ``last.state.json``."""
    from safetensors.torch import save

    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slots in opt["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    atomic_write_bytes(weights_dir / STATE_TENSORS, save(tensors))
    payload = {**info, "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars}}
    atomic_write_json(weights_dir / STATE_JSON, payload)


def load_train_state(weights_dir: Path, *, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer and the torch RNG; return the ``info`` saved with them."""
    from safetensors.torch import load_file

    json_path, tensor_path = weights_dir / STATE_JSON, weights_dir / STATE_TENSORS
    if not json_path.is_file() or not tensor_path.is_file():
        raise UsageError(
            f"--resume: {weights_dir} has no training state ({STATE_JSON} + {STATE_TENSORS}).",
            hint="Resume a run folder written by `densecnn train` that finished at least one epoch.",
        )
    payload = json.loads(json_path.read_text())
    tensors = load_file(str(tensor_path))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, slots in payload["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(slots)
    optimizer.load_state_dict({"state": state, "param_groups": payload["optimizer"]["param_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return dict(payload)


def resolve_resume(cfg: TrainConfig) -> TrainConfig:
    """With ``--resume RUN_DIR`` (or its ``weights/last.safetensors``): the run's own ``args.json``,
    keeping from ``cfg`` only what may change between sessions: device, workers, and ``epochs`` when
    the user gave it (``"epochs"`` in ``cfg.extra["given"]``, the option names typed on the command
    line). Without ``--resume``: ``cfg`` unchanged."""
    if cfg.resume is None:
        return cfg
    run_dir = resume_dir(cfg.resume)
    saved = json.loads((run_dir / "args.json").read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    args: dict[str, Any] = {k: v for k, v in saved.items() if k in fields}
    for key in ("data", "weights", "project", "resume"):
        args[key] = Path(args[key]) if args.get(key) is not None else None
    args["class_names"] = tuple(args.get("class_names") or ())
    args["decoder_channels"] = tuple(args.get("decoder_channels") or ())
    given = set(cfg.extra.get("given", ()))  # option names the user typed (the CLI fills this)
    epochs = cfg.epochs if "epochs" in given else args["epochs"]
    args.update(epochs=epochs, device=cfg.device, workers=cfg.workers, resume=run_dir, exist_ok=True)
    args["name"], args["project"] = run_dir.name, run_dir.parent
    return TrainConfig(**args)


def resume_dir(path: Path) -> Path:
    """The run folder of ``--resume PATH`` (a run folder, or a file in its ``weights/``)."""
    run_dir = path.parent.parent if path.is_file() else path
    if not (run_dir / "args.json").is_file():
        raise UsageError(
            f"--resume {path}: not a densecnn training run (no args.json in {run_dir}).",
            hint="Pass the run folder (runs/train/exp) or its weights/last.safetensors.",
        )
    return run_dir
