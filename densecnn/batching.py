"""How many frames share a forward pass when ``--batch`` is not given.

Live sources: one (the newest frame wins; waiting for a batch would only add latency). Folders of
photos of many sizes: one (``MIXED_SIZES``; on OpenVINO, more than two sizes: the run then restricts
the model to a few input sizes, see ``engine._restrict_input_sizes``). Other file sources (images,
folders, videos): the batch size with the best measured throughput for this model, input size,
device, backend, precision and thread count, among 1, 2, 4 and 8 (up to 4 on OpenVINO / ONNX Runtime
on a CPU: ``candidates_for``), the smallest within ``_TIE`` of the fastest. The measurement (a few
seconds, once) is cached in ``batch_sizes.json`` in the weight cache folder, like the model matrix,
keyed by what it depends on; a short run (under ``SHORT_RUN`` frames) does not pay for it and uses
``UNMEASURED`` until one exists.

Batching never changes a result: predictors batch only frames whose network input has the same size
(:meth:`Predictor.batch_key`), each letterboxed or resized on its own.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densecnn.fsutil import atomic_write_json

if TYPE_CHECKING:
    from densecnn.tasks.base import Predictor

CACHE_NAME = "batch_sizes.json"
CANDIDATES = (1, 2, 4, 8)
SHORT_RUN = 64  # frames: below this, a first measurement would cost more than batching saves
UNMEASURED = 4  # the CPU's usual best for the zoo's defaults (bench/README.md); used until measured
_TIE = 0.15  # a larger batch must be 15% faster per frame to be chosen: memory grows with it (below)
MANY_SIZES = "images of many sizes"  # the origin of that choice
MIXED_SIZES = 0.5
"""Batch 1 when the commonest network input size covers less than this share of a folder's sampled
images: frames batch only with equal input sizes, so such a folder makes mostly batches of one or
two, each new batch shape costs an OpenVINO kernel build, and the writer gets its results in bursts
(yolov8n-seg over coco128, 20 input sizes, 32% the commonest: batch 1 8.8 s, batch 8 9.5 s, peak
RSS 40 MB lower)."""


@dataclass(frozen=True)
class BatchChoice:
    """The batch size of a run and where it came from: ``--batch``, ``live``, ``measured`` (now),
    ``cached`` (an earlier measurement) or ``short run`` (unmeasured default)."""

    size: int
    origin: str
    ms_per_frame: dict[int, float] | None = None  # the measurement behind a measured/cached choice

    def describe(self) -> str:
        return f"batch {self.size} ({self.origin})"


def choose_batch(
    predictor: Predictor,
    *,
    requested: int | None,
    live: bool,
    frames: int,
    cache_dir: Path,
    image_sizes: Sequence[tuple[int, int]] = (),
) -> BatchChoice:
    """The batch size for a run of ``frames`` frames (0: unknown) of ``predictor``; ``image_sizes``:
    ``(height, width)`` of a sample of the source's images."""
    if requested is not None:
        return BatchChoice(requested, "--batch")
    if live:
        return BatchChoice(1, "live")
    if mixed_sizes(predictor, image_sizes):
        return BatchChoice(1, MANY_SIZES)
    if getattr(predictor, "tile", None) is not None:
        return BatchChoice(1, "tiled: a frame's tiles form the batch")
    if hasattr(predictor, "predictors"):  # densecnn run: one measurement per model mix is not kept
        return BatchChoice(1, "several models")
    path = Path(cache_dir) / CACHE_NAME
    key = cache_key(predictor)
    cache = _load(path)
    if key in cache:
        timings = {int(b): float(ms) for b, ms in cache[key].items()}
        return BatchChoice(best_batch(timings), "cached", timings)
    if 0 < frames < SHORT_RUN:
        return BatchChoice(min(UNMEASURED, frames), "short run")
    timings = measure(predictor, candidates=candidates_for(predictor))
    cache[key] = {str(b): round(ms, 3) for b, ms in timings.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cache)
    except OSError:
        pass  # a read-only cache folder only costs the next run the measuring time
    return BatchChoice(best_batch(timings), "measured", timings)


def candidates_for(predictor: Predictor) -> tuple[int, ...]:
    """The batch sizes worth measuring: up to 4 for a model on OpenVINO or ONNX Runtime on a CPU,
    which gain little past it (yolov8n at 320 on OpenVINO bf16: 6.3 ms a frame at 4, 6.1 at 8) while
    memory grows with the batch (the measurement at 8 alone raised a first run's peak RSS by ~110 MB
    at 640)."""
    if getattr(predictor, "runtime", None) is not None and predictor.device.type == "cpu":
        return tuple(b for b in CANDIDATES if b <= 4)
    return CANDIDATES


