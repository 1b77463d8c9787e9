"""Semantic segmenters: any ``nn.Module`` returning per-pixel logits at its input size (torchvision's
DeepLabV3 / LR-ASPP return them under ``"out"``; densecnn's U-Net / DeepLabV3+ return the tensor).

Preprocessing is torchvision's ``SemanticSegmentation`` preset (what the weights' ``transforms()``
returns), step for step with the same functions, on the decoded frame as a uint8 RGB tensor: resize
the shorter side to ``resize`` (bilinear, antialiased; aspect ratio kept), scale to [0, 1], normalise
with ``mean``/``std``. No crop and no padding, so the whole image is seen.

Back to the input: the logits ``(C, h, w)`` are resized to the input's ``(H, W)`` with bilinear
interpolation (``align_corners=False``) and the label map is their argmax, so mask pixel ``(x, y)``
belongs to input pixel ``(x, y)``. This is torchvision's own pattern (its models upsample their
logits bilinearly before the argmax). Large images take an exact shortcut that never holds the
``C x H x W`` full-size logits (:func:`labels_at`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densecnn.checkpoint import CheckpointMeta
from densecnn.errors import UsageError
from densecnn.results import Frame, Segmentation
from densecnn.tasks.builders import BuildRequest, register_builder
from densecnn.tasks.tensor import TensorPredictor
from densecnn.zoo.specs import Preprocess

FULL_RESIZE_FLOATS = 1 << 26
"""Above this many logits at full size (256 MiB of float32, e.g. 21 classes x 3.2 megapixels), the
label map is computed without materialising them (see :func:`upsample_argmax`)."""


def _source_index(out_size: int, in_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """PyTorch's bilinear source coordinates (``align_corners=False``) of ``out_size`` output pixels:
    the two neighbouring input indices and the weight of the second."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_(min=0)
    i0 = src.floor().long().clamp_(max=in_size - 1)
    i1 = (i0 + 1).clamp_(max=in_size - 1)
    return i0, i1, (src - i0).clamp_(0, 1)


def upsample_argmax(logits: torch.Tensor, height: int, width: int, *, chunk: int = 1 << 18) -> torch.Tensor:
    """``argmax`` over classes of ``logits (C, h, w)`` resized bilinearly (``align_corners=False``) to
    ``(height, width)`` → ``(height, width)`` uint8, without the ``C x height x width`` float tensor.

    Exact shortcut: where the four source pixels around an output pixel share their argmax class, the
    bilinear mix of their logits (a convex combination) has the same argmax, so only pixels at class
    boundaries are interpolated, ``chunk`` at a time.
    """
    logits = logits.float()
    low = logits.argmax(0).to(torch.uint8)
    if logits.shape[-2:] == (height, width):
        return low
    y0, y1, wy = _source_index(height, logits.shape[1], logits.device)
    x0, x1, wx = _source_index(width, logits.shape[2], logits.device)
    top, bottom = low[y0], low[y1]
    out = top[:, x0]
    mixed = (out != top[:, x1]) | (out != bottom[:, x0]) | (out != bottom[:, x1])
    ys, xs = mixed.nonzero(as_tuple=True)
    for start in range(0, len(ys), chunk):
        yy, xx = ys[start : start + chunk], xs[start : start + chunk]
        r0, r1, ty = y0[yy], y1[yy], wy[yy]
        c0, c1, tx = x0[xx], x1[xx], wx[xx]
        upper = logits[:, r0, c0] * (1 - tx) + logits[:, r0, c1] * tx
        lower = logits[:, r1, c0] * (1 - tx) + logits[:, r1, c1] * tx
        out[yy, xx] = (upper * (1 - ty) + lower * ty).argmax(0).to(torch.uint8)
    return out


def labels_at(
    logits: torch.Tensor, height: int, width: int, *, max_floats: int = FULL_RESIZE_FLOATS
) -> np.ndarray:
    """Label map ``(height, width)`` uint8 of ``logits (C, h, w)``: bilinear resize, then argmax.

    ``F.interpolate`` on the whole map (fastest) while it holds at most ``max_floats`` floats, else
    :func:`upsample_argmax` (same labels, memory bounded by the class boundaries).
    """
    c = logits.shape[0]
    if c * height * width <= max_floats:
        up = F.interpolate(
            logits.float().unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False
        )
        labels = up[0].argmax(0).to(torch.uint8)
    else:
        labels = upsample_argmax(logits, height, width)
    return labels.cpu().numpy()


