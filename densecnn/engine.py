"""One prediction run, as the CLI commands and ``densecnn.predict`` both do it: open the source, get
the predictor, make the run folder and the task's sinks, stream predictions through the pipeline,
write summary.json.

:class:`PredictionRun` owns no UI: the CLI adds a progress bar, the header and the table around it.
Torch loads with the predictor, not with this module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.batching import BatchChoice
    from densecnn.config import LiveConfig, OutputConfig, PredictConfig, TrackConfig
    from densecnn.pipeline import Progress, RunSummary, Stage, ThreadPlan
    from densecnn.results import Prediction
    from densecnn.resume import ResumedPart
    from densecnn.sinks.base import Sink
    from densecnn.sinks.display import DisplaySink
    from densecnn.tasks.base import Predictor


@dataclass
class PredictionRun:
    """A run ready to go: iterate it for the predictions (lazily), then :meth:`finish`.

    ``run_dir`` is None when nothing is saved (``densecnn.predict`` without ``save``/``out``).
    ``skipped`` counts inputs an earlier run already finished (``--resume``).
    """

    task: str
    source: str  # as given, or "N paths" for a list (what summary.json records)
    live: bool
    mode: str
    src: Any
    predictor: Predictor
    pcfg: PredictConfig
    ocfg: OutputConfig
    lcfg: LiveConfig
    run_dir: Path | None
    sinks: list[Sink]
    display: DisplaySink | None = None
    skipped: int = 0
    resuming: bool = False
    resumed: ResumedPart | None = None  # what the earlier run of a resumed one had finished
    stop: threading.Event = field(default_factory=threading.Event)
    summary: RunSummary | None = None
    engine: dict[str, Any] | None = None  # summary.json's "engine" when not the local one (--engine ray)
    stages: list[Stage] = field(default_factory=list)  # between predictor and sinks (a tracker)
    tasks: dict[str, PredictConfig] | None = None  # densecnn run: each task's settings
    batch: BatchChoice | None = None  # set by ``open``
    threads: ThreadPlan | None = None  # set by ``open``
    input_sizes: tuple[tuple[int, int], ...] = ()  # set by ``open``: see ``_restrict_input_sizes``
    _torch_threads_before: int = 0

    @classmethod
    def open(
        cls,
        *,
        task: str,
        source: str | Sequence[str | Path],
        pcfg: PredictConfig,
        ocfg: OutputConfig,
        lcfg: LiveConfig,
        save: bool = True,
        show: bool = False,
        predictor: Predictor | None = None,
        class_names: tuple[str, ...] | None = None,
        track: TrackConfig | None = None,
        tasks: dict[str, PredictConfig] | None = None,
    ) -> PredictionRun:
        """Open ``source`` (before the model loads, so a missing source fails fast), get the
        predictor (``predictor`` as given, else ``densecnn.load``'s), then make the run folder and
        sinks when ``save``. ``show`` adds the ``--show`` window. Task ``track`` (with ``track``, its
        settings) runs a detection or instance segmentation model through a ``TrackingStage``.

        Task ``run`` runs the models of ``tasks`` (task → its PredictConfig; ``pcfg`` holds the
        shared batch and stride) over one decode (``densecnn.multitask``); with ``track``, the detect
        task (or an instance segment task) is tracked. ``class_names``: the segment task's."""
        from densecnn import outputs
        from densecnn.fsutil import claim_run_dir, ensure_writable_dir
        from densecnn.sources import open_source
        from densecnn.sources.stream import is_live, open_live
        from densecnn.tasks.loading import check_model_name, load_predictor

        tracking = task == "track"
        if tracking and track is None:
            raise UsageError("task 'track' needs its TrackConfig (track=...).")
        multi = task == "run"
        if multi and not tasks:
            raise UsageError("densecnn run needs at least one task: --detect, --segment or --classify.")
        for name, cfg in (tasks or {task: pcfg}).items():  # before the source opens and torch loads
            check_model_name(cfg.model, None if tracking else name)
        if save:
            ensure_writable_dir(ocfg.project)  # one line, exit 2, before any model loads
        live = isinstance(source, str) and is_live(source)
        is_done = outputs.done_check(task, ocfg)
        if live and is_done is not None:
            raise UsageError("--resume continues file runs; a live source has nothing to resume.")
        exclude = [ocfg.project] if save else []
        src: Any = (
            open_live(source, lcfg)  # type: ignore[arg-type]
            if live
            else open_source(source, vid_stride=pcfg.vid_stride, exclude=exclude, on_corrupt=ocfg.on_corrupt)
        )
        stages: list[Stage] = []
        tracked_task: str | None = None
        if multi:
            predictor, tracked_task = _multi_predictor(tasks or {}, class_names, track, stages)
        elif predictor is None:
            predictor = load_predictor(pcfg, task=None if tracking else task, class_names=class_names)
        if tracking:
            from densecnn.track.stage import TrackingStage, check_trackable

            check_trackable(predictor)
            stages.append(TrackingStage(track))  # type: ignore[arg-type]
        if not live and predictor.device.type == "cuda":  # decode where the model runs: NVDEC
            src.hwaccel = f"cuda:{predictor.device.index or 0}"
        run_dir = None
        sinks: list[Sink] = []
        skipped = 0
        resumed: ResumedPart | None = None
        if save:
            run_dir = claim_run_dir(ocfg.project, ocfg.name, exist_ok=ocfg.exist_ok or ocfg.resume)
            if is_done is not None:
                todo = [ref for ref in src.inputs if not is_done(run_dir, ref)]
                skipped, src.inputs = len(src.inputs) - len(todo), todo
            if multi:
                from densecnn.multitask import make_sinks

                sinks = make_sinks(run_dir, ocfg, tasks or {}, predictor, tracked=tracked_task)  # type: ignore[arg-type]
            else:
                sinks = outputs.make_sinks(task, run_dir, ocfg, pcfg, predictor)
            if is_done is not None:  # the earlier run's finished inputs count in this summary too
                from densecnn.resume import ResumedPart

                resumed = ResumedPart.read(run_dir / "predictions.jsonl", inputs=skipped)
        run = cls(
            task=task,
            source=source if isinstance(source, str) else src.spec,
            live=live,
            mode=lcfg.mode_for(live),
            src=src,
            predictor=predictor,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=lcfg,
            run_dir=run_dir,
            sinks=sinks,
            skipped=skipped,
            resuming=is_done is not None,
            resumed=resumed,
            stages=stages,
            tasks=tasks if multi else None,
        )
        if show:
            from densecnn.sinks.display import DisplaySink

            run.display = DisplaySink(on_quit=run.stop.set)  # q / Esc ends the run cleanly
            run.sinks.append(run.display)
        if live:  # pay lazy initialisation before the streams open, not on their first frames
            _warm_up(predictor)
        from densecnn.pipeline import apply_thread_plan, plan_threads

        run.threads = plan_threads(model_on_torch=_model_on_torch(predictor))
        run._torch_threads_before = apply_thread_plan(run.threads)  # before the batch size is measured
        sizes = _sample_sizes(run)
        run.batch = _batch_for(run, sizes)
        run.input_sizes = _restrict_input_sizes(run, sizes)
        return run

    @property
    def model_label(self) -> str:
        if hasattr(self.predictor, "predictors"):  # densecnn run: every task's model
            return str(self.predictor.label)
        name = self.predictor.spec.name if self.predictor.spec else type(self.predictor).__name__
        backbone = self.predictor.backbone
        label = f"{name} ({backbone} backbone)" if backbone else name
        tile = getattr(self.predictor, "tile", None)
        return f"{label}, {tile.size} px tiles" if tile is not None else label

    def predictions(self, progress: Progress | None = None) -> Iterator[Prediction]:
        """Stream the run: predictions in source order, as the model makes them. ``self.summary`` is
        filled in as it goes; live counts and a window quit are added when the stream ends."""
        from densecnn import outputs
        from densecnn.pipeline import RunSummary, stream

        self.summary = RunSummary()
        draw = outputs.drawer(self.task, self.ocfg)
        yield from stream(
            events=self.src.events(self.stop),
            predictor=self.predictor,
            sinks=self.sinks,
            summary=self.summary,
            batch=self.batch.size if self.batch is not None else self.pcfg.batch or 1,
            on_error=self.ocfg.on_error,
            progress=progress,
            total_frames=self.src.estimated_frames(),
            stop=self.stop,
            stream_mode=self.mode,  # type: ignore[arg-type]
            max_frames=self.lcfg.max_frames,
            duration=self.lcfg.duration,
            ui=self.display.pump if self.display is not None else None,
            stages=self.stages,
            # live or shown in a window: each frame's result as soon as it exists
            overlap=not self.live and self.display is None,
            **({"draw": draw} if draw is not None else {}),
        )
        self._add_live_counts()

    def __iter__(self) -> Iterator[Prediction]:
        return self.predictions()

    def _add_live_counts(self) -> None:
        """Reconnects and capture-side drops of live sources; a quit from the window."""
        assert self.summary is not None
        if self.resumed is not None:
            self.resumed.add_to(self.summary)
        if self.live:
            self.summary.reconnects += self.src.reconnects
            self.summary.dropped += self.src.dropped
            self._report_silent_streams()
        if self.display is not None and self.display.quit and self.summary.stopped_by in (None, "caller"):
            self.summary.stopped_by = "user"

    def _report_silent_streams(self) -> None:
        """A live stream that delivered no frame and has no error yet (the run ended while it was
        still connecting) becomes a failed input in the summary and errors.jsonl (exit 1)."""
        import json

        from densecnn.redact import redact_obj

        assert self.summary is not None
        reported = {str(e.get("source")) for e in self.summary.errors}
        for spec, opened in self.src.silent():
            if spec.name in reported:
                continue
            if not opened:  # its InputStart never reached the pipeline: count the input here
                self.summary.inputs += 1
            error = f"no frame from {spec.shown} before the run ended (still connecting?)"
            record = redact_obj({"source": spec.name, "path": spec.name, "error": error})
            self.summary.errors.append(record)
            self.summary.inputs_failed += 1
            if self.run_dir is not None:
                with (self.run_dir / "errors.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")

    def summary_record(self) -> dict[str, Any]:
        """What summary.json holds."""
        from densecnn import outputs

        assert self.summary is not None
        if self.tasks is not None:  # densecnn run: each task's model, weights and classes
            predictors = self.predictor.predictors  # type: ignore[attr-defined]
            models = {"tasks": {t: _model_fields(p, self.tasks[t]) for t, p in predictors.items()}}
        else:
            models = _model_fields(self.predictor, self.pcfg)
        return {
            "command": self.task,
            "source": self.source,
            **{k: v for k, v in models.items() if k != "classes"},
            "device": str((self.engine or {}).get("device") or self.predictor.device),  # Ray: the workers'
            "backend": self.predictor.backend,
            "precision": self.predictor.precision,
            **outputs.summary_fields(self.task, self.ocfg, self.pcfg),
            **({"batch": self.batch.size, "batch_from": self.batch.origin} if self.batch else {}),
            **({"threads": self.threads.to_dict()} if self.threads else {}),
            **({"input_sizes": [list(size) for size in self.input_sizes]} if self.input_sizes else {}),
            **({"skipped_done": self.skipped} if self.resuming else {}),
            **({"classes": models["classes"]} if "classes" in models else {}),
            **self.summary.to_dict(),
            "display": {
                "requested": self.lcfg.show,
                "shown_frames": self.display.shown if self.display else 0,
            },
            **({"engine": self.engine} if self.engine is not None else {}),
        }

    def finish(self) -> None:
        """Write summary.json (when saving), with no URL password in it, and report.html; unlock the run
        folder."""
        from densecnn.fsutil import atomic_write_json
        from densecnn.redact import redact_obj

        if self.run_dir is None:
            self._restore_threads()
            return
        try:
            if self.summary is not None:
                atomic_write_json(self.run_dir / "summary.json", redact_obj(self.summary_record()))
                _write_report(self.run_dir)
        finally:
            self.release()

    def release(self) -> None:
        """Unlock the run folder without writing summary.json (a run that broke off)."""
        from densecnn.fsutil import release_run_dir

        self._restore_threads()
        if self.run_dir is not None:
            release_run_dir(self.run_dir)

    def _restore_threads(self) -> None:
        """An API caller's torch thread count, and their model's own input sizes, are theirs again once
        the run is over."""
        if self.input_sizes:
            self.predictor.input_sizes = ()  # type: ignore[attr-defined]
        if self._torch_threads_before:
            import torch

            torch.set_num_threads(self._torch_threads_before)
            self._torch_threads_before = 0


def _sample_sizes(run: PredictionRun) -> list[tuple[int, int]]:
    """``(height, width)`` of a sample of a file source's photos, from their headers."""
    sample = getattr(run.src, "image_sizes", None)
    return sample() if sample is not None and not run.live else []


def _batch_for(run: PredictionRun, sizes: list[tuple[int, int]]) -> BatchChoice:
    """``--batch``, else 1 for live sources, else the measured best for this model (densecnn.batching)."""
    from densecnn.batching import choose_batch
    from densecnn.zoo.store import WeightStore

    frames = 0 if run.live else run.src.estimated_frames()
    if run.lcfg.max_frames:
        frames = min(frames, run.lcfg.max_frames) if frames else run.lcfg.max_frames
    return choose_batch(
        run.predictor,
        requested=run.pcfg.batch,
        live=run.live,
        frames=frames,
        cache_dir=WeightStore().root,
        image_sizes=sizes,
    )


def _restrict_input_sizes(run: PredictionRun, sizes: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """A folder of photos of many sizes on a runtime that builds kernels per input shape (OpenVINO:
    ~75 ms and memory for each of coco128's 20 letterbox sizes): a YOLO model runs at the folder's
    two commonest sizes and its full ``imgsz`` (``restrict_input_sizes``), each on a static copy of
    the graph (yolov8n-seg over coco128: half the inference time, ~300 MB less); other models run
    their many shapes on the dynamic graph. Returns the sizes (empty: not restricted)."""
    from densecnn.batching import mixed_sizes

    predictor = run.predictor
    runtime = getattr(predictor, "runtime", None)
    if not getattr(runtime, "builds_per_shape", False) or getattr(predictor, "tile", None) is not None:
        return ()
    if not mixed_sizes(predictor, sizes):
        return ()
    restrict = getattr(predictor, "restrict_input_sizes", None)
    restricted = restrict(sizes) if restrict is not None else ()
    if restricted:
        runtime.few_sizes = max(runtime.few_sizes, len(restricted))  # type: ignore[union-attr]
    else:
        runtime.many_sizes = True  # type: ignore[union-attr]  # the dynamic graph, no static copies
    return restricted


def _write_report(run_dir: Path) -> None:
    """report.html beside summary.json; a report that cannot be built costs a warning, not the run
    (its outputs are all written by then; ``densecnn report RUN_DIR`` can try again)."""
    import warnings

    from densecnn.report import write_report

    try:
        write_report(run_dir)
    except Exception as e:  # the page is a view of the outputs, never a reason to fail the run
        warnings.warn(f"{run_dir}: report.html not written ({e})", RuntimeWarning, stacklevel=2)


def _multi_predictor(
    tasks: dict[str, PredictConfig],
    class_names: tuple[str, ...] | None,
    track: TrackConfig | None,
    stages: list[Stage],
) -> tuple[Predictor, str | None]:
    """``densecnn run``'s predictor over ``tasks``, and the tracked task (its stage added to
    ``stages``) when ``track`` is given."""
    from densecnn.multitask import MultiPredictor, TaskStage
    from densecnn.tasks.loading import load_predictor

    predictors = {
        name: load_predictor(cfg, task=name, class_names=class_names if name == "segment" else None)
        for name, cfg in tasks.items()
    }
    if track is None:
        return MultiPredictor(predictors), None
    from densecnn.track.stage import TrackingStage

    if "detect" in predictors:
        tracked = "detect"
    elif "segment" in predictors and predictors["segment"].instances:
        tracked = "segment"
    else:
        raise UsageError(
            "--track needs boxes: add --detect, or give --segment an instance model (a YOLO -seg model)."
        )
    stages.append(TaskStage(tracked, TrackingStage(track)))  # type: ignore[arg-type]
    return MultiPredictor(predictors), tracked


def _model_fields(predictor: Predictor, pcfg: PredictConfig) -> dict[str, Any]:
    """summary.json's model, backbone, weights, tile (``--tile``) and classes of one predictor."""
    spec = predictor.spec
    weights = pcfg.weights or (spec.weights.file_name if spec and spec.weights else None)
    return {
        "model": spec.name if spec else None,
        "backbone": predictor.backbone,
        "weights": str(weights) if weights else None,
        **_tile_fields(predictor),
        "classes": predictor.names,
    }


def _tile_fields(predictor: Predictor) -> dict[str, Any]:
    """summary.json's ``tile``: the tiling settings with the merge actually used (``--tile``)."""
    from dataclasses import asdict

    from densecnn.tasks.tiling import TiledPredictor

    if not isinstance(predictor, TiledPredictor):
        return {}
    return {"tile": {**asdict(predictor.tile), "merge": predictor.merge, "match": predictor.metric}}


def _warm_up(predictor: Predictor) -> None:
    import numpy as np

    from densecnn.results import Frame

    predictor.warmup(Frame(np.full((480, 640, 3), 114, np.uint8), source="warmup", path="warmup"))


def _model_on_torch(predictor: Predictor) -> bool:
    """Whether torch runs (one of) the model(s): ``densecnn run`` holds one predictor per task."""
    inner = getattr(predictor, "predictors", None)
    predictors = list(inner.values()) if isinstance(inner, dict) else [predictor]
    return any(p.runtime is None for p in predictors)
