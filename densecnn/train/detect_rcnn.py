"""Faster R-CNN + FPN on any registry backbone, trained by densecnn's own loop (:mod:`densecnn.train.loop`).

Data: a YOLO data.yaml or a COCO JSON (crowd regions are left out of training). Augmentation with
torchvision transforms v2: boxes are ``tv_tensors.BoundingBoxes`` and move with the image (flip,
scale jitter, colour). The model's own transform resizes (shorter side ``--imgsz``, default 800)
and normalises. Validation: COCO mAP of the val split by faster-coco-eval; fitness is
``0.1 mAP50 + 0.9 mAP50-95`` (mAP50 breaks the ties of early epochs). Checkpoints follow the
torchvision label convention (``class_names[0] == "__background__"``) and load in ``densecnn detect``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from densecnn.data.detection import DetItem, load_detection_data, read_items, train_val
from densecnn.eval.coco import coco_evaluate, det_records, gt_annotations, gt_image
from densecnn.train.config import TrainConfig, TrainOutcome

DEFAULT_BACKBONE = "resnet50"
DEFAULT_IMGSZ = 800
VAL_SCORE_THRESH = 0.001  # keep low-score boxes: mAP integrates over the whole ranking


class RcnnDataset(torch.utils.data.Dataset):
    """``(image, target)``: float ``(3, H, W)`` RGB in [0, 1] and ``{"boxes": (N, 4) xyxy pixels,
    "labels": (N,) int64, 1..nc}``; ``index`` added for validation."""

    def __init__(self, items: list[DetItem], transform: Any) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from densecnn.sources.images import read_image

        item = self.items[i]
        bgr = read_image(item.image)
        h, w = bgr.shape[:2]
        keep = ~item.crowd
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1))
        boxes = tv_tensors.BoundingBoxes(
            torch.from_numpy(item.pixel_boxes(w, h)[keep]), format="XYXY", canvas_size=(h, w)
        )
        labels = torch.from_numpy(item.classes[keep] + 1)
        image, target = self.transform(image, {"boxes": boxes, "labels": labels})
        target["index"] = torch.tensor(i)
        return image, target


def rcnn_transform(*, augment: bool) -> v2.Compose:
    """uint8 image + boxes → float image in [0, 1] + boxes, augmented for training when asked."""
    steps: list[Any] = []
    if augment:
        steps += [
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply([v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.75, 1.25))], p=0.5),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02),
        ]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.SanitizeBoundingBoxes()]
    return v2.Compose(steps)


def collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def train_step(model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
    images, targets = batch
    images = [im.to(device) for im in images]
    targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
    return model(images, targets)  # torchvision: a dict of the four RPN / box-head losses


class Validator:
    """COCO mAP of the val split (boxes in the val images' pixels)."""

    def __init__(self, items: list[DetItem], names: tuple[str, ...]) -> None:
        self.items, self.names = items, names

    def __call__(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        gt: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
        gt["categories"] = [{"id": i + 1, "name": n} for i, n in enumerate(self.names)]
        dets: list[dict[str, Any]] = []
        for images, targets in loader:
            outputs = model([im.to(device) for im in images])
            for image, target, out in zip(images, targets, outputs, strict=True):
                image_id = int(target["index"]) + 1
                h, w = image.shape[-2:]
                item = self.items[image_id - 1]
                gt["images"].append(gt_image(image_id, str(item.image), int(w), int(h)))
                gt["annotations"] += gt_annotations(
                    image_id,
                    item.pixel_boxes(int(w), int(h)),
                    item.classes,
                    crowd=item.crowd,
                    first_id=len(gt["annotations"]) + 1,
                )
                dets += det_records(
                    image_id,
                    out["boxes"].float().cpu().numpy(),
                    out["scores"].float().cpu().numpy(),
                    out["labels"].cpu().numpy() - 1,
                )
        stats, _, _ = coco_evaluate(gt, dets, iou_type="bbox")
        fitness = 0.1 * stats["mAP50"] + 0.9 * stats["mAP50-95"]
        return {"mAP50": stats["mAP50"], "mAP50-95": stats["mAP50-95"], "fitness": fitness}


def build_task(cfg: TrainConfig) -> Any:
    """The loop's TrainTask for ``cfg``: data, model (ImageNet backbone or --weights), meta."""
    from densecnn.tasks.detect.rcnn_backbone import build_fasterrcnn
    from densecnn.train.freeze import backbone_stages
    from densecnn.train.loop import TrainTask
    from densecnn.train.start import imagenet_weights, load_matching, start_meta

    data = load_detection_data(cfg.data)
    train_imgs, val_imgs = train_val(data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    train_items, val_items = read_items(data, train_imgs), read_items(data, val_imgs)
    start = start_meta(cfg.weights, task="detect")
    backbone = cfg.backbone or (start.backbone if start is not None else None) or DEFAULT_BACKBONE
    notes: list[str] = []
    imgsz = cfg.imgsz or DEFAULT_IMGSZ
    imagenet = imagenet_weights(backbone, pretrained=cfg.pretrained and start is None, notes=notes)
    model = build_fasterrcnn(
        backbone,
        data.nc + 1,
        pretrained_backbone=imagenet,
        min_size=imgsz,
        max_size=round(imgsz * 1333 / 800),
        box_score_thresh=VAL_SCORE_THRESH,
    )
    if cfg.weights is not None:
        load_matching(model, cfg.weights, notes)
    return TrainTask(
        model=model,
        train_data=RcnnDataset(train_items, rcnn_transform(augment=cfg.augment)),
        val_data=RcnnDataset(val_items, rcnn_transform(augment=False)) if val_items else None,
        train_step=train_step,
        validate=Validator(val_items, data.names),
        meta=_meta(model, backbone, data.names, cfg),
        collate_fn=collate,
        stages=backbone_stages(model.backbone.body),
        default_lr=1e-4,
        notes=notes,
    )


def _meta(model: nn.Module, backbone: str, names: tuple[str, ...], cfg: TrainConfig) -> Any:
    """Checkpoint metadata, with the split so `eval --split val` scores what training held out."""
    import dataclasses

    from densecnn.tasks.detect.rcnn_backbone import fasterrcnn_meta

    meta = fasterrcnn_meta(model, backbone=backbone, class_names=names)
    split = {"path": str(cfg.data), "val_fraction": cfg.val_fraction, "seed": cfg.seed}
    return dataclasses.replace(meta, extra={**meta.extra, "data": split})


def train_rcnn(cfg: TrainConfig) -> TrainOutcome:
    """Train (or resume) a Faster R-CNN on ``cfg.backbone``; see the module docstring."""
    from densecnn.train.loop import fit, resolve_resume

    cfg = resolve_resume(cfg)
    return fit(cfg, build_task(cfg))
