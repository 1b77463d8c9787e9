"""Self-describing checkpoints: safetensors tensors + JSON metadata, loaded without pickle.

A file written by densecnn carries what is needed to rebuild and use the model (task, head,
backbone, class names, input size, normalisation), so ``--weights best.safetensors`` needs nothing
else on the command line.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from densecnn import __version__
from densecnn.errors import UsageError
from densecnn.fsutil import atomic_open

FORMAT = "densecnn-checkpoint/1"
_KEY = "densecnn"


@dataclass(frozen=True)
class CheckpointMeta:
    """What a densecnn checkpoint says about itself.

    ``arch`` names the head (``classifier``, ``unet``, ``deeplabv3plus``, ``fasterrcnn``) or a
    torchvision builder; ``backbone`` a registry backbone (None where ``arch`` is a whole model).
    ``mean``/``std`` are per-channel, on [0, 1] RGB (or gray) inputs; ``input_size`` in pixels.
    """

    task: str
    arch: str
    class_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    backbone: str | None = None
    in_channels: int = 3
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    densecnn_version: str = __version__
    format: str = FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: CheckpointMeta) -> None:
    """Write ``state_dict`` and ``meta`` to ``path`` (.safetensors) atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    data = save(tensors, metadata={_KEY: json.dumps(asdict(meta))})
    with atomic_open(Path(path), "wb") as fh:
        fh.write(data)


def read_meta(path: Path) -> CheckpointMeta | None:
    """The metadata of a densecnn checkpoint, or None for any other file (reads only the header)."""
    if Path(path).suffix != ".safetensors" or not Path(path).is_file():
        return None
    from safetensors import safe_open

    check_safetensors(Path(path))
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(_KEY)
    except Exception as exc:
        raise _corrupt(Path(path), f"safetensors cannot read it ({str(exc).splitlines()[0]})") from None
    if raw is None:
        return None
    fields = json.loads(raw)
    if fields.get("format") != FORMAT:
        raise UsageError(
            f"{path}: unsupported checkpoint format {fields.get('format')!r} (expected {FORMAT})."
        )
    for key in ("class_names", "mean", "std"):
        fields[key] = tuple(fields[key])
    return CheckpointMeta(**fields)


def check_safetensors(path: Path) -> None:
    """UsageError ("truncated or corrupt file", with the sizes) unless ``path``'s safetensors header
    parses and every tensor it declares lies inside the file. Reads only the header."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _corrupt(path, f"{size} bytes, shorter than the 8-byte safetensors header length")
        n = int.from_bytes(head, "little")
        if 8 + n > size:
            raise _corrupt(path, f"the header declares {n:,} bytes of JSON but the file has {size:,} bytes")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _corrupt(path, f"its {n:,}-byte header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "its header is not a JSON object")
    ends = [
        t["data_offsets"][1]
        for k, t in header.items()
        if k != "__metadata__" and isinstance(t, dict) and isinstance(t.get("data_offsets"), list)
    ]
    need = 8 + n + max((int(e) for e in ends), default=0)
    if need > size:
        raise _corrupt(path, f"its tensors need {need:,} bytes but the file has {size:,} bytes")


def _corrupt(path: Path, detail: str) -> UsageError:
    return UsageError(
        f"{path}: truncated or corrupt file: {detail}.",
        hint="Copy or download the file again (compare its size and sha256 with the original).",
    )


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Tensors and metadata of a densecnn checkpoint (no pickle involved)."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    if meta is None:
        raise UsageError(
            f"{path} is not a densecnn checkpoint (a .safetensors file written by densecnn).",
            hint="densecnn checkpoints come from `densecnn train`; other weight files go with a --model.",
        )
    return load_file(str(path)), meta


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only``: no code runs).

    Accepts a bare state dict or one under a ``model`` / ``state_dict`` key.
    """
    if not path.is_file():
        raise UsageError(f"Weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):  # not a pickle at all: damaged or another format
            raise UsageError(
                f"Could not read {path} as a torchvision state dict: {str(exc).splitlines()[0]}",
                hint="The file is damaged or not a state dict: copy or export it again.",
            ) from None
        # weights_only refused a global: the file holds more than tensors
        from densecnn.errors import UntrustedWeightsError
        from densecnn.integrations.ultralytics import unsafe_globals

        names = unsafe_globals(path)
        shown = f" ({', '.join(names[:5])})" if names else ""
        raise UntrustedWeightsError(
            f"{path} is not a plain state dict: it names Python objects{shown} that only a full unpickle "
            "would create, and a full unpickle runs code stored in the file. State dicts load with "
            "torch.load(weights_only=True) only.",
            hint="Save the weights as tensors: torch.save(model.state_dict(), FILE) or safetensors.",
        ) from None
    except Exception as exc:
        raise UsageError(
            f"Could not read {path} as a torchvision state dict: {exc}",
            hint="Pass a .pth/.pt state dict or a .safetensors file for the chosen --model "
            "(an Ultralytics .pt goes with a YOLO --model).",
        ) from exc
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path} holds no state dict (a mapping of parameter names to tensors).")
    return state


def load_head_checkpoint(
    path: Path, *, archs: tuple[str, ...], what: str
) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """:func:`load_checkpoint` of a head on a registry backbone: UsageError unless ``meta.arch`` is
    one of ``archs`` and a backbone is named (``what`` describes the expected model to the user)."""
    state, meta = load_checkpoint(Path(path))
    if meta.arch not in archs or meta.backbone is None:
        raise UsageError(f"{path} holds a {meta.task} {meta.arch!r} model, not {what}.")
    return state, meta


PICK_MODEL = "Pick the --model these weights were trained for."


def load_into(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: Path,
    what: str,
    hint: str | None = None,
) -> Any:
    """``model.load_state_dict(state)`` (strict) → ``model`` in eval mode; a mismatch becomes a
    UsageError naming the file and the model it does not fit (its first line of detail)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(f"{source} does not fit {what}: {str(exc).splitlines()[0]}", hint=hint) from exc
    return model.eval()
