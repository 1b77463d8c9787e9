"""What report.html shows, read from the run folder's own files only (predictions.jsonl,
summary.json, errors.jsonl and the annotated media beside them), so a run folder copied from another
machine gets the same report.

Detections are packed as short arrays (``[class, score, x1, y1, x2, y2, track_id]``, class as an
index into ``classes``, -1 for no track) to keep the page small for long videos and big folders.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from densecnn.fsutil import output_path
from densecnn.sinks.jsonl import read_jsonl
from densecnn.sources.base import IMAGE_SUFFIXES


@dataclass
class VideoPart:
    """One video (or stream) input: its frames in order and the annotated video, if saved."""

    source: str
    video: str | None  # path relative to the run folder
    frames: list[dict[str, Any]] = field(default_factory=list)  # {"f", "t", "d", "counts"?}


@dataclass
class RunData:
    run_dir: Path
    summary: dict[str, Any]
    errors: list[dict[str, Any]]
    kind: str  # what a frame holds: "detections", "instances", "segments" or "classes"
    classes: list[str] = field(default_factory=list)
    videos: list[VideoPart] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # {"s", "src", "overlay", "w", "h", "d"}
    tracked: bool = False
    has_counts: bool = False

    def class_index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            self.classes.append(name)
            return len(self.classes) - 1


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _kind(rows: list[dict[str, Any]]) -> str:
    for key in ("instances", "detections", "classes", "segments"):
        if any(key in row for row in rows[:50]):
            return key
    return "detections"


def _pack(data: RunData, row: dict[str, Any], *, masks: bool) -> list[list[Any]]:
    """The frame's items as short arrays: detections/instances ``[c, score, x1, y1, x2, y2, track,
    rle?]``, classes ``[c, score]``, segments ``[c, fraction]``."""
    items = row.get(data.kind) or []
    packed: list[list[Any]] = []
    for item in items:
        cls = data.class_index(str(item.get("class_name", item.get("class_id", "?"))))
        if data.kind in ("detections", "instances"):
            x1, y1, x2, y2 = (round(float(v), 1) for v in item.get("box", (0, 0, 0, 0)))
            track = item.get("track_id")
            if track is not None:
                data.tracked = True
            entry = [
                cls,
                float(item.get("score", 0.0)),
                x1,
                y1,
                x2,
                y2,
                -1 if track is None else int(track),
            ]
            if masks and isinstance(item.get("mask"), dict):
                entry.append(item["mask"])
            packed.append(entry)
        else:
            value = item.get("score", item.get("fraction", 0.0))
            packed.append([cls, float(value)])
    return packed


def _relative(path: Path, run_dir: Path) -> str:
    return Path(os.path.relpath(path, run_dir)).as_posix()


def _annotated_image(run_dir: Path, source: str) -> Path | None:
    """The annotated image ImageSink wrote for ``source`` (same path, or .png where the format could
    not be written in colour)."""
    target = output_path(run_dir, source)
    for candidate in (target, target.with_suffix(".png")):
        if candidate.is_file():
            return candidate
    return None


def _original_image(summary: dict[str, Any], source: str) -> Path | None:
    """The input image itself, when the recorded source (a folder or a file) is still where it was."""
    given = summary.get("source")
    if not isinstance(given, str) or not given:
        return None
    root = Path(given)
    for candidate in (root / source, root):
        if candidate.is_file() and (candidate.name == Path(source).name):
            return candidate.resolve()
    return None


def read_run(run_dir: Path) -> RunData:
    """Everything the report shows, from ``run_dir``'s files (missing files mean empty sections)."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    jsonl = run_dir / "predictions.jsonl"
    rows = read_jsonl(jsonl) if jsonl.is_file() else []
    errors_path = run_dir / "errors.jsonl"
    errors = read_jsonl(errors_path) if errors_path.is_file() else []
    data = RunData(run_dir=run_dir, summary=summary, errors=errors, kind=_kind(rows))
    for name in summary.get("class_counts", {}) or {}:
        data.class_index(str(name))
    videos: dict[str, VideoPart] = {}
    for row in rows:
        source = str(row.get("source", ""))
        if PurePosixPath(source).suffix.lower() not in IMAGE_SUFFIXES:  # a video file or a stream
            part = videos.get(source)
            if part is None:
                video = _video_file(run_dir, source)
                part = videos[source] = VideoPart(source, _relative(video, run_dir) if video else None)
            frame: dict[str, Any] = {
                "f": int(row.get("frame", len(part.frames))),
                "t": float(row.get("timestamp", 0.0)),
                "d": _pack(data, row, masks=False),
            }
            if isinstance(row.get("counts"), dict):
                frame["counts"] = row["counts"]
                data.has_counts = True
            part.frames.append(frame)
        else:
            data.images.append(_image_entry(data, row, source))
    data.videos = list(videos.values())
    if isinstance(summary.get("counts"), dict):
        data.has_counts = True
    return data


def _video_file(run_dir: Path, source: str) -> Path | None:
    path = output_path(run_dir, source, suffix=".mp4")
    return path if path.is_file() else None


def _image_entry(data: RunData, row: dict[str, Any], source: str) -> dict[str, Any]:
    """A grid entry: the annotated image when the run saved one (boxes already drawn), else the input
    image with the boxes and masks drawn over it by the page."""
    annotated = _annotated_image(data.run_dir, source)
    original = None if annotated else _original_image(data.summary, source)
    shown = annotated or original
    return {
        "s": source,
        "src": _relative(shown, data.run_dir) if shown else None,
        "overlay": annotated is None,
        "w": int(row.get("width", 0)),
        "h": int(row.get("height", 0)),
        "d": _pack(data, row, masks=annotated is None),
    }


def class_totals(data: RunData) -> Counter[str]:
    """Items per class over the whole run (for the filter menu, most frequent first)."""
    totals: Counter[str] = Counter()
    for part in data.videos:
        for frame in part.frames:
            totals.update(data.classes[item[0]] for item in frame["d"])
    for image in data.images:
        totals.update(data.classes[item[0]] for item in image["d"])
    return totals
