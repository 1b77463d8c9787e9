"""torchvision's ImageNet-1K classification weights: shared by the backbone registry (transfer
learning) and the classify zoo (ImageNet classifiers). One entry per architecture, official URLs;
file names carry the sha256 prefix torch.hub checks. tests/test_zoo.py compares every field with
torchvision's own ``Weights`` enums."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from densecnn.zoo.specs import Preprocess, WeightsFile

_BASE = "https://download.pytorch.org/models/"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_LICENSE = "BSD-3-Clause (torchvision); trained on ImageNet-1K (non-commercial research terms)"


@dataclass(frozen=True)
class ImageNetWeights:
    arch: str
    weights: WeightsFile
    preprocess: Preprocess
    top1: float  # ImageNet-1K val accuracy (%), from torchvision's weight metadata
    weights_enum: str  # the torchvision enum member these match, e.g. ResNet18_Weights.IMAGENET1K_V1


def _entry(
    arch: str, file_name: str, resize: int, interpolation: str, top1: float, enum: str
) -> ImageNetWeights:
    return ImageNetWeights(
        arch=arch,
        weights=WeightsFile(
            file_name=file_name,
            url=_BASE + file_name,
            sha256=file_name.rsplit("-", 1)[1].split(".")[0],
            license=_LICENSE,
        ),
        preprocess=Preprocess(resize=resize, crop=224, mean=_MEAN, std=_STD, interpolation=interpolation),
        top1=top1,
        weights_enum=enum,
    )


IMAGENET: dict[str, ImageNetWeights] = {
    e.arch: e
    for e in (
        _entry(
            "resnet18", "resnet18-f37072fd.pth", 256, "bilinear", 69.758, "ResNet18_Weights.IMAGENET1K_V1"
        ),
        _entry(
            "resnet34", "resnet34-b627a593.pth", 256, "bilinear", 73.314, "ResNet34_Weights.IMAGENET1K_V1"
        ),
        _entry(
            "resnet50", "resnet50-11ad3fa6.pth", 232, "bilinear", 80.858, "ResNet50_Weights.IMAGENET1K_V2"
        ),
        _entry(
            "mobilenet_v3_small",
            "mobilenet_v3_small-047dcff4.pth",
            256,
            "bilinear",
            67.668,
            "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
        ),
        _entry(
            "mobilenet_v3_large",
            "mobilenet_v3_large-5c1a4163.pth",
            232,
            "bilinear",
            75.274,
            "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
        ),
        _entry(
            "efficientnet_b0",
            "efficientnet_b0_rwightman-7f5810bc.pth",
            256,
            "bicubic",
            77.692,
            "EfficientNet_B0_Weights.IMAGENET1K_V1",
        ),
        _entry(
            "convnext_tiny",
            "convnext_tiny-983f1562.pth",
            236,
            "bilinear",
            82.52,
            "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
        ),
    )
}


@cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1K class names, in torchvision's order (imports torchvision)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
