"""Classification heads on registry backbones.

- :func:`build_classifier`: any registered backbone + :class:`ClassifierHead` (global average pool
  on the last stage, dropout, linear): what ``densecnn train classify`` trains and its checkpoints
  hold (``CheckpointMeta(arch="classifier", backbone=NAME)``, loaded by
  :func:`load_classifier_checkpoint`).
- :func:`build_imagenet_classifier`: a torchvision ImageNet classifier rebuilt as backbone stages +
  torchvision's own classification head (ConvNeXt's LayerNorm, MobileNetV3's MLP included), so its
  logits equal torchvision's ``model(x)`` for the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from densecnn.backbones import BACKBONES
from densecnn.backbones.base import Backbone
from densecnn.backbones.registry import backbone_for
from densecnn.checkpoint import CheckpointMeta, load_head_checkpoint, load_into
from densecnn.errors import UsageError
from densecnn.tasks.builders import BuildRequest, register_builder
from densecnn.zoo.heads import CLASSIFIER_STRIDES
from densecnn.zoo.specs import Preprocess

CHECKPOINT_ARCH = "classifier"


class ClassifierHead(nn.Module):
    """Last-stage features ``(N, in_channels, h, w)`` → logits ``(N, num_classes)``:
    global average pool, dropout, linear."""

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.2) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class TorchvisionHead(nn.Module):
    """torchvision's own classification head, its modules under their torchvision names:
    ``avgpool`` then ``fc`` (ResNet) or ``classifier`` (others; ConvNeXt's starts with a
    LayerNorm2d on the pooled ``(N, C, 1, 1)`` map and flattens after it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.avgpool = model.avgpool
        if hasattr(model, "fc"):
            self.fc = model.fc
            self.flatten = True
        else:
            self.classifier = model.classifier
            # torchvision flattens the pooled map unless the classifier does it itself (ConvNeXt)
            self.flatten = not any(isinstance(m, nn.Flatten) for m in model.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(x)
        if self.flatten:
            x = torch.flatten(x, 1)
        return self.fc(x) if hasattr(self, "fc") else self.classifier(x)


class Classifier(nn.Module):
    """A backbone and a head on its last stage: ``forward(x (N, C, H, W))`` → logits ``(N, K)``."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])


def build_classifier(
    backbone: str | Backbone,
    num_classes: int,
    *,
    pretrained_backbone: bool | Path = False,
    in_channels: int = 3,
    dropout: float = 0.2,
) -> Classifier:
    """``backbone`` (a registry name, or a built Backbone used as is) + :class:`ClassifierHead` with
    ``num_classes`` outputs: ``(N, in_channels, H, W)`` → logits ``(N, num_classes)``.

    ``pretrained_backbone``: ImageNet weights for the backbone (True: the weight store; a path: a
    torchvision state dict); the head is always freshly initialised. State dict keys:
    ``backbone.*`` (torchvision's names) and ``head.fc.*``.
    """
    if num_classes < 1:
        raise UsageError(f"num_classes must be at least 1, got {num_classes}.")
    body = backbone_for(
        backbone,
        head="classifier",
        strides=CLASSIFIER_STRIDES,
        pretrained=pretrained_backbone,
        in_channels=in_channels,
    )
    return Classifier(body, ClassifierHead(body.feature_info[-1].channels, num_classes, dropout=dropout))


def build_imagenet_classifier(arch: str, *, weights: bool | Path = True) -> Classifier:
    """torchvision's ImageNet classifier ``arch`` as backbone + :class:`TorchvisionHead`.

    ``weights``: True for the official file from the weight store, a path for a torchvision state
    dict, False for random init. ``forward`` equals torchvision's ``model(x)`` → ``(N, 1000)``;
    preprocessing: ``BACKBONES.get(arch).preprocess``.
    """
    from densecnn.backbones.registry import STAGE_ENDS
    from densecnn.backbones.torchvision_nets import cut_stages, torchvision_classifier

    spec = BACKBONES.get(arch)
    if spec.classifier_arch is None or spec.weights is None:
        raise UsageError(
            f"{spec.name} has no ImageNet classifier (it is densecnn's own backbone).",
            hint="Use build_classifier() and train it, or pick a torchvision backbone.",
        )
    path: Path | None = None
    if weights is True:
        from densecnn.zoo.store import WeightStore

        path = WeightStore().fetch(spec.weights, model=spec.classifier_arch)
    elif weights is not False:
        path = Path(weights)
    model = torchvision_classifier(spec.classifier_arch, weights_path=path)
    body = cut_stages(
        model, ends=STAGE_ENDS[spec.classifier_arch], feature_info=spec.feature_info, in_channels=3
    )
    body.name = spec.name
    return Classifier(body, TorchvisionHead(model))


def load_classifier_checkpoint(path: Path) -> tuple[Classifier, CheckpointMeta]:
    """A densecnn classifier checkpoint (``arch="classifier"``) rebuilt and loaded (eval mode)."""
    what = f"a classifier on a backbone (arch={CHECKPOINT_ARCH!r})"
    state, meta = load_head_checkpoint(path, archs=(CHECKPOINT_ARCH,), what=what)
    model = build_classifier(
        meta.backbone,
        meta.num_classes,
        in_channels=meta.in_channels,
        dropout=float(meta.extra.get("dropout", 0.2)),
    )
    return load_into(model, state, source=path, what=f"a classifier on {meta.backbone}"), meta


def checkpoint_preprocess(meta: CheckpointMeta) -> Preprocess:
    """How a densecnn classifier checkpoint wants its images: ``input_size`` is the centre crop, and
    the shorter side is resized to ``extra["preprocess"]["resize"]`` when given (else to
    ``input_size``), with ``extra["preprocess"]["interpolation"]`` (default bilinear), then normalised
    with ``mean``/``std``."""
    extra = meta.extra.get("preprocess") or {}
    return Preprocess(
        resize=int(extra.get("resize", meta.input_size)),
        crop=int(meta.input_size),
        mean=tuple(meta.mean),
        std=tuple(meta.std),
        interpolation=str(extra.get("interpolation", "bilinear")),
    )


@register_builder("classify", "densecnn")
def build_head_classifier(request: BuildRequest) -> Any:
    """The pooled linear head on a registry backbone, from a densecnn checkpoint."""
    from densecnn.tasks.classify.torch_cls import TensorClassifier, scaled_preprocess
    from densecnn.tasks.loading import needs_weights

    weights = request.weights
    if weights.meta is None or weights.path is None:
        raise needs_weights(
            request,
            fresh="a fresh head would guess at random",
            train=f"densecnn train classify --backbone {request.cfg.backbone}",
        )
    model, meta = load_classifier_checkpoint(weights.path)
    predictor = TensorClassifier(
        model=model,
        preprocess=scaled_preprocess(checkpoint_preprocess(meta), request.imgsz),
        names=dict(enumerate(meta.class_names)),
        device=request.device,
        half=request.half,
        topk=request.cfg.topk,
        in_channels=meta.in_channels,
    )
    predictor.backbone = meta.backbone  # shown in the run header and summary.json
    return predictor
