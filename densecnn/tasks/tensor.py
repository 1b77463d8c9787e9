"""The base of predictors that run a plain ``nn.Module`` on normalised image tensors (torchvision's
classifiers and segmenters, densecnn's heads on registry backbones).

Preprocessing follows torchvision's presets step for step, with the same functions, on the decoded
frame as a uint8 RGB tensor: resize the shorter side to ``resize`` (antialiased), then (after any
crop the subclass makes) scale to [0, 1] and normalise with ``mean``/``std``. ``in_channels`` 1 feeds
gray images (ITU-R 601 luma of the RGB frame, as torchvision's ``rgb_to_grayscale``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from densecnn.errors import UsageError
from densecnn.results import Frame
from densecnn.tasks.base import Predictor
from densecnn.zoo.specs import Preprocess

if TYPE_CHECKING:
    from densecnn.runtimes.meta import ExportGraph, ExportMeta
    from densecnn.tasks.builders import BuildRequest


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

    export_kind = "tensor"
    spatial_dynamic = False
    """Whether exports always take any height and width (semantic models see any aspect ratio)."""

    def export_input_shape(self) -> tuple[int, ...]:
        return (1, self.in_channels, self.prep.crop, self.prep.crop)

    def export_graph(self) -> ExportGraph:
        """The module returning logits ``(N, C, ...)`` (a torchvision dict's ``"out"``), in fp32."""
        import copy

        from densecnn.runtimes.meta import ExportGraph

        module = _Logits(copy.deepcopy(self.model).float().cpu().eval())
        prep = {**asdict(self.prep), "in_channels": self.in_channels}
        return ExportGraph(
            module=module,
            input_shape=self.export_input_shape(),
            outputs=["logits"],
            kind=self.export_kind,
            preprocess=prep,
            spatial_dynamic=self.spatial_dynamic,
            imgsz=(self.prep.crop, self.prep.crop) if not self.spatial_dynamic else (self.prep.resize,) * 2,
        )

    @classmethod
    def from_export(cls, meta: ExportMeta, request: BuildRequest) -> TensorPredictor:
        """The adapter around an exported graph: preprocessing and classes from its metadata."""
        from torchvision.transforms import InterpolationMode

        self = cls.__new__(cls)
        Predictor.__init__(self)
        fields = dict(meta.preprocess)
        self.in_channels = int(fields.pop("in_channels", 3))
        fields["mean"], fields["std"] = tuple(fields["mean"]), tuple(fields["std"])
        self.prep = Preprocess(**fields)
        self.interpolation = InterpolationMode(self.prep.interpolation)
        self.device = torch.device("cpu")
        self.half = False
        self.names = dict(meta.names)
        self.backbone = meta.backbone
        self.exported_settings(request)
        return self

    def exported_settings(self, request: BuildRequest) -> None:
        """Run settings a subclass takes from the request when built around an exported graph."""

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


class _Logits(nn.Module):
    """Tensors in, one tensor out: torchvision's segmenters return ``{"out": ..., "aux": ...}``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        return out["out"] if isinstance(out, dict) else out
