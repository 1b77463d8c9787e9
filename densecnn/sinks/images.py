"""Annotated image output: same relative path and extension as the input, under the run folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densecnn.fsutil import atomic_write_bytes, output_path
from densecnn.results import Prediction
from densecnn.sinks.base import Sink

# Extensions OpenCV can write as 3-channel colour (.pbm/.pgm are grey-only: they become .png).
_COLOR_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".jp2"})


def encode_image(image: np.ndarray, suffix: str) -> tuple[bytes, str]:
    """Encode ``HxWx3`` uint8 BGR in memory as ``suffix`` → ``(bytes, suffix used)``.

    Falls back to ``.png`` where OpenCV cannot write that format in colour (or the encoder fails).
    """
    if suffix.lower() in _COLOR_SUFFIXES and cv2.haveImageWriter(f"x{suffix.lower()}"):
        try:
            ok, buf = cv2.imencode(suffix.lower(), image)
        except cv2.error:
            ok = False
        if ok:
            return buf.tobytes(), suffix
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as PNG")
    return buf.tobytes(), ".png"


class ImageSink(Sink):
    """Writes the annotated image of every image input (video frames are ignored) atomically."""

    needs_annotated = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._written: list[Path] = []

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame = prediction.frame
        if frame.is_video:
            return
        image = annotated if annotated is not None else frame.image
        target = output_path(self.root, frame.source)
        data, suffix = encode_image(image, target.suffix)
        if suffix != target.suffix:
            target = target.with_suffix(suffix)
        atomic_write_bytes(target, data)
        self._written.append(target)

    def outputs(self) -> list[Path]:
        return list(self._written)
