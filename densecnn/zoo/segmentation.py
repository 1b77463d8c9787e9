"""The semantic segmentation models densecnn knows (task ``segment``). Official URLs; see tests/test_zoo.py
and tests/test_segment.py.

- torchvision's DeepLabV3 and LR-ASPP, trained on the COCO train2017 subset with the 20 Pascal VOC
  categories (+ background: 21 classes). File names carry the first 8 hex digits of their sha256,
  which is what torch.hub checks. Preprocessing is their ``SemanticSegmentation`` preset: the shorter
  side resized to 520 px (bilinear, antialiased), scaled to [0, 1], normalised with the ImageNet
  mean/std; no crop.
- ``unet`` and ``deeplabv3plus`` (smp decoders) and ``deeplabv3`` (torchvision's DeepLabHead) on
  any registry ``--backbone`` (``densecnn.tasks.segment.smp_heads``); no official weights, they come
  from a densecnn checkpoint. The torchvision models above train too (``densecnn train segment``).

- Ultralytics YOLO instance segmenters (``yolov8n-seg``, ``yolo11n-seg``), COCO 80 classes, from the
  ultralytics/assets v8.4.0 release like the detectors. No sha256 is registered for them (none could
  be sourced offline): the store does not verify them, and they load with Ultralytics' safe
  ``weights_only`` allow-list.

Default: ``deeplabv3_mobilenet_v3_large`` (60.3 mIoU at a fraction of the ResNet models' cost);
default instance model (an Ultralytics ``-seg`` .pt given with ``--weights`` alone): ``yolov8n-seg``.
"""

from __future__ import annotations

from densecnn.zoo.detection import ultralytics_spec
from densecnn.zoo.registry import MODELS
from densecnn.zoo.specs import ModelSpec, Preprocess, WeightsFile

DEFAULT = "deeplabv3_mobilenet_v3_large"
DEFAULT_INSTANCE = "yolov8n-seg"
_TORCHVISION = "https://download.pytorch.org/models/"
_LICENSE = "BSD-3-Clause (torchvision); COCO annotations CC BY 4.0"

VOC21: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
"""torchvision's ``meta["categories"]`` of its segmentation weights: id 0 is the background."""

SEGMENTATION_PREPROCESS = Preprocess(
    resize=520, crop=520, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bilinear"
)
"""torchvision's ``SemanticSegmentation(resize_size=520)``: ``crop`` is unused (no crop)."""

# name, file name (its 8-hex suffix is the sha256 prefix), description
_TORCH_SEG = [
    (
        "deeplabv3_mobilenet_v3_large",
        "deeplabv3_mobilenet_v3_large-fc3c493d.pth",
        "DeepLabV3, MobileNetV3-Large, VOC 21 classes, 60.3 mIoU",
    ),
    (
        "deeplabv3_resnet50",
        "deeplabv3_resnet50_coco-cd0a2569.pth",
        "DeepLabV3, ResNet-50, VOC 21 classes, 66.4 mIoU",
    ),
    (
        "deeplabv3_resnet101",
        "deeplabv3_resnet101_coco-586e9e4e.pth",
        "DeepLabV3, ResNet-101, VOC 21 classes, 67.4 mIoU",
    ),
    (
        "lraspp_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large-d234d4ea.pth",
        "LR-ASPP, MobileNetV3-Large, VOC 21 classes, 57.9 mIoU",
    ),
]

TORCHVISION_SEGMENTERS: tuple[str, ...] = tuple(name for name, _, _ in _TORCH_SEG)
"""The torchvision builders above: ``densecnn train segment --model NAME`` trains them too (arch = NAME)."""

# name, description (COCO val2017 box / mask mAP 50-95 from Ultralytics' model tables)
_YOLO_SEG = [
    ("yolov8n-seg", "YOLOv8 nano instance segmentation, COCO 80 classes, 36.7 box / 30.5 mask mAP"),
    ("yolo11n-seg", "YOLO11 nano instance segmentation, COCO 80 classes, 38.9 box / 32.0 mask mAP"),
]


def _register_yolo() -> None:
    for name, desc in _YOLO_SEG:
        # no published digest could be sourced for the -seg files: unverified (see WeightsFile)
        MODELS.add(name, ultralytics_spec(name, task="segment", sha256=None, size=None, description=desc))


def _register() -> None:
    for name, file_name, desc in _TORCH_SEG:
        MODELS.add(
            name,
            ModelSpec(
                name=name,
                task="segment",
                family="torchvision",
                arch=name,
                weights=WeightsFile(
                    file_name=file_name,
                    url=f"{_TORCHVISION}{file_name}",
                    sha256=file_name.rsplit("-", 1)[1].split(".")[0],
                    license=_LICENSE,
                ),
                classes=VOC21,
                imgsz=SEGMENTATION_PREPROCESS.resize,
                description=desc,
                default=name == DEFAULT,
            ),
        )


_register()
_register_yolo()
