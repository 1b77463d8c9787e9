"""Tiled (sliced) inference: a wrapper around any detect or segment predictor (``--tile SIZE``).

Each frame is cut into overlapping square tiles; the tiles of one frame go through the wrapped model
as one batch; their results are shifted back to frame pixels and merged into one result per frame.
The rules are SAHI's (``sahi.predict.get_sliced_prediction``), so that the boxes are the same on the
same weights and settings:

- **Tiles** (SAHI's ``get_slice_bboxes``): ``SIZE x SIZE`` windows stepping by ``SIZE - int(overlap
  * SIZE)`` from the top-left corner; a window that would pass the right or bottom edge is moved
  back inside, so every tile has the full size (an image smaller than ``SIZE`` is one tile).
- **Boxes** of a tile are shifted by its corner, clipped to the frame, and dropped when empty.
- **Merge** (SAHI's postprocess), per class (``class_agnostic=False``): candidates are ordered by
  score (ties broken by ``x1, y1, x2, y2``, as SAHI does) and compared with the match metric
  (``ios``: intersection over the smaller area, SAHI's default; or ``iou``) at ``threshold`` (0.5).
  ``nms`` keeps the best of each matched group. ``nmm`` is SAHI's default ``GREEDYNMM``: the best
  box absorbs the later boxes that match it (each checked again against the growing box): the box
  becomes the union, the score the maximum, instance masks the pixel union. As in SAHI, ``nmm``
  turns into ``nms`` with ``iou`` when the model's confidence threshold is below 0.1 and no merge was
  chosen (merging low-confidence boxes inflates them).
- **Full-frame pass** (``full``, SAHI's ``perform_standard_pred``): the whole frame is also
  predicted (when it makes more than one tile) and its boxes join the merge, for large objects.

Semantic label maps never merge labels: each tile's logits are resized to the tile and blended into
the frame with weights that ramp linearly from the tile's inner edges over the overlap (an edge on
the frame border keeps full weight), then the blended logits take the argmax. A pixel near a tile's
edge is decided by the neighbouring tile's interior, so tile borders leave no seams (``overlap``
must be above 0 for that).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from densecnn.config import TileConfig
from densecnn.errors import UsageError
from densecnn.results import Detections, Frame, InstanceSegmentation, Result, Segmentation
from densecnn.tasks.base import Predictor

if TYPE_CHECKING:
    from densecnn.tasks.segment.semantic import SemanticSegmenter

LOW_CONFIDENCE = 0.1
"""Below this confidence threshold an unchosen merge is ``nms`` with ``iou`` (SAHI's rule)."""


def tile_boxes(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """The tiles of a ``height x width`` frame as ``(x1, y1, x2, y2)`` pixel bounds, row by row
    (SAHI's ``get_slice_bboxes`` with ``slice_height = slice_width = size``)."""
    step_back = int(overlap * size)
    boxes: list[tuple[int, int, int, int]] = []
    y0 = y1 = 0
    while y1 < height:
        x0 = x1 = 0
        y1 = y0 + size
        while x1 < width:
            x1 = x0 + size
            if y1 > height or x1 > width:  # moved back inside (for the rest of the row too, as SAHI)
                x1, y1 = min(width, x1), min(height, y1)
                x0, y0 = max(0, x1 - size), max(0, y1 - size)
            boxes.append((x0, y0, x1, y1))
            x0 = x1 - step_back
        y0 = y1 - step_back
    return boxes


def match_matrix(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise ``ios`` (intersection over the smaller area) or ``iou`` of xyxy boxes ``a (N, 4)``
    and ``b (M, 4)`` → ``(N, M)`` float64; 0 where the denominator is 0."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    if metric == "iou":
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        denom = np.minimum(area_a[:, None], area_b[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, inter / np.where(denom > 0, denom, 1), 0.0)


def _score_order(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Best score first; equal scores by x1, then y1, x2, y2 (SAHI's tie-break, so merges agree)."""
    b = boxes.astype(np.float64)
    return np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -scores.astype(np.float64)))


@dataclass
class _Merged:
    """One kept box and the rows merged into it (indices into the candidates)."""

    keep: int
    merged: list[int]


def _nms(boxes: np.ndarray, scores: np.ndarray, metric: str, threshold: float) -> list[_Merged]:
    order = _score_order(boxes, scores)
    matrix = match_matrix(boxes, boxes, metric)
    suppressed = np.zeros(len(boxes), dtype=bool)
    kept = []
    for idx in order:
        if not suppressed[idx]:
            kept.append(_Merged(int(idx), []))
            suppressed |= matrix[idx] >= threshold
    return kept


def _greedy_nmm(boxes: np.ndarray, scores: np.ndarray, metric: str, threshold: float) -> list[_Merged]:
    order = _score_order(boxes, scores)
    matrix = match_matrix(boxes, boxes, metric)
    suppressed = np.zeros(len(boxes), dtype=bool)
    kept = []
    for i, idx in enumerate(order):
        if suppressed[idx]:
            continue
        later = order[i + 1 :]
        later = later[~suppressed[later]]
        merge = later[matrix[idx, later] >= threshold]
        suppressed[merge] = True
        kept.append(_Merged(int(idx), [int(m) for m in merge]))
    return kept


MaskPiece = tuple[np.ndarray, int, int]
"""An instance mask as a tile predicted it: ``(h, w)`` bool, and the tile's corner ``x0, y0`` in the
frame. Masks stay tile-sized until the merge, so memory holds frame-sized masks of kept instances only."""


def merge_detections(
    det: Detections,
    *,
    method: str,
    metric: str,
    threshold: float,
    pieces: Sequence[MaskPiece] | None = None,
    size: tuple[int, int] | None = None,
) -> Detections:
    """Merge the candidates of all tiles of one frame (see the module docstring), class by class.

    Instance masks merge with their boxes: those of an ``InstanceSegmentation``, or ``pieces`` (one
    per row of ``det``) painted into ``size`` ``(H, W)`` masks."""
    group = _nms if method == "nms" else _greedy_nmm
    if pieces is None and isinstance(det, InstanceSegmentation):
        pieces, size = [(m, 0, 0) for m in det.masks], (det.height, det.width)
    boxes, scores, classes, out_masks = [], [], [], []
    for cls in np.unique(det.class_ids):
        rows = np.flatnonzero(det.class_ids == cls)
        for g in group(det.boxes[rows], det.scores[rows], metric, threshold):
            keep = rows[g.keep]
            box, score, cid = det.boxes[keep].astype(np.float64), float(det.scores[keep]), int(cls)
            absorbed = [keep]
            for m in rows[g.merged]:
                # checked against the grown box, as SAHI's merge does
                if match_matrix(box[None], det.boxes[m][None], metric)[0, 0] < threshold:
                    continue
                other = det.boxes[m]
                box = np.concatenate([np.minimum(box[:2], other[:2]), np.maximum(box[2:], other[2:])])
                if not score > float(det.scores[m]):
                    cid = int(det.class_ids[m])
                score = max(score, float(det.scores[m]))
                absorbed.append(m)
            boxes.append(box)
            scores.append(score)
            classes.append(cid)
            if pieces is not None and size is not None:
                out_masks.append(_painted([pieces[k] for k in absorbed], size))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    merged = Detections(
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[order],
        np.asarray(scores, dtype=np.float32)[order],
        np.asarray(classes, dtype=np.int64)[order],
        det.names,
    )
    if pieces is None or size is None:
        return merged
    stacked = np.stack(out_masks)[order] if out_masks else np.zeros((0, *size), dtype=bool)
    return InstanceSegmentation(merged.boxes, merged.scores, merged.class_ids, det.names, stacked)


def _painted(pieces: Sequence[MaskPiece], size: tuple[int, int]) -> np.ndarray:
    """The union of tile masks placed at their tile corners, as one ``size`` bool mask."""
    mask = np.zeros(size, dtype=bool)
    for piece, x0, y0 in pieces:
        h, w = piece.shape
        mask[y0 : y0 + h, x0 : x0 + w] |= piece
    return mask


def _shifted(
    det: Detections, x0: int, y0: int, height: int, width: int
) -> tuple[Detections, list[MaskPiece]]:
    """A tile's detections in frame pixels: shifted by the tile corner, clipped to the frame, empty
    boxes dropped; and (instance models) their masks as tile pieces."""
    boxes = det.boxes.astype(np.float64) + np.array([x0, y0, x0, y0], dtype=np.float64)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    shifted = Detections(boxes[valid].astype(np.float32), det.scores[valid], det.class_ids[valid], det.names)
    masks = det.masks[valid] if isinstance(det, InstanceSegmentation) else []
    return shifted, [(m, x0, y0) for m in masks]


def _concat(parts: Sequence[Detections], names: dict[int, str]) -> Detections:
    boxes = np.concatenate([p.boxes for p in parts]) if parts else np.zeros((0, 4), np.float32)
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros((0,), np.float32)
    classes = np.concatenate([p.class_ids for p in parts]) if parts else np.zeros((0,), np.int64)
    return Detections(boxes, scores, classes, names)


def edge_weights(size_y: int, size_x: int, ramp: int, inner: tuple[bool, bool, bool, bool]) -> torch.Tensor:
    """``(size_y, size_x)`` blending weights of one tile: 1 inside, ramping down linearly to
    ``0.5 / ramp`` at each edge that lies inside the frame (``inner``: left, top, right, bottom)."""

    def ramp_1d(n: int, low: bool, high: bool) -> torch.Tensor:
        d = torch.arange(n, dtype=torch.float32)
        w = torch.ones(n)
        if low:
            w = torch.minimum(w, (d + 0.5) / ramp)
        if high:
            w = torch.minimum(w, (n - d - 0.5) / ramp)
        return w

    left, top, right, bottom = inner
    return ramp_1d(size_y, top, bottom)[:, None] * ramp_1d(size_x, left, right)[None, :]


class TiledPredictor(Predictor):
    """``inner`` run on the tiles of each frame, its results merged per frame (module docstring).

    ``names``, ``device``, ``spec``, ``weights_path``, ``backbone`` and ``instances`` are the inner
    predictor's; so are the stage timers (a frame's tiles count as that many images)."""

    def __init__(self, inner: Predictor, tile: TileConfig) -> None:
        super().__init__()
        from densecnn.tasks.segment.semantic import SemanticSegmenter

        self.inner = inner
        self.tile = tile
        self.semantic = isinstance(inner, SemanticSegmenter)
        if not self.semantic and not _detects(inner):
            raise UsageError(
                f"--tile works with detection and segmentation models, not {type(inner).__name__}."
            )
        self.names = inner.names
        self.device = inner.device
        self.spec, self.weights_path = inner.spec, inner.weights_path
        self.backbone, self.instances = inner.backbone, inner.instances
        self.timers = inner.timers
        conf = getattr(inner, "conf", None)
        if conf is None and hasattr(inner, "model") and hasattr(inner.model, "roi_heads"):
            conf = float(inner.model.roi_heads.score_thresh)  # torchvision R-CNN
        self.merge, self.metric = tile.resolved_merge(conf)

    def set_classes(self, class_ids: Sequence[int] | None) -> None:
        self.inner.set_classes(class_ids)
        self.classes = self.inner.classes

    def warmup(self, frame: Frame) -> None:
        self.inner.warmup(frame)

    def predict(self, frames: Sequence[Frame]) -> list[Result]:
        return [self._predict_frame(frame) for frame in frames]

    def _tiles(self, frame: Frame) -> tuple[list[tuple[int, int, int, int]], list[Frame]]:
        bounds = tile_boxes(frame.height, frame.width, self.tile.size, self.tile.overlap)
        tiles = [
            Frame(np.ascontiguousarray(frame.image[y0:y1, x0:x1]), frame.source, frame.path, frame.index)
            for x0, y0, x1, y1 in bounds
        ]
        return bounds, tiles

    def _chunks(self, tiles: Sequence[Frame]) -> list[Sequence[Frame]]:
        step = self.tile.batch or len(tiles)
        return [tiles[i : i + step] for i in range(0, len(tiles), step)]

    def _run_inner(self, tiles: Sequence[Frame]) -> list[Result]:
        return [r for chunk in self._chunks(tiles) for r in self.inner.predict(chunk)]

    def _predict_frame(self, frame: Frame) -> Result:
        if self.semantic:
            return self._segment_frame(frame)
        bounds, tiles = self._tiles(frame)
        size = (frame.height, frame.width)
        shifted = [
            _shifted(r, x0, y0, *size)  # type: ignore[arg-type]
            for r, (x0, y0, _, _) in zip(self._run_inner(tiles), bounds, strict=True)
        ]
        if self.tile.full and len(tiles) > 1:  # its own batch: a different size letterboxes differently
            shifted.append(_shifted(self.inner.predict([frame])[0], 0, 0, *size))  # type: ignore[arg-type]
        t0 = time.perf_counter()
        merged = merge_detections(
            _concat([d for d, _ in shifted], self.names),
            method=self.merge,
            metric=self.metric,
            threshold=self.tile.threshold,
            pieces=[p for _, ps in shifted for p in ps] if self.instances else None,
            size=size,
        )
        self.timers.add("postprocess", time.perf_counter() - t0, 0)
        return merged

    def _segment_frame(self, frame: Frame) -> Segmentation:
        """Blend the tiles' logits (and the full frame's, with ``full``) and take the argmax."""
        inner: SemanticSegmenter = self.inner  # type: ignore[assignment]
        bounds, tiles = self._tiles(frame)
        ramp = max(1, int(self.tile.overlap * self.tile.size))
        height, width = frame.height, frame.width
        acc = torch.zeros((len(self.names), height, width), dtype=torch.float32)
        total = torch.zeros((height, width), dtype=torch.float32)
        logits = [t for chunk in self._chunks(tiles) for t in self._logits(inner, chunk)]
        t0 = time.perf_counter()
        for (x0, y0, x1, y1), tile_logits in zip(bounds, logits, strict=True):
            weight = edge_weights(y1 - y0, x1 - x0, ramp, (x0 > 0, y0 > 0, x1 < width, y1 < height))
            acc[:, y0:y1, x0:x1] += tile_logits * weight
            total[y0:y1, x0:x1] += weight
        if self.tile.full and len(tiles) > 1:
            acc += self._logits(inner, [frame])[0]
            total += 1.0
        labels = (acc / total).argmax(0).to(torch.uint8).numpy()
        self.timers.add("postprocess", time.perf_counter() - t0, 1)
        return Segmentation(labels, self.names)

    def _logits(self, inner: SemanticSegmenter, tiles: Sequence[Frame]) -> list[torch.Tensor]:
        """Float32 CPU logits ``(C, h, w)`` of each tile at the tile's own size (bilinear)."""
        with torch.inference_mode():
            t0 = time.perf_counter()
            batch = inner.preprocess(tiles)
            inner._sync()
            t1 = time.perf_counter()
            raw = inner.forward(batch)
            inner._sync()
            t2 = time.perf_counter()
            out = [
                F.interpolate(
                    r.float().unsqueeze(0), size=(t.height, t.width), mode="bilinear", align_corners=False
                )[0].cpu()
                for r, t in zip(raw, tiles, strict=True)
            ]
        self.timers.add("preprocess", t1 - t0, len(tiles))
        self.timers.add("inference", t2 - t1, len(tiles))
        return out


def _detects(predictor: Predictor) -> bool:
    """Whether ``predictor`` returns boxes (detectors, instance segmenters), judged by its class."""
    from densecnn.tasks.detect.rcnn import TorchvisionDetector
    from densecnn.tasks.detect.yolo import YoloDetector

    return isinstance(predictor, (YoloDetector, TorchvisionDetector))
