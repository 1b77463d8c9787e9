"""densecnn's own LeNet-5-style backbone: tiny, fast, for small (grayscale) images and tests.

Three stages, each ``conv 5x5 (same padding) → BatchNorm → ReLU → 2x2 max-pool``, with LeNet-5's
widths (6, 16, 120 channels) at strides 2, 4, 8. A 32x32 input gives 4x4 features at the last
stage. No official weights: it is trained from scratch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from densecnn.backbones.base import Backbone, FeatureInfo
from densecnn.checkpoint import load_state_dict
from densecnn.errors import UsageError


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            act=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True),
        )
    )


class LeNet(Backbone):
    """``(N, in_channels, H, W)`` → stages ``(N, 6, H/2, W/2)``, ``(N, 16, H/4, W/4)``,
    ``(N, 120, H/8, W/8)`` (sizes rounded up)."""

    def __init__(self, *, feature_info: Sequence[FeatureInfo], in_channels: int = 3) -> None:
        super().__init__()
        if in_channels < 1:
            raise UsageError(f"in_channels must be at least 1, got {in_channels}.")
        widths = [in_channels, *(f.channels for f in feature_info)]
        self.stages = nn.ModuleList(_stage(a, b) for a, b in pairwise(widths))
        self.feature_info = tuple(feature_info)
        self.in_channels = in_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


def build_lenet(
    *, feature_info: Sequence[FeatureInfo], weights_path: Path | None = None, in_channels: int = 3
) -> LeNet:
    """A LeNet backbone, random init, or the backbone state dict in ``weights_path``."""
    model = LeNet(feature_info=feature_info, in_channels=in_channels)
    if weights_path is not None:
        try:
            model.load_state_dict(load_state_dict(Path(weights_path)))
        except RuntimeError as exc:
            raise UsageError(
                f"{weights_path} does not fit the lenet backbone (in_channels={in_channels}): "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    return model
