"""The tracking stage: between any box predictor and the sinks, per source, in frame order.

For each input (a video, a live stream, an image) the stage keeps one Ultralytics tracker
(``BYTETracker`` or ``BOTSORT``, the classes ``yolo track`` runs), one :class:`CrossingCounter` and
the trails. Each frame's detections go through the tracker as ``yolo track`` gives them (boxes,
scores, classes in original-image pixels); what comes back is what ``yolo track`` keeps: the
detections of **confirmed** tracks, each with its ``track_id``, its box as the tracker's Kalman
filter updated it (clipped to the frame), its score and class; an instance model's masks follow their
detection. Detections of unconfirmed tracks (and those no track took) are left out, so they have no
id and are never counted. The tracker steps once per processed frame: frames never seen (dropped in
``latest`` mode, skipped by ``--vid-stride``) are not steps.

Use it through the pipeline (``pipeline.stream(stages=[TrackingStage(...)])``, what ``densecnn
track`` does) or directly: ``start_input`` / ``process`` / ``end_input`` per source, ``summary()`` at
the end.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from densecnn.errors import UsageError
from densecnn.results import Detections, FrameTracking, InstanceSegmentation, Prediction
from densecnn.tasks.base import StageTimer
from densecnn.track.counting import CrossingCounter, add_counts, empty_counts
from densecnn.track.geometry import anchor_point

if TYPE_CHECKING:
    from densecnn.config import TrackConfig
    from densecnn.pipeline import RunSummary
    from densecnn.results import Frame
    from densecnn.sources.base import InputEnd, InputStart


def make_tracker(settings: dict[str, Any]) -> Any:
    """A fresh Ultralytics ``BYTETracker`` / ``BOTSORT`` with ``settings`` (Ultralytics' keys).

    ``lap`` is imported first: without it Ultralytics' matching module would try to pip-install it.
    """
    try:
        import lap  # noqa: F401
    except ImportError:
        raise UsageError(
            "Tracking needs the `lap` package (linear assignment), which is not installed.",
            hint="pip install lap",
        ) from None
    from densecnn.integrations.ultralytics import import_ultralytics

    import_ultralytics()
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import IterableSimpleNamespace

    cls = {"bytetrack": BYTETracker, "botsort": BOTSORT}[settings["tracker_type"]]
    return cls(args=IterableSimpleNamespace(**settings))


def run_tracker(tracker: Any, detections: Detections, image: np.ndarray) -> np.ndarray:
    """One tracker step → ``(M, 8)`` float rows ``x1, y1, x2, y2, track_id, score, class, index``
    (index: the row of ``detections`` the track matched), confirmed tracks only."""
    from ultralytics.engine.results import Boxes

    data = np.concatenate(
        [detections.boxes, detections.scores[:, None], detections.class_ids[:, None].astype(np.float32)],
        axis=1,
    )
    tracks = tracker.update(Boxes(data, image.shape[:2]), image)
    return np.asarray(tracks, dtype=np.float64).reshape(-1, 8)


class SourceTracker:
    """The tracker, counter and trails of one source."""

    def __init__(
        self, cfg: TrackConfig, settings: dict[str, Any], lines: tuple[Any, ...], zones: tuple[Any, ...]
    ):
        self.tracker = make_tracker(settings)
        self.lines, self.zones = lines, zones
        self.anchor = cfg.anchor
        self.trail_len = cfg.trail
        # a track unseen for longer than the tracker keeps lost tracks can never come back
        self.forget_after = int(settings["track_buffer"]) + 1
        self.counter = CrossingCounter(lines, zones, forget_after=self.forget_after)
        self.trails: dict[int, deque[tuple[float, float]]] = {}
        self.last_seen: dict[int, int] = {}
        self.track_classes: dict[int, str] = {}  # class of each confirmed track when first seen
        self.steps = 0

    def update(self, frame: Frame, result: Detections) -> tuple[Detections, FrameTracking]:
        """Track one frame's detections: the tracked result and the frame's tracking data."""
        self.steps += 1
        height, width = frame.image.shape[:2]
        tracks = run_tracker(self.tracker, result, frame.image)
        index = tracks[:, 7].astype(np.int64)
        boxes = tracks[:, :4].copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)  # as Ultralytics' Results.update clips them
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        fields: dict[str, Any] = {
            "boxes": boxes,
            "scores": tracks[:, 5],
            "class_ids": tracks[:, 6].astype(np.int64),
            "names": result.names,
            "track_ids": tracks[:, 4].astype(np.int64),
        }
        tracked: Detections
        if isinstance(result, InstanceSegmentation):
            windows = result.windows[index] if result.windows is not None else None
            tracked = InstanceSegmentation(**fields, masks=result.masks[index], windows=windows)
        else:
            tracked = Detections(**fields)
        objects = []
        # Counted where the object was seen: the detection's own box, not the Kalman-smoothed one,
        # which lags behind after frames the tracker never saw.
        measured = result.boxes[index]
        for box, track_id, cls in zip(measured, tracked.track_ids, tracked.labels(), strict=True):  # type: ignore[arg-type]
            point = anchor_point(box, self.anchor)
            objects.append((int(track_id), cls, point))
            self.track_classes.setdefault(int(track_id), cls)
            self.last_seen[int(track_id)] = self.steps
            if self.trail_len:
                self.trails.setdefault(int(track_id), deque(maxlen=self.trail_len)).append(point)
        self.counter.update(objects)
        self._forget()
        trails = {t: list(self.trails[t]) for t, _, _ in objects} if self.trail_len else {}
        info = FrameTracking(counts=self.counter.counts(), trails=trails, lines=self.lines, zones=self.zones)
        return tracked, info

    def _forget(self) -> None:
        for track_id in [t for t, seen in self.last_seen.items() if self.steps - seen > self.forget_after]:
            del self.last_seen[track_id]
            self.trails.pop(track_id, None)


class TrackingStage:
    """Tracks and counts every source of a run (see the module docstring).

    ``cfg``: the tracker, lines, zones, anchor and trail length; settings and geometry are read once.
    """

    def __init__(self, cfg: TrackConfig) -> None:
        self.cfg = cfg
        self.settings = cfg.settings()
        self.lines, self.zones = cfg.geometry()
        self._open: dict[str, SourceTracker] = {}
        self._final: dict[str, dict[str, Any]] = {}  # counts of each finished source
        self._tracks: dict[str, Counter[str]] = {}  # tracks per class, per source
        self.timers = StageTimer()  # "track": the pipeline adds it to the run's ms per frame

    def start_input(self, event: InputStart) -> None:
        self._open.pop(event.ref.source, None)  # a new input starts with new ids

    def process(self, prediction: Prediction) -> Prediction:
        """The prediction with its detections tracked and its :class:`FrameTracking` set."""
        result = prediction.result
        if not isinstance(result, Detections):
            raise TypeError(f"tracking needs boxes, got {type(result).__name__}")
        source = prediction.frame.source
        state = self._open.get(source)
        if state is None:
            state = self._open[source] = SourceTracker(self.cfg, self.settings, self.lines, self.zones)
        t0 = time.perf_counter()
        tracked, info = state.update(prediction.frame, result)
        self.timers.add("track", time.perf_counter() - t0)
        self._final[source] = info.counts
        self._tracks[source] = Counter(state.track_classes.values())
        return replace(prediction, result=tracked, tracking=info)

    def end_input(self, event: InputEnd) -> None:
        self._open.pop(event.ref.source, None)

    def summary(self) -> dict[str, Any]:
        """summary.json's tracking fields: ``tracker`` (its settings), ``tracks`` (confirmed tracks,
        total and per class), ``counts`` (totals over every source; ``inside``: at each source's last
        frame) and, for runs of more than one source, ``counts_by_source``."""
        total = empty_counts(self.lines, self.zones)
        for counts in self._final.values():
            add_counts(total, counts)
        per_class: Counter[str] = Counter()
        for classes in self._tracks.values():
            per_class.update(classes)
        fields: dict[str, Any] = {
            "tracker": self.settings,
            "tracks": {"total": sum(per_class.values()), "per_class": dict(sorted(per_class.items()))},
            "counts": total,
        }
        if len(self._final) > 1:
            fields["counts_by_source"] = dict(self._final)
        return fields

    def finish(self, summary: RunSummary) -> None:
        """Put :meth:`summary` into the run's summary (the pipeline calls this when the run ends)."""
        summary.tracking = self.summary()


def check_trackable(predictor: Any) -> None:
    """Tracking needs boxes: a detector, or an instance segmentation model (UsageError otherwise)."""
    spec = getattr(predictor, "spec", None)
    task = spec.task if spec is not None else getattr(predictor, "task", None)
    if task == "detect" or getattr(predictor, "instances", False):
        return
    name = spec.name if spec is not None else type(predictor).__name__
    raise UsageError(
        f"{name} is a {task or 'non-detection'} model: tracking needs boxes.",
        hint="Use a detection model (YOLO, Faster R-CNN) or an instance segmentation model (a YOLO -seg "
        "model); `densecnn models --task detect` lists them.",
    )
