"""Classification metrics: top-1, top-5, per-class precision / recall, confusion matrix.

``top1`` = images whose best class is the true one / images; ``top5`` = images whose true class is
among the 5 best (``min(5, K)``). Per class: ``precision = TP / predicted``, ``recall = TP / true``.
:func:`evaluate` runs the checkpoint through ``densecnn classify``'s own predictor (resize, centre
crop, normalisation from the checkpoint), so the numbers describe what that command outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densecnn import __version__
from densecnn.data.imagefolder import ImageFolder, open_image_folder
from densecnn.errors import UsageError
from densecnn.eval.config import EvalConfig, EvalOutcome
from densecnn.results import Classification

EVALUATOR = f"densecnn {__version__} top-k accuracy"


def score(
    predictor: Any, images: Sequence[Path], labels: Sequence[int], *, num_classes: int, batch: int
) -> tuple[np.ndarray, int]:
    """Run ``predictor`` (keeping its top-k classes) over ``images`` through the prediction pipeline:
    the confusion matrix ``(K, K)`` of top-1 predictions against ``labels`` (rows: true) and the
    number of top-k hits."""
    from densecnn.eval.stream import predictions_for

    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    hits = 0
    for label, prediction in zip(labels, predictions_for(predictor, images, batch=batch), strict=True):
        result = prediction.result
        assert isinstance(result, Classification)
        conf[label, int(result.class_ids[0])] += 1
        hits += int(label in result.class_ids.tolist())
    return conf, hits


def classification_metrics(
    conf: np.ndarray, topk_hits: int, names: Sequence[str], *, k: int
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Headline metrics (``top1``, ``top{k}``, mean per-class recall) and per-class metrics."""
    n = int(conf.sum())
    tp = np.diag(conf).astype(float)
    true, predicted = conf.sum(axis=1), conf.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true > 0, tp / true, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
    metrics = {
        "top1": float(tp.sum() / n) if n else float("nan"),
        f"top{k}": float(topk_hits / n) if n else float("nan"),
        "mean_recall": float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan"),
    }
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "images": float(true[i])}
        for i, name in enumerate(names)
    }
    return metrics, per_class


def _label_map(folder: ImageFolder, names: Sequence[str]) -> dict[int, int]:
    """Dataset class id → model class id, by class name."""
    index = {name: i for i, name in enumerate(names)}
    unknown = [n for n in folder.class_names if n not in index]
    if unknown:
        raise UsageError(
            f"{folder.root}: class folder(s) {', '.join(unknown)} are not classes of the model "
            f"({', '.join(names[:10])}{' ...' if len(names) > 10 else ''})."
        )
    return {i: index[n] for i, n in enumerate(folder.class_names)}


def evaluate(cfg: EvalConfig) -> EvalOutcome:
    """top-1 / top-5 / per-class metrics of ``cfg.weights`` on ``cfg.split`` of an ImageFolder."""
    from densecnn.eval.report import plot_confusion
    from densecnn.fsutil import next_run_dir

    predictor = cfg.predictor(topk=5)
    names = [predictor.names[i] for i in sorted(predictor.names)]
    k = min(5, len(names))
    predictor.topk = k
    folder = open_image_folder(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    samples = folder.split(cfg.split)
    if not samples:
        raise UsageError(f"{cfg.data}: the {cfg.split} split is empty.", hint="Try --split all.")
    label_map = _label_map(folder, names)
    conf, hits = score(
        predictor,
        [s.image for s in samples],
        [label_map[s.label] for s in samples],
        num_classes=len(names),
        batch=cfg.batch,
    )
    metrics, per_class = classification_metrics(conf, hits, names, k=k)
    if len(names) > len(folder.class_names):  # rows of classes the data does not have say nothing
        per_class = {n: row for n, row in per_class.items() if n in folder.class_names}
    run_dir = next_run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.plots:
        plot_confusion(run_dir / "confusion_matrix.png", conf, names, title="images")
    return EvalOutcome(
        run_dir=run_dir, metrics=metrics, per_class=per_class, evaluator=EVALUATOR, num_images=len(samples)
    )
