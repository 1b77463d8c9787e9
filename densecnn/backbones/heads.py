"""The heads that sit on any registered backbone, as data (torch-free): what each needs from a
backbone, its default input size, and where its builder lives.

Every builder has the form ``build(backbone: str, num_classes: int, *, pretrained_backbone=False,
in_channels=3, ...) -> nn.Module`` and fails with a UsageError at build time (via
``Backbone.require``) when the backbone lacks the strides listed here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from densecnn.backbones.specs import BackboneSpec
from densecnn.registry import Registry

if TYPE_CHECKING:
    from torch import nn

# Backbone strides each head needs (a head may use more stages when the backbone has them).
CLASSIFIER_STRIDES: tuple[int, ...] = ()  # global pooling on the last stage: any backbone
FPN_STRIDES: tuple[int, ...] = (8, 16, 32)  # + stride 4 when present; FPN adds a stride-64 level
UNET_STRIDES: tuple[int, ...] = (4, 8, 16, 32)  # + stride 2 when present
DEEPLAB_STRIDES: tuple[int, ...] = (4, 32)  # low-level skip at 4, ASPP at 32
DEEPLABV3_STRIDES: tuple[int, ...] = (32,)  # ASPP on the deepest stage only


@dataclass(frozen=True)
class HeadSpec:
    """A head: ``task``, the backbone ``strides`` it needs, the square ``input_size`` and
    ``num_classes`` it is measured at (``densecnn models --matrix``), and its ``builder``
    (``module:function``, imported on first use)."""

    name: str
    task: str
    strides: tuple[int, ...]
    input_size: int
    num_classes: int
    builder: str
    description: str = ""

    def load(self) -> Callable[..., nn.Module]:
        module, _, func = self.builder.partition(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]

    def build(self, backbone: str, num_classes: int, **kwargs: Any) -> nn.Module:
        return self.load()(backbone, num_classes, **kwargs)

    def check(self, backbone: BackboneSpec) -> None:
        """UsageError (the reason) when ``backbone`` cannot serve this head; no torch involved."""
        backbone.require(head=self.name, strides=self.strides)


HEADS: Registry[HeadSpec] = Registry("head")

HEADS.add(
    "classifier",
    HeadSpec(
        "classifier",
        "classify",
        CLASSIFIER_STRIDES,
        224,
        1000,
        "densecnn.tasks.classify.head:build_classifier",
        "global average pool on the last stage + dropout + linear",
    ),
)
HEADS.add(
    "fasterrcnn",
    HeadSpec(
        "fasterrcnn",
        "detect",
        FPN_STRIDES,
        800,
        91,
        "densecnn.tasks.detect.rcnn_backbone:build_fasterrcnn",
        "torchvision Faster R-CNN with an FPN over the stride 4-32 stages",
    ),
)
HEADS.add(
    "unet",
    HeadSpec(
        "unet",
        "segment",
        UNET_STRIDES,
        512,
        21,
        "densecnn.tasks.segment.smp_heads:build_unet",
        "segmentation-models-pytorch U-Net decoder",
    ),
)
HEADS.add(
    "deeplabv3plus",
    HeadSpec(
        "deeplabv3plus",
        "segment",
        DEEPLAB_STRIDES,
        512,
        21,
        "densecnn.tasks.segment.smp_heads:build_deeplabv3plus",
        "segmentation-models-pytorch DeepLabV3+ decoder (ASPP on the stride-32 stage)",
    ),
)
HEADS.add(
    "deeplabv3",
    HeadSpec(
        "deeplabv3",
        "segment",
        DEEPLABV3_STRIDES,
        512,
        21,
        "densecnn.tasks.segment.smp_heads:build_deeplabv3",
        "torchvision DeepLabHead (ASPP + 3x3 conv) on the stride-32 stage, upsampled to the input",
    ),
)
