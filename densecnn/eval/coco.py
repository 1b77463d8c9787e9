"""COCO-style detection metrics through faster-coco-eval (the C++ port of pycocotools' COCOeval).

Ground truth and detections are plain COCO dicts, so the numbers can be checked against pycocotools
on the same inputs. Category ids are ``class id + 1`` (COCO tools treat id 0 as unset in places).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densecnn.fsutil import atomic_open

# COCOeval's 12 summary numbers, in its order (stats[0..11]), under densecnn's names.
STAT_NAMES = (
    "mAP50-95",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def evaluator_name() -> str:
    import faster_coco_eval

    return f"faster-coco-eval {faster_coco_eval.__version__}"


def gt_image(image_id: int, file_name: str, width: int, height: int) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def gt_annotations(
    image_id: int,
    boxes: np.ndarray,
    classes: np.ndarray,
    *,
    polygons: Sequence[Sequence[np.ndarray]] | None = None,
    crowd: np.ndarray | None = None,
    first_id: int = 1,
) -> list[dict[str, Any]]:
    """COCO annotations for one image: ``boxes`` pixel xyxy, ``polygons`` per object a list of
    ``(K, 2)`` pixel xy parts. ``area`` is the polygon area when there are polygons (as in COCO),
    else the box area."""
    out = []
    for k, (box, cls) in enumerate(zip(boxes, classes, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        ann: dict[str, Any] = {
            "id": first_id + k,
            "image_id": image_id,
            "category_id": int(cls) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": (x2 - x1) * (y2 - y1),
            "iscrowd": int(crowd[k]) if crowd is not None and len(crowd) else 0,
        }
        if polygons is not None:
            parts = polygons[k]
            ann["segmentation"] = [[float(v) for v in p.ravel()] for p in parts]
            ann["area"] = float(sum(_polygon_area(p) for p in parts))
        out.append(ann)
    return out


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def det_records(
    image_id: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    masks: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """COCO result records for one image (``boxes`` pixel xyxy; ``masks`` ``(N, H, W)`` bool → RLE)."""
    rles = _encode(masks) if masks is not None else None
    out = []
    for k, (box, score, cls) in enumerate(zip(boxes, scores, classes, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        rec: dict[str, Any] = {
            "image_id": image_id,
            "category_id": int(cls) + 1,
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(score), 5),
        }
        if rles is not None:
            rec["segmentation"] = rles[k]
        out.append(rec)
    return out


def _encode(masks: np.ndarray) -> list[dict[str, Any]]:
    from faster_coco_eval.core import mask as mask_utils

    out = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        counts = rle["counts"]
        out.append(
            {"size": list(rle["size"]), "counts": counts.decode() if isinstance(counts, bytes) else counts}
        )
    return out


def coco_evaluate(
    gt: dict[str, Any], dets: list[dict[str, Any]], *, iou_type: str = "bbox"
) -> tuple[dict[str, float], dict[int, dict[str, float]], np.ndarray | None]:
    """``(stats, per_class, precision)`` of ``dets`` against ``gt`` (COCO dicts).

    stats: the 12 COCOeval numbers under :data:`STAT_NAMES`; per_class: category id →
    ``{"mAP50-95", "mAP50", "instances"}`` (area all, 100 detections; -1 where a class has no ground
    truth); precision: COCOeval's ``(T, R, K, A, M)`` array (None without detections)."""
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not dets:
            return dict.fromkeys(STAT_NAMES, 0.0), _empty_per_class(gt), None
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {name: max(float(v), 0.0) for name, v in zip(STAT_NAMES, ev.stats[:12], strict=True)}
    precision = np.asarray(ev.eval["precision"])
    return stats, _per_class(precision, ev.params.catIds, gt), precision


def _per_class(
    precision: np.ndarray, cat_ids: Sequence[int], gt: dict[str, Any]
) -> dict[int, dict[str, float]]:
    counts = _instances(gt)
    out = {}
    for k, cid in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]  # IoU thresholds x recall points, area "all", maxDets 100
        valid = p[p > -1]
        p50 = p[0][p[0] > -1]
        out[int(cid)] = {
            "mAP50-95": float(valid.mean()) if valid.size else -1.0,
            "mAP50": float(p50.mean()) if p50.size else -1.0,
            "instances": float(counts.get(int(cid), 0)),
        }
    return out


def _empty_per_class(gt: dict[str, Any]) -> dict[int, dict[str, float]]:
    counts = _instances(gt)
    out = {}
    for c in gt["categories"]:
        n = counts.get(c["id"], 0)
        ap = 0.0 if n else -1.0
        out[int(c["id"])] = {"mAP50-95": ap, "mAP50": ap, "instances": float(n)}
    return out


def _instances(gt: dict[str, Any]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd"):
            counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
    return counts


def plot_pr_curve(path: Path, precision: np.ndarray, names: dict[int, str]) -> None:
    """Precision-recall curves at IoU 0.5 (area all, 100 detections), per class and the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = np.linspace(0, 1, precision.shape[1])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    curves = []
    for k, name in names.items():
        p = precision[0, :, k, 0, -1]
        if (p > -1).any():
            p = np.where(p > -1, p, 0)
            curves.append(p)
            if len(names) <= 20:
                ax.plot(recall, p, linewidth=1, label=f"{name} {p.mean():.3f}")
    if curves:
        mean = np.mean(curves, axis=0)
        ax.plot(recall, mean, linewidth=3, color="blue", label=f"all classes {mean.mean():.3f} mAP@0.5")
    ax.set(
        xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title="Precision-recall, IoU 0.5"
    )
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    with atomic_open(Path(path), "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
