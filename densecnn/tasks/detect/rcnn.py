"""torchvision Faster R-CNN detectors. The model's own transform resizes and normalises; boxes come
back in original-image pixels, exactly as torchvision's documented ``model([img])`` call."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densecnn.errors import UsageError
from densecnn.results import Detections, Frame
from densecnn.tasks.base import Predictor


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only``: no code runs).

    Accepts a bare state dict or one under a ``model`` / ``state_dict`` key.
    """
    if not path.is_file():
        raise UsageError(f"Weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(
            f"Could not read {path} as a torchvision state dict: {exc}",
            hint="Pass a .pth/.pt state dict or a .safetensors file for the chosen --model "
            "(an Ultralytics .pt goes with a YOLO --model).",
        ) from exc
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path} holds no state dict (a mapping of parameter names to tensors).")
    return state


class TorchvisionDetector(Predictor):
    """A torchvision detection builder (``arch``) with a state dict. ``names[i]`` names label ``i``."""

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        from torchvision.models import get_model_builder

        state = load_state_dict(weights)
        num_classes = self._num_classes(state, weights)
        builder = get_model_builder(arch)
        model = builder(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes,
            box_score_thresh=conf,
            box_nms_thresh=iou,
            box_detections_per_img=max_det,
        )
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise UsageError(
                f"{weights} does not fit {arch}: {str(exc).splitlines()[0]}",
                hint="Pick the --model these weights were trained for.",
            ) from exc
        if imgsz is not None:  # keep the builder's max/min ratio (1333/800, or 640/320)
            ratio = model.transform.max_size / model.transform.min_size[0]
            model.transform.min_size = (imgsz,)
            model.transform.max_size = round(imgsz * ratio)
        self.model = model.eval().to(device)
        self.device = device
        self.half = half
        if len(class_names) == num_classes:
            self.names = dict(enumerate(class_names))
        else:
            self.names = {i: f"class{i}" for i in range(num_classes)}

    @staticmethod
    def _num_classes(state: dict[str, torch.Tensor], path: Path) -> int:
        key = "roi_heads.box_predictor.cls_score.weight"
        if key not in state:
            raise UsageError(f"{path} is not a Faster R-CNN state dict (no {key}).")
        return int(state[key].shape[0])

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
