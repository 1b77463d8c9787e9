"""``densecnn eval detect``: COCO mAP of a detector on a YOLO / COCO dataset, by faster-coco-eval.

The model runs through the same predictors as ``densecnn detect`` (low ``--conf``, 300 detections
per image, as Ultralytics' ``val``); boxes are in original-image pixels. Model classes map to the
dataset's by name (position when the model's names are the dataset's, or none of them match).
When the predictions carry instance masks and the labels are polygons, ``segm`` metrics are added
(``segm_`` prefix). Outputs in the run folder: ``predictions.coco.json``, ``ground_truth.coco.json``,
``PR_curve.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from densecnn.data.detection import DetItem, images_for, load_detection_data, read_items
from densecnn.errors import UsageError
from densecnn.eval.coco import (
    coco_evaluate,
    det_records,
    evaluator_name,
    gt_annotations,
    gt_image,
    plot_pr_curve,
)
from densecnn.eval.config import EvalConfig, EvalOutcome
from densecnn.fsutil import atomic_write_json, next_run_dir
from densecnn.results import Frame

MAX_DET = 300


def evaluate(cfg: EvalConfig) -> EvalOutcome:
    """Run the detector ``cfg.weights`` over the ``cfg.split`` images of ``cfg.data`` and score it."""
    data = load_detection_data(cfg.data)
    images = images_for(data, cfg.split, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if not images:
        raise UsageError(f"--split {cfg.split} of {cfg.data} holds no images.")
    items = read_items(data, images)
    predictor = _predictor(cfg)
    class_map = map_classes(predictor.names, data.names)
    gt, dets = _collect(predictor, items, class_map, data.names, batch=cfg.batch)
    stats, per_class, precision = coco_evaluate(gt, dets, iou_type="bbox")
    metrics = dict(stats)
    if _has_masks(dets) and all(a.get("segmentation") for a in gt["annotations"]) and gt["annotations"]:
        segm, _, _ = coco_evaluate(gt, dets, iou_type="segm")
        metrics.update({f"segm_{k}": v for k, v in segm.items()})
    run_dir = next_run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok)
    atomic_write_json(run_dir / "predictions.coco.json", dets)
    atomic_write_json(run_dir / "ground_truth.coco.json", gt)
    if cfg.plots and precision is not None:
        plot_pr_curve(run_dir / "PR_curve.png", precision, dict(enumerate(data.names)))
    return EvalOutcome(
        run_dir=run_dir,
        metrics=metrics,
        per_class={data.names[cid - 1]: v for cid, v in per_class.items() if v["instances"] > 0},
        evaluator=evaluator_name(),
        num_images=len(items),
    )


def _predictor(cfg: EvalConfig) -> Any:
    imgsz = cfg.imgsz or _trained_imgsz(cfg.weights, trust=cfg.trust_weights)
    predictor = cfg.predictor(conf=cfg.conf, iou=cfg.iou, imgsz=imgsz, max_det=MAX_DET)
    if hasattr(predictor, "nms_time_per_image"):
        predictor.nms_time_per_image = float("inf")  # never drop boxes on a busy machine
    return predictor


def _trained_imgsz(weights: Path, *, trust: bool = False) -> int | None:
    """The image size an Ultralytics .pt was trained at (its ``train_args``), as ``yolo val`` uses."""
    if weights.suffix != ".pt":
        return None
    from densecnn.tasks.detect.yolo import load_yolo_module

    try:
        args = getattr(load_yolo_module(weights, user_named=True, trust=trust), "args", None) or {}
    except UsageError:
        return None
    imgsz = args.get("imgsz") if isinstance(args, dict) else None
    return int(imgsz) if isinstance(imgsz, int) else None


def map_classes(model_names: dict[int, str], data_names: tuple[str, ...]) -> dict[int, int]:
    """Model class id → dataset class id. By position when the model's object classes are the
    dataset's (or no name matches and the counts agree), else by case-insensitive name."""
    objects = {k: v for k, v in model_names.items() if v != "__background__"}
    ordered = [objects[k] for k in sorted(objects)]
    if [n.lower() for n in ordered] == [n.lower() for n in data_names]:
        return {k: i for i, k in enumerate(sorted(objects))}
    by_name = {n.lower(): i for i, n in enumerate(data_names)}
    mapping = {k: by_name[v.lower()] for k, v in objects.items() if v.lower() in by_name}
    if not mapping and len(objects) == len(data_names):
        return {k: i for i, k in enumerate(sorted(objects))}
    if not mapping:
        raise UsageError(
            f"None of the model's {len(objects)} class names appear in the dataset's names "
            f"({', '.join(data_names[:6])}...).",
            hint="Evaluate a model trained on this dataset's classes.",
        )
    return mapping


def _collect(
    predictor: Any, items: list[DetItem], class_map: dict[int, int], names: tuple[str, ...], *, batch: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO ground truth and detections over ``items``, predicted ``batch`` images at a time through
    the prediction pipeline."""
    from densecnn.eval.stream import predictions_for

    gt: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
    }
    dets: list[dict[str, Any]] = []
    predictions = predictions_for(predictor, [item.image for item in items], batch=batch)
    for image_id, (item, prediction) in enumerate(zip(items, predictions, strict=True), start=1):
        _add_gt(gt, image_id, item, prediction.frame)
        dets += _result_records(image_id, prediction.result, class_map)
    return gt, dets


def _add_gt(gt: dict[str, Any], image_id: int, item: DetItem, frame: Frame) -> None:
    w, h = frame.width, frame.height
    gt["images"].append(gt_image(image_id, str(item.image), w, h))
    polys = None
    if item.polygons is not None:
        scale = np.array([w, h], dtype=np.float32)
        polys = [[p * scale for p in parts] for parts in item.polygons]
    gt["annotations"] += gt_annotations(
        image_id,
        item.pixel_boxes(w, h),
        item.classes,
        polygons=polys,
        crowd=item.crowd,
        first_id=len(gt["annotations"]) + 1,
    )


def _result_records(image_id: int, result: Any, class_map: dict[int, int]) -> list[dict[str, Any]]:
    """COCO records of one result, in dataset class ids; classes the dataset lacks are dropped."""
    keep = np.array([int(c) in class_map for c in result.class_ids], dtype=bool)
    classes = np.array([class_map.get(int(c), -1) for c in result.class_ids], dtype=np.int64)
    masks = getattr(result, "masks", None)
    return det_records(
        image_id,
        result.boxes[keep],
        result.scores[keep],
        classes[keep],
        masks=np.asarray(masks)[keep] if masks is not None else None,
    )


def _has_masks(dets: list[dict[str, Any]]) -> bool:
    return bool(dets) and all("segmentation" in d for d in dets)
