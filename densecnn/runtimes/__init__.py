"""Inference backends behind ``Predictor.forward``: torch (always), ONNX Runtime and OpenVINO.

Preprocessing and postprocessing stay the predictor's own (shared by every backend), so a backend
only replaces the model call: it takes the batch tensor the predictor made and returns what the
torch module would (see :class:`~densecnn.runtimes.base.Runtime`).

``available_backends()`` lists what is importable here; ``--backend auto`` (the default) picks the
fastest of them for the model, device and input size from a measurement cached once per machine
(:mod:`densecnn.runtimes.select`).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from densecnn.config import Backend
from densecnn.errors import UsageError

__all__ = [
    "BACKENDS",
    "Backend",
    "available_backends",
    "import_openvino",
    "installed",
    "pip_command",
    "require",
]

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
"""Every backend densecnn knows, in the order ``auto`` prefers on a tie."""

# backend → (module to import, the pip extra that installs it)
_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}


def installed(backend: str) -> bool:
    """Whether ``backend``'s package is importable (without importing it)."""
    if backend == "torch":
        return True
    module, _ = _PACKAGES[backend]
    return importlib.util.find_spec(module) is not None


def available_backends() -> list[str]:
    """The backends that can run here: "torch" always, then "onnxruntime" / "openvino" if installed."""
    return [b for b in BACKENDS if installed(b)]


def pip_command(backend: str) -> str:
    """The command that installs ``backend``."""
    return f'pip install "densecnn[{_PACKAGES[backend][1]}]"'


def require(backend: str) -> None:
    """A UsageError naming the pip command when ``backend`` is unknown or not installed."""
    if backend not in BACKENDS:
        raise UsageError(f"Unknown backend {backend!r}.", hint=f"Use auto or one of: {', '.join(BACKENDS)}.")
    if not installed(backend):
        raise UsageError(
            f"--backend {backend}: the {_PACKAGES[backend][0]} package is not installed.",
            hint=f"Install it with: {pip_command(backend)}",
        )


def import_openvino() -> ModuleType:
    """``openvino``, with its usage telemetry off: importing it (and NNCF) would otherwise send events
    to Google Analytics unless the user ran ``opt_in_out --opt_out``; densecnn never touches the
    network unasked. Blocking the ``openvino_telemetry`` import makes OpenVINO and NNCF use their
    built-in no-op stand-ins (an already imported ``openvino_telemetry`` is left alone)."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino
