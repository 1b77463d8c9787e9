"""Semantic segmenters: any ``nn.Module`` returning per-pixel logits at its input size (torchvision's
DeepLabV3 / LR-ASPP return them under ``"out"``; densecnn's U-Net / DeepLabV3+ return the tensor).

Preprocessing is torchvision's ``SemanticSegmentation`` preset (what the weights' ``transforms()``
returns), step for step with the same functions, on the decoded frame as a uint8 RGB tensor: resize
the shorter side to ``resize`` (bilinear, antialiased; aspect ratio kept), scale to [0, 1], normalise
with ``mean``/``std``. No crop and no padding, so the whole image is seen.

Back to the input: the logits ``(C, h, w)`` are resized to the input's ``(H, W)`` with bilinear
interpolation (``align_corners=False``) and the label map is their argmax, so mask pixel ``(x, y)``
belongs to input pixel ``(x, y)``. This is torchvision's own pattern (its models upsample their
logits bilinearly before the argmax); it costs ``C x H x W`` floats per image at full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densecnn.errors import UsageError
from densecnn.results import Frame, Segmentation
from densecnn.tasks.base import Predictor
from densecnn.zoo.specs import Preprocess


class SemanticSegmenter(Predictor):
    """A logits model with its preprocessing. ``names[i]`` names output channel ``i`` (at most 255
    classes: the label map is uint8 and 255 means "no class"). ``in_channels`` 1 feeds gray images
    (ITU-R 601 luma, as torchvision's ``rgb_to_grayscale``). ``backbone``: the registry backbone of a
    densecnn checkpoint (None for whole models)."""

    backbone: str | None = None

    def __init__(
        self,
        *,
        model: nn.Module,
        preprocess: Preprocess,
        names: dict[int, str],
        device: torch.device,
        half: bool,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        from torchvision.transforms import InterpolationMode

        if len(names) > 255:
            raise UsageError(
                f"Segmentation models with more than 255 classes are not supported ({len(names)})."
            )
        if in_channels not in (1, 3):
            raise UsageError(f"Segmenters on {in_channels}-channel images are not supported (1 or 3).")
        self.device = device
        self.half = half
        self.model = model.eval().to(device)
        if half:
            self.model.half()
        self.prep = preprocess
        self.interpolation = InterpolationMode(preprocess.interpolation)
        self.in_channels = in_channels
        self.names = names

    def preprocess(self, frames: Sequence[Frame]) -> list[torch.Tensor]:
        """BGR uint8 frames of any sizes → normalised float ``(C, h, w)`` tensors on the device, the
        shorter side ``resize`` pixels (one per frame: sizes may differ)."""
        import torchvision.transforms.functional as TF

        out = []
        for frame in frames:
            x = torch.from_numpy(np.ascontiguousarray(frame.image)).to(self.device)
            x = x.permute(2, 0, 1).flip(0)  # HWC BGR → CHW RGB, still uint8
            x = TF.resize(x, [self.prep.resize], interpolation=self.interpolation, antialias=True)
            if self.in_channels == 1:
                x = TF.rgb_to_grayscale(x)
            x = TF.normalize(TF.convert_image_dtype(x, torch.float), mean=self.prep.mean, std=self.prep.std)
            out.append(x.half() if self.half else x)
        return out

    def forward(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits ``(C, h, w)`` per input; runs of equally sized inputs go through the model together."""
        logits: list[torch.Tensor] = []
        start = 0
        while start < len(batch):
            end = start + 1
            while end < len(batch) and batch[end].shape == batch[start].shape:
                end += 1
            out = self.model(torch.stack(batch[start:end]))
            if isinstance(out, dict):
                out = out["out"]
            logits.extend(out.unbind(0))
            start = end
        return logits

    def postprocess(self, raw: list[torch.Tensor], batch: Any, frames: Sequence[Frame]) -> list[Segmentation]:
        results = []
        for logits, frame in zip(raw, frames, strict=True):
            up = F.interpolate(
                logits.float().unsqueeze(0),
                size=(frame.height, frame.width),
                mode="bilinear",
                align_corners=False,
            )
            labels = up[0].argmax(0).to(torch.uint8).cpu().numpy()
            results.append(Segmentation(labels, self.names))
        return results


def _num_classes(arch: str, state: dict[str, torch.Tensor]) -> int | None:
    for key in ("classifier.4.weight", "classifier.low_classifier.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def load_torchvision_segmenter(
    arch: str, weights: Path, class_names: Sequence[str]
) -> tuple[nn.Module, dict[int, str]]:
    """torchvision's segmentation ``arch`` with the state dict at ``weights`` → (model, id → name).

    The number of classes is read from the state dict, and the auxiliary head is built when the file
    has one (the official DeepLabV3 files do; it is not used for prediction). Classes are named
    ``class0``... unless ``class_names`` has as many entries.
    """
    from torchvision.models import get_model

    from densecnn.checkpoint import load_state_dict

    state = load_state_dict(weights)
    num_classes = _num_classes(arch, state)
    if num_classes is None:
        raise UsageError(
            f"{weights} is not a {arch} state dict (it has no classifier weights).",
            hint="Pick the --model these weights were trained for.",
        )
    aux = any(k.startswith("aux_classifier.") for k in state)
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if arch.startswith("deeplabv3"):
        kwargs["aux_loss"] = aux
    model = get_model(arch, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(
            f"{weights} does not fit {arch}: {str(exc).splitlines()[0]}",
            hint="Pick the --model these weights were trained for.",
        ) from exc
    if len(class_names) == num_classes:
        return model, dict(enumerate(class_names))
    return model, {i: f"class{i}" for i in range(num_classes)}
