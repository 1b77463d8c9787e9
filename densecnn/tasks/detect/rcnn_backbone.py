"""Faster R-CNN with an FPN on any registered backbone (torchvision's ``FasterRCNN``).

The FPN (``torchvision.ops.FeaturePyramidNetwork``, 256 channels) takes the backbone's stride 4, 8,
16, 32 stages (8, 16, 32 when there is no stride-4 stage) and adds a stride-64 max-pooled level.
Anchors: one size per level, 8x its stride (32, 64, 128, 256, 512 px on stride 4-64), aspect
ratios 0.5, 1, 2, as torchvision's ``fasterrcnn_resnet50_fpn``; RoIAlign 7x7 over the stride 4-32
levels. On resnet50 the module tree and state dict keys are those of torchvision's
``fasterrcnn_resnet50_fpn`` (tests check the outputs match).

Labels follow torchvision: label 0 is the background, so ``num_classes`` counts it, and a densecnn
checkpoint's ``class_names[0]`` is ``"__background__"``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from densecnn.backbones import BACKBONES
from densecnn.backbones.base import Backbone
from densecnn.backbones.registry import backbone_for
from densecnn.checkpoint import CheckpointMeta, load_head_checkpoint, load_into
from densecnn.errors import UsageError
from densecnn.tasks.builders import BuildRequest, register_builder
from densecnn.zoo.heads import FPN_STRIDES

CHECKPOINT_ARCH = "fasterrcnn"
BACKGROUND = "__background__"
DEFAULT_MIN_SIZE = 800
DEFAULT_MAX_SIZE = 1333


class BackboneFPN(nn.Module):
    """A registry backbone with an FPN: ``(N, C, H, W)`` → OrderedDict ``"0"``, ``"1"``, ...,
    ``"pool"`` of ``(N, out_channels, H / s, W / s)`` maps, ``s`` in :attr:`strides`.

    Named as torchvision's ``BackboneWithFPN`` (``body``, ``fpn``, ``out_channels``).
    """

    def __init__(self, backbone: Backbone, *, out_channels: int = 256) -> None:
        super().__init__()
        wanted = [4, *FPN_STRIDES] if 4 in backbone.strides else list(FPN_STRIDES)
        self.indices = backbone.require(head=CHECKPOINT_ARCH, strides=wanted)
        self.strides = (*wanted, 2 * wanted[-1])  # the extra max-pooled level
        self.body = backbone
        self.fpn = FeaturePyramidNetwork(
            [backbone.feature_info[i].channels for i in self.indices],
            out_channels,
            extra_blocks=LastLevelMaxPool(),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(k), feats[i]) for k, i in enumerate(self.indices)))


def build_fasterrcnn(
    backbone: str | Backbone,
    num_classes: int,
    *,
    pretrained_backbone: bool | Path = False,
    in_channels: int = 3,
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    fpn_channels: int = 256,
    **rcnn_kwargs: Any,
) -> FasterRCNN:
    """torchvision ``FasterRCNN`` on ``backbone`` (a registry name, or a built Backbone used as is)
    with an FPN.

    ``num_classes`` includes the background (label 0), as in torchvision. Inputs are lists of
    ``(C, H, W)`` float images in [0, 1]; the model's transform resizes the shorter side to
    ``min_size`` (longer side at most ``max_size``) and normalises with ``image_mean``/``image_std``
    (default: the backbone's ImageNet values). ``rcnn_kwargs`` go to ``FasterRCNN`` (thresholds,
    sampling). Raises UsageError when the backbone lacks stride 8/16/32 stages.
    """
    if num_classes < 2:
        raise UsageError(f"num_classes counts the background, so it must be at least 2, got {num_classes}.")
    body = BackboneFPN(
        backbone_for(
            backbone,
            head=CHECKPOINT_ARCH,
            strides=FPN_STRIDES,
            pretrained=pretrained_backbone,
            in_channels=in_channels,
        ),
        out_channels=fpn_channels,
    )
    if image_mean is None or image_std is None:
        if body.body.name not in BACKBONES:
            raise UsageError("Pass image_mean and image_std for a backbone that is not registered.")
        norm = BACKBONES.get(body.body.name).preprocess.for_channels(body.body.in_channels)
        image_mean = norm.mean if image_mean is None else image_mean
        image_std = norm.std if image_std is None else image_std
    anchors = AnchorGenerator(
        sizes=tuple((8 * s,) for s in body.strides),
        aspect_ratios=((0.5, 1.0, 2.0),) * len(body.strides),
    )
    roi_pool = MultiScaleRoIAlign(
        featmap_names=[str(k) for k in range(len(body.indices))], output_size=7, sampling_ratio=2
    )
    return FasterRCNN(
        body,
        num_classes=num_classes,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        **rcnn_kwargs,
    )


def fasterrcnn_meta(
    model: FasterRCNN,
    *,
    backbone: str,
    class_names: Sequence[str],
    in_channels: int = 3,
    metrics: dict[str, float] | None = None,
) -> CheckpointMeta:
    """Checkpoint metadata for ``model`` (from :func:`build_fasterrcnn`); ``class_names`` are the
    object classes, label 1 onwards (the background name is prepended)."""
    names = (BACKGROUND, *(n for n in class_names if n != BACKGROUND))
    outputs = model.roi_heads.box_predictor.cls_score.out_features
    if len(names) != outputs:
        raise ValueError(f"{len(names) - 1} class names for a model with {outputs - 1} object classes")
    return CheckpointMeta(
        task="detect",
        arch=CHECKPOINT_ARCH,
        class_names=names,
        input_size=int(model.transform.min_size[0]),
        mean=tuple(float(v) for v in model.transform.image_mean),
        std=tuple(float(v) for v in model.transform.image_std),
        backbone=backbone,
        in_channels=in_channels,
        metrics=dict(metrics or {}),
        extra={"max_size": int(model.transform.max_size), "fpn_channels": int(model.backbone.out_channels)},
    )


def load_fasterrcnn_checkpoint(path: Path) -> tuple[FasterRCNN, CheckpointMeta]:
    """A densecnn Faster R-CNN checkpoint (``arch="fasterrcnn"``) rebuilt and loaded (eval mode)."""
    what = "a Faster R-CNN on a backbone"
    state, meta = load_head_checkpoint(path, archs=(CHECKPOINT_ARCH,), what=what)
    model = build_fasterrcnn(
        meta.backbone,
        meta.num_classes,
        in_channels=meta.in_channels,
        min_size=meta.input_size,
        max_size=int(
            meta.extra.get("max_size", round(meta.input_size * DEFAULT_MAX_SIZE / DEFAULT_MIN_SIZE))
        ),
        image_mean=meta.mean,
        image_std=meta.std,
        fpn_channels=int(meta.extra.get("fpn_channels", 256)),
    )
    return load_into(model, state, source=path, what=f"a Faster R-CNN on {meta.backbone}"), meta


@register_builder("detect", "densecnn")
def build_backbone_detector(request: BuildRequest) -> Any:
    """Faster R-CNN on a registry backbone, from a densecnn checkpoint (it names backbone and classes)."""
    from densecnn.tasks.detect.rcnn import TorchvisionDetector, configure_rcnn

    weights, spec = request.weights, request.spec
    if weights.meta is None or weights.path is None:
        raise _no_trained_weights(request)
    model, meta = load_fasterrcnn_checkpoint(weights.path)
    configure_rcnn(
        model,
        conf=float(request.conf if request.conf is not None else 0.05),
        iou=float(request.iou if request.iou is not None else 0.5),
        max_det=request.max_det,
        imgsz=request.imgsz,
    )
    assert spec.name == CHECKPOINT_ARCH
    return TorchvisionDetector(
        model=model,
        names=dict(enumerate(meta.class_names)),
        device=request.device,
        half=request.half,
        backbone=meta.backbone,
    )


def _no_trained_weights(request: BuildRequest) -> UsageError:
    """A backbone-built detector without a densecnn checkpoint: why it cannot run, and what to do."""
    spec, cfg = request.spec, request.cfg
    if cfg.backbone is not None and spec.head is not None:
        spec.head.check(BACKBONES.get(cfg.backbone))
    backbone = cfg.backbone or "NAME"
    how = (
        f"Train one with `densecnn train detect --model {spec.name} --backbone {backbone} --data "
        "DATA.yaml`, then pass --weights CKPT.safetensors from that run (it names its backbone and "
        "classes itself; `densecnn models --matrix` lists backbones)."
    )
    if cfg.weights is not None:
        return UsageError(
            f"--weights {cfg.weights} is not a densecnn checkpoint; {spec.name} loads its weights "
            "only from one (a .safetensors file written by densecnn).",
            hint=how,
        )
    on = f" on {cfg.backbone}" if cfg.backbone else ""
    return UsageError(
        f"{spec.name}{on} has no trained weights yet: densecnn ships no detection weights for models "
        "built on a registry backbone (ImageNet backbone weights alone do not detect).",
        hint=how,
    )
