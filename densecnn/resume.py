"""What a resumed run adds to its summary: the inputs an earlier run finished.

``--resume`` skips finished inputs and keeps their rows in predictions.jsonl; :class:`ResumedPart`
reads those rows back so summary.json (frames, per-class counts, inputs) describes the whole run,
not only the part redone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def record_labels(row: dict[str, Any]) -> list[str]:
    """The class names a run summary counts for one predictions.jsonl row (as ``Result.labels()``):
    one per detection or instance, the classes present in a label map, the top-1 class."""
    for key in ("instances", "detections", "segments"):
        if key in row:
            return [str(d.get("class_name")) for d in row[key]]
    classes = row.get("classes") or []
    return [str(classes[0].get("class_name"))] if classes else []


@dataclass
class ResumedPart:
    """Frames and class counts of the rows an earlier run left for its finished inputs."""

    inputs: int = 0
    frames: int = 0
    class_counts: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, jsonl: Path, *, inputs: int) -> ResumedPart:
        from densecnn.sinks.jsonl import read_jsonl

        part = cls(inputs=inputs)
        if Path(jsonl).is_file():
            for row in read_jsonl(jsonl):
                part.frames += 1
                part.class_counts.update(record_labels(row))
        return part

    def add_to(self, summary: Any) -> None:
        """Count the earlier run's finished inputs in ``summary`` (a ``RunSummary``)."""
        summary.inputs += self.inputs
        summary.frames += self.frames
        summary.resumed_frames += self.frames
        summary.class_counts.update(self.class_counts)
