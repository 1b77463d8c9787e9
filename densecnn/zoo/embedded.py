"""The models that ship inside densecnn (``weights/`` of a checkout), trained by densecnn itself.

No official pretrained weights can reach a machine without network access; these small models make
``densecnn detect`` and ``densecnn segment`` do something real there. They are the fallback when a
task's default weights are neither cached nor downloadable (``densecnn.zoo.fetch_default``).
Rebuilt by ``make models`` (tools/build_models.py); data, recipe and figures: weights/MODELS.md.
"""

from __future__ import annotations

from densecnn.zoo.registry import MODELS
from densecnn.zoo.specs import ModelSpec, WeightsFile

# Penn-Fudan: research/educational use; COCO images: Flickr terms (CC BY family), annotations CC BY 4.0.
_LICENSE = "AGPL-3.0 (weights); trained on Penn-Fudan (research use) and COCO128 (CC BY 4.0 annotations)"

# file name, sha256, size in bytes (printed by `make models`)
DETECT_FILE = (
    "person-yolov8n.safetensors",
    "d39640dc15b8ca0cc3174288b65626791a9602930e2e438f3aa5a68d1c086603",
    6077158,
)
SEGMENT_FILE = (
    "person-unet.safetensors",
    "d219904d09c41800747cf1f6f501d7c2f332772c10a6155743b43ed55bea8c5f",
    9165812,
)


def _file(entry: tuple[str, str, int]) -> WeightsFile:
    name, sha, size = entry
    return WeightsFile(file_name=name, url="", sha256=sha, size=size, license=_LICENSE, embedded=True)


MODELS.add(
    "person-yolov8n",
    ModelSpec(
        name="person-yolov8n",
        task="detect",
        family="yolo",
        arch="yolov8n",
        weights=_file(DETECT_FILE),
        classes=("person",),
        imgsz=320,
        conf=0.25,
        iou=0.7,
        description="embedded: YOLOv8n person detector trained by densecnn (Penn-Fudan + COCO people)",
        fallback=True,
    ),
)
MODELS.add(
    "person-unet",
    ModelSpec(
        name="person-unet",
        task="segment",
        family="densecnn",
        arch="unet",
        weights=_file(SEGMENT_FILE),
        classes=("background", "person"),
        imgsz=320,
        description="embedded: U-Net (mobilenet_v3_large) person segmenter trained by densecnn "
        "(Penn-Fudan + COCO people)",
        fallback=True,
    ),
)
