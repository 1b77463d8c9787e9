"""Semantic segmentation metrics from one confusion matrix: IoU, Dice, pixel accuracy.

Pixels whose label is ``ignore_index`` (255) are not scored. Per class ``c`` with ``TP``, ``FP``,
``FN`` counted over all images (not averaged per image, as the VOC / Cityscapes benchmarks do):
``IoU = TP / (TP + FP + FN)``, ``Dice = 2 TP / (2 TP + FP + FN)``, ``acc = TP / (TP + FN)``. Means
(mIoU, mDice, mAcc) are over the classes that occur in the labels or the predictions (a class
absent from both has no defined IoU and is left out, as in mmsegmentation). Pixel accuracy:
correctly labelled pixels / scored pixels. Integer counting: the same inputs give the same numbers.

:func:`evaluate` runs the checkpoint through the same predictor as ``densecnn segment`` (its
preprocessing, its resize back to the image), so the numbers describe what that command outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from densecnn import __version__
from densecnn.data.masks import MaskPair, MasksFolder, open_masks_folder, read_mask
from densecnn.eval.config import EvalConfig, EvalOutcome
from densecnn.results import Frame, Segmentation

EVALUATOR = f"densecnn {__version__} confusion-matrix IoU"


def confusion(
    pred: np.ndarray, target: np.ndarray, *, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """``(K, K + 1)`` int64 pixel counts over pixels whose target is not ``ignore_index``: row = true
    class, column = predicted class, the last column = predictions outside ``0..K-1`` (e.g. 255
    "no class"), which count as misses of their true class."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and label {target.shape} differ in size")
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    if t.size and t.max() >= num_classes:
        raise ValueError(f"label {int(t.max())} out of range for {num_classes} classes")
    p = pred[keep].astype(np.int64)
    p = np.where(p < num_classes, p, num_classes)
    conf = np.bincount(t * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    return conf.reshape(num_classes, num_classes + 1)


def segmentation_metrics(
    conf: np.ndarray, names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Headline metrics and per-class metrics of a confusion matrix from :func:`confusion`
    (``(K, K + 1)``; a plain ``(K, K)`` matrix works too)."""
    k = len(names)
    conf = conf.astype(np.float64)
    tp = np.diag(conf[:, :k])
    gt = conf.sum(axis=1)  # every scored pixel of the class, "no class" predictions included
    pred = conf[:, :k].sum(axis=0)
    fp, fn = pred - tp, gt - tp
    union = tp + fp + fn
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / union, np.nan)
        dice = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    total = gt.sum()
    metrics = {
        "mIoU": _nanmean(iou),
        "mDice": _nanmean(dice),
        "mAcc": _nanmean(acc),
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
    }
    per_class = {
        name: {"IoU": float(iou[i]), "Dice": float(dice[i]), "acc": float(acc[i]), "pixels": float(gt[i])}
        for i, name in enumerate(names)
    }
    return metrics, per_class


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def frame_of(path: Any) -> Frame:
    from densecnn.sources.images import read_image

    return Frame(image=read_image(path), source=path.name, path=str(path))


def score(
    predictor: Any, pairs: Sequence[MaskPair], folder: MasksFolder, *, num_classes: int, batch: int
) -> np.ndarray:
    """Run ``predictor`` (a SemanticSegmenter) over the images of ``pairs`` through the prediction
    pipeline, ``batch`` at a time; the summed confusion matrix ``(K, K+1)`` against their masks (last
    column: "no class" predictions)."""
    from densecnn.eval.stream import predictions_for

    total = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    predictions = predictions_for(predictor, [p.image for p in pairs], batch=batch)
    for pair, prediction in zip(pairs, predictions, strict=True):
        result = prediction.result
        assert isinstance(result, Segmentation)
        mask = read_mask(pair.mask, mask_mode=folder.mask_mode, ignore_index=folder.ignore_index)
        total += confusion(result.label_map, mask, num_classes=num_classes, ignore_index=folder.ignore_index)
    return total


def evaluate(cfg: EvalConfig) -> EvalOutcome:
    """mIoU, per-class IoU, Dice, pixel accuracy of ``cfg.weights`` on ``cfg.split`` of a masks folder."""
    from densecnn.checkpoint import read_meta
    from densecnn.eval.report import plot_confusion
    from densecnn.fsutil import next_run_dir

    meta = read_meta(cfg.weights)
    data_info = (meta.extra.get("data") or {}) if meta is not None else {}
    mask_mode = cfg.mask_mode or data_info.get("mask_mode", "labels")
    predictor = cfg.predictor()
    names = cfg.class_names or (meta.class_names if meta is not None else tuple(predictor.names.values()))
    folder = open_masks_folder(
        cfg.data,
        mask_mode=mask_mode,
        class_names=names,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        ignore_index=cfg.ignore_index,
    )
    pairs = folder.split(cfg.split)
    if not pairs:
        from densecnn.errors import UsageError

        raise UsageError(f"{cfg.data}: the {cfg.split} split is empty.", hint="Try --split all.")
    conf = score(predictor, pairs, folder, num_classes=len(names), batch=cfg.batch)
    metrics, per_class = segmentation_metrics(conf, names)
    run_dir = next_run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.plots:
        plot_confusion(run_dir / "confusion_matrix.png", conf[:, : len(names)], names, title="pixels")
    return EvalOutcome(
        run_dir=run_dir, metrics=metrics, per_class=per_class, evaluator=EVALUATOR, num_images=len(pairs)
    )
