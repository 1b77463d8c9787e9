"""``stream()`` / ``run()``: the one place that owns threads, queues, progress, stage timers, cleanup.

Three stages overlap, joined by bounded queues (so memory stays flat on long videos):

    reader thread: decode ─► q_in ─► main thread: batch, predict ─► q_out ─► writer thread: draw, sinks

Source events (input start/failure/end) travel through the same queues as frames, so every sink
sees one ordered stream. ``stream()`` runs the predict loop on the caller's thread and yields each
prediction as the model makes it (``densecnn.predict`` is this generator); ``run()`` drains it.
Ctrl-C (or ``stop``) ends the reader; what is already decoded is finished, every sink is closed
(videos finalized) and the summary still comes back.

``stream_mode="all"`` makes ``q_in`` a bounded queue (every frame, back-pressure on the reader);
``"latest"`` makes it a ``LatestQueue`` that keeps only the newest frame of each source, so the
model always works on the freshest frame of a live stream (drops are counted). Frames that carry a
capture stamp (``captured_mono``, live sources) get their capture-to-written latency measured.

``stages`` (e.g. ``densecnn.track.TrackingStage``) sit between the predictor and the writer: on the
predict thread, they see every source event and every prediction in source order, and may replace
the prediction (a tracker adds ids and counts) before anyone else sees it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from densecnn.config import OnError, StreamMode
from densecnn.draw import draw_result, draw_tracking
from densecnn.latest import LatestQueue, RunLimits, latency_stats
from densecnn.results import Frame, Prediction
from densecnn.sinks.base import Sink
from densecnn.sinks.errors import failure_record
from densecnn.sources.base import InputEnd, InputFailure, InputStart, SourceEvent
from densecnn.tasks.base import Predictor, StageTimer

STAGES = ("decode", "preprocess", "inference", "postprocess", "draw", "encode")


@dataclass(frozen=True)
class ThreadPlan:
    """Where a run's CPU goes, on ``cores`` cores: ``torch`` intra-op threads for the model on the
    main thread; the reader thread decodes (FFmpeg's own threads, ``AUTO``), the writer thread draws
    and encodes (``encoder`` libx264 threads, preset measured: ``densecnn.sinks.video``).

    On one or two cores the model gets every core: it is most of the work (about 35 ms a frame for
    yolov8n at 320 on this class of CPU against about 7 ms for decoding, drawing and encoding
    together), OpenMP's threads sleep when idle (``OMP_WAIT_POLICY=PASSIVE``), so the reader and
    writer take a core back whenever they have a frame, and a core reserved for them would stand
    idle most of the time. From three cores on, one core is left to them so that neither waits for
    the model's threads. A model on ONNX Runtime or OpenVINO has that runtime's own threads; torch
    then only runs pre- and postprocessing ops and gets one thread: waking a second thread for each
    small op cost more than it saved (yolov8n-seg on OpenVINO over coco128 on 2 cores: 22.7 against
    15.2 CPU seconds, 11.7 against 10.0 s). ``OMP_NUM_THREADS`` set by the user wins (``origin``
    "OMP_NUM_THREADS").
    """

    cores: int
    torch: int
    encoder: int
    origin: str = "plan"

    def to_dict(self) -> dict[str, Any]:
        return {"cores": self.cores, "torch": self.torch, "encoder": self.encoder, "origin": self.origin}


def plan_threads(cores: int | None = None, *, model_on_torch: bool = True) -> ThreadPlan:
    """The plan for this machine (``cores``: usable cores, default this process's affinity);
    ``model_on_torch``: whether torch runs the model (not ONNX Runtime / OpenVINO)."""
    import os

    from densecnn.sinks.video import encoder_threads, usable_cores

    cores = cores or usable_cores()
    user = os.environ.get("OMP_NUM_THREADS", "").strip()
    if user.isdigit() and int(user) > 0:
        return ThreadPlan(cores, int(user), encoder_threads(cores), "OMP_NUM_THREADS")
    if not model_on_torch:
        return ThreadPlan(cores, 1, encoder_threads(cores))
    return ThreadPlan(cores, cores if cores <= 2 else cores - 1, encoder_threads(cores))


def apply_thread_plan(plan: ThreadPlan) -> int:
    """Set torch's intra-op threads to the plan's; returns the count before (to restore)."""
    import torch

    before = torch.get_num_threads()
    if plan.torch != before:
        torch.set_num_threads(plan.torch)
    return before


class _Done:
    """End-of-stream marker; carries the exception that ended a stage early, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


@dataclass
class RunSummary:
    """What a run did. ``stage_ms`` is milliseconds per frame for each stage; ``class_counts``
    counts detections per class (detect) or top-1 classes (classify)."""

    inputs: int = 0
    inputs_failed: int = 0
    frames: int = 0
    class_counts: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    interrupted: bool = False
    stopped_on_error: bool = False
    # "max-frames", "duration", "user" (q / Esc), "interrupted" (Ctrl-C, SIGTERM), "caller" (API close)
    stopped_by: str | None = None
    stream_mode: StreamMode = "all"
    dropped: int = 0
    reconnects: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    resumed_frames: int = 0  # of ``frames``: done by an earlier run this one resumed (not in ``fps``)
    tracking: dict[str, Any] | None = None  # tracked runs: tracker, tracks and counts (TrackingStage)

    @property
    def fps(self) -> float:
        return (self.frames - self.resumed_frames) / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "inputs_failed": self.inputs_failed,
            "frames": self.frames,
            "class_counts": dict(self.class_counts.most_common()),
            "errors": len(self.errors),
            "stage_ms_per_frame": {k: round(v, 3) for k, v in self.stage_ms.items()},
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 3),
            "interrupted": self.interrupted,
            "stopped_on_error": self.stopped_on_error,
            "stopped_by": self.stopped_by,
            "stream_mode": self.stream_mode,
            "dropped_frames": self.dropped,
            "reconnects": self.reconnects,
            "latency_ms": latency_stats(self.latencies_ms),
            **(self.tracking or {}),
        }


