"""The backbone contract every head builds on.

A backbone maps an image batch ``(N, C, H, W)`` float to a list of feature maps, one per stage,
strides strictly increasing (2, 4, 8, 16, 32 for most). ``feature_info`` states each stage's
channels and stride; heads read it and never hard-code channel counts (smp reads
``encoder.out_channels``; timm ``feature_info.channels()``; same idea). For an input of ``H x W``
divisible by the largest stride, stage ``i`` is ``(N, channels[i], H / s_i, W / s_i)``; other sizes
round at each downsampling as the architecture does (up for most, down for ConvNeXt's patchify
convs), which is why the segmentation heads pad their input to a multiple of 32.

The data half of the contract (:class:`FeatureInfo`, :class:`BackboneSpec`, :class:`Preprocess`)
lives in torch-free modules and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from densecnn.backbones.specs import BackboneSpec, FeatureInfo, check_strides
from densecnn.zoo.specs import Preprocess

__all__ = ["Backbone", "BackboneSpec", "FeatureInfo", "Preprocess"]


class Backbone(nn.Module):
    """Base class: subclasses set ``feature_info`` and implement ``forward`` → list of stage outputs.

    ``name`` is the registry name (set by :func:`densecnn.backbones.build_backbone`).
    """

    feature_info: tuple[FeatureInfo, ...]
    in_channels: int = 3
    name: str = ""

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
        return check_strides(
            self.feature_info, backbone=self.name or type(self).__name__, head=head, strides=strides
        )
