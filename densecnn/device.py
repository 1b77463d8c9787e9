"""The one owner of device choice: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``, and fp16."""

from __future__ import annotations

import re

import torch

from densecnn.errors import UsageError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|\d+)$")


def select_device(spec: str = "auto") -> torch.device:
    """Resolve a ``--device`` value. ``auto`` is the first CUDA device when there is one, else CPU."""
    spec = spec.strip().lower()
    if not _DEVICE.match(spec):
        raise UsageError(f"Invalid --device {spec!r}.", hint="Use auto, cpu, cuda or cuda:N.")
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec.isdigit():
        spec = f"cuda:{spec}"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {spec} asked for CUDA, but torch sees no CUDA device on this machine.",
                hint="Use --device cpu (or auto).",
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible.",
                hint="Pick an index below that, or set CUDA_VISIBLE_DEVICES.",
            )
        return torch.device(f"cuda:{index}")
    return torch.device("cpu")


def use_half(device: torch.device, requested: bool | None) -> bool:
    """torch fp16 only where it helps and was asked for: CUDA. On a CPU ``--half`` is OpenVINO's bf16
    (:class:`~densecnn.runtimes.engines.OpenVinoRuntime`) or ignored (the caller says so once)."""
    return requested is True and device.type == "cuda"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
