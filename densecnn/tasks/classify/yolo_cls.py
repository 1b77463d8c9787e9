"""YOLO classifiers through Ultralytics, split into densecnn's preprocess/forward/postprocess.

Each step is what Ultralytics' own ``ClassificationPredictor`` does with default settings, with its
own functions: the transforms saved in the checkpoint when they fit the inference size, else
``classify_transforms(imgsz)`` (resize the shorter side, centre crop, no mean/std by default); resize
and crop on the host with PIL, then BGR→RGB, /255 and ``Normalize`` on the device; ``AutoBackend`` for
the forward pass, whose first output is already the softmax. So top-k classes and scores match
``YOLO(pt).predict`` on the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densecnn.errors import UsageError
from densecnn.integrations.ultralytics import import_ultralytics
from densecnn.results import Classification, Frame
from densecnn.tasks.base import Predictor
from densecnn.tasks.builders import BuildRequest, register_builder
from densecnn.tasks.classify.torch_cls import topk_results
from densecnn.tasks.detect.yolo import load_yolo_module


class YoloClassifier(Predictor):
    """An Ultralytics classification model (``yolov8n-cls.pt`` and the like).

    ``imgsz`` None: the size the checkpoint was trained at (as ``YOLO(pt).predict`` does).
    """

    def __init__(
        self,
        *,
        weights: Path,
        user_named: bool,
        device: torch.device,
        half: bool,
        imgsz: int | None,
        topk: int,
        trust_weights: bool = False,
    ) -> None:
        super().__init__()
        import_ultralytics()
        from ultralytics.data.augment import classify_transforms
        from ultralytics.nn.autobackend import AutoBackend
        from ultralytics.utils.checks import check_imgsz

        module = load_yolo_module(weights, user_named=user_named, trust=trust_weights)
        task = getattr(module, "task", None)
        if task != "classify":
            raise UsageError(
                f"{weights} is an Ultralytics {task!r} model, not a classifier.",
                hint="Use a classification checkpoint (yolov8n-cls.pt, yolo11n-cls.pt, ...) with "
                "`densecnn classify`.",
            )
        args = getattr(module, "args", None)
        trained_size = args.get("imgsz") if isinstance(args, dict) else None
        # Same arguments as Ultralytics' predictor.setup_model with default settings.
        self.model = AutoBackend(model=module, device=device, fp16=half, fuse=True, verbose=False)
        self.model.eval()
        self.device = self.model.device
        self.imgsz = check_imgsz(imgsz or trained_size or 224, stride=self.model.stride, min_dim=2)
        self.names = {int(k): str(v) for k, v in self.model.names.items()}
        self.topk = topk
        self.transforms = self._transforms(getattr(module, "transforms", None), classify_transforms)
        self.host, self.normalize = self._split(self.transforms)

    def _transforms(self, saved: Any, classify_transforms: Any) -> Any:
        """The checkpoint's own transforms if they were made for this size, else the defaults."""
        size = getattr(saved.transforms[0], "size", self.imgsz) if saved is not None else None
        size = (size, size) if isinstance(size, int) else size
        if size is not None and tuple(size) == tuple(self.imgsz):
            return saved
        return classify_transforms(self.imgsz)

    def _split(self, transforms: Any) -> tuple[Any, Any]:
        """(host resize+crop, device Normalize) when ``transforms`` is the standard four-step chain."""
        import torchvision.transforms as T

        steps = getattr(transforms, "transforms", ())
        standard = (
            type(transforms) is T.Compose
            and tuple(map(type, steps)) == (T.Resize, T.CenterCrop, T.ToTensor, T.Normalize)
            and getattr(self.model, "channels", 3) == 3
        )
        return (T.Compose(steps[:2]), steps[-1]) if standard else (None, None)

    def preprocess(self, frames: Sequence[Frame]) -> torch.Tensor:
        """BGR uint8 frames → ``(N, 3, h, w)`` float on the device, exactly as Ultralytics prepares them."""
        from PIL import Image

        if self.host is None:  # custom transforms: whole chain on RGB PIL images, as Ultralytics does
            x = torch.stack([self.transforms(Image.fromarray(f.image[..., ::-1].copy())) for f in frames])
            x = x.to(self.device)
            return x.half() if self.model.fp16 else x.float()
        # Resize and crop are per-pixel interpolations, so channel order does not matter here.
        boxed = [np.array(self.host(Image.fromarray(f.image))) for f in frames]
        x = torch.from_numpy(boxed[0]).unsqueeze(0) if len(boxed) == 1 else torch.from_numpy(np.stack(boxed))
        x = x.to(self.device).permute(0, 3, 1, 2).contiguous().flip(1)
        x = (x.half() if self.model.fp16 else x.float()).div_(255)
        return self.normalize(x)

    def forward(self, batch: torch.Tensor) -> Any:
        return self.run_model(batch)

    def postprocess(self, raw: Any, batch: torch.Tensor, frames: Sequence[Frame]) -> list[Classification]:
        probs = raw[0] if isinstance(raw, list | tuple) else raw
        return topk_results(probs, self.topk, self.names)


@register_builder("classify", "yolo")
def build_yolo_classifier(request: BuildRequest) -> YoloClassifier:
    from densecnn.tasks.detect.yolo import yolo_weights

    return YoloClassifier(
        weights=yolo_weights(request),
        user_named=request.weights.user_named,
        device=request.device,
        half=request.half,
        imgsz=request.imgsz,
        topk=request.cfg.topk,
        trust_weights=request.cfg.trust_weights,
    )
