"""The backbone registry: torchvision classification models cut into stages, and densecnn's LeNet.

Torch-free: each entry's ``build`` imports torch only when called. Stage tables (which block ends
each stage, its channels and stride) are checked against real tensors in tests/test_backbones.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from densecnn.backbones.specs import BackboneSpec, FeatureInfo
from densecnn.errors import UsageError
from densecnn.registry import Registry
from densecnn.zoo.imagenet import IMAGENET
from densecnn.zoo.specs import Preprocess

if TYPE_CHECKING:
    from densecnn.backbones.base import Backbone

BACKBONES: Registry[BackboneSpec] = Registry("backbone")

# arch: (index of the block ending each stage in ``features``, or None for ResNet's named layers,
#        (channels, stride) per stage, description)
_TORCHVISION: dict[str, tuple[tuple[int, ...] | None, tuple[tuple[int, int], ...], str]] = {
    "resnet18": (None, ((64, 2), (64, 4), (128, 8), (256, 16), (512, 32)), "ResNet-18, basic blocks"),
    "resnet34": (None, ((64, 2), (64, 4), (128, 8), (256, 16), (512, 32)), "ResNet-34, basic blocks"),
    "resnet50": (None, ((64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)), "ResNet-50, bottlenecks"),
    "mobilenet_v3_small": (
        (0, 1, 3, 8, 12),
        ((16, 2), (16, 4), (24, 8), (48, 16), (576, 32)),
        "MobileNetV3-Small, inverted residuals + squeeze-excite, hardswish",
    ),
    "mobilenet_v3_large": (
        (1, 3, 6, 12, 16),
        ((16, 2), (24, 4), (40, 8), (112, 16), (960, 32)),
        "MobileNetV3-Large, inverted residuals + squeeze-excite, hardswish",
    ),
    "efficientnet_b0": (
        (1, 2, 3, 5, 8),
        ((16, 2), (24, 4), (40, 8), (112, 16), (1280, 32)),
        "EfficientNet-B0, MBConv + squeeze-excite, SiLU",
    ),
    "convnext_tiny": (
        (1, 3, 5, 7),
        ((96, 4), (192, 8), (384, 16), (768, 32)),
        "ConvNeXt-Tiny, 7x7 depthwise convs + LayerNorm (stem has stride 4)",
    ),
}


# Where each torchvision arch's stages end (None: ResNet's named layers); see torchvision_nets.py.
STAGE_ENDS: dict[str, tuple[int, ...] | None] = {arch: ends for arch, (ends, _, _) in _TORCHVISION.items()}


def _feature_info(stages: Sequence[tuple[int, int]]) -> tuple[FeatureInfo, ...]:
    return tuple(FeatureInfo(channels=c, stride=s) for c, s in stages)


def _torchvision_builder(
    arch: str, ends: tuple[int, ...] | None, feature_info: tuple[FeatureInfo, ...]
) -> Callable[..., Backbone]:
    def build(*, weights_path: Path | None = None, in_channels: int = 3) -> Backbone:
        from densecnn.backbones.torchvision_nets import build_torchvision_backbone

        return build_torchvision_backbone(
            arch, ends=ends, feature_info=feature_info, weights_path=weights_path, in_channels=in_channels
        )

    return build


for _arch, (_ends, _stages, _desc) in _TORCHVISION.items():
    _info = _feature_info(_stages)
    BACKBONES.add(
        _arch,
        BackboneSpec(
            name=_arch,
            build=_torchvision_builder(_arch, _ends, _info),
            feature_info=_info,
            weights=IMAGENET[_arch].weights,
            preprocess=IMAGENET[_arch].preprocess,
            classifier_arch=_arch,
            description=_desc,
        ),
    )

_LENET_INFO = _feature_info(((6, 2), (16, 4), (120, 8)))


def _build_lenet(*, weights_path: Path | None = None, in_channels: int = 3) -> Backbone:
    from densecnn.backbones.lenet import build_lenet

    return build_lenet(feature_info=_LENET_INFO, weights_path=weights_path, in_channels=in_channels)


BACKBONES.add(
    "lenet",
    BackboneSpec(
        name="lenet",
        build=_build_lenet,
        feature_info=_LENET_INFO,
        weights=None,
        # densecnn's own convention (no weights to match): [0, 1] → [-1, 1], 32x32 inputs
        preprocess=Preprocess(resize=32, crop=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        description="densecnn's LeNet-5-style tiny CNN (conv 5x5-BN-ReLU-maxpool x3), no official weights",
    ),
)


def build_backbone(name: str, *, pretrained: bool | Path | str = False, in_channels: int = 3) -> Backbone:
    """The registered backbone ``name``; ``forward(x (N, in_channels, H, W))`` → one map per stage.

    ``pretrained``: False for random init; True for the official ImageNet weights from the weight
    store (downloaded once if missing: WeightsUnavailableError offline); a path for a local file
    (a torchvision ImageNet state dict for torchvision archs, a backbone state dict for lenet).
    With ``in_channels`` other than 3 the first conv is adapted after loading (see
    :func:`densecnn.backbones.torchvision_nets.adapt_first_conv`).
    """
    spec = BACKBONES.get(name)
    weights_path: Path | None = None
    if pretrained is True:
        if spec.weights is None:
            raise UsageError(
                f"Backbone {spec.name} has no ImageNet weights (it is densecnn's own and trains from "
                "scratch).",
                hint="Build it with pretrained=False, or pass a weight file of your own.",
            )
        from densecnn.zoo.store import WeightStore

        weights_path = WeightStore().fetch(spec.weights, model=spec.classifier_arch or spec.name)
    elif pretrained is not False:
        weights_path = Path(pretrained)
    backbone = spec.build(weights_path=weights_path, in_channels=in_channels)
    backbone.name = spec.name
    return backbone


def backbone_for(
    backbone: str | Backbone,
    *,
    head: str,
    strides: Sequence[int],
    pretrained: bool | Path | str = False,
    in_channels: int = 3,
) -> Backbone:
    """The backbone a head builds on, checked against the ``strides`` the head needs.

    A registry name is checked before anything is built (UsageError saying what is missing), then
    built with ``pretrained`` / ``in_channels``. An already-built :class:`Backbone` is used as it
    is: its own weights and ``in_channels`` (``pretrained`` must stay False).
    """
    if isinstance(backbone, str):
        BACKBONES.get(backbone).require(head=head, strides=strides)
        return build_backbone(backbone, pretrained=pretrained, in_channels=in_channels)
    if pretrained is not False:
        raise ValueError("pretrained applies to a backbone given by name; this one is already built")
    backbone.require(head=head, strides=strides)
    return backbone
