"""The base of predictors that run a plain ``nn.Module`` on normalised image tensors (torchvision's
classifiers and segmenters, densecnn's heads on registry backbones).

Preprocessing follows torchvision's presets step for step, with the same functions, on the decoded
frame as a uint8 RGB tensor: resize the shorter side to ``resize`` (antialiased), then (after any
crop the subclass makes) scale to [0, 1] and normalise with ``mean``/``std``. ``in_channels`` 1 feeds
gray images (ITU-R 601 luma of the RGB frame, as torchvision's ``rgb_to_grayscale``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from densecnn.errors import UsageError
from densecnn.results import Frame
from densecnn.tasks.base import Predictor
from densecnn.zoo.specs import Preprocess


class TensorPredictor(Predictor):
    """A logits model with its preprocessing. ``names[i]`` names output ``i``; ``backbone`` is the
    registry backbone of a densecnn checkpoint (None for whole models). ``kind`` names the subclass's
    models in error messages."""

    backbone: str | None = None
    kind = "Models"

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

        if in_channels not in (1, 3):
            raise UsageError(f"{self.kind} on {in_channels}-channel images are not supported (1 or 3).")
        if len(preprocess.mean) != in_channels or len(preprocess.std) != in_channels:
            raise UsageError(
                f"Normalisation has {len(preprocess.mean)} mean values for {in_channels}-channel inputs."
            )
        self.device = device
        self.half = half
        self.model = model.eval().to(device)
        if half:
            self.model.half()
        self.prep = preprocess
        self.interpolation = InterpolationMode(preprocess.interpolation)
        self.in_channels = in_channels
        self.names = names

    def resized(self, frame: Frame) -> torch.Tensor:
        """BGR uint8 frame → uint8 RGB ``(3, h, w)`` on the device, the shorter side ``resize`` pixels."""
        import torchvision.transforms.functional as TF

        x = torch.from_numpy(np.ascontiguousarray(frame.image)).to(self.device)
        x = x.permute(2, 0, 1).flip(0)  # HWC BGR → CHW RGB, still uint8
        return TF.resize(x, [self.prep.resize], interpolation=self.interpolation, antialias=True)

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(..., 3, h, w)`` → normalised float (gray first for 1-channel models), fp16 if set."""
        import torchvision.transforms.functional as TF

        if self.in_channels == 1:
            x = TF.rgb_to_grayscale(x)
        x = TF.normalize(TF.convert_image_dtype(x, torch.float), mean=self.prep.mean, std=self.prep.std)
        return x.half() if self.half else x
