"""Held-out figures of the embedded models, computed through densecnn's own predictors.

Held-out sets (embedded_data's seeded splits): Penn-Fudan (boxes from the instance masks),
coco-person (COCO boxes; polygons for the photos that have them) and COCO128 photos without people.
Detection: recall / precision at IoU 0.5 (default conf), person boxes per image. Segmentation: person
IoU, mean IoU (background, person), pixel accuracy and the share of pixels called person. Used by
tools/build_models.py (the model card figures) and tests/test_embedded.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from densecnn.results import Frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
import embedded_data


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


# The held-out sets (never trained on by `make models`), as (image, ground truth) pairs.
HELD_OUT = ("pennfudan", "coco-person", "no-person")


def held_out_boxes(data: Path, name: str) -> list[tuple[Path, np.ndarray]]:
    """``(image, person boxes (N, 4) xyxy pixels)`` of held-out set ``name`` (see :data:`HELD_OUT`)."""
    if name == "pennfudan":
        pf = data / "pennfudan"
        return [
            (pf / "images" / f"{s}.png", gt_boxes(_read_mask(pf / "masks" / f"{s}_mask.png")))
            for s in embedded_data.pennfudan_split(data).test
        ]
    if name == "coco-person":
        folder = data / "coco-person"
        out = []
        for stem in embedded_data.coco_split(data).test:
            image = folder / "images" / f"{stem}.jpg"
            h, w = cv2.imread(str(image)).shape[:2]
            cxcywh = np.asarray(
                embedded_data.coco_person_boxes(folder / "labels" / f"{stem}.txt"), np.float32
            )
            xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
            out.append((image, (xyxy * (w, h, w, h)).astype(np.float32).reshape(-1, 4)))
        return out
    if name == "no-person":
        images = data / "coco128" / "images" / "train2017"
        empty = np.zeros((0, 4), np.float32)
        return [(images / f"{s}.jpg", empty) for s in embedded_data.coco_split(data).negatives_test]
    raise ValueError(f"no held-out set {name!r}; one of {HELD_OUT}")


def held_out_masks(data: Path, name: str) -> list[tuple[Path, np.ndarray]]:
    """``(image, person mask (H, W) bool)`` of held-out set ``name``; coco-person: only its photos
    with person polygons (instances_person.json)."""
    if name == "pennfudan":
        pf = data / "pennfudan"
        return [
            (pf / "images" / f"{s}.png", _read_mask(pf / "masks" / f"{s}_mask.png") > 0)
            for s in embedded_data.pennfudan_split(data).test
        ]
    if name == "coco-person":
        masks = embedded_data.coco_json_masks(data)
        folder = data / "coco-person" / "images"
        return [
            (folder / f"{s}.jpg", masks[s] > 0) for s in embedded_data.coco_split(data).test if s in masks
        ]
    return [
        (image, np.zeros(cv2.imread(str(image)).shape[:2], bool)) for image, _ in held_out_boxes(data, name)
    ]


def _read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise FileNotFoundError(path)
    return mask


def detection_recall(
    items: Iterable[tuple[Path, np.ndarray]], *, model: str = "person-yolov8n", weights: Path | None = None
) -> dict[str, float]:
    """Recall / precision at IoU 0.5 and person boxes per image over ``(image, gt boxes)`` pairs
    (``weights``, if given, instead of ``model``)."""

    import densecnn

    predictor = densecnn.load(None if weights else model, task="detect", weights=weights)
    tp = n_gt = n_pred = n_images = 0
    for image, gt in items:
        det = predictor.predict([_frame(image)])[0]
        keep = det.class_ids == 0
        tp += match(det.boxes[keep].astype(np.float32), det.scores[keep], gt)
        n_gt, n_pred, n_images = n_gt + len(gt), n_pred + int(keep.sum()), n_images + 1
    return {
        "recall50": tp / max(n_gt, 1),
        "precision50": tp / max(n_pred, 1),
        "boxes_per_image": n_pred / max(n_images, 1),
        "gt": n_gt,
        "pred": n_pred,
    }


def segmentation_iou(
    items: Iterable[tuple[Path, np.ndarray]], *, model: str = "person-unet", weights: Path | None = None
) -> dict[str, float]:
    """Person IoU, mIoU (background + person), pixel accuracy and the share of pixels called person
    over ``(image, gt person mask)`` pairs."""

    import densecnn

    predictor = densecnn.load(None if weights else model, task="segment", weights=weights)
    inter, union = np.zeros(2), np.zeros(2)
    correct = total = called = 0
    for image, gt in items:
        pred = predictor.predict([_frame(image)])[0].label_map
        for c, (p, g) in enumerate(((pred == 0, ~gt), (pred == 1, gt))):
            inter[c] += np.logical_and(p, g).sum()
            union[c] += np.logical_or(p, g).sum()
        correct += int(((pred == 1) == gt).sum())
        called += int((pred == 1).sum())
        total += gt.size
    iou = inter / np.maximum(union, 1)
    return {
        "person_iou": float(iou[1]),
        "miou": float(iou.mean()),
        "pixel_acc": correct / total,
        "person_share": called / total,
    }


def read_predictions(jsonl: Path, class_name: str = "person") -> dict[str, int]:
    """``densecnn detect``'s predictions.jsonl → detections of ``class_name`` per source (frames summed)."""
    counts: dict[str, int] = {}
    for line in jsonl.read_text().splitlines():
        row = json.loads(line)
        found = sum(d["class_name"] == class_name for d in row["detections"])
        counts[row["source"]] = counts.get(row["source"], 0) + found
    return counts


# The street video (640x360): the walkway left of the concrete barrier, where two pedestrians walk
# the whole time, and the road right of it. A person box centred on the road below the far horizon
# (y > 110 px) sits on a car: nobody walks there.
WALKWAY_X = (100.0, 215.0)
ROAD_X, ROAD_MIN_Y = 230.0, 110.0


def street_video(jsonl: Path, class_name: str = "person") -> dict[str, float]:
    """``densecnn detect slow_traffic_small.mp4``'s predictions.jsonl → the share of frames with at
    least one / two person boxes on the walkway, and person boxes centred on the road (all frames)."""
    frames = one = two = road = 0
    for line in jsonl.read_text().splitlines():
        row = json.loads(line)
        frames += 1
        walkway = 0
        for d in row["detections"]:
            if d["class_name"] != class_name:
                continue
            x0, y0, x1, y1 = d["box"]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            walkway += WALKWAY_X[0] <= cx <= WALKWAY_X[1]
            road += cx >= ROAD_X and cy >= ROAD_MIN_Y
        one, two = one + (walkway >= 1), two + (walkway >= 2)
    return {
        "frames": frames,
        "walkway_one_share": one / max(frames, 1),
        "walkway_two_share": two / max(frames, 1),
        "road_person_boxes": road,
    }