class SemanticSegmenter(TensorPredictor):
    """A per-pixel logits model with its preprocessing (see :class:`TensorPredictor`; no crop).
    At most 255 classes: the label map is uint8 and 255 means "no class"."""

    kind = "Segmenters"
    export_kind = "semantic"
    spatial_dynamic = True

    def export_input_shape(self) -> tuple[int, ...]:
        # Traced at a size that is no multiple of 32, so a model that pads its input to one (the
        # densecnn U-Net / DeepLabV3+ heads) records its padding in the graph for every size.
        return (1, self.in_channels, self.prep.resize + 1, self.prep.resize + 1)

    def exported_settings(self, request: BuildRequest) -> None:
        if request.imgsz is not None:  # semantic exports are always dynamic: any shorter side
            self.prep = replace(self.prep, resize=request.imgsz)

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
        if len(names) > 255:
            raise UsageError(
                f"Segmentation models with more than 255 classes are not supported ({len(names)})."
            )
        super().__init__(
            model=model, preprocess=preprocess, names=names, device=device, half=half, in_channels=in_channels
        )

    def batch_key(self, frame: Frame) -> tuple[int, ...]:
        """The image size: equally sized frames give equally sized network inputs."""
        return frame.image.shape

    def preprocess(self, frames: Sequence[Frame]) -> list[torch.Tensor]:
        """BGR uint8 frames of any sizes → normalised float ``(C, h, w)`` tensors on the device, the
        shorter side ``resize`` pixels (one per frame: sizes may differ)."""
        return [self.normalised(self.resized(frame)) for frame in frames]

    def forward(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits ``(C, h, w)`` per input; runs of equally sized inputs go through the model together."""
        logits: list[torch.Tensor] = []
        start = 0
        while start < len(batch):
            end = start + 1
            while end < len(batch) and batch[end].shape == batch[start].shape:
                end += 1
            out = self.run_model(torch.stack(batch[start:end]))
            if isinstance(out, dict):
                out = out["out"]
            logits.extend(out.unbind(0))
            start = end
        return logits

    def postprocess(self, raw: list[torch.Tensor], batch: Any, frames: Sequence[Frame]) -> list[Segmentation]:
        results = []
        for logits, frame in zip(raw, frames, strict=True):
            results.append(Segmentation(labels_at(logits, frame.height, frame.width), self.names))
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
    from densecnn.checkpoint import PICK_MODEL, load_into, load_state_dict

    state = load_state_dict(weights)
    num_classes = _num_classes(arch, state)
    if num_classes is None:
        raise UsageError(
            f"{weights} is not a {arch} state dict (it has no classifier weights).",
            hint="Pick the --model these weights were trained for.",
        )
    aux = any(k.startswith("aux_classifier.") for k in state)
    model = build_torchvision_segmenter(arch, num_classes, aux_loss=aux)
    load_into(model, state, source=weights, what=arch, hint=PICK_MODEL)
    if len(class_names) == num_classes:
        return model, dict(enumerate(class_names))
    return model, {i: f"class{i}" for i in range(num_classes)}


def build_torchvision_segmenter(arch: str, num_classes: int, *, aux_loss: bool = False) -> nn.Module:
    """torchvision's segmentation builder ``arch`` with fresh weights: ``(N, 3, H, W)`` → ``{"out":
    logits (N, num_classes, H, W)}`` (+ ``"aux"`` when ``aux_loss``; LR-ASPP has no auxiliary head)."""
    from torchvision.models import get_model

    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if arch.startswith("deeplabv3"):
        kwargs["aux_loss"] = aux_loss
    return get_model(arch, **kwargs)  # type: ignore[no-any-return]


def load_torchvision_checkpoint(path: Path) -> tuple[nn.Module, CheckpointMeta]:
    """A densecnn checkpoint of a torchvision segmentation builder (``meta.arch``, e.g.
    ``lraspp_mobilenet_v3_large``) from ``densecnn train segment``, rebuilt and loaded (eval mode).
    ``meta.extra["builder_kwargs"]`` says whether the auxiliary head exists (``aux_loss``)."""
    from densecnn.checkpoint import load_checkpoint, load_into

    state, meta = load_checkpoint(path)
    aux = bool(meta.extra.get("builder_kwargs", {}).get("aux_loss", False))
    model = build_torchvision_segmenter(meta.arch, meta.num_classes, aux_loss=aux)
    return load_into(model, state, source=path, what=f"{meta.arch} with {meta.num_classes} classes"), meta


def semantic_only(request: BuildRequest) -> None:
    """``--conf``/``--iou`` mean nothing to a label-map model: refuse rather than ignore them."""
    if request.cfg.conf is not None or request.cfg.iou is not None:
        raise UsageError("--conf and --iou apply to instance models (yolov8n-seg, yolo11n-seg, -seg .pt).")


def checkpoint_segmenter(model: nn.Module, meta: CheckpointMeta, request: BuildRequest) -> SemanticSegmenter:
    """A segmenter from a densecnn checkpoint: its normalisation and classes; the shorter side is
    ``--imgsz``, else the size it was trained at."""
    size = request.checkpoint_size()
    predictor = SemanticSegmenter(
        model=model,
        preprocess=Preprocess(resize=size, crop=size, mean=tuple(meta.mean), std=tuple(meta.std)),
        names=dict(enumerate(meta.class_names)),
        device=request.device,
        half=request.half,
        in_channels=meta.in_channels,
    )
    predictor.backbone = meta.backbone  # shown in the run header and summary.json
    return predictor


@register_builder("segment", "torchvision")
def build_torchvision_segmenter_predictor(request: BuildRequest) -> SemanticSegmenter:
    """torchvision DeepLabV3 / LR-ASPP: its state dict (official or the user's, classes named by
    ``--class-names``), or a densecnn checkpoint of one from ``densecnn train segment``."""
    from densecnn.zoo.segmentation import SEGMENTATION_PREPROCESS

    semantic_only(request)
    path, meta0 = request.weights_file(), request.weights.meta
    if meta0 is not None:
        model, meta = load_torchvision_checkpoint(path)
        return checkpoint_segmenter(model, meta, request)
    model, names = load_torchvision_segmenter(
        request.spec.arch, path, request.class_names or request.spec.classes
    )
    if request.class_names and len(request.class_names) != len(names):
        raise UsageError(f"{path} has {len(names)} classes, not {len(request.class_names)}.")
    prep = SEGMENTATION_PREPROCESS
    if request.imgsz is not None:
        prep = replace(prep, resize=request.imgsz)
    return SemanticSegmenter(
        model=model, preprocess=prep, names=names, device=request.device, half=request.half
    )
