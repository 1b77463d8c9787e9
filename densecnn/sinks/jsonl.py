"""``predictions.jsonl``: one JSON line per image or video frame, flushed as it goes.

Each line: ``{"source", "frame", "timestamp", "width", "height", "detections"}`` where
``detections`` is ``Detections.to_dicts()`` (boxes xyxy in original-image pixels; tracked runs add
each detection's ``track_id`` and the frame's cumulative line and zone ``counts``, see
``densecnn.track.counting``). Frames of live
sources add ``captured_at`` (when the frame was captured, Unix seconds) and ``latency_ms`` (capture to
this line written). A crash can leave a torn last line; ``read_jsonl`` drops it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from densecnn.results import Prediction
from densecnn.sinks.base import Sink


def prediction_record(prediction: Prediction) -> dict[str, Any]:
    """The JSON-ready dict written for one frame."""
    frame = prediction.frame
    return {
        "source": frame.source,
        "frame": int(frame.index),
        "timestamp": round(float(frame.timestamp), 6),
        "width": frame.width,
        "height": frame.height,
        **_live_fields(frame),
        **prediction.result.record(),
        **({"counts": prediction.tracking.counts} if prediction.tracking is not None else {}),
    }


def _live_fields(frame: Any) -> dict[str, float]:
    """Live frames: capture time (Unix s) and latency from capture to this line (ms)."""
    if frame.captured_mono is None:
        return {}
    latency = 1000 * (time.perf_counter() - frame.captured_mono)
    return {"captured_at": round(frame.captured_at or 0.0, 6), "latency_ms": round(latency, 2)}


class JsonlSink(Sink):
    """Appends one line per frame to ``path``: truncated when the sink is created, or with
    ``append=True`` kept (a resumed run), minus a torn last line an interrupted run may have left and,
    given ``keep``, minus the records ``keep(record)`` rejects (e.g. those of inputs a resumed run
    redoes, which would otherwise appear twice)."""

    def __init__(
        self, path: Path, *, append: bool = False, keep: Callable[[dict[str, Any]], bool] | None = None
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append and self.path.is_file():
            _drop_torn_tail(self.path)
            if keep is not None:
                _filter_records(self.path, keep)
        self._fh = self.path.open("ab" if append else "wb", buffering=0)

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        line = json.dumps(prediction_record(prediction), ensure_ascii=False, separators=(",", ":"))
        write_line(self._fh, (line + "\n").encode("utf-8"))

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def outputs(self) -> list[Path]:
        return [self.path]


def write_line(fh: Any, data: bytes) -> None:
    """Append ``data`` (one line) to the unbuffered binary file ``fh`` whole or not at all: when the
    disk fills up mid-line, the part written is cut off again and the ``OSError`` raised."""
    start = fh.tell()
    try:
        written = 0
        while written < len(data):
            n = fh.write(data[written:])
            if not n:
                raise OSError(28, "No space left on device", str(fh.name))
            written += n
    except OSError:
        with contextlib.suppress(OSError):
            fh.truncate(start)
        raise


def _drop_torn_tail(path: Path) -> None:
    """Cut ``path`` back to its last newline, so appended lines start on a line of their own."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _filter_records(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite ``path`` (atomically) with only the records ``keep`` accepts; untouched if it keeps all."""
    from densecnn.fsutil import atomic_open

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or keep(json.loads(line))]
    if len(kept) != len(lines):
        with atomic_open(path, "w") as fh:
            fh.writelines(kept)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a JSONL file; a last line without its newline (torn write) is dropped.

    A malformed line elsewhere raises ``ValueError`` naming the file and line number.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    lines.pop()  # after the final "\n" (empty) or a torn line without one
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    return records
