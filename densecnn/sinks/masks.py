"""Label-map output: one single-channel uint8 PNG per image (value = class id), written atomically.

- image input ``a/b.jpg`` → ``masks/a/b.jpg.png`` (the input's relative path, whole name kept, plus
  ``.png``: ``b.jpg`` and ``b.png`` side by side never share a mask);
- video input ``a/clip.mp4`` → ``masks/a/clip.mp4/<frame:06d>.png`` (the decoded frame index), and
  ``masks/a/clip.mp4/complete.json`` once every frame of it went through every sink.

The PNG has the input's exact width and height. Each file appears whole or not at all (temp file,
fsync, rename), so a file that exists is complete: ``--resume`` relies on that. ``classes.json``
(ids → names and colours) is written once per run by :func:`write_classes_json`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densecnn.fsutil import atomic_write_bytes, atomic_write_json, output_path
from densecnn.results import InstanceSegmentation, Prediction, Segmentation
from densecnn.sinks.base import Sink
from densecnn.sources.base import InputEnd, InputFailure

MASKS_DIR = "masks"
VIDEO_DONE = "complete.json"


def mask_path(root: Path, source: str, *, frame: int | None = None) -> Path:
    """Where the label map of input ``source`` goes (``frame`` set: that frame of a video)."""
    kept = output_path(Path(root) / MASKS_DIR, source)  # the whole name, extension included
    if frame is None:
        return kept.with_name(f"{kept.name}.png")
    return kept / f"{frame:06d}.png"


def video_done_path(root: Path, source: str) -> Path:
    """The marker saying video ``source`` was segmented to its end (see :class:`CompletionSink`)."""
    return output_path(Path(root) / MASKS_DIR, source) / VIDEO_DONE


def is_complete(root: Path, source: str, *, video: bool, overlay: bool = False) -> bool:
    """Whether an earlier run finished input ``source``: every output it should have exists.

    A video: its marker (written after all of its frames went through every sink). An image: its
    mask and, with ``overlay``, its annotated image (written after the mask: a run killed between
    the two left the image unfinished). Each of these files is written atomically.
    """
    if video:
        return video_done_path(root, source).is_file()
    if not mask_path(root, source).is_file():
        return False
    if not overlay:
        return True
    drawn = output_path(Path(root), source)
    return drawn.is_file() or drawn.with_suffix(".png").is_file()  # ImageSink's .png fallback


def encode_mask(label_map: np.ndarray) -> bytes:
    """``(H, W)`` uint8 → PNG bytes (single channel, lossless)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(label_map, dtype=np.uint8))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {label_map.shape} label map as PNG")
    return buf.tobytes()


def write_classes_json(path: Path, names: dict[int, str], *, instances: bool = False) -> None:
    """``{"classes": [{"id", "name", "color": [r, g, b]}...], "ignore_id": 255, "label_map": ...}`` —
    the overlay colours and what mask values mean. Instance models have no background class (COCO
    id 0 is "person"): their label maps hold the class of the best-scoring instance at each pixel and
    255 where there is none."""
    from densecnn.draw import color_for, segmentation_palette

    palette = {i: color_for(i) for i in names} if instances else segmentation_palette(names)
    classes = [
        {"id": int(i), "name": name, "color": list(palette[i][::-1])} for i, name in sorted(names.items())
    ]
    meaning = (
        "value = class id of the highest-scoring instance covering the pixel; 255 = no instance"
        if instances
        else "value = class id; 255 = no class (ignore)"
    )
    atomic_write_json(path, {"classes": classes, "ignore_id": 255, "label_map": meaning})


class MaskSink(Sink):
    """Writes the label map of every segmented image and video frame under ``root/masks``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._count = 0

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame, result = prediction.frame, prediction.result
        if not isinstance(result, Segmentation | InstanceSegmentation):
            raise TypeError(f"MaskSink needs segmentation results, got {type(result).__name__}")
        path = mask_path(self.root, frame.source, frame=frame.index if frame.is_video else None)
        atomic_write_bytes(path, encode_mask(result.label_map))
        self._count += 1

    def outputs(self) -> list[Path]:
        return [self.root / MASKS_DIR] if self._count else []


class CompletionSink(Sink):
    """Writes ``masks/<video>/complete.json`` (``{"source", "frames"}``) when a video input ends with
    no failure. Listed after every other sink, so the marker comes after all of that video's outputs:
    a resumed run skips the videos that have it and redoes the others."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._failed: set[str] = set()

    def fail_input(self, event: InputFailure) -> None:
        self._failed.add(event.ref.source)

    def end_input(self, event: InputEnd) -> None:
        source = event.ref.source
        if event.ref.kind == "video" and event.frames > 0 and source not in self._failed:
            atomic_write_json(video_done_path(self.root, source), {"source": source, "frames": event.frames})