def mixed_sizes(predictor: Predictor, image_sizes: Sequence[tuple[int, int]]) -> bool:
    """Whether the commonest network input size (``batch_key``) of ``image_sizes`` covers less than
    ``MIXED_SIZES`` of them, or, on a runtime that builds kernels for each input shape (OpenVINO),
    they come in more sizes than it keeps static copies for (False below 8 sizes: too few to tell)."""
    import numpy as np

    from densecnn.results import Frame

    if len(image_sizes) < 8:
        return False
    keys = Counter(
        predictor.batch_key(Frame(np.empty((h, w, 3), np.uint8), source="size", path="size"))
        for h, w in image_sizes
    )
    runtime = getattr(predictor, "runtime", None)
    if getattr(runtime, "builds_per_shape", False) and len(keys) > runtime.few_sizes:  # type: ignore[union-attr]
        return True
    return keys.most_common(1)[0][1] < MIXED_SIZES * len(image_sizes)


def best_batch(ms_per_frame: dict[int, float]) -> int:
    """The smallest batch within ``_TIE`` of the fastest per-frame time."""
    fastest = min(ms_per_frame.values())
    return min(b for b, ms in ms_per_frame.items() if ms <= fastest * (1 + _TIE))


def measure(
    predictor: Predictor, *, candidates: tuple[int, ...] = CANDIDATES, rounds: int = 3
) -> dict[int, float]:
    """CPU milliseconds per frame of ``predictor.predict`` (preprocess, forward, postprocess) on
    batches of each candidate size of a synthetic 640x480 frame: the best of ``rounds`` runs (after
    an untimed one). One size at a time, each size's compiled graph released (OpenVINO) before the
    next: measuring all four side by side raised a run's peak RSS by ~250 MB (yolov8n at 640). The
    predictor's stage timers are left as they were.

    CPU time, not wall time: in the pipeline decode and encode run beside the model, so what limits
    throughput is the CPU each frame costs, and CPU time moves much less than wall time when other
    processes load the machine. On a GPU device the wall time is used (the CPU mostly waits).
    """
    import numpy as np

    from densecnn.results import Frame
    from densecnn.tasks.base import StageTimer

    clock = time.perf_counter if predictor.device.type == "cuda" else time.process_time
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    batches = {
        size: [Frame(image=image, source="batch-measurement", path="", index=i) for i in range(size)]
        for size in candidates
    }
    timers, predictor.timers = predictor.timers, StageTimer()
    best = dict.fromkeys(candidates, float("inf"))
    runtime = getattr(predictor, "runtime", None)
    try:
        for size, frames in batches.items():
            for round_ in range(rounds + 1):
                t0 = clock()
                predictor.predict(frames)
                if round_:  # round 0: allocations and kernel choices for this shape
                    best[size] = min(best[size], (clock() - t0) * 1000 / size)
            if runtime is not None:
                runtime.forget_shapes()
    finally:
        predictor.timers = timers
    return best


def cache_key(predictor: Predictor) -> str:
    """What a measurement depends on: model and its size, input size, device, backend, precision,
    threads and the versions of torch and densecnn."""
    import torch

    spec = predictor.spec
    params = _parameters(getattr(predictor, "model", None))
    size = getattr(predictor, "imgsz", None) or getattr(getattr(predictor, "prep", None), "resize", None)
    parts: list[Any] = [
        spec.name if spec is not None else type(predictor).__name__,
        predictor.backbone or "",
        f"{params}p",
        f"imgsz={size}",
        str(predictor.device),
        getattr(predictor, "backend", "torch"),
        getattr(predictor, "precision", "fp32"),
        f"threads={torch.get_num_threads()}",
        f"torch={torch.__version__}",
        f"densecnn={_version()}",
    ]
    return "|".join(map(str, parts))


def _parameters(model: Any) -> int:
    """Parameters of a module, or of the module it wraps (Ultralytics' AutoBackend keeps its model in
    an attribute that ``parameters()`` does not see)."""
    import torch

    for candidate in (model, getattr(model, "model", None)):
        if isinstance(candidate, torch.nn.Module):
            n = sum(p.numel() for p in candidate.parameters())
            if n:
                return n
    return 0


def _version() -> str:
    try:
        return metadata.version("densecnn")
    except metadata.PackageNotFoundError:
        return "dev"


def _load(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
