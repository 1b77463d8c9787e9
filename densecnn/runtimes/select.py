"""``--backend auto``: the fastest installed backend for this model, device and input size, measured
once per machine and cached in ``backend_choice.json`` in the weight store folder (as the model
matrix is), keyed by model, device, input size and the densecnn / torch / onnxruntime / openvino
versions.

The measurement runs the predictor's own ``forward`` on a prepared 640x360 frame (a video's shape;
classifiers: their crop) on each backend: 2 warm-up calls, then the fastest of 7 (alternating
backends, so other jobs' load falls on all of them). Another backend
replaces torch only when it is at least 5% faster. ``DENSECNN_BACKEND`` (torch, onnxruntime,
openvino) makes ``auto`` mean that backend without measuring (test suites, pinned deployments).
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np

from densecnn.runtimes import BACKENDS, available_backends, installed

if TYPE_CHECKING:
    from densecnn.tasks.base import Predictor
    from densecnn.tasks.builders import BuildRequest
    from densecnn.zoo.store import WeightStore

CACHE_NAME = "backend_choice.json"
ENV_BACKEND = "DENSECNN_BACKEND"
METHOD = 2  # bump when the way backends are measured changes
MARGIN = 0.95  # another backend must take at most 95% of torch's time
WARMUP, RUNS = 2, 7


def versions() -> dict[str, Any]:
    import densecnn

    out: dict[str, Any] = {"densecnn": densecnn.__version__, "method": METHOD}
    for dist in ("torch", "onnxruntime", "openvino"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def candidates(predictor: Predictor) -> list[str]:
    """The installed backends that can run ``predictor``'s model on its device."""
    from densecnn.runtimes.export import exportable

    if not exportable(predictor) or predictor.weights_path is None:
        return ["torch"]
    if predictor.device.type == "cpu":
        return available_backends()
    if predictor.device.type == "cuda" and installed("onnxruntime"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["torch", "onnxruntime"]
    return ["torch"]


def cache_key(predictor: Predictor, half: bool | None = None) -> str:
    """Model, input size, device and precision asked for (``--half``: "" when not given)."""
    model = predictor.spec.name if predictor.spec is not None else type(predictor).__name__
    size = getattr(predictor, "imgsz", None)
    if size is None and hasattr(predictor, "prep"):
        size = predictor.prep.crop
    size = size[-1] if isinstance(size, list | tuple) else size
    precision = {None: "", True: "-half", False: "-fp32"}[half]
    if getattr(predictor, "fp16", False) or getattr(predictor, "half", False):
        precision = "-fp16"
    return f"{model}@{size}/{predictor.device.type}{precision}"


def choose_backend(predictor: Predictor, request: BuildRequest, store: WeightStore) -> str:
    """The backend ``auto`` stands for here (measured and cached on first use)."""
    pinned = os.environ.get(ENV_BACKEND, "").strip().lower()
    if pinned in BACKENDS and installed(pinned):
        return pinned
    options = candidates(predictor)
    if len(options) == 1:
        return options[0]
    key = cache_key(predictor, request.cfg.half)
    path = store.root / CACHE_NAME
    cache = _read(path)
    hit = cache["choices"].get(key)
    if hit is not None and hit.get("backend") in options:
        return str(hit["backend"])
    print(
        f"densecnn: measuring {', '.join(options)} for {key} (once per machine; --backend skips this)",
        file=sys.stderr,
    )
    timings = measure(predictor, options, store, half=request.cfg.half)
    best = _pick(timings)
    cache["choices"][key] = {"backend": best, "ms": {b: round(t * 1e3, 2) for b, t in timings.items()}}
    _write(path, cache)
    return best


def _pick(timings: dict[str, float]) -> str:
    fastest = min(timings, key=lambda b: timings[b])
    if fastest != "torch" and "torch" in timings and timings[fastest] > MARGIN * timings["torch"]:
        return "torch"
    return fastest


def measure(
    predictor: Predictor, backends: list[str], store: WeightStore, *, half: bool | None = None
) -> dict[str, float]:
    """Seconds of one ``forward`` per backend (fastest of ``RUNS``), on a prepared 640x360 frame, in the
    precision each backend would run (``half`` as ``--half``)."""
    import torch

    from densecnn.results import Frame
    from densecnn.runtimes.attach import auto_runtime

    frame = Frame(np.full((360, 640, 3), 114, np.uint8), source="probe", path="probe")
    saved = predictor.runtime, predictor.backend, predictor.static_input
    runtimes = {b: None if b == "torch" else auto_runtime(predictor, b, store, half=half) for b in backends}
    times: dict[str, list[float]] = {b: [] for b in backends}
    try:
        predictor.static_input = False
        with torch.inference_mode():
            batch = predictor.preprocess([frame])
            # rounds alternate the backends, so a busy moment on a shared machine hits them all alike
            for round_ in range(WARMUP + RUNS):
                for backend, runtime in runtimes.items():
                    predictor.runtime = runtime
                    t0 = time.perf_counter()
                    predictor.forward(batch)
                    if round_ >= WARMUP:
                        times[backend].append(time.perf_counter() - t0)
    finally:
        predictor.runtime, predictor.backend, predictor.static_input = saved
    # the fastest call: on a shared machine, the slower ones measure the other jobs, not the backend
    return {b: min(t) for b, t in times.items()}


def _read(path: Any) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("versions") == versions() and isinstance(data.get("choices"), dict):
            return data  # type: ignore[no-any-return]
    except (OSError, ValueError):
        pass
    return {"versions": versions(), "choices": {}}


def _write(path: Any, data: dict[str, Any]) -> None:
    from densecnn.fsutil import atomic_write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)
    except OSError:
        pass  # a read-only cache: measure again next time
