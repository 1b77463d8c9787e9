"""The detection models densecnn knows. Official URLs and digests; see tests/test_zoo.py.

Ultralytics digests are the sha256 of the files served by the ultralytics/assets v8.4.0 release.
torchvision file names carry the first 8 hex digits of their sha256, which is what torch.hub checks.
"""

from __future__ import annotations

from densecnn.zoo.coco import COCO80, COCO91
from densecnn.zoo.registry import MODELS
from densecnn.zoo.specs import ModelSpec, WeightsFile

ULTRALYTICS_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
_TORCHVISION = "https://download.pytorch.org/models/"

# name, sha256, size in bytes, description
_YOLO = [
    (
        "yolov8n",
        "f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36",
        6549796,
        "YOLOv8 nano, COCO 80 classes, 37.3 mAP",
    ),
    (
        "yolov8s",
        "1f47a78bf100391c2a140b7ac73a1caae18c32779be7d310658112f7ac9aa78a",
        22588772,
        "YOLOv8 small, COCO 80 classes, 44.9 mAP",
    ),
    (
        "yolo11n",
        "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
        5613764,
        "YOLO11 nano, COCO 80 classes, 39.5 mAP",
    ),
    (
        "yolo26n",
        "9b09cc8bf347f0fc8a5f7657480587f25db09b34bf33b0652110fb03a8ad4fef",
        5544453,
        "YOLO26 nano, COCO 80 classes, 40.9 mAP",
    ),
]


def ultralytics_spec(
    name: str, *, task: str, sha256: str | None, size: int | None, description: str, default: bool = False
) -> ModelSpec:
    """An official Ultralytics COCO model (a pickled ``.pt`` from its assets release)."""
    return ModelSpec(
        name=name,
        task=task,
        family="yolo",
        arch=name,
        weights=WeightsFile(
            file_name=f"{name}.pt",
            url=f"{ULTRALYTICS_RELEASE}{name}.pt",
            sha256=sha256,
            size=size,
            license="AGPL-3.0",
            pickled=True,
        ),
        classes=COCO80,
        conf=0.25,
        iou=0.7,
        imgsz=640,
        description=description,
        default=default,
    )


for _name, _sha, _size, _desc in _YOLO:
    MODELS.add(
        _name,
        ultralytics_spec(
            _name, task="detect", sha256=_sha, size=_size, description=_desc, default=_name == "yolov8n"
        ),
    )

# name, file name (its 8-hex suffix is the sha256 prefix), shorter image side, description
_RCNN = [
    (
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
        320,
        "Faster R-CNN, MobileNetV3-Large FPN, low resolution, 22.8 mAP",
    ),
    (
        "fasterrcnn_mobilenet_v3_large_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
        800,
        "Faster R-CNN, MobileNetV3-Large FPN, 32.8 mAP",
    ),
    (
        "fasterrcnn_resnet50_fpn",
        "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
        800,
        "Faster R-CNN, ResNet-50 FPN, 37.0 mAP",
    ),
    (
        "fasterrcnn_resnet50_fpn_v2",
        "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
        800,
        "Faster R-CNN v2, ResNet-50 FPN, 46.7 mAP",
    ),
]

for _name, _file, _size, _desc in _RCNN:
    MODELS.add(
        _name,
        ModelSpec(
            name=_name,
            task="detect",
            family="torchvision",
            arch=_name,
            weights=WeightsFile(
                file_name=_file,
                url=f"{_TORCHVISION}{_file}",
                sha256=_file.rsplit("-", 1)[1].split(".")[0],
                license="BSD-3-Clause (torchvision); COCO annotations CC BY 4.0",
            ),
            classes=COCO91,
            conf=0.05,
            iou=0.5,
            imgsz=_size,
            max_det=100,
            description=_desc,
        ),
    )
