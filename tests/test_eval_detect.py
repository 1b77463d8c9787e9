"""``densecnn eval detect``: COCO metrics equal pycocotools' COCOeval on fixed predictions (bbox and
segm), agree with Ultralytics' own ``val`` on a YOLO checkpoint, and repeat exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from conftest import DATA, need_data
from PIL import Image

from densecnn.data.detection import load_detection_data, read_items
from densecnn.eval.coco import STAT_NAMES, coco_evaluate, det_records, gt_annotations, gt_image
from densecnn.eval.config import EvalConfig
from densecnn.eval.detect import evaluate, map_classes

COCO128 = DATA / "coco128"
SEG_LABELS = COCO128 / "instance_segmentation" / "labels_yolo_contiguous" / "train2017"


def coco128_yaml(tmp_path: Path, *, labels: str = "labels", n: int | None = None) -> Path:
    """A data.yaml over coco128's train2017 images (its own config names a val2017 that is absent).

    ``labels`` picks the label folder: the detection boxes, or the instance polygons (linked in as
    ``labels/`` beside links to the images, since YOLO finds labels by path)."""
    root = need_data(COCO128)
    names = yaml.safe_load((root / "object_detection_config.yaml").read_text())["names"]
    images = sorted((root / "images" / "train2017").glob("*.jpg"))
    if labels != "labels":
        images = [p for p in images if (SEG_LABELS / f"{p.stem}.txt").is_file()]
        (tmp_path / "ds" / "images").mkdir(parents=True)
        (tmp_path / "ds" / "labels").symlink_to(SEG_LABELS)
        for p in images:
            (tmp_path / "ds" / "images" / p.name).symlink_to(p)
        images = [tmp_path / "ds" / "images" / p.name for p in images]
    images = images[:n] if n else images
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in images))
    doc = {"path": str(tmp_path), "train": "list.txt", "val": "list.txt", "names": names}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "data.yaml"


def _ground_truth(data_yaml: Path, *, polygons: bool) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    data = load_detection_data(data_yaml)
    items = read_items(data, list(data.train))
    gt: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    gt["categories"] = [{"id": i + 1, "name": n} for i, n in enumerate(data.names)]
    sizes = []
    for image_id, item in enumerate(items, start=1):
        w, h = Image.open(item.image).size
        sizes.append((w, h))
        gt["images"].append(gt_image(image_id, item.image.name, w, h))
        polys = None
        if polygons:
            assert item.polygons is not None
            polys = [[p * np.array([w, h]) for p in parts] for parts in item.polygons]
        gt["annotations"] += gt_annotations(
            image_id,
            item.pixel_boxes(w, h),
            item.classes,
            polygons=polys,
            first_id=len(gt["annotations"]) + 1,
        )
    return gt, sizes


def _perturbed_boxes(gt: dict[str, Any], sizes: list[tuple[int, int]], seed: int) -> list[dict[str, Any]]:
    """GT boxes jittered by up to ~15 % of their size, random scores, 10 % wrong classes, a missed
    box in ten, and 2-6 random false positives per image: AP well away from 0 and 1."""
    rng = np.random.default_rng(seed)
    dets: list[dict[str, Any]] = []
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for image_id, (w, h) in enumerate(sizes, start=1):
        boxes, scores, classes = [], [], []
        for a in by_image.get(image_id, []):
            if rng.random() < 0.1:
                continue
            x, y, bw, bh = a["bbox"]
            jitter = rng.normal(0, 0.08, 4) * [bw, bh, bw, bh]
            boxes.append([x + jitter[0], y + jitter[1], x + bw + jitter[2], y + bh + jitter[3]])
            scores.append(rng.uniform(0.2, 1.0))
            wrong = rng.random() < 0.1
            classes.append(int(rng.integers(0, 80)) if wrong else a["category_id"] - 1)
        for _ in range(int(rng.integers(2, 7))):
            x1, y1 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
            boxes.append([x1, y1, x1 + rng.uniform(8, w * 0.3), y1 + rng.uniform(8, h * 0.3)])
            scores.append(rng.uniform(0.0, 0.7))
            classes.append(int(rng.integers(0, 80)))
        dets += det_records(
            image_id, np.asarray(boxes).reshape(-1, 4), np.asarray(scores), np.asarray(classes)
        )
    return dets


def _pycocotools_stats(gt: dict[str, Any], dets: list[dict[str, Any]], iou_type: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats), ev.eval["precision"]


def test_bbox_metrics_equal_pycocotools(tmp_path: Path) -> None:
    gt, sizes = _ground_truth(coco128_yaml(tmp_path), polygons=False)
    dets = _perturbed_boxes(gt, sizes, seed=0)
    ours, per_class, _ = coco_evaluate(gt, dets, iou_type="bbox")
    ref, precision = _pycocotools_stats(gt, dets, "bbox")
    assert 0.2 < ours["mAP50-95"] < 0.9  # a real test: neither trivial end
    for name, value in zip(STAT_NAMES, ref, strict=True):
        assert abs(ours[name] - max(value, 0.0)) <= 1e-3, name
    for k, cid in enumerate(sorted(per_class)):  # per-class AP from the same precision table
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            assert abs(per_class[cid]["mAP50-95"] - p[p > -1].mean()) <= 1e-3


def test_segm_metrics_equal_pycocotools(tmp_path: Path) -> None:
    """Instance masks (as a YOLO-seg predictor's Result would carry them) scored as COCO segm."""
    gt, sizes = _ground_truth(coco128_yaml(tmp_path, labels="seg", n=40), polygons=True)
    rng = np.random.default_rng(1)
    dets: list[dict[str, Any]] = []
    for image_id, (w, h) in enumerate(sizes, start=1):
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id]
        masks, boxes, scores, classes = [], [], [], []
        for a in anns + anns[:2]:  # the first two again, shifted further: duplicates / worse masks
            m = np.zeros((h, w), np.uint8)
            shift = rng.normal(0, 4, 2) + (12 if len(masks) >= len(anns) else 0)
            for part in a["segmentation"]:
                pts = np.asarray(part).reshape(-1, 2) + shift
                cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
            masks.append(m.astype(bool))
            x, y, bw, bh = a["bbox"]
            boxes.append([x + shift[0], y + shift[1], x + bw + shift[0], y + bh + shift[1]])
            scores.append(rng.uniform(0.1, 1.0))
            classes.append(a["category_id"] - 1)
        if masks:
            dets += det_records(
                image_id, np.asarray(boxes), np.asarray(scores), np.asarray(classes), masks=np.stack(masks)
            )
    ours, _, _ = coco_evaluate(gt, dets, iou_type="segm")
    ref, _ = _pycocotools_stats(gt, dets, "segm")
    assert 0.1 < ours["mAP50-95"] < 0.95
    for name, value in zip(STAT_NAMES, ref, strict=True):
        assert abs(ours[name] - max(value, 0.0)) <= 1e-3, name


