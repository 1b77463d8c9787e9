"""The Python API: :func:`load` a predictor, :func:`predict` over a source. The CLI commands run on
the same two calls, so a script gets the CLI's defaults, outputs and error messages.

>>> import densecnn
>>> model = densecnn.load("yolov8n", device="cpu")        # doctest: +SKIP
>>> for p in densecnn.predict("video.mp4", model=model):  # doctest: +SKIP
...     print(p.frame.index, len(p.result))
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densecnn.config import (
    LiveConfig,
    OutputConfig,
    PredictConfig,
    TileConfig,
    TrackConfig,
    resolve_class_names,
)
from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.engine import PredictionRun
    from densecnn.pipeline import RunSummary
    from densecnn.results import Prediction
    from densecnn.tasks.base import Predictor

_PREDICT_FIELDS = {f.name for f in dataclasses.fields(PredictConfig)}
_OUTPUT_FIELDS = {f.name for f in dataclasses.fields(OutputConfig)} - {"project", "save"}
_LIVE_FIELDS = {f.name for f in dataclasses.fields(LiveConfig)} - {"show", "require_display"}
_NAME_FIELDS = {"num_classes", "class_names"}
_TRACK_FIELDS = {f.name for f in dataclasses.fields(TrackConfig)}  # tracker, lines, zones, anchor, trail


def load(
    model: str | None = None,
    *,
    task: str | None = None,
    weights: str | Path | None = None,
    backbone: str | None = None,
    device: str = "auto",
    half: bool | None = None,
    backend: str = "auto",
    **overrides: Any,
) -> Predictor:
    """A ready predictor, chosen exactly as the CLI chooses it.

    ``model``: a name from ``densecnn models`` (None: the task's default, or what ``weights`` holds).
    ``task``: detect, segment or classify (None: the model's or the checkpoint's, else detect).
    ``weights``: a local file (densecnn .safetensors checkpoint, Ultralytics .pt, torchvision state
    dict; or a file from ``densecnn export``: .onnx, OpenVINO .xml or its folder). ``backend``: auto,
    torch, onnxruntime or openvino (``predictor.backend`` says which one runs). ``half``: as
    ``--half`` / ``--no-half`` (None: bf16 under OpenVINO on a CPU with native bf16, else fp32;
    ``predictor.precision`` says which). ``overrides``: conf,
    iou, imgsz, classes, max_det, topk, num_classes, class_names, tile (a tile size, or a
    :class:`~densecnn.config.TileConfig`: tiled inference, see ``--tile``). Call
    ``predictor.predict(frames)`` on :class:`~densecnn.results.Frame` lists, or pass it to
    :func:`predict`. Raises :class:`~densecnn.errors.UsageError` with the CLI's messages.
    """
    from densecnn.tasks.loading import load_predictor

    unknown = set(overrides) - _PREDICT_FIELDS - _NAME_FIELDS
    if unknown:
        raise _unknown_options(unknown, _PREDICT_FIELDS | _NAME_FIELDS)
    names = _class_names(overrides)
    cfg = _predict_config(
        {
            **overrides,
            "model": model,
            "weights": weights,
            "backbone": backbone,
            "device": device,
            "half": half,
            "backend": backend,
        }
    )
    return load_predictor(cfg, task=task, class_names=names)


class Predictions(Iterator["Prediction"]):
    """What :func:`predict` returns: an iterator of :class:`~densecnn.results.Prediction` (frame +
    result, in source order), produced lazily while the pipeline runs. ``summary`` is complete once
    it is exhausted (or closed); ``run_dir`` is the run folder when outputs are saved, else None."""

    def __init__(self, run: PredictionRun) -> None:
        self._run = run
        self._stream = run.predictions()
        self._done = False

    @property
    def run_dir(self) -> Path | None:
        return self._run.run_dir

    @property
    def summary(self) -> RunSummary | None:
        return self._run.summary

    @property
    def predictor(self) -> Predictor:
        return self._run.predictor

    def __iter__(self) -> Predictions:
        return self

    def __next__(self) -> Prediction:
        try:
            return next(self._stream)
        except StopIteration:
            self._finish()
            raise
        except BaseException:
            self._done = True
            self._run.release()  # a run that broke off: its outputs so far stay, unlocked
            raise

    def close(self) -> None:
        """Stop early: what was written so far is finalized (videos closed, summary.json written)."""
        self._stream.close()
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._run.finish()


def predict(
    source: str | Path | Sequence[str | Path],
    *,
    model: str | Predictor | None = None,
    weights: str | Path | None = None,
    task: str | None = None,
    save: bool = False,
    out: str | Path | None = None,
    **options: Any,
) -> Predictions:
    """Run a model over ``source`` (image, folder, glob, list file, video, webcam index, stream URL, or
    a list of image and video paths) on the CLI's pipeline (decode, batching and encode threads,
    live-source handling).

    ``model``: a name (as :func:`load`) or a predictor from :func:`load`. With ``save`` or ``out``
    the CLI's outputs are written to ``out/name`` (default ``runs/<task>/predict``, numbered): the
    same files as ``densecnn <task>``. ``options``: the CLI's options by their Python names
    (conf, iou, imgsz, classes, batch, vid_stride, device, half, name, exist_ok, save_txt, save_masks,
    alpha, on_error, stream_mode, max_frames, ...). ``task="track"`` (or any of tracker, lines,
    zones, anchor, trail) tracks a box model's results as ``densecnn track`` does: each prediction's
    detections carry ``track_ids`` and ``p.tracking.counts`` holds the line and zone counts
    (``lines=["door=100,0,100,480"]``, ``zones=[...]`` as the CLI's values). The source is opened and
    the model loaded when this is called; predictions come as the iterator is read.
    """
    from densecnn.engine import PredictionRun
    from densecnn.tasks.base import Predictor
    from densecnn.tasks.loading import infer_task

    allowed = _PREDICT_FIELDS | _OUTPUT_FIELDS | _LIVE_FIELDS | _NAME_FIELDS | _TRACK_FIELDS
    unknown = set(options) - allowed
    if unknown:
        raise _unknown_options(unknown, allowed)
    names = _class_names(options)
    predictor = model if isinstance(model, Predictor) else None
    pcfg = _predict_config(
        {
            **{k: v for k, v in options.items() if k in _PREDICT_FIELDS},
            "model": None if predictor is not None else model,
            "weights": weights,
        }
    )
    track = None
    if task == "track" or (task is None and set(options) & _TRACK_FIELDS):
        task = "track"
        given = {k: v for k, v in options.items() if k in _TRACK_FIELDS}
        for key in ("lines", "zones"):
            if key in given:
                given[key] = _as_tuple(given[key])
        track = TrackConfig(**given)
    if predictor is not None:
        task = task or (predictor.spec.task if predictor.spec is not None else None)
    task = task or infer_task(pcfg)
    saving = save or out is not None
    ocfg = OutputConfig(
        project=Path(out) if out is not None else Path("runs") / task,
        save=True,
        **{k: v for k, v in options.items() if k in _OUTPUT_FIELDS},
    )
    lcfg = LiveConfig(**{k: v for k, v in options.items() if k in _LIVE_FIELDS})
    run = PredictionRun.open(
        task=task,
        source=source if isinstance(source, (list, tuple)) else str(source),
        pcfg=pcfg,
        ocfg=ocfg,
        lcfg=lcfg,
        save=saving,
        predictor=predictor,
        class_names=names,
        track=track,
    )
    return Predictions(run)


def _as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _predict_config(values: dict[str, Any]) -> PredictConfig:
    values = dict(values)
    if values.get("weights") is not None:
        values["weights"] = Path(values["weights"])
    if isinstance(values.get("tile"), int):  # tile=640: SAHI's other defaults
        values["tile"] = TileConfig(size=values["tile"])
    classes = values.get("classes")
    if isinstance(classes, (str, int)):
        values["classes"] = (str(classes),)
    elif classes is not None:
        values["classes"] = tuple(str(c) for c in classes)
    return PredictConfig(**{k: v for k, v in values.items() if k in _PREDICT_FIELDS})


def _class_names(options: dict[str, Any]) -> tuple[str, ...] | None:
    names: str | Sequence[str] | None = options.get("class_names")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    return resolve_class_names(options.get("num_classes"), list(names) if names else None)


def _unknown_options(unknown: set[str], allowed: set[str]) -> UsageError:
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, sorted(allowed), n=3)
    hint = f"Did you mean: {', '.join(close)}?" if close else f"Known: {', '.join(sorted(allowed))}."
    return UsageError(f"Unknown option {name!r}.", hint=hint)
