"""Label-map output: one single-channel uint8 PNG per image (value = class id), written atomically.

- image input ``a/b.jpg`` → ``masks/a/b.png`` (the input's relative path, suffix replaced by ``.png``);
- video input ``a/clip.mp4`` → ``masks/a/clip/<frame:06d>.png`` (the decoded frame index).

The PNG has the input's exact width and height. Each file appears whole or not at all (temp file,
fsync, rename), so a file that exists is complete: ``--resume`` relies on that. ``classes.json``
(ids → names and colours) is written once per run by :func:`write_classes_json`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densecnn.fsutil import atomic_write_bytes, atomic_write_json, output_path
from densecnn.results import Prediction, Segmentation
from densecnn.sinks.base import Sink

MASKS_DIR = "masks"


def mask_path(root: Path, source: str, *, frame: int | None = None) -> Path:
    """Where the label map of input ``source`` goes (``frame`` set: that frame of a video)."""
    masks = Path(root) / MASKS_DIR
    if frame is None:
        return output_path(masks, source, suffix=".png")
    return output_path(masks, source, suffix="") / f"{frame:06d}.png"


def encode_mask(label_map: np.ndarray) -> bytes:
    """``(H, W)`` uint8 → PNG bytes (single channel, lossless)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(label_map, dtype=np.uint8))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {label_map.shape} label map as PNG")
    return buf.tobytes()


def write_classes_json(path: Path, names: dict[int, str]) -> None:
    """``{"classes": [{"id", "name", "color": [r, g, b]}...], "ignore_id": 255}`` — the overlay colours."""
    from densecnn.draw import segmentation_palette

    palette = segmentation_palette(names)
    classes = [
        {"id": int(i), "name": name, "color": list(palette[i][::-1])} for i, name in sorted(names.items())
    ]
    atomic_write_json(path, {"classes": classes, "ignore_id": 255})


class MaskSink(Sink):
    """Writes the label map of every segmented image and video frame under ``root/masks``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._count = 0

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame, result = prediction.frame, prediction.result
        if not isinstance(result, Segmentation):
            raise TypeError(f"MaskSink needs Segmentation results, got {type(result).__name__}")
        path = mask_path(self.root, frame.source, frame=frame.index if frame.is_video else None)
        atomic_write_bytes(path, encode_mask(result.label_map))
        self._count += 1

    def outputs(self) -> list[Path]:
        return [self.root / MASKS_DIR] if self._count else []
