"""The classification models densecnn knows (task ``classify``). Official URLs and digests; see
tests/test_zoo.py and tests/test_classify.py.

- torchvision's ImageNet-1K classifiers, one per architecture of :data:`densecnn.zoo.imagenet.IMAGENET`
  (its weight file, preprocessing and top-1 accuracy).
- Ultralytics' YOLO classifiers ``yolov8n-cls`` and ``yolo11n-cls`` (v8.4.0 release assets, full
  sha256 and size).
- ``classifier``: densecnn's pooled linear head on any registry ``--backbone``; no official weights,
  they come from a densecnn checkpoint (``densecnn train classify``), which names its own backbone,
  classes and preprocessing.

Default: ``mobilenet_v3_large``. Measured on the development machine's 2 CPU cores (torch 2.14,
batch 1, 224x224, seeded weights, best of 40 interleaved runs), with ImageNet top-1 from torchvision's
weight metadata:

    mobilenet_v3_small   8.3 ms  67.7 %      efficientnet_b0  24.4 ms  77.7 %
    mobilenet_v3_large  16.0 ms  75.3 %      resnet50         73.5 ms  80.9 %
    resnet18            32.9 ms  69.8 %      convnext_tiny    80.6 ms  82.5 %

MobileNetV3-Large beats ResNet-18 on both axes (+5.5 points at half the time), costs two thirds of
EfficientNet-B0's time for 2.4 points less, and gains 7.6 points over MobileNetV3-Small for 8 ms: the
best accuracy per CPU millisecond. On a GPU all of them are fast, and ``--model convnext_tiny`` is
the most accurate.

Class names are shipped as data (``data/imagenet1k*.txt``, one per line) so that importing the zoo stays
free of torchvision; tests compare them with torchvision's weight metadata and Ultralytics'
``ImageNet.yaml``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from densecnn.zoo.detection import ULTRALYTICS_RELEASE as _ULTRALYTICS
from densecnn.zoo.imagenet import IMAGENET
from densecnn.zoo.registry import MODELS
from densecnn.zoo.specs import ModelSpec, Preprocess, WeightsFile

DEFAULT = "mobilenet_v3_large"
_DATA = Path(__file__).with_name("data")

# name, sha256, size in bytes, description
_YOLO_CLS = [
    (
        "yolov8n-cls",
        "3c13760a5e1594c0070005d2510e4accd79aa1f86ee55c1580db69c852a4b146",
        5552534,
        "YOLOv8 nano classifier, ImageNet-1K, 224 px, 66.6 % top-1",
    ),
    (
        "yolo11n-cls",
        "c62d41bf9625777760018bf914d2e6cd472420ccd01706d97a61cb6c82502bd7",
        5790624,
        "YOLO11 nano classifier, ImageNet-1K, 224 px, 70.0 % top-1",
    ),
]


@cache
def _names(file_name: str) -> tuple[str, ...]:
    return tuple((_DATA / file_name).read_text(encoding="utf-8").splitlines())


def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1K class names in torchvision's order and spelling."""
    return _names("imagenet1k.txt")


def ultralytics_imagenet_names() -> tuple[str, ...]:
    """The same 1000 classes as Ultralytics names them (its ``ImageNet.yaml``)."""
    return _names("imagenet1k_ultralytics.txt")


def preprocess_for(spec: ModelSpec) -> Preprocess:
    """The resize / crop / normalisation a torchvision classifier's ImageNet weights expect."""
    return IMAGENET[spec.arch].preprocess


def _register() -> None:
    for arch, entry in IMAGENET.items():
        prep = entry.preprocess
        MODELS.add(
            arch,
            ModelSpec(
                name=arch,
                task="classify",
                family="torchvision",
                arch=arch,
                weights=entry.weights,
                classes=imagenet_names(),
                imgsz=prep.crop,
                description=f"torchvision {arch}, ImageNet-1K, {prep.crop} px, {entry.top1:.1f} % top-1",
                default=arch == DEFAULT,
            ),
        )
    for name, sha, size, desc in _YOLO_CLS:
        MODELS.add(
            name,
            ModelSpec(
                name=name,
                task="classify",
                family="yolo",
                arch=name,
                weights=WeightsFile(
                    file_name=f"{name}.pt",
                    url=f"{_ULTRALYTICS}{name}.pt",
                    sha256=sha,
                    size=size,
                    license="AGPL-3.0",
                    pickled=True,
                ),
                classes=ultralytics_imagenet_names(),
                imgsz=224,
                description=desc,
            ),
        )


_register()
