"""torchvision's segmentation models (DeepLabV3 ResNet-50/101 and MobileNetV3, LR-ASPP MobileNetV3)
as ``densecnn train segment --model NAME`` builds them.

Where training starts:

- ``--weights FILE``: a torchvision state dict (e.g. the official VOC file) or a densecnn checkpoint
  of the same model; tensors whose shape differs (the classifier's last conv, and the auxiliary
  head's, for a new class count) stay freshly initialised and the run notes say which.
- ``--pretrained`` (default) without ``--weights``: the zoo's VOC checkpoint when the weight store
  holds it (``densecnn weights pull NAME``), the same transfer; else from scratch, said so.

DeepLabV3 trains with torchvision's auxiliary FCN head (its reference recipe: loss on ``"out"`` +
0.5 x loss on ``"aux"``); the head is saved with the checkpoint (``builder_kwargs.aux_loss``) and
ignored at prediction. Normalisation is torchvision's preset (ImageNet mean/std), default ``imgsz``
its 520 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from densecnn.train.config import TrainConfig
from densecnn.train.start import load_matching, scratch_batchnorm


@dataclass
class BuiltModel:
    """A model to train with what its checkpoint must say about it."""

    model: nn.Module
    backbone_module: nn.Module  # the part ``--freeze`` counts stages of
    backbone: str | None  # registry name; None for a torchvision model (its own backbone)
    imgsz: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    builder_kwargs: dict[str, Any]


def zoo_start(arch: str, *, pretrained: bool, notes: list[str]) -> Path | None:
    """The zoo's VOC file of ``arch`` when ``pretrained`` and the store has it (no download), else None
    with a note that training starts from scratch."""
    from densecnn.zoo import MODELS
    from densecnn.zoo.store import WeightStore

    if not pretrained:
        notes.append(f"{arch}: training from scratch (--no-pretrained).")
        return None
    weights = MODELS.get(arch).weights
    store = WeightStore()
    if weights is None or not store.is_cached(weights):
        where = store.path(weights) if weights is not None else "the zoo"
        notes.append(
            f"No VOC weights for {arch} in the weight store ({where}): training from scratch. "
            f"`densecnn weights pull {arch}` gets them where the network allows."
        )
        return None
    return store.path(weights)


def build_torchvision(arch: str, cfg: TrainConfig, num_classes: int, notes: list[str]) -> BuiltModel:
    """torchvision ``arch`` for ``num_classes``, started as the module docstring says."""
    from densecnn.errors import UsageError
    from densecnn.tasks.segment.semantic import build_torchvision_segmenter
    from densecnn.zoo.segmentation import SEGMENTATION_PREPROCESS

    if cfg.backbone is not None:
        raise UsageError(
            f"{arch} has its own backbone; leave out --backbone {cfg.backbone}.",
            hint="A registry --backbone goes with --model unet, deeplabv3plus or deeplabv3.",
        )
    aux = arch.startswith("deeplabv3")
    model = build_torchvision_segmenter(arch, num_classes, aux_loss=aux)
    start = cfg.weights or zoo_start(arch, pretrained=cfg.pretrained, notes=notes)
    if start is not None:
        load_matching(model, start, notes)
    else:
        scratch_batchnorm(model, notes)
    if aux:
        notes.append("Loss: out + 0.5 x the auxiliary head's cross-entropy (torchvision's recipe).")
    prep = SEGMENTATION_PREPROCESS
    return BuiltModel(
        model=model,
        backbone_module=model.backbone,
        backbone=None,
        imgsz=cfg.imgsz or prep.resize,
        mean=tuple(prep.mean),
        std=tuple(prep.std),
        builder_kwargs={"aux_loss": aux} if aux else {},
    )
