"""Held-out figures of the embedded models, computed through densecnn's own predictors.

Detection: recall / precision at IoU 0.5 (default conf) on the held-out Penn-Fudan images, boxes
from the instance masks. Segmentation: person IoU, mean IoU (background, person) and pixel accuracy
on the same images. Used by tools/build_models.py (the model card figures) and tests/test_embedded.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from densecnn.results import Frame


def gt_boxes(mask: np.ndarray) -> np.ndarray:
    """xyxy pixel boxes ``(N, 4)`` of each instance id (1..N) of a Penn-Fudan mask."""
    boxes = []
    for ident in np.unique(mask):
        if ident:
            ys, xs = np.nonzero(mask == ident)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def match(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou: float = 0.5) -> int:
    """True positives: predictions (highest score first) matched one-to-one to ``gt`` at ``iou``."""
    if not len(pred) or not len(gt):
        return 0
    ious = box_iou(torch.from_numpy(pred[np.argsort(-scores)]), torch.from_numpy(gt)).numpy()
    used = np.zeros(len(gt), bool)
    tp = 0
    for row in ious:
        row = np.where(used, -1.0, row)
        j = int(row.argmax())
        if row[j] >= iou:
            used[j] = True
            tp += 1
    return tp


def _frame(path: Path) -> Frame:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return Frame(image=image, source=path.name, path=str(path))


def detection_recall(
    data: Path, stems: Iterable[str], *, model: str = "person-yolov8n", weights: Path | None = None
) -> dict[str, float]:
    """Recall / precision at IoU 0.5 on Penn-Fudan ``stems`` (``weights``, if given, instead of ``model``)."""

    import densecnn

    predictor = densecnn.load(None if weights else model, task="detect", weights=weights)
    tp = n_gt = n_pred = 0
    for stem in stems:
        frame = _frame(data / "pennfudan" / "images" / f"{stem}.png")
        det = predictor.predict([frame])[0]
        mask = cv2.imread(str(data / "pennfudan" / "masks" / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        gt = gt_boxes(mask)
        keep = det.class_ids == 0
        tp += match(det.boxes[keep].astype(np.float32), det.scores[keep], gt)
        n_gt, n_pred = n_gt + len(gt), n_pred + int(keep.sum())
    return {"recall50": tp / max(n_gt, 1), "precision50": tp / max(n_pred, 1), "gt": n_gt, "pred": n_pred}


def segmentation_iou(
    data: Path, stems: Iterable[str], *, model: str = "person-unet", weights: Path | None = None
) -> dict[str, float]:
    """Person IoU, mIoU (background + person) and pixel accuracy on Penn-Fudan ``stems``."""

    import densecnn

    predictor = densecnn.load(None if weights else model, task="segment", weights=weights)
    inter, union = np.zeros(2), np.zeros(2)
    correct = total = 0
    for stem in stems:
        frame = _frame(data / "pennfudan" / "images" / f"{stem}.png")
        pred = predictor.predict([frame])[0].label_map
        gt = cv2.imread(str(data / "pennfudan" / "masks" / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED) > 0
        for c, (p, g) in enumerate(((pred == 0, ~gt), (pred == 1, gt))):
            inter[c] += np.logical_and(p, g).sum()
            union[c] += np.logical_or(p, g).sum()
        correct += int(((pred == 1) == gt).sum())
        total += gt.size
    iou = inter / np.maximum(union, 1)
    return {"person_iou": float(iou[1]), "miou": float(iou.mean()), "pixel_acc": correct / total}


def read_predictions(jsonl: Path, class_name: str = "person") -> dict[str, int]:
    """``densecnn detect``'s predictions.jsonl → detections of ``class_name`` per source (frames summed)."""
    counts: dict[str, int] = {}
    for line in jsonl.read_text().splitlines():
        row = json.loads(line)
        found = sum(d["class_name"] == class_name for d in row["detections"])
        counts[row["source"]] = counts.get(row["source"], 0) + found
    return counts