class Stage(Protocol):
    """Per-source state between the predictor and the sinks (see the module docstring). Called on the
    predict thread, in source order; ``finish`` once when the run ends (also when it broke off)."""

    def start_input(self, event: InputStart) -> None: ...

    def process(self, prediction: Prediction) -> Prediction: ...

    def end_input(self, event: InputEnd) -> None: ...

    def finish(self, summary: RunSummary) -> None: ...


class Progress:
    """What the pipeline reports to a progress display (the CLI passes a rich-backed one)."""

    def start(self, total: int) -> None: ...

    def advance(self, frames: int, current: str) -> None: ...

    def stop(self) -> None: ...


def _put(q: queue.Queue[Any] | LatestQueue, item: Any, stop: threading.Event) -> bool:
    """Put with back-pressure, but give up once ``stop`` is set and nobody drains ``q``."""
    while True:
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            if stop.is_set():
                return False


class _Reader(threading.Thread):
    def __init__(
        self, events: Iterator[SourceEvent], out: queue.Queue[Any] | LatestQueue, stop: threading.Event
    ) -> None:
        super().__init__(name="densecnn-reader", daemon=True)
        self.events, self.out, self.stop = events, out, stop
        self.timers = StageTimer()

    def run(self) -> None:
        error: BaseException | None = None
        try:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                event = next(self.events, None)
                if event is None:
                    break
                # live frames are decoded by their capture threads: the wait here is the stream's pace
                if isinstance(event, Frame) and not event.live:
                    self.timers.add("decode", time.perf_counter() - t0)
                if not _put(self.out, event, self.stop):
                    break
        except BaseException as exc:  # handed to the main thread, which re-raises it
            error = exc
        finally:
            close = getattr(self.events, "close", None)
            if close is not None:
                close()
            _put(self.out, _Done(error), threading.Event())


