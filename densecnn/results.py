"""Prediction results as plain dataclasses of numpy arrays.

Boxes are always ``xyxy`` float32 in original-image pixels (x to the right, y down, origin at the
top-left corner of the top-left pixel). No drawing and no I/O here: sinks and ``draw`` do that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded image or video frame, as it enters the predictor.

    ``image`` is ``HxWx3`` uint8 BGR (the OpenCV convention). ``source`` is the input's path relative
    to the source root (what outputs are named after); ``index`` is the frame index in the input
    (0 for images, the decoded frame number for videos before ``--vid-stride`` is applied);
    ``timestamp`` is seconds from the stream start (``pts * time_base``), 0.0 for images.
    Live frames also carry ``captured_at``, the capture wall-clock time (Unix seconds), and
    ``captured_mono``, the same instant on ``time.perf_counter`` (for latency); None for files.
    """

    image: np.ndarray
    source: str
    path: str
    index: int = 0
    timestamp: float = 0.0
    is_video: bool = False
    captured_at: float | None = None
    captured_mono: float | None = None

    @property
    def live(self) -> bool:
        """Whether the frame came from a live source (it carries a capture stamp)."""
        return self.captured_mono is not None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


@dataclass
class Detections:
    """N detections of one image: equal-length arrays.

    boxes: ``(N, 4)`` float32 xyxy, original-image pixels. scores: ``(N,)`` float32 in [0, 1].
    class_ids: ``(N,)`` int64, the model's own class ids. names: id → class name for this model.
    track_ids: ``(N,)`` int64 track ids (keyword-only), set by a tracker (``densecnn track``) on the
    detections of its confirmed tracks; None when nothing tracked them.
    """

    boxes: np.ndarray = field(default_factory=_empty_boxes)
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    names: dict[int, str] = field(default_factory=dict)
    track_ids: np.ndarray | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        lengths = {len(self.boxes), len(self.scores), len(self.class_ids)}
        if self.track_ids is not None:
            lengths.add(len(self.track_ids))
        if len(lengths) != 1:
            tracks = f", track_ids {len(self.track_ids)}" if self.track_ids is not None else ""
            raise ValueError(
                f"Detections fields differ in length: boxes {len(self.boxes)}, "
                f"scores {len(self.scores)}, class_ids {len(self.class_ids)}{tracks}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    def filter(self, keep: np.ndarray) -> Detections:
        """A new Detections with the rows selected by a boolean mask or index array."""
        return Detections(
            self.boxes[keep], self.scores[keep], self.class_ids[keep], self.names, track_ids=self._ids(keep)
        )

    def _ids(self, keep: np.ndarray) -> np.ndarray | None:
        return self.track_ids[keep] if self.track_ids is not None else None

    def class_name(self, class_id: int) -> str:
        return self.names.get(int(class_id), str(int(class_id)))

    def labels(self) -> list[str]:
        """One class name per detection (what the run summary counts)."""
        return [self.class_name(c) for c in self.class_ids]

    def record(self) -> dict[str, Any]:
        """This result's fields of a ``predictions.jsonl`` line."""
        return {"detections": self.to_dicts()}

    def to_dicts(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per detection: class_id, class_name, score, box ``[x1, y1, x2, y2]``,
        and ``track_id`` (int) when a tracker set ``track_ids``."""
        rows = [
            {
                "class_id": int(c),
                "class_name": self.class_name(c),
                "score": round(float(s), 5),
                "box": [round(float(v), 2) for v in b],
            }
            for b, s, c in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]
        if self.track_ids is not None:
            for row, track_id in zip(rows, self.track_ids, strict=True):
                row["track_id"] = int(track_id)
        return rows


@dataclass
class Classification:
    """Top-k classes of one image, best first.

    class_ids: ``(k,)`` int64; scores: ``(k,)`` float32 probabilities (softmax over all classes).
    """

    class_ids: np.ndarray
    scores: np.ndarray
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.class_ids) != len(self.scores):
            raise ValueError(f"Classification: {len(self.class_ids)} ids but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.class_ids)

    def class_name(self, class_id: int) -> str:
        return self.names.get(int(class_id), str(int(class_id)))

    def labels(self) -> list[str]:
        """The top-1 class name (what the run summary counts)."""
        return [self.class_name(self.class_ids[0])] if len(self) else []

    def to_dicts(self) -> list[dict[str, Any]]:
        return [
            {"class_id": int(c), "class_name": self.class_name(c), "score": round(float(s), 5)}
            for c, s in zip(self.class_ids, self.scores, strict=True)
        ]

    def record(self) -> dict[str, Any]:
        return {"classes": self.to_dicts()}


IGNORE_ID = 255
"""Label value for pixels that belong to no class (where a model or dataset marks them)."""


@dataclass
class Segmentation:
    """Semantic segmentation of one image: a class id per pixel.

    label_map: ``(H, W)`` uint8 in original-image pixels (``label_map[y, x]`` is the class of input
    pixel ``(x, y)``); value = class id, ``IGNORE_ID`` (255) = no class. names: id → class name.
    """

    label_map: np.ndarray
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label_map = np.asarray(self.label_map)
        if self.label_map.ndim != 2 or self.label_map.dtype != np.uint8:
            raise ValueError(
                "Segmentation.label_map must be (H, W) uint8, "
                f"got {self.label_map.shape} {self.label_map.dtype}"
            )

    @property
    def height(self) -> int:
        return int(self.label_map.shape[0])

    @property
    def width(self) -> int:
        return int(self.label_map.shape[1])

    def class_name(self, class_id: int) -> str:
        if int(class_id) == IGNORE_ID and IGNORE_ID not in self.names:
            return "ignore"
        return self.names.get(int(class_id), str(int(class_id)))

    def fractions(self) -> dict[int, float]:
        """Class id → fraction of the image's pixels, for the classes present, by id."""
        counts = np.bincount(self.label_map.ravel(), minlength=256)
        total = max(int(self.label_map.size), 1)
        return {int(i): float(counts[i]) / total for i in np.flatnonzero(counts)}

    def labels(self) -> list[str]:
        """The names of the classes present (what the run summary counts: images per class)."""
        return [self.class_name(i) for i in self.fractions()]

    def to_dicts(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per class present: class_id, class_name, fraction of pixels."""
        return [
            {"class_id": i, "class_name": self.class_name(i), "fraction": round(f, 6)}
            for i, f in self.fractions().items()
        ]

    def record(self) -> dict[str, Any]:
        return {"segments": self.to_dicts()}


def encode_rle(mask: np.ndarray, window: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO run-length encoding of one ``(H, W)`` bool mask: ``{"size": [H, W], "counts": str}``
    (pycocotools' compressed RLE, column-major as COCO stores it; decode with
    ``pycocotools.mask.decode``). ``window`` ``(y0, y1, x0, x1)``: every set pixel lies in
    ``mask[y0:y1, x0:x1]``, so only that crop is scanned."""
    from pycocotools import mask as mask_utils

    height, width = mask.shape
    y0, y1, x0, x1 = (int(v) for v in window) if window is not None else (0, height, 0, width)
    rows = y1 - y0
    counts = [height * width]
    if rows > 0 and x1 > x0:
        # The crop's columns, each followed by one zero that stands for the height - rows zeros
        # between the crop's rows in this column and the next (none when the crop is full height).
        gap = height - rows
        stride = rows + (1 if gap else 0)
        seq = np.zeros((x1 - x0, stride), dtype=bool)
        seq[:, :rows] = mask[y0:y1, x0:x1].T
        flat = seq.ravel()
        starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # where a run begins, in seq
        if flat[0]:
            starts = np.concatenate(([0], starts))
        if flat[-1]:
            starts = np.concatenate((starts, [flat.size]))
        # back to full-mask column-major positions: each separator before t stands for gap pixels
        edges = x0 * height + y0 + starts + (starts // stride) * (gap - 1 if gap else 0)
        edges = edges[edges < height * width]  # a run that ends with the mask adds no boundary
        counts = np.diff(np.concatenate(([0], edges, [height * width]))).tolist()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def mask_windows(masks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` int64 ``(y0, y1, x0, x1)``: the tight bounds of each ``(H, W)`` mask's pixels
    (``(0, 0, 0, 0)`` for an empty one)."""
    rows, cols = masks.any(2), masks.any(1)
    windows = np.zeros((len(masks), 4), dtype=np.int64)
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        if r.any():
            windows[i] = (r.argmax(), len(r) - r[::-1].argmax(), c.argmax(), len(c) - c[::-1].argmax())
    return windows


@dataclass
class InstanceSegmentation(Detections):
    """N instances of one image: the Detections fields plus one mask per instance.

    masks: ``(N, H, W)`` bool in original-image pixels (``masks[i, y, x]``: input pixel ``(x, y)``
    belongs to instance ``i``); ``H, W`` is the image size also when ``N == 0``.
    windows: ``(N, 4)`` int ``(y0, y1, x0, x1)`` with every pixel of mask ``i`` inside
    ``masks[i, y0:y1, x0:x1]`` (keyword-only; a model that crops masks to their boxes gives the box,
    else computed when first needed): what the label map, RLE and drawing scan instead of whole frames.
    """

    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), dtype=bool))
    windows: np.ndarray | None = field(default=None, kw_only=True, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3 or len(self.masks) != len(self.boxes):
            raise ValueError(f"InstanceSegmentation: {len(self.boxes)} boxes but masks {self.masks.shape}")
        if self.windows is not None:
            self.windows = np.asarray(self.windows, dtype=np.int64).reshape(-1, 4)
            if len(self.windows) != len(self.boxes):
                raise ValueError(
                    f"InstanceSegmentation: {len(self.boxes)} boxes but {len(self.windows)} windows"
                )

    @property
    def height(self) -> int:
        return int(self.masks.shape[1])

    @property
    def width(self) -> int:
        return int(self.masks.shape[2])

    def filter(self, keep: np.ndarray) -> InstanceSegmentation:
        return InstanceSegmentation(
            self.boxes[keep],
            self.scores[keep],
            self.class_ids[keep],
            self.names,
            self.masks[keep],
            track_ids=self._ids(keep),
            windows=self.windows[keep] if self.windows is not None else None,
        )

    def mask_windows(self) -> np.ndarray:
        """:attr:`windows`, computed from the masks if the model gave none."""
        if self.windows is None:
            self.windows = mask_windows(self.masks)
        return self.windows

    def areas(self) -> list[int]:
        """Each mask's pixel count (counted inside its window)."""
        return [
            int(np.count_nonzero(mask[y0:y1, x0:x1]))
            for mask, (y0, y1, x0, x1) in zip(self.masks, self.mask_windows(), strict=True)
        ]

    @cached_property
    def top_instance(self) -> np.ndarray:
        """``(H, W)`` int32: the index of the highest-scoring instance covering each pixel, -1 where
        none does (equal scores: the later instance)."""
        top = np.full((self.height, self.width), -1, dtype=np.int32)
        windows = self.mask_windows()
        for i in np.argsort(self.scores, kind="stable"):  # best last, so it ends on top
            y0, y1, x0, x1 = windows[i]
            np.copyto(top[y0:y1, x0:x1], i, where=self.masks[i, y0:y1, x0:x1])
        return top

    @cached_property
    def label_map(self) -> np.ndarray:
        """``(H, W)`` uint8: the class id of the highest-scoring instance covering each pixel,
        ``IGNORE_ID`` (255) where no instance does."""
        classes = np.append(np.minimum(self.class_ids, IGNORE_ID - 1), IGNORE_ID).astype(np.uint8)
        return classes[self.top_instance]  # index -1 picks the appended IGNORE_ID

    def segments(self) -> list[dict[str, Any]]:
        """Per-class pixel fractions of :attr:`label_map`, as ``Segmentation.to_dicts`` (255: none)."""
        return Segmentation(self.label_map, {**self.names, IGNORE_ID: "none"}).to_dicts()

    def to_dicts(self) -> list[dict[str, Any]]:
        """The Detections dicts, each with ``mask``: its COCO RLE (see :func:`encode_rle`)."""
        rows = super().to_dicts()
        for row, rle in zip(rows, self.rles, strict=True):
            row["mask"] = rle
        return rows

    @cached_property
    def rles(self) -> list[dict[str, Any]]:
        """The COCO RLE of each mask (encoded once, for every sink that writes them)."""
        return [
            encode_rle(mask, window) for mask, window in zip(self.masks, self.mask_windows(), strict=True)
        ]

    def record(self) -> dict[str, Any]:
        return {"segments": self.segments(), "instances": self.to_dicts()}


Result = Detections | Classification | Segmentation | InstanceSegmentation


@dataclass(frozen=True)
class FrameTracking:
    """What a tracking stage adds to a frame besides the ``track_ids`` of its detections.

    counts: the source's cumulative line and zone counts after this frame (the ``counts`` of its
    predictions.jsonl line; structure in ``densecnn.track.counting``). trails: the latest anchor points
    ``(x, y)`` of each track in this frame, oldest first (the drawn trails). lines, zones: the counted
    geometry (``densecnn.track.geometry.Line`` / ``Zone``), for drawing.
    """

    counts: dict[str, Any]
    trails: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    lines: tuple[Any, ...] = ()
    zones: tuple[Any, ...] = ()


@dataclass
class Prediction:
    """What flows from the predictor to the sinks: the frame and its result, and for tracked runs
    the frame's :class:`FrameTracking`."""

    frame: Frame
    result: Result
    tracking: FrameTracking | None = None

    @property
    def detections(self) -> Detections:
        """The result, for sinks that only make sense for detections."""
        if not isinstance(self.result, Detections):
            raise TypeError(f"expected Detections, got {type(self.result).__name__}")
        return self.result