def test_class_mapping_by_position_then_name() -> None:
    assert map_classes({0: "person", 1: "car"}, ("person", "car")) == {0: 0, 1: 1}
    # torchvision-style background at 0: object classes shift by one
    assert map_classes({0: "__background__", 1: "person"}, ("person",)) == {1: 0}
    # a COCO-80 model on a one-class dataset: by name
    assert map_classes({0: "person", 1: "bicycle", 2: "car"}, ("car",)) == {2: 0}


def test_eval_matches_ultralytics_val_and_repeats(
    tmp_path: Path, yolo_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same checkpoint, data, imgsz, conf and NMS IoU: mAP within 1 point of Ultralytics' ``val``,
    and the same numbers on a second run (determinism)."""
    from densecnn.integrations.ultralytics import import_ultralytics, offline_training

    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.utils import nms

    # Ultralytics' NMS drops the boxes of the rest of a batch after 2 s + 0.05 s/image; on a busy
    # machine that changes its numbers from run to run. The reference gets no time limit either.
    plain_nms = nms.non_max_suppression
    monkeypatch.setattr(
        nms, "non_max_suppression", lambda *a, **k: plain_nms(*a, **{**k, "max_time_img": float("inf")})
    )
    data_yaml = coco128_yaml(tmp_path, n=32)
    cfg = EvalConfig(
        task="detect",
        weights=yolo_weights,
        data=data_yaml,
        split="all",
        imgsz=320,
        conf=0.001,
        iou=0.7,
        device="cpu",
        project=tmp_path / "runs",
    )
    first, second = evaluate(cfg), evaluate(cfg)
    assert first.metrics == second.metrics
    assert first.evaluator.startswith("faster-coco-eval ")
    assert (first.run_dir / "predictions.coco.json").is_file()
    with offline_training():
        ref = YOLO(str(yolo_weights)).val(
            data=str(data_yaml),
            imgsz=320,
            conf=0.001,
            iou=0.7,
            batch=8,
            device="cpu",
            plots=False,
            project=str(tmp_path / "ul"),
            verbose=False,
        )
    assert first.metrics["mAP50-95"] > 0 and first.metrics["mAP50"] > 0
    assert abs(first.metrics["mAP50-95"] - ref.box.map) <= 0.01
    assert abs(first.metrics["mAP50"] - ref.box.map50) <= 0.01


@pytest.mark.parametrize("corrupt", ["syntax", "category"])
def test_coco_json_errors_name_file_and_place(tmp_path: Path, corrupt: str) -> None:
    import json

    from densecnn.data.detection import check_dataset

    image = sorted((need_data(COCO128) / "images" / "train2017").glob("*.jpg"))[0]
    w, h = Image.open(image).size
    doc = {
        "images": [{"id": 1, "file_name": str(image), "width": w, "height": h}],
        "annotations": [
            {
                "id": 7,
                "image_id": 1,
                "category_id": 3 if corrupt == "category" else 1,
                "bbox": [1, 2, 30, 40],
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    text = json.dumps(doc, indent=1)
    if corrupt == "syntax":
        text = text.replace('"width"', '"width" 5,', 1)
    path = tmp_path / "ann.json"
    path.write_text(text)
    problems = check_dataset(path)
    assert len(problems) == 1
    if corrupt == "syntax":
        line = next(i for i, ln in enumerate(text.splitlines(), 1) if '"width" 5' in ln)
        assert problems[0].startswith(f"{path}:{line}:")
    else:
        assert problems[0].startswith(f"{path}: annotations[0] (id 7): category_id 3")


def test_results_with_masks_become_segm_records() -> None:
    """Any Result carrying ``masks`` (N, H, W) bool (a YOLO-seg predictor's) yields COCO RLE records
    in dataset class ids; classes the dataset lacks are dropped with their masks."""
    from faster_coco_eval.core import mask as mask_utils

    from densecnn.eval.detect import _result_records
    from densecnn.results import Detections

    masks = np.zeros((3, 20, 30), dtype=bool)
    masks[0, 2:8, 3:9] = True
    masks[1, 10:15, 0:30] = True
    masks[2, 0:5, 25:30] = True
    det = Detections([[3, 2, 9, 8], [0, 10, 30, 15], [25, 0, 30, 5]], [0.9, 0.8, 0.7], [5, 0, 2])
    det.masks = masks  # type: ignore[attr-defined]  # what an instance-segmentation result adds
    records = _result_records(4, det, {0: 0, 5: 1})  # model class 2 is not in the dataset
    assert [r["category_id"] for r in records] == [2, 1]
    for rec, m in zip(records, masks[:2], strict=True):
        assert rec["image_id"] == 4
        rle = {"size": rec["segmentation"]["size"], "counts": rec["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m)
