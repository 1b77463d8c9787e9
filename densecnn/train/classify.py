"""``densecnn train classify``: the classification head (global pool + dropout + linear) on any
registry backbone, trained on an ImageFolder (:mod:`densecnn.data.imagefolder`) with densecnn's loop.

Training batches are random resized crops of ``imgsz`` (flip, colour jitter) with ``--augment``,
else what the predictor does. Validation runs the model through ``densecnn classify``'s own
predictor (shorter side to ``resize``, centre crop ``imgsz``): fitness = top-1 accuracy, what
``densecnn eval classify`` reports for the same split. The checkpoint (``arch="classifier"``)
names its backbone, classes, ``input_size`` (the crop) and ``extra["preprocess"]["resize"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from densecnn.checkpoint import CheckpointMeta
from densecnn.data.imagefolder import Sample, open_image_folder
from densecnn.train.config import TrainConfig, TrainOutcome
from densecnn.train.freeze import backbone_stages
from densecnn.train.loop import TrainTask, fit, resolve_resume, seed_everything
from densecnn.train.start import imagenet_weights, load_matching, start_meta
from densecnn.train.transforms import DecodeCache, bgr_to_image, classify_transform

DEFAULT_BACKBONE = "resnet18"


class ImageTrainData(Dataset):
    """``(image (3, s, s) float normalised, label)`` augmented crops of ``samples``."""

    def __init__(self, samples: list[Sample], transform: Any) -> None:
        self.samples, self.transform = samples, transform
        self.cache = DecodeCache(len(samples))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from densecnn.sources.images import read_image

        image = self.cache.get(i, lambda: bgr_to_image(read_image(self.samples[i].image)))
        return self.transform(image).as_subclass(torch.Tensor), self.samples[i].label


class ImageValData(Dataset):
    """``(Frame, label)`` of ``samples`` (scored like ``densecnn eval classify``)."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from densecnn.eval.segment import frame_of

        return frame_of(self.samples[i].image), self.samples[i].label


def classify_step(model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
    images, labels = batch
    return F.cross_entropy(model(images.to(device, non_blocking=True)), labels.to(device))


@dataclass
class ClassifyValidator:
    """top-1 (fitness) and top-5 accuracy through the prediction path."""

    names: tuple[str, ...]
    resize: int
    imgsz: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        from densecnn.eval.classify import classification_metrics, score
        from densecnn.tasks.classify.torch_cls import TensorClassifier
        from densecnn.zoo.specs import Preprocess

        k = min(5, len(self.names))
        prep = Preprocess(resize=self.resize, crop=self.imgsz, mean=self.mean, std=self.std)
        names = dict(enumerate(self.names))
        predictor = TensorClassifier(
            model=model, preprocess=prep, names=names, device=device, half=False, topk=k
        )
        samples = loader.dataset.samples
        images, labels = [s.image for s in samples], [s.label for s in samples]
        conf, hits = score(predictor, images, labels, num_classes=len(self.names), batch=loader.batch_size)
        metrics, _ = classification_metrics(conf, hits, self.names, k=k)
        return {**metrics, "fitness": metrics["top1"]}


def build_task(cfg: TrainConfig) -> TrainTask:
    """Model, data, loss and validation of a ``train classify`` run (see the module docstring)."""
    from densecnn.backbones import BACKBONES
    from densecnn.tasks.classify.head import build_classifier
    from densecnn.train.segment import as_list

    seed_everything(cfg.seed, deterministic=cfg.deterministic)  # the model's init is part of the run
    notes: list[str] = []
    meta0 = start_meta(cfg.weights, task="classify")
    if cfg.model is not None and cfg.model.lower() != "classifier":
        from densecnn.errors import UsageError

        raise UsageError(
            f"train classify: --model {cfg.model} is not trainable here; the trainable model is "
            "`classifier` on any --backbone."
        )
    backbone = cfg.backbone or (meta0.backbone if meta0 and meta0.backbone else DEFAULT_BACKBONE)
    folder = open_image_folder(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    names = folder.class_names
    pretrained = imagenet_weights(backbone, pretrained=cfg.pretrained and cfg.weights is None, notes=notes)
    model = build_classifier(backbone, len(names), pretrained_backbone=pretrained)
    if cfg.weights is not None:
        load_matching(model, cfg.weights, notes)
    prep = BACKBONES.get(backbone).preprocess
    imgsz = cfg.imgsz or prep.crop
    resize = round(imgsz * prep.resize / prep.crop)  # the backbone's resize / crop ratio (256 / 224)
    mean, std = tuple(prep.mean), tuple(prep.std)
    split = "own train/val folders" if folder.explicit_split else f"seeded split, val {cfg.val_fraction:g}"
    notes.append(f"Data: {cfg.data} ({split}); classes: {', '.join(names)}")
    meta = CheckpointMeta(
        task="classify",
        arch="classifier",
        class_names=names,
        input_size=imgsz,
        mean=mean,
        std=std,
        backbone=backbone,
        extra={
            "preprocess": {"resize": resize, "interpolation": "bilinear"},
            "dropout": 0.2,
            "data": {"format": "imagefolder", "val_fraction": cfg.val_fraction, "seed": cfg.seed},
        },
    )
    transform = classify_transform(imgsz, resize=resize, augment=cfg.augment, mean=mean, std=std)
    return TrainTask(
        model=model,
        train_data=ImageTrainData(folder.train, transform),
        val_data=ImageValData(folder.val),
        train_step=classify_step,
        validate=ClassifyValidator(names, resize, imgsz, mean, std),
        meta=meta,
        val_collate_fn=as_list,
        stages=backbone_stages(model.backbone),
        default_lr=1e-3,
        notes=notes,
    )


def train(cfg: TrainConfig) -> TrainOutcome:
    """Train a classifier as ``cfg`` says (``--resume``: the run's own settings, more epochs)."""
    cfg = resolve_resume(cfg)
    return fit(cfg, build_task(cfg))