class SinkFeed:
    """Hands an ordered stream of predictions and input events to every sink (drawing each annotated
    frame once, only when a sink needs it) and counts them in ``summary``. The writer thread of
    :func:`stream` feeds the sinks through one; so does each worker of the Ray engine."""

    def __init__(
        self,
        sinks: list[Sink],
        summary: RunSummary,
        progress: Progress | None = None,
        draw: Callable[[Any, Any], Any] = draw_result,
    ) -> None:
        self.sinks, self.summary, self.draw_fn = sinks, summary, draw
        self.progress = progress or Progress()
        self.draw = any(s.needs_annotated for s in sinks)
        self.timers = StageTimer()

    def handle(self, item: Prediction | SourceEvent) -> None:
        if isinstance(item, Prediction):
            t0 = time.perf_counter()
            annotated = self.draw_fn(item.frame.image, item.result) if self.draw else None
            if annotated is not None and item.tracking is not None:
                annotated = draw_tracking(annotated, item.tracking)
            t1 = time.perf_counter()
            for sink in self.sinks:
                sink.write(item, annotated)
            t2 = time.perf_counter()
            self.timers.add("draw", t1 - t0)
            self.timers.add("encode", t2 - t1)
            captured = item.frame.captured_mono
            if captured is not None:  # live frames: capture to every output written
                self.summary.latencies_ms.append(1000 * (time.perf_counter() - captured))
            self.summary.frames += 1
            self.summary.class_counts.update(item.result.labels())
            self.progress.advance(1, item.frame.source)
        elif isinstance(item, InputStart):
            self.summary.inputs += 1
            for sink in self.sinks:
                sink.start_input(item)
        elif isinstance(item, InputFailure):
            self.summary.inputs_failed += 1
            self.summary.errors.append(failure_record(item))
            for sink in self.sinks:
                sink.fail_input(item)
        elif isinstance(item, InputEnd):
            for sink in self.sinks:
                sink.end_input(item)
            if item.ref.kind == "image" and item.frames == 0:
                self.progress.advance(1, item.ref.source)  # a failed image still counts on the bar


class _Writer(threading.Thread):
    def __init__(
        self,
        inbox: queue.Queue[Any],
        sinks: list[Sink],
        summary: RunSummary,
        progress: Progress,
        draw: Callable[[Any, Any], Any] = draw_result,
    ) -> None:
        super().__init__(name="densecnn-writer", daemon=True)
        self.inbox = inbox
        self.feed = SinkFeed(sinks, summary, progress, draw)
        self.timers = self.feed.timers
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                item = self.inbox.get()
                if isinstance(item, _Done):
                    return
                self.feed.handle(item)
        except BaseException as exc:
            self.error = exc
            # keep draining so the producer never blocks on a full queue
            while not isinstance(self.inbox.get(), _Done):
                pass


def run(**kwargs: Any) -> RunSummary:
    """Run :func:`stream` to its end and return its summary (same arguments but ``summary``)."""
    summary = RunSummary()
    for _ in stream(summary=summary, **kwargs):
        pass
    return summary


