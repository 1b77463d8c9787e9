"""torchvision classification models cut into stages.

The backbone reuses the classification model's own modules under their torchvision names, so its
state dict is torchvision's minus the classification head (``fc`` / ``classifier``): ImageNet
weights load into the full torchvision model (``torch.load(weights_only=True)``), then the stages
take its modules. The last stage ends where torchvision's global pooling begins (for MobileNetV3 and
EfficientNet that includes the final 1x1 conv: 960/576/1280 channels), so pooling + torchvision's
classifier on it reproduces torchvision's logits exactly (see ``tasks/classify/head.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from densecnn.backbones.base import Backbone, FeatureInfo
from densecnn.checkpoint import load_state_dict
from densecnn.errors import UsageError


class ResNetBackbone(Backbone):
    """ResNet stages: ``conv1-bn1-relu`` (stride 2), ``maxpool-layer1`` (4), ``layer2`` (8),
    ``layer3`` (16), ``layer4`` (32). Attribute names are torchvision's."""

    def __init__(self, model: nn.Module, feature_info: Sequence[FeatureInfo], in_channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = model.conv1, model.bn1, model.relu, model.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            model.layer1,
            model.layer2,
            model.layer3,
            model.layer4,
        )
        self.feature_info = tuple(feature_info)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        out = [x]
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


class FeaturesBackbone(Backbone):
    """Models whose body is one ``features`` Sequential (MobileNetV3, EfficientNet, ConvNeXt).

    Stage ``i`` is the output of ``features[ends[i]]``: the last block before the next downsampling.
    """

    def __init__(
        self,
        features: nn.Sequential,
        ends: Sequence[int],
        feature_info: Sequence[FeatureInfo],
        in_channels: int,
    ) -> None:
        super().__init__()
        if len(ends) != len(feature_info) or list(ends) != sorted(set(ends)) or ends[-1] != len(features) - 1:
            raise ValueError(f"stage ends {list(ends)} do not cut {len(features)} feature blocks")
        self.features = features
        self.ends = tuple(ends)
        self.feature_info = tuple(feature_info)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        ends = iter(self.ends)
        end = next(ends)
        for i, block in enumerate(self.features):
            x = block(x)
            if i == end:
                out.append(x)
                end = next(ends, -1)
        return out


def torchvision_classifier(arch: str, *, weights_path: Path | None, in_channels: int = 3) -> nn.Module:
    """torchvision's ``arch`` classification model, with the ImageNet weights in ``weights_path`` (a
    torchvision state dict) or torchvision's random init; first conv adapted to ``in_channels``.

    With weights, the model is built on the meta device and the loaded tensors are assigned to it
    (strict), skipping a random init that would be overwritten anyway.
    """
    from torchvision.models import get_model

    if weights_path is None:
        model = get_model(arch, weights=None)
    else:
        state = load_state_dict(Path(weights_path))
        with torch.device("meta"):
            model = get_model(arch, weights=None)
        try:
            model.load_state_dict(state, assign=True)
        except RuntimeError as exc:
            raise UsageError(
                f"{weights_path} does not fit torchvision's {arch}: {str(exc).splitlines()[0]}",
                hint=f"Pass the ImageNet state dict of {arch} (as torchvision publishes it).",
            ) from exc
        left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
        if left:  # a tensor that no state dict entry fills (none in torchvision's classifiers)
            raise RuntimeError(f"{arch}: {left[:3]} not loaded from {weights_path}")
    adapt_first_conv(model, in_channels)
    return model


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Give the model's first Conv2d ``in_channels`` inputs, keeping what its RGB weights learnt:
    one channel gets their sum (gray = R = G = B), more channels repeat them cyclically, scaled by
    ``3 / in_channels`` (timm's ``adapt_input_conv``). No-op when it already has ``in_channels``."""
    if in_channels < 1:
        raise UsageError(f"in_channels must be at least 1, got {in_channels}.")
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise UsageError(f"cannot change the input channels of a grouped first conv ({name}).")
    weight = conv.weight.detach()
    if in_channels == 1:
        new_weight = weight.sum(dim=1, keepdim=True)
    else:
        repeat = -(-in_channels // weight.shape[1])
        new_weight = weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(new_weight)
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def cut_stages(
    model: nn.Module, *, ends: Sequence[int] | None, feature_info: Sequence[FeatureInfo], in_channels: int
) -> Backbone:
    """The stages of a torchvision classification ``model`` (ResNet when ``ends`` is None)."""
    if ends is None:
        return ResNetBackbone(model, feature_info, in_channels)
    return FeaturesBackbone(model.features, ends, feature_info, in_channels)


def build_torchvision_backbone(
    arch: str,
    *,
    ends: Sequence[int] | None,
    feature_info: Sequence[FeatureInfo],
    weights_path: Path | None = None,
    in_channels: int = 3,
) -> Backbone:
    """torchvision's ``arch`` (ImageNet weights from ``weights_path`` if given) cut into stages."""
    model = torchvision_classifier(arch, weights_path=weights_path, in_channels=in_channels)
    return cut_stages(model, ends=ends, feature_info=feature_info, in_channels=in_channels)
