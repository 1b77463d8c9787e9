"""Segmentation metrics on hand-made label maps, every number worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from densecnn.eval.segment import confusion, segmentation_metrics

# 3 classes, one pixel ignored (255), one predicted "no class" (255)
TARGET = np.array([[0, 0, 1, 1], [0, 2, 2, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [0, 2, 255, 0]], dtype=np.uint8)


def test_confusion_counts_by_hand() -> None:
    conf = confusion(PRED, TARGET, num_classes=3, ignore_index=255)
    # rows: true 0,1,2; columns: predicted 0,1,2, "no class"
    assert conf.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1]]


def test_metrics_by_hand() -> None:
    conf = confusion(PRED, TARGET, num_classes=3, ignore_index=255)
    metrics, per_class = segmentation_metrics(conf, ("a", "b", "c"))
    # class a: TP 2, FP 0, FN 1 → IoU 2/3, Dice 4/5; b: TP 2, FP 1, FN 0 → 2/3, 4/5; c: TP 1, FN 1 → 1/2, 2/3
    assert per_class["a"]["IoU"] == pytest.approx(2 / 3) and per_class["a"]["Dice"] == pytest.approx(0.8)
    assert per_class["b"]["IoU"] == pytest.approx(2 / 3) and per_class["b"]["acc"] == pytest.approx(1.0)
    assert per_class["c"]["IoU"] == pytest.approx(0.5) and per_class["c"]["Dice"] == pytest.approx(2 / 3)
    assert metrics["mIoU"] == pytest.approx((2 / 3 + 2 / 3 + 0.5) / 3)
    assert metrics["mDice"] == pytest.approx((0.8 + 0.8 + 2 / 3) / 3)
    assert metrics["pixel_acc"] == pytest.approx(5 / 7)  # 7 scored pixels, 5 right
    assert [per_class[n]["pixels"] for n in "abc"] == [3, 2, 2]


def test_absent_class_is_left_out_of_the_mean() -> None:
    target = np.array([[0, 0, 1, 1]], dtype=np.uint8)
    conf = confusion(target.copy(), target, num_classes=3)
    metrics, per_class = segmentation_metrics(conf, ("a", "b", "c"))
    assert np.isnan(per_class["c"]["IoU"]) and metrics["mIoU"] == 1.0 and metrics["pixel_acc"] == 1.0


def test_confusion_sums_over_images_not_per_image_means() -> None:
    """Two images: IoU from the summed counts (VOC / Cityscapes), not the mean of per-image IoUs."""
    t1, p1 = np.array([[1, 1, 1, 1]], np.uint8), np.array([[1, 1, 1, 0]], np.uint8)
    t2, p2 = np.array([[0, 0, 0, 1]], np.uint8), np.array([[0, 0, 0, 0]], np.uint8)
    conf = confusion(p1, t1, num_classes=2) + confusion(p2, t2, num_classes=2)
    _, per_class = segmentation_metrics(conf, ("bg", "fg"))
    assert per_class["fg"]["IoU"] == pytest.approx(3 / 5)  # TP 3, FN 2, FP 0


def test_shape_and_label_errors() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        confusion(PRED[:, :3], TARGET, num_classes=3)
    with pytest.raises(ValueError, match="out of range"):
        confusion(PRED, TARGET, num_classes=2)
