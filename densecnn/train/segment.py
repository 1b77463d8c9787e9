"""``densecnn train segment``: U-Net / DeepLabV3+ (smp decoders) and DeepLabV3 (torchvision's head)
on any registry backbone, or torchvision's DeepLabV3 / LR-ASPP models (:mod:`.segment_tv`), trained
on a masks folder (:mod:`densecnn.data.masks`) with densecnn's loop (:mod:`densecnn.train.loop`).

Training batches are square ``imgsz`` crops (:func:`~densecnn.train.transforms.segment_transform`);
the loss is cross-entropy plus Dice (both skip ``ignore_index`` pixels; Dice keeps small classes
from vanishing under the background). Validation runs the model through ``densecnn segment``'s own
predictor (shorter side to ``imgsz``, whole image, logits resized back to the image) and scores
mIoU at full resolution: fitness = mIoU, what ``densecnn eval segment`` reports for the same split.

The checkpoints name their head, backbone, classes, ``input_size`` (= ``imgsz``), normalisation and,
under ``extra["data"]``, the mask mode and split, so ``densecnn segment --weights best.safetensors``
and ``densecnn eval segment`` need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchvision import tv_tensors

from densecnn.checkpoint import CheckpointMeta
from densecnn.data.masks import MaskPair, MasksFolder, open_masks_folder, read_mask
from densecnn.errors import UsageError
from densecnn.train.config import TrainConfig, TrainOutcome
from densecnn.train.freeze import backbone_stages
from densecnn.train.loop import TrainTask, fit, resolve_resume, seed_everything
from densecnn.train.segment_tv import BuiltModel, build_torchvision
from densecnn.train.start import imagenet_weights, load_matching, scratch_batchnorm, start_meta
from densecnn.train.transforms import DecodeCache, bgr_to_image, segment_transform

ARCHS = ("unet", "deeplabv3plus", "deeplabv3")  # heads on any registry backbone
DEFAULT_BACKBONE = "resnet18"
AUX_WEIGHT = 0.5  # torchvision's reference recipe for DeepLabV3's auxiliary head
MAX_CLASS_COLUMNS = 8  # per-class IoU columns in results.csv up to this many classes


class MaskTrainData(Dataset):
    """``(image (3, s, s) float normalised, mask (s, s) int64)`` augmented crops of ``pairs``."""

    def __init__(self, pairs: list[MaskPair], folder: MasksFolder, transform: Any) -> None:
        self.pairs, self.folder, self.transform = pairs, folder, transform
        self.cache = DecodeCache(len(pairs))

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, i: int) -> tuple[tv_tensors.Image, np.ndarray]:
        from densecnn.sources.images import read_image

        pair, folder = self.pairs[i], self.folder
        image = bgr_to_image(read_image(pair.image))
        return image, read_mask(pair.mask, mask_mode=folder.mask_mode, ignore_index=folder.ignore_index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.cache.get(i, lambda: self._load(i))
        img, msk = self.transform(image, tv_tensors.Mask(torch.from_numpy(mask)))
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor).long()


class MaskValData(Dataset):
    """``(Frame, label map)`` of ``pairs`` at full resolution (scored like ``densecnn eval``)."""

    def __init__(self, pairs: list[MaskPair], folder: MasksFolder) -> None:
        self.pairs, self.folder = pairs, folder

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Any, np.ndarray]:
        from densecnn.eval.segment import frame_of

        pair = self.pairs[i]
        mask = read_mask(pair.mask, mask_mode=self.folder.mask_mode, ignore_index=self.folder.ignore_index)
        return frame_of(pair.image), mask


def as_list(batch: list[Any]) -> list[Any]:
    return batch


@dataclass
class SegmentLoss:
    """Cross-entropy + multiclass Dice (smp), both ignoring ``ignore_index``; + 0.5 x the cross-entropy
    of torchvision's auxiliary head when the model returns one."""

    ignore_index: int

    def __post_init__(self) -> None:
        from segmentation_models_pytorch.losses import DiceLoss

        self.dice = DiceLoss(mode="multiclass", from_logits=True, ignore_index=self.ignore_index)

    def __call__(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        images, masks = (t.to(device, non_blocking=True) for t in batch)
        logits = model(images)
        aux = None
        if isinstance(logits, dict):  # torchvision: {"out": ..., "aux": ... when aux_loss}
            logits, aux = logits["out"], logits.get("aux")
        ce = F.cross_entropy(logits, masks, ignore_index=self.ignore_index)
        losses = {"ce": ce, "dice": self.dice(logits.float(), masks)}
        if aux is not None:
            losses["aux"] = AUX_WEIGHT * F.cross_entropy(aux, masks, ignore_index=self.ignore_index)
        return losses


@dataclass
class SegmentValidator:
    """mIoU (fitness), mDice, pixel accuracy and per-class IoU through the prediction path."""

    names: tuple[str, ...]
    imgsz: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ignore_index: int

    def __call__(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        from densecnn.eval.segment import score, segmentation_metrics
        from densecnn.tasks.segment.semantic import SemanticSegmenter
        from densecnn.zoo.specs import Preprocess

        prep = Preprocess(resize=self.imgsz, crop=self.imgsz, mean=self.mean, std=self.std)
        names = dict(enumerate(self.names))
        predictor = SemanticSegmenter(model=model, preprocess=prep, names=names, device=device, half=False)
        data = loader.dataset  # MaskValData: scored from its files, through the prediction pipeline
        conf = score(predictor, data.pairs, data.folder, num_classes=len(self.names), batch=loader.batch_size)
        metrics, per_class = segmentation_metrics(conf, self.names)
        out = {"mIoU": metrics["mIoU"], "mDice": metrics["mDice"], "pixel_acc": metrics["pixel_acc"]}
        if len(self.names) <= MAX_CLASS_COLUMNS:
            out |= {f"IoU/{name}": row["IoU"] for name, row in per_class.items()}
        return {**out, "fitness": metrics["mIoU"]}


def _arch(cfg: TrainConfig, meta0: CheckpointMeta | None) -> str:
    """``--model`` (else the ``--weights`` checkpoint's, else unet), checked to be trainable here."""
    from densecnn.zoo.segmentation import TORCHVISION_SEGMENTERS

    arch = (cfg.model or (meta0.arch if meta0 else "unet")).lower()
    if arch not in ARCHS and arch not in TORCHVISION_SEGMENTERS:
        raise UsageError(
            f"train segment: --model {cfg.model} is not trainable here; use "
            f"{', '.join(ARCHS)} (on any --backbone) or {', '.join(TORCHVISION_SEGMENTERS)}.",
            hint="The heads train on any registry --backbone (`densecnn models --matrix`).",
        )
    return arch


def _registry_head(
    arch: str, cfg: TrainConfig, meta0: CheckpointMeta | None, num_classes: int, notes: list[str]
) -> BuiltModel:
    """A head of :data:`~densecnn.zoo.heads.HEADS` on a registry backbone (ImageNet weights from
    the store when ``--pretrained``; ``--weights`` loaded where shapes fit)."""
    from densecnn.backbones import BACKBONES
    from densecnn.zoo.heads import HEADS

    backbone = cfg.backbone or (meta0.backbone if meta0 and meta0.backbone else DEFAULT_BACKBONE)
    pretrained = imagenet_weights(backbone, pretrained=cfg.pretrained and cfg.weights is None, notes=notes)
    # The starting checkpoint's decoder widths unless --decoder-channels names others.
    same = meta0 is not None and meta0.arch == arch
    kwargs: dict[str, Any] = dict(meta0.extra.get("builder_kwargs", {})) if same and meta0 else {}
    if cfg.decoder_channels:
        if arch != "unet":
            raise UsageError(f"--decoder-channels applies to --model unet, not {arch}.")
        kwargs["decoder_channels"] = list(cfg.decoder_channels)
    model = HEADS.get(arch).build(backbone, num_classes, pretrained_backbone=pretrained, **kwargs)
    if cfg.weights is not None:
        load_matching(model, cfg.weights, notes)
    if pretrained is False:  # from scratch, or from a checkpoint's running statistics: see the note
        scratch_batchnorm(model, notes)
    prep = BACKBONES.get(backbone).preprocess
    return BuiltModel(
        model=model,
        backbone_module=model.backbone,
        backbone=backbone,
        imgsz=cfg.imgsz or HEADS.get(arch).input_size,
        mean=tuple(prep.mean),
        std=tuple(prep.std),
        builder_kwargs=kwargs,
    )


def build_task(cfg: TrainConfig) -> TrainTask:
    """Model, data, loss and validation of a ``train segment`` run (see the module docstring)."""
    seed_everything(cfg.seed, deterministic=cfg.deterministic)  # the model's init is part of the run
    notes: list[str] = []
    meta0 = start_meta(cfg.weights, task="segment")
    arch = _arch(cfg, meta0)
    folder = open_masks_folder(
        cfg.data,
        mask_mode=cfg.mask_mode,
        num_classes=cfg.num_classes,
        class_names=cfg.class_names,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        ignore_index=cfg.ignore_index,
    )
    names = folder.class_names
    if arch in ARCHS:
        built = _registry_head(arch, cfg, meta0, len(names), notes)
    else:
        built = build_torchvision(arch, cfg, len(names), notes)
    imgsz, mean, std = built.imgsz, built.mean, built.std
    split = "own train/val folders" if folder.explicit_split else f"seeded split, val {cfg.val_fraction:g}"
    notes.append(f"Data: {cfg.data} ({split}); classes: {', '.join(names)}; mask mode {cfg.mask_mode}")
    transform = segment_transform(imgsz, augment=cfg.augment, mean=mean, std=std)
    meta = CheckpointMeta(
        task="segment",
        arch=arch,
        class_names=names,
        input_size=imgsz,
        mean=mean,
        std=std,
        backbone=built.backbone,
        extra={
            "builder_kwargs": built.builder_kwargs,
            "data": {
                "format": "masks",
                "mask_mode": cfg.mask_mode,
                "ignore_index": cfg.ignore_index,
                "val_fraction": cfg.val_fraction,
                "seed": cfg.seed,
            },
        },
    )
    return TrainTask(
        model=built.model,
        train_data=MaskTrainData(folder.train, folder, transform),
        val_data=MaskValData(folder.val, folder),
        train_step=SegmentLoss(cfg.ignore_index),
        validate=SegmentValidator(names, imgsz, mean, std, cfg.ignore_index),
        meta=meta,
        val_collate_fn=as_list,
        stages=backbone_stages(built.backbone_module),
        default_lr=1e-3,
        notes=notes,
    )


def train(cfg: TrainConfig) -> TrainOutcome:
    """Train a segmenter as ``cfg`` says (``--resume``: the run's own settings, more epochs)."""
    cfg = resolve_resume(cfg)
    return fit(cfg, build_task(cfg))