def stream(
    *,
    events: Iterator[SourceEvent],
    predictor: Predictor,
    sinks: list[Sink],
    summary: RunSummary,
    batch: int = 1,
    on_error: OnError = "skip",
    progress: Progress | None = None,
    total_frames: int = 0,
    stop: threading.Event | None = None,
    draw: Callable[[Any, Any], Any] = draw_result,
    stream_mode: StreamMode = "all",
    max_frames: int = 0,
    duration: float = 0.0,
    ui: Callable[[], None] | None = None,
    stages: Sequence[Stage] = (),
    overlap: bool = False,
) -> Iterator[Prediction]:
    """Decode ``events``, predict in batches of ``batch`` frames, feed every sink in order, and yield
    each prediction once the model made it (its outputs follow on the writer thread; all are written
    when the generator ends). ``summary`` is filled in as the run goes and complete at the end.

    With ``on_error="fail"`` the first failed input stops the run (what was written stays). A
    KeyboardInterrupt (raised while the generator runs, or thrown into it) ends the run with
    ``summary.interrupted``; closing the generator early ends it with ``stopped_by="caller"``. Sinks
    are always closed. ``draw(image, result)`` makes the annotated frame (default: ``draw_result``).
    ``stream_mode`` is explained in the module docstring; ``max_frames`` and ``duration`` (seconds)
    end the run once that many frames went to the model or that much time passed (0: no limit).
    ``ui()`` is called on the calling (main) thread while it waits for frames and after each batch:
    GUI toolkits (OpenCV's window, ``--show``) only work from the main thread. ``stages`` process each
    prediction before it is yielded or written (module docstring); their ``finish`` fills ``summary``.
    ``overlap`` (file sources): each batch's postprocessing runs on a thread of its own while the
    next batch is preprocessed and goes through the model (predictions come one batch later; live
    sources keep the lowest latency without it).
    """
    stop = stop or threading.Event()
    progress = progress or Progress()
    summary.stream_mode = stream_mode
    q_in: queue.Queue[Any] | LatestQueue = (
        LatestQueue() if stream_mode == "latest" else queue.Queue(maxsize=max(4, 2 * batch))
    )
    q_out: queue.Queue[Any] = queue.Queue(maxsize=max(8, 2 * batch))
    reader = _Reader(events, q_in, stop)
    writer = _Writer(q_out, sinks, summary, progress, draw)
    t_start = time.perf_counter()
    progress.start(total_frames)
    reader.start()
    writer.start()
    failure: BaseException | None = None
    closed_by_caller = False
    limits = RunLimits(max_frames, duration, t_start)
    # --duration also ends a run whose streams deliver nothing (stalled, reconnecting)
    timer = threading.Timer(duration, limits.time_up, args=(stop,)) if duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        inbox = _Inbox(q_in, ui)
        yield from _predict_loop(
            inbox, q_out, predictor, batch, on_error, stop, summary, writer, limits, tuple(stages), overlap
        )
    except GeneratorExit:
        closed_by_caller = True
        stop.set()
    except KeyboardInterrupt:
        summary.interrupted = True
        stop.set()
    except BaseException as exc:
        failure = exc
        stop.set()
    finally:
        if timer is not None:
            timer.cancel()
        _put(q_out, _Done(), threading.Event())
        writer.join()
        stop.set()
        _drain(q_in, reader)
        closing_error = _close_all(sinks)
        progress.stop()
        summary.wall_s = time.perf_counter() - t_start
        summary.stopped_by = limits.stopped_by or (
            "caller" if closed_by_caller else "interrupted" if summary.interrupted else None
        )
        if isinstance(q_in, LatestQueue):
            summary.dropped += q_in.dropped
        for stage in stages:
            stage.finish(summary)
    timers = StageTimer()
    for t in (reader.timers, predictor.timers, writer.timers, *(getattr(s, "timers", None) for s in stages)):
        if t is not None:
            timers.merge(t)
    frames = max(summary.frames, 1)
    names = STAGES + tuple(s for s in timers.seconds if s not in STAGES)  # a stage's own, e.g. "track"
    summary.stage_ms = {s: 1000 * timers.seconds.get(s, 0.0) / frames for s in names}
    for err in (failure, writer.error, closing_error):
        if err is not None:
            raise err


class _Inbox:
    """``q_in`` as the predict loop reads it: ``get`` keeps calling ``ui`` (if any) while it waits."""

    def __init__(self, q: queue.Queue[Any] | LatestQueue, ui: Callable[[], None] | None) -> None:
        self.q, self.ui = q, ui

    def get(self) -> Any:
        if self.ui is None:
            return self.q.get()
        while True:
            self.ui()
            try:
                return self.q.get(timeout=0.02)
            except queue.Empty:
                continue

    def empty(self) -> bool:
        return self.q.empty()


def _predict_loop(
    q_in: _Inbox,
    q_out: queue.Queue[Any],
    predictor: Predictor,
    batch: int,
    on_error: OnError,
    stop: threading.Event,
    summary: RunSummary,
    writer: _Writer,
    limits: RunLimits,
    stages: tuple[Stage, ...],
    overlap: bool = False,
) -> Iterator[Prediction]:
    pending: list[Any] = []  # events and frames in source order, predicted together
    n_frames = 0
    failed: InputFailure | None = None  # with on_error="fail": the input that stopped the run
    post = _PostThread() if overlap else None
    try:
        while True:
            item = q_in.get()
            if isinstance(item, _Done):
                yield from _flush(pending, predictor, q_out, stages, post)
                if post is not None:
                    yield from _emit(post.take(), q_out, stages)
                if item.error is not None:
                    raise item.error
                return
            if writer.error is not None:
                raise writer.error
            if failed is not None:
                # already read ahead: drop it, except the end of the failed input (sinks close it)
                if isinstance(item, InputEnd) and item.ref == failed.ref:
                    pending.append(item)
                continue
            if isinstance(item, Frame) and limits.reached(stop):
                continue  # past --max-frames / --duration: the reader is stopping; only events go on
            pending.append(item)
            if isinstance(item, Frame):
                n_frames += 1
            if isinstance(item, InputFailure) and on_error == "fail":
                summary.stopped_on_error = True
                failed = item
                stop.set()
            if n_frames >= batch or (isinstance(item, InputEnd) and q_in.empty()):
                yield from _flush(pending, predictor, q_out, stages, post)
                pending, n_frames = [], 0
    finally:
        if post is not None:
            post.close()


