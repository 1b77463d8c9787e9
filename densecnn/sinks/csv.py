"""``predictions.csv``: one row per image or video frame with its top-k classes, flushed as it goes.

Columns: ``source, frame, timestamp``, then ``class_id_1, class_name_1, score_1`` ... up to
``score_k`` (rank 1 is the most likely class). A result with fewer than ``k`` classes leaves the
remaining cells empty. Like the JSONL, each row is written whole and flushed, so a crash leaves at most
one torn last line.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from densecnn.results import Classification, Prediction
from densecnn.sinks.base import Sink


def csv_header(topk: int) -> list[str]:
    """The column names for ``topk`` ranks."""
    ranked = [
        f"{field}_{rank}" for rank in range(1, topk + 1) for field in ("class_id", "class_name", "score")
    ]
    return ["source", "frame", "timestamp", *ranked]


class CsvSink(Sink):
    """Writes the top ``topk`` classes of every classified frame to ``path`` (truncated on creation)."""

    def __init__(self, path: Path, *, topk: int) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.path = Path(path)
        self.topk = topk
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(csv_header(topk))
        self._fh.flush()

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        result = prediction.result
        if not isinstance(result, Classification):
            raise TypeError(f"CsvSink writes classifications, got {type(result).__name__}")
        frame = prediction.frame
        self._row([frame.source, int(frame.index), round(float(frame.timestamp), 6)], result.to_dicts())

    def add_record(self, record: dict[str, Any]) -> None:
        """The row of one predictions.jsonl record (an earlier run's, on resume)."""
        head: list[object] = [record["source"], int(record["frame"]), record["timestamp"]]
        self._row(head, record.get("classes", []))

    def _row(self, row: list[object], classes: list[dict[str, Any]]) -> None:
        for entry in classes[: self.topk]:
            row += [entry["class_id"], entry["class_name"], entry["score"]]
        row += [""] * (len(csv_header(self.topk)) - len(row))
        self._writer.writerow(row)
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def outputs(self) -> list[Path]:
        return [self.path]


DETECTION_COLUMNS = (
    "source", "frame", "timestamp", "track_id", "class_id", "class_name", "score", "x1", "y1", "x2", "y2",
)  # fmt: skip


class DetectionsCsvSink(Sink):
    """``predictions.csv`` of detections: one row per detection (frames without any have no row),
    columns :data:`DETECTION_COLUMNS`; ``track_id`` is empty for a detection no tracker confirmed.
    Boxes are xyxy in original-image pixels, 2 decimals, as in predictions.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(DETECTION_COLUMNS)
        self._fh.flush()

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame = prediction.frame
        head = [frame.source, int(frame.index), round(float(frame.timestamp), 6)]
        for row in prediction.detections.to_dicts():
            self._writer.writerow(
                [
                    *head,
                    row.get("track_id", ""),
                    row["class_id"],
                    row["class_name"],
                    row["score"],
                    *row["box"],
                ]
            )
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def outputs(self) -> list[Path]:
        return [self.path]
