"""Classification metrics on a hand-made confusion matrix and top-k hits."""

from __future__ import annotations

import numpy as np
import pytest

from densecnn.eval.classify import classification_metrics


def test_top1_top5_precision_recall_by_hand() -> None:
    # rows: true class, columns: top-1 prediction; 10 images
    conf = np.array([[4, 1, 0], [2, 2, 0], [0, 0, 1]])
    metrics, per_class = classification_metrics(conf, 9, ("cat", "dog", "fox"), k=3)
    assert metrics["top1"] == pytest.approx(0.7) and metrics["top3"] == pytest.approx(0.9)
    assert metrics["mean_recall"] == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    assert per_class["cat"] == {"precision": pytest.approx(4 / 6), "recall": pytest.approx(0.8), "images": 5}
    assert per_class["dog"]["precision"] == pytest.approx(2 / 3) and per_class["fox"]["recall"] == 1.0


def test_never_predicted_class_has_no_precision() -> None:
    conf = np.array([[3, 0], [1, 0]])
    _, per_class = classification_metrics(conf, 4, ("a", "b"), k=2)
    assert np.isnan(per_class["b"]["precision"]) and per_class["b"]["recall"] == 0.0
