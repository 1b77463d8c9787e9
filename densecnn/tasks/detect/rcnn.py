"""torchvision Faster R-CNN detectors. The model's own transform resizes and normalises; boxes come
back in original-image pixels, exactly as torchvision's documented ``model([img])`` call."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densecnn.checkpoint import PICK_MODEL, load_into, load_state_dict
from densecnn.errors import UsageError
from densecnn.results import Detections, Frame
from densecnn.tasks.base import Predictor
from densecnn.tasks.builders import BuildRequest, register_builder


class TorchvisionDetector(Predictor):
    """A loaded torchvision ``GeneralizedRCNN`` taking RGB images. ``names[i]`` names label ``i``;
    ``backbone`` is the registry backbone it is built on, if any."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        names: dict[int, str],
        device: torch.device,
        half: bool,
        backbone: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = model.eval().to(device)
        self.device = device
        self.half = half
        self.names = dict(names)

    def batch_key(self, frame: Frame) -> tuple[int, ...]:
        """The image size: torchvision pads a batch to its largest image, which would change the
        results of the smaller ones, so only equally sized frames share a forward pass."""
        return frame.image.shape

    def preprocess(self, frames: Sequence[Frame]) -> list[torch.Tensor]:
        """BGR uint8 frames → RGB float ``(3, H, W)`` tensors in [0, 1] on the device (sizes may differ)."""
        out = []
        for f in frames:
            x = torch.from_numpy(np.ascontiguousarray(f.image)).to(self.device)
            out.append(x.permute(2, 0, 1).flip(0).float().div_(255))
        return out

    def forward(self, batch: list[torch.Tensor]) -> Any:
        ctx = torch.autocast("cuda", dtype=torch.float16) if self.half else contextlib.nullcontext()
        with ctx:
            return self.model(batch)

    def postprocess(self, raw: Any, batch: Any, frames: Sequence[Frame]) -> list[Detections]:
        out = []
        for r in raw:
            det = Detections(
                r["boxes"].float().cpu().numpy(),
                r["scores"].float().cpu().numpy(),
                r["labels"].cpu().numpy(),
                self.names,
            )
            if self.classes is not None:
                det = det.filter(np.isin(det.class_ids, self.classes))
            out.append(det)
        return out


def configure_rcnn(
    model: torch.nn.Module, *, conf: float, iou: float, max_det: int, imgsz: int | None
) -> None:
    """Set score / NMS thresholds and detections per image; ``imgsz`` sets the shorter side the
    model's transform resizes to, keeping its max/min ratio (1333/800, or 640/320)."""
    model.roi_heads.score_thresh = conf
    model.roi_heads.nms_thresh = iou
    model.roi_heads.detections_per_img = max_det
    if imgsz is not None:
        ratio = model.transform.max_size / model.transform.min_size[0]
        model.transform.min_size = (imgsz,)
        model.transform.max_size = round(imgsz * ratio)


def load_torchvision_detector(
    *,
    arch: str,
    weights: Path,
    class_names: Sequence[str],
    device: torch.device,
    half: bool,
    conf: float,
    iou: float,
    imgsz: int | None,
    max_det: int,
) -> TorchvisionDetector:
    """torchvision's detection builder ``arch`` with the state dict in ``weights``."""
    from torchvision.models import get_model_builder

    state = load_state_dict(weights)
    num_classes = _num_classes(state, weights)
    model = get_model_builder(arch)(weights=None, weights_backbone=None, num_classes=num_classes)
    load_into(model, state, source=weights, what=arch, hint=PICK_MODEL)
    configure_rcnn(model, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz)
    if len(class_names) == num_classes:
        names = dict(enumerate(class_names))
    else:
        names = {i: f"class{i}" for i in range(num_classes)}
    return TorchvisionDetector(model=model, names=names, device=device, half=half)


def _num_classes(state: dict[str, torch.Tensor], path: Path) -> int:
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise UsageError(f"{path} is not a Faster R-CNN state dict (no {key}).")
    return int(state[key].shape[0])


@register_builder("detect", "torchvision")
def build_torchvision_detector(request: BuildRequest) -> TorchvisionDetector:
    """A torchvision Faster R-CNN from its state dict (official, the user's, or inside a densecnn
    checkpoint, whose class names win)."""
    weights = request.weights
    return load_torchvision_detector(
        arch=request.spec.arch,
        weights=request.weights_file(),
        class_names=weights.meta.class_names if weights.meta is not None else request.spec.classes,
        device=request.device,
        half=request.half,
        conf=float(request.conf if request.conf is not None else 0.05),
        iou=float(request.iou if request.iou is not None else 0.5),
        imgsz=request.imgsz,
        max_det=request.max_det,
    )
