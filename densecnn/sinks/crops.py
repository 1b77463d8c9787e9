"""Per-detection crops of the ORIGINAL frame (not the annotated one), as JPEG.

``root/crops/<class name>/<rel path stem>[_<frame>]_<k>.jpg`` where ``k`` is the detection's index in
its frame and ``_<frame>`` is present for video frames. The crop covers the box's pixels
(``floor(x1):ceil(x2)``, ``floor(y1):ceil(y2)``) clipped to the image; empty crops are skipped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np

from densecnn.fsutil import atomic_write_bytes, output_path
from densecnn.results import Prediction
from densecnn.sinks.base import Sink

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


def safe_dirname(name: str) -> str:
    """A class name usable as one folder name on any OS (separators and reserved characters → ``_``)."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    return cleaned or "_"


def crop_slices(box: np.ndarray, *, width: int, height: int) -> tuple[slice, slice] | None:
    """``(rows, cols)`` slices of the pixels covered by xyxy ``box``, clipped; None when empty."""
    if not np.all(np.isfinite(box)):
        return None
    x1 = max(math.floor(float(box[0])), 0)
    y1 = max(math.floor(float(box[1])), 0)
    x2 = min(math.ceil(float(box[2])), width)
    y2 = min(math.ceil(float(box[3])), height)
    if x2 <= x1 or y2 <= y1:
        return None
    return slice(y1, y2), slice(x1, x2)


class CropsSink(Sink):
    """Writes one JPEG per detection, cut from ``prediction.frame.image``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._count = 0

    @property
    def crops_dir(self) -> Path:
        return self.root / "crops"

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame, dets = prediction.frame, prediction.detections
        frame_tag = f"_{frame.index}" if frame.is_video else ""
        for k, (box, cid) in enumerate(zip(dets.boxes, dets.class_ids, strict=True)):
            slices = crop_slices(box, width=frame.width, height=frame.height)
            if slices is None:
                continue
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame.image[slices]))
            if not ok:
                raise RuntimeError(f"OpenCV could not encode a crop of {frame.source} as JPEG")
            folder = self.crops_dir / safe_dirname(dets.class_name(int(cid)))
            path = output_path(folder, frame.source, suffix=".jpg", tag=f"{frame_tag}_{k}")
            atomic_write_bytes(path, buf.tobytes())
            self._count += 1

    def outputs(self) -> list[Path]:
        return [self.crops_dir] if self._count else []
