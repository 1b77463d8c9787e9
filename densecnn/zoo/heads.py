"""The heads that sit on any registered backbone (family ``densecnn``), declared once as model specs.

Each is a ``MODELS`` entry whose ``head`` says what it needs from a backbone; :data:`HEADS` is a view
of those entries (``densecnn models --matrix``, training). They have no official weights: their
weights, backbone and classes come from a densecnn checkpoint (``densecnn train``). Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterator

from densecnn.registry import Registry
from densecnn.zoo.registry import MODELS
from densecnn.zoo.specs import HeadSpec, ModelSpec

# Backbone strides each head needs (a head may use more stages when the backbone has them).
CLASSIFIER_STRIDES: tuple[int, ...] = ()  # global pooling on the last stage: any backbone
FPN_STRIDES: tuple[int, ...] = (8, 16, 32)  # + stride 4 when present; FPN adds a stride-64 level
UNET_STRIDES: tuple[int, ...] = (4, 8, 16, 32)  # + stride 2 when present
DEEPLAB_STRIDES: tuple[int, ...] = (4, 32)  # low-level skip at 4, ASPP at 32
DEEPLABV3_STRIDES: tuple[int, ...] = (32,)  # ASPP on the deepest stage only


class HeadView:
    """The ``MODELS`` entries that are heads, as their :class:`HeadSpec` (a view, not a registry of
    its own: a head is declared once, as a model)."""

    def _heads(self) -> dict[str, HeadSpec]:
        return {name: spec.head for name, spec in MODELS.items() if spec.head is not None}

    def get(self, name: str) -> HeadSpec:
        heads = self._heads()
        if name.lower() in heads:
            return heads[name.lower()]
        view: Registry[HeadSpec] = Registry("head")  # for its close-match message
        for key, head in heads.items():
            view.add(key, head)
        return view.get(name)

    def names(self) -> list[str]:
        return list(self._heads())

    def items(self) -> list[tuple[str, HeadSpec]]:
        return list(self._heads().items())

    def __iter__(self) -> Iterator[str]:
        return iter(self._heads())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._heads()


HEADS = HeadView()


def _add_head(
    name: str,
    task: str,
    *,
    strides: tuple[int, ...],
    imgsz: int,
    num_classes: int,
    builder: str,
    about: str,
    description: str,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int = 300,
) -> None:
    head = HeadSpec(name, task, strides, imgsz, num_classes, builder, about)
    MODELS.add(
        name,
        ModelSpec(
            name=name,
            task=task,  # type: ignore[arg-type]
            family="densecnn",
            arch=name,
            weights=None,
            classes=(),
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            max_det=max_det,
            description=description,
            head=head,
        ),
    )


_add_head(
    "classifier",
    "classify",
    strides=CLASSIFIER_STRIDES,
    imgsz=224,
    num_classes=1000,
    builder="densecnn.tasks.classify.head:build_classifier",
    about="global average pool on the last stage + dropout + linear",
    description="pooled linear head on any --backbone; weights from a densecnn checkpoint",
)
_add_head(
    "fasterrcnn",
    "detect",
    strides=FPN_STRIDES,
    imgsz=800,
    num_classes=91,
    builder="densecnn.tasks.detect.rcnn_backbone:build_fasterrcnn",
    about="torchvision Faster R-CNN with an FPN over the stride 4-32 stages",
    description="Faster R-CNN + FPN on any --backbone (resnet18, convnext_tiny...); weights from a "
    "densecnn checkpoint",
    conf=0.05,
    iou=0.5,
    max_det=100,
)
_add_head(
    "unet",
    "segment",
    strides=UNET_STRIDES,
    imgsz=512,
    num_classes=21,
    builder="densecnn.tasks.segment.smp_heads:build_unet",
    about="segmentation-models-pytorch U-Net decoder",
    description="U-Net (smp decoder) on any --backbone; weights from a densecnn checkpoint",
)
_add_head(
    "deeplabv3plus",
    "segment",
    strides=DEEPLAB_STRIDES,
    imgsz=512,
    num_classes=21,
    builder="densecnn.tasks.segment.smp_heads:build_deeplabv3plus",
    about="segmentation-models-pytorch DeepLabV3+ decoder (ASPP on the stride-32 stage)",
    description="DeepLabV3+ (smp decoder) on any --backbone; weights from a densecnn checkpoint",
)
_add_head(
    "deeplabv3",
    "segment",
    strides=DEEPLABV3_STRIDES,
    imgsz=512,
    num_classes=21,
    builder="densecnn.tasks.segment.smp_heads:build_deeplabv3",
    about="torchvision DeepLabHead (ASPP + 3x3 conv) on the stride-32 stage, upsampled to the input",
    description="DeepLabV3 (torchvision head) on any --backbone; weights from a densecnn checkpoint",
)