def predict_events(pending: list[Any], predictor: Predictor, batch: int = 0) -> list[Any]:
    """``pending`` (source events and frames, in order) with its frames predicted in forward passes
    of ``batch`` frames (0: all in one) and replaced by their :class:`Prediction`: what a
    :class:`SinkFeed` takes, in the same order."""
    frames = [x for x in pending if isinstance(x, Frame)]
    step = batch or len(frames) or 1
    results = iter([r for i in range(0, len(frames), step) for r in predictor.predict(frames[i : i + step])])
    return [Prediction(x, next(results)) if isinstance(x, Frame) else x for x in pending]


def _deferred_events(pending: list[Any], predictor: Predictor) -> Callable[[], list[Any]]:
    """:func:`predict_events` in two halves: preprocessing and the forward pass now, the returned
    function postprocesses (``Predictor.predict_deferred``)."""
    frames = [x for x in pending if isinstance(x, Frame)]
    finish = predictor.predict_deferred(frames) if frames else list

    def events() -> list[Any]:
        results = iter(finish())
        return [Prediction(x, next(results)) if isinstance(x, Frame) else x for x in pending]

    return events


class _PostThread:
    """One batch's postprocessing at a time, on its own thread, while the predict thread goes on."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="densecnn-post")
        self._running: Future[list[Any]] | None = None

    def swap(self, work: Callable[[], list[Any]]) -> list[Any]:
        """Start ``work``; return what the one started before it gave (waiting for it), if any."""
        before = self.take()
        self._running = self._pool.submit(work)
        return before

    def take(self) -> list[Any]:
        """What the running work gives (waiting for it); [] when none runs."""
        running, self._running = self._running, None
        return running.result() if running is not None else []

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _flush(
    pending: list[Any],
    predictor: Predictor,
    q_out: queue.Queue[Any],
    stages: tuple[Stage, ...],
    post: _PostThread | None = None,
) -> Iterator[Prediction]:
    if post is None:
        items = predict_events(pending, predictor)
    else:  # this batch through the model, then the one before it out of the postprocessing thread
        items = post.swap(_deferred_events(pending, predictor))
    yield from _emit(items, q_out, stages)


def _emit(items: list[Any], q_out: queue.Queue[Any], stages: tuple[Stage, ...]) -> Iterator[Prediction]:
    """Predictions and events, in order, through the stages to the writer; then the predictions to
    the caller."""
    done: list[Prediction] = []
    for item in items:
        for stage in stages:
            if isinstance(item, Prediction):
                item = stage.process(item)
            elif isinstance(item, InputStart):
                stage.start_input(item)
            elif isinstance(item, InputEnd):
                stage.end_input(item)
        _put(q_out, item, threading.Event())  # the writer always drains: never drop here
        if isinstance(item, Prediction):
            done.append(item)
    yield from done  # after the whole batch went to the writer: a caller's pause holds up no sink


def _drain(q_in: queue.Queue[Any] | LatestQueue, reader: _Reader) -> None:
    """Empty ``q_in`` until the reader has put its end marker, so it can exit."""
    while reader.is_alive() or not q_in.empty():
        try:
            q_in.get(timeout=0.1)
        except queue.Empty:
            continue
    reader.join()


def _close_all(sinks: list[Sink]) -> BaseException | None:
    first: BaseException | None = None
    for closeable in sinks:
        try:
            closeable.close()
        except BaseException as exc:
            first = first or exc
    return first
