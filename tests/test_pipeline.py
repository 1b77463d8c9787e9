"""pipeline.run on real decoded frames: order, bounded read-ahead, failures, interruption.

The predictor here is a small real Predictor subclass (no model) so the tests isolate the pipeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_video

from densecnn.pipeline import run
from densecnn.results import Detections, Frame, Prediction
from densecnn.sinks.base import Sink
from densecnn.sinks.errors import ErrorsSink
from densecnn.sources import open_source
from densecnn.sources.base import InputEnd, InputFailure, InputStart, SourceEvent
from densecnn.tasks.base import Predictor


class BrightSpot(Predictor):
    """One box around the brightest pixel, class 0, score = its brightness / 255."""

    def __init__(self) -> None:
        super().__init__()
        self.names = {0: "spot"}
        self.device = torch.device("cpu")
        self.batches: list[int] = []

    def preprocess(self, frames: Sequence[Frame]) -> list[np.ndarray]:
        self.batches.append(len(frames))
        return [f.image.max(axis=2) for f in frames]

    def forward(self, batch: list[np.ndarray]) -> list[tuple[int, int, float]]:
        out = []
        for gray in batch:
            y, x = np.unravel_index(int(gray.argmax()), gray.shape)
            out.append((int(x), int(y), float(gray[y, x]) / 255))
        return out

    def postprocess(self, raw, batch, frames) -> list[Detections]:
        return [Detections([[x - 2, y - 2, x + 2, y + 2]], [s], [0], self.names) for x, y, s in raw]


class Recorder(Sink):
    """Records the calls it receives; optionally slow, to make the writer the bottleneck."""

    needs_annotated = True

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.delay = delay
        self.closed = False

    def start_input(self, event: InputStart) -> None:
        self.calls.append(("start", event.ref.source, -1))

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        assert annotated is not None and annotated.shape == prediction.frame.image.shape
        time.sleep(self.delay)
        self.calls.append(("frame", prediction.frame.source, prediction.frame.index))

    def fail_input(self, event: InputFailure) -> None:
        self.calls.append(("fail", event.ref.source, -1))

    def end_input(self, event: InputEnd) -> None:
        self.calls.append(("end", event.ref.source, event.frames))

    def close(self) -> None:
        self.closed = True


def test_order_batches_and_failures(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in/a.mp4", frames=12)
    (tmp_path / "in/b.png").write_bytes(b"broken")
    sink, predictor = Recorder(), BrightSpot()
    src = open_source(tmp_path / "in")
    errors = ErrorsSink(tmp_path / "e.jsonl")
    summary = run(events=src.events(), predictor=predictor, sinks=[sink, errors], batch=5)
    assert [c for c in sink.calls if c[0] != "frame"] == [("start", "a.mp4", -1), ("end", "a.mp4", 12),
                                                         ("start", "b.png", -1), ("fail", "b.png", -1),
                                                         ("end", "b.png", 0)]  # fmt: skip
    assert [c[2] for c in sink.calls if c[0] == "frame"] == list(range(12))
    assert predictor.batches == [5, 5, 2]
    assert (summary.frames, summary.inputs, summary.inputs_failed) == (12, 2, 1)
    assert summary.class_counts["spot"] == 12 and sink.closed
    assert "b.png" in (tmp_path / "e.jsonl").read_text() and summary.errors[0]["source"] == "b.png"


class SlowPost(BrightSpot):
    """BrightSpot whose postprocessing takes a while and records the thread it ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.post_threads: set[str] = set()

    def postprocess(self, raw, batch, frames) -> list[Detections]:
        self.post_threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return super().postprocess(raw, batch, frames)


@pytest.mark.parametrize("batch", [1, 5])
def test_overlapped_postprocessing_keeps_order_events_and_results(tmp_path: Path, batch: int) -> None:
    """With ``overlap`` each batch is postprocessed on its own thread while the next goes through the
    model: sinks and the caller see the same events, frames and results in the same order as
    without, and every frame is counted once."""
    from densecnn.pipeline import RunSummary, stream

    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in/a.mp4", frames=12)
    (tmp_path / "in/b.png").write_bytes(b"broken")
    write_video(tmp_path / "in/c.mp4", frames=3)
    outcomes = {}
    for overlap in (False, True):
        sink, predictor, summary = Recorder(), SlowPost(), RunSummary()
        src = open_source(tmp_path / "in")
        yielded = [
            (p.frame.source, p.frame.index, p.result.boxes.tolist())  # type: ignore[union-attr]
            for p in stream(
                events=src.events(), predictor=predictor, sinks=[sink], summary=summary, batch=batch,
                overlap=overlap,
            )
        ]  # fmt: skip
        outcomes[overlap] = (sink.calls, yielded, summary.frames, summary.class_counts["spot"])
        assert summary.stage_ms["postprocess"] > 0
        assert predictor.post_threads == ({"densecnn-post_0"} if overlap else {threading.main_thread().name})
    assert outcomes[True] == outcomes[False]
    assert outcomes[True][2:] == (15, 15) and len(outcomes[True][1]) == 15


def test_read_ahead_is_bounded_when_the_writer_is_slow(tmp_path: Path) -> None:
    """Memory stays flat: the reader never runs more than the queue sizes ahead of the writer."""
    src = open_source(write_video(tmp_path / "v.mp4", frames=60))
    decoded = 0
    ahead: list[int] = []
    sink = Recorder(delay=0.01)

    def counting() -> Iterator[SourceEvent]:
        nonlocal decoded
        for event in src.events():
            if isinstance(event, Frame):
                decoded += 1
                ahead.append(decoded - sum(1 for c in sink.calls if c[0] == "frame"))
            yield event

    run(events=counting(), predictor=BrightSpot(), sinks=[sink], batch=2)
    assert decoded == 60 and max(ahead) <= 4 + 8 + 2 + 2  # q_in + q_out + a batch in flight + one each side


def test_stop_event_ends_early_and_closes_sinks(tmp_path: Path) -> None:
    src = open_source(write_video(tmp_path / "v.mp4", frames=200))
    stop = threading.Event()
    sink = Recorder(delay=0.005)

    class StopAfter(BrightSpot):
        def postprocess(self, raw, batch, frames):
            if frames[0].index >= 20:
                stop.set()
            return super().postprocess(raw, batch, frames)

    summary = run(events=src.events(), predictor=StopAfter(), sinks=[sink], stop=stop)
    assert 20 < summary.frames < 200 and sink.closed


def test_sink_error_propagates_and_still_closes(tmp_path: Path) -> None:
    class Broken(Recorder):
        def write(self, prediction, annotated):
            raise OSError("disk full")

    sink = Broken()
    src = open_source(write_video(tmp_path / "v.mp4", frames=30))
    with pytest.raises(OSError, match="disk full"):
        run(events=src.events(), predictor=BrightSpot(), sinks=[sink])
    assert sink.closed
