"""YOLO txt labels under ``root/labels/``: ``class xc yc w h [conf] [track_id]`` normalized to [0, 1]
(``track_id``: tracked runs, last, as Ultralytics writes it).

Images → ``labels/<rel path stem>.txt``, written even when empty (the image was processed).
Video frames → ``labels/<rel path stem>_<frame index>.txt``, only for frames with detections.
Boxes are clipped to the frame first; boxes empty after clipping are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from densecnn.fsutil import atomic_write_bytes, output_path
from densecnn.results import Detections, Prediction
from densecnn.sinks.base import Sink


def yolo_lines(detections: Detections, *, width: int, height: int, save_conf: bool = False) -> list[str]:
    """One ``class xc yc w h [conf] [track_id]`` line per non-empty clipped box, 6 decimals,
    normalized by size."""
    lines = []
    scale = np.array([width, height, width, height], dtype=np.float64)
    ids = detections.track_ids
    for i, (box, score, cid) in enumerate(
        zip(detections.boxes, detections.scores, detections.class_ids, strict=True)
    ):
        x1, y1, x2, y2 = np.clip(box.astype(np.float64), 0, scale) / scale
        if not (x2 > x1 and y2 > y1):
            continue
        values = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        if save_conf:
            values.append(float(score))
        track = [str(int(ids[i]))] if ids is not None else []
        lines.append(" ".join([str(int(cid)), *(f"{v:.6f}" for v in values), *track]))
    return lines


class LabelsSink(Sink):
    """Writes one YOLO label file per image (and per video frame with detections), atomically."""

    def __init__(self, root: Path, *, save_conf: bool = False) -> None:
        self.root = Path(root)
        self.save_conf = save_conf
        self._count = 0

    @property
    def labels_dir(self) -> Path:
        return self.root / "labels"

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame, dets = prediction.frame, prediction.detections
        if frame.is_video and len(dets) == 0:
            return
        lines = yolo_lines(dets, width=frame.width, height=frame.height, save_conf=self.save_conf)
        if frame.is_video and not lines:
            return
        tag = f"_{frame.index}" if frame.is_video else ""
        path = output_path(self.labels_dir, frame.source, suffix=".txt", tag=tag)
        atomic_write_bytes(path, "".join(f"{line}\n" for line in lines).encode())
        self._count += 1

    def outputs(self) -> list[Path]:
        return [self.labels_dir] if self._count else []
