"""``predictions.coco.json``: image-input detections as a COCO dataset (loadable by pycocotools).

``bbox`` is COCO ``[x, y, w, h]`` in original-image pixels. ``category_id``: for a model trained on
COCO (its classes are COCO's 80, numbered 0-79 as YOLO does or 1-90 as torchvision does), COCO's
official category id (1-90: person 1, car 3, toothbrush 90), so every family's file scores against
COCO's own annotation files; for any other model, its own class id. ``info.category_ids`` says which,
and for COCO models ``info.category_id_of_class`` maps each model class id to its category id.
Instance segmentation results add ``segmentation`` (compressed COCO RLE, string counts) and take
``area`` from the mask. Written once, atomically, in ``close()``; video frames are not included.
Its ``annotations`` list is in COCO results format (``COCO(path).loadRes(...)`` takes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from densecnn.fsutil import atomic_write_json
from densecnn.results import InstanceSegmentation, Prediction
from densecnn.sinks.base import Sink
from densecnn.zoo.coco import coco_category_ids

# Placeholder names some label maps (torchvision COCO) carry: never real categories.
EXCLUDED_NAMES = frozenset({"N/A", "__background__"})


class CocoSink(Sink):
    """Accumulates image predictions; ``close()`` writes the file if any image was seen."""

    def __init__(self, path: Path, *, class_names: dict[int, str]) -> None:
        self.path = Path(path)
        self._categories = {
            int(cid): str(name) for cid, name in class_names.items() if name not in EXCLUDED_NAMES
        }
        self._excluded = {int(cid) for cid, name in class_names.items() if name in EXCLUDED_NAMES}
        self._official = coco_category_ids(class_names)  # model class id -> COCO id, for COCO models
        if self._official is not None:
            self._categories = {self._official[c]: name for c, name in self._categories.items()}
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []
        self._written = False

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame, dets = prediction.frame, prediction.detections
        if frame.is_video:
            return
        image_id = len(self._images) + 1
        self._images.append(
            {"id": image_id, "file_name": frame.source, "width": frame.width, "height": frame.height}
        )
        instances = isinstance(dets, InstanceSegmentation)
        rles: list[Any] = dets.rles if instances else [None] * len(dets)  # type: ignore[attr-defined]
        areas: list[Any] = dets.areas() if instances else rles  # type: ignore[attr-defined]
        for box, score, cid, rle, area in zip(
            dets.boxes, dets.scores, dets.class_ids, rles, areas, strict=True
        ):
            cid = int(cid)
            if cid in self._excluded:
                continue
            self._add(image_id, cid, dets.class_name(cid), box, float(score), rle, area)

    def add_record(self, row: dict[str, Any]) -> None:
        """Add one image's predictions.jsonl row (an earlier run's, on resume), as :meth:`write` would."""
        image_id = len(self._images) + 1
        self._images.append(
            {"id": image_id, "file_name": row["source"], "width": row["width"], "height": row["height"]}
        )
        for det in row.get("instances", row.get("detections", [])):
            cid = int(det["class_id"])
            if cid in self._excluded:
                continue
            rle, area = det.get("mask"), None
            if rle is not None:
                from pycocotools import mask as mask_utils

                area = mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
            name = str(det.get("class_name", cid))
            self._add(image_id, cid, name, det["box"], float(det["score"]), rle, area)

    def _category(self, cid: int, name: str) -> int:
        """The category_id written for model class ``cid`` (see the module docstring)."""
        if self._official is not None and cid in self._official:
            return self._official[cid]
        self._categories.setdefault(cid, name)  # an id the model's label map did not list
        return cid

    def _add(self, image_id: int, cid: int, name: str, box: Any, score: float, rle: Any, area: Any) -> None:
        """One annotation: ``box`` xyxy → COCO xywh; an instance mask's RLE and pixel area when given."""
        # From the box as predictions.jsonl rounds it, so both files agree to the last digit even
        # when two runs differ below that rounding (thread counts, batch sizes).
        x1, y1, x2, y2 = (round(float(v), 2) for v in box)
        w, h = round(max(x2 - x1, 0.0), 2), round(max(y2 - y1, 0.0), 2)
        ann: dict[str, Any] = {
            "id": len(self._annotations) + 1,
            "image_id": image_id,
            "category_id": self._category(cid, name),
            "bbox": [x1, y1, w, h],
            "area": round(w * h, 2),
            "score": round(score, 5),
            "iscrowd": 0,
        }
        if rle is not None:
            ann["segmentation"], ann["area"] = rle, int(area)
        self._annotations.append(ann)

    def dataset(self) -> dict[str, Any]:
        """The COCO dict accumulated so far."""
        return {
            "info": self._info(),
            "licenses": [],
            "images": self._images,
            "categories": [{"id": cid, "name": name} for cid, name in sorted(self._categories.items())],
            "annotations": self._annotations,
        }

    def _info(self) -> dict[str, Any]:
        if self._official is None:
            return {"description": "densecnn predictions", "category_ids": "the model's class ids"}
        return {
            "description": "densecnn predictions",
            "category_ids": "COCO official category ids (1-90); the model's class id c is written as "
            "category_id_of_class[c]",
            "category_id_of_class": {str(c): official for c, official in sorted(self._official.items())},
        }

    def close(self) -> None:
        if self._images and not self._written:
            atomic_write_json(self.path, self.dataset(), compact=True)
            self._written = True

    def outputs(self) -> list[Path]:
        return [self.path] if self._written else []
