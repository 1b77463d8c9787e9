"""The backbone contract every head builds on.

A backbone maps an image batch ``(N, C, H, W)`` float to a list of feature maps, one per stage,
strides strictly increasing (2, 4, 8, 16, 32 for most). ``feature_info`` states each stage's
channels and stride; heads read it and never hard-code channel counts (smp reads
``encoder.out_channels``; timm ``feature_info.channels()``; same idea).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from densecnn.errors import UsageError
from densecnn.zoo.specs import WeightsFile


@dataclass(frozen=True)
class FeatureInfo:
    """One stage's output: ``channels`` and ``stride`` (input pixels per feature pixel)."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: subclasses set ``feature_info`` and implement ``forward`` → list of stage outputs."""

    feature_info: tuple[FeatureInfo, ...]
    in_channels: int = 3

    @property
    def channels(self) -> list[int]:
        return [f.channels for f in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [f.stride for f in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def require(self, *, head: str, strides: Sequence[int]) -> list[int]:
        """Indices of the stages with these ``strides``, or a UsageError saying what is missing."""
        have = self.strides
        missing = [s for s in strides if s not in have]
        if missing:
            raise UsageError(
                f"{head} needs backbone features at strides {list(strides)}; "
                f"{type(self).__name__} has stages at strides {have} (missing {missing}).",
                hint="Pick another --backbone (`densecnn models` shows which heads each one serves).",
            )
        return [have.index(s) for s in strides]


@dataclass(frozen=True)
class Preprocess:
    """How the backbone's ImageNet weights expect images: resize, centre crop, normalise (RGB, [0, 1])."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it, its ImageNet weights and their preprocessing.

    ``build(weights_path, in_channels)`` returns a Backbone, loading the ImageNet weights from
    ``weights_path`` when given. ``classifier_arch`` is the torchvision classification model whose
    weights these are (None for densecnn's own backbones).
    """

    name: str
    build: Callable[..., Backbone]
    weights: WeightsFile | None
    preprocess: Preprocess
    classifier_arch: str | None = None
    description: str = ""
