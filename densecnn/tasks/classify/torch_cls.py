"""Classifiers that are a plain ``nn.Module`` returning logits: torchvision's ImageNet models and
densecnn's own checkpoints (a registry backbone + the pooled linear head).

Preprocessing is torchvision's ``ImageClassification`` preset (what ``Weights.transforms()`` returns),
step for step and with the same functions, applied to the decoded frame as a uint8 RGB tensor (the
documented ``read_image`` → ``transforms`` → ``model`` path): resize the shorter side to ``resize``
(antialiased), centre-crop ``crop`` x ``crop``, scale to [0, 1], normalise with ``mean``/``std``.
Scores are the softmax over all classes; the ``topk`` best are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densecnn.errors import UsageError
from densecnn.results import Classification, Frame
from densecnn.tasks.builders import BuildRequest, register_builder
from densecnn.tasks.tensor import TensorPredictor
from densecnn.zoo.specs import Preprocess


def topk_results(probs: torch.Tensor, k: int, names: dict[int, str]) -> list[Classification]:
    """``(N, C)`` probabilities → one :class:`Classification` of the ``k`` best per row, best first."""
    k = min(k, probs.shape[1])
    scores, ids = probs.float().topk(k, dim=1)
    scores_np, ids_np = scores.cpu().numpy(), ids.cpu().numpy()
    return [Classification(i, s, names) for i, s in zip(ids_np, scores_np, strict=True)]


def scaled_preprocess(prep: Preprocess, imgsz: int | None) -> Preprocess:
    """``prep`` for a crop of ``imgsz`` pixels, keeping the resize / crop ratio (None: unchanged)."""
    if imgsz is None or imgsz == prep.crop:
        return prep
    return Preprocess(
        resize=round(imgsz * prep.resize / prep.crop),
        crop=imgsz,
        mean=prep.mean,
        std=prep.std,
        interpolation=prep.interpolation,
    )


class TensorClassifier(TensorPredictor):
    """A classifier logits model with its preprocessing (see :class:`TensorPredictor`): the resized
    frame is centre-cropped to ``crop``; the ``topk`` best classes are kept."""

    kind = "Classifiers"
    export_kind = "classify"

    def exported_settings(self, request: BuildRequest) -> None:
        self.topk = request.cfg.topk
        if request.weights.export is not None and request.weights.export.dynamic:
            self.prep = scaled_preprocess(self.prep, request.imgsz)

    def __init__(
        self,
        *,
        model: nn.Module,
        preprocess: Preprocess,
        names: dict[int, str],
        device: torch.device,
        half: bool,
        topk: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__(
            model=model, preprocess=preprocess, names=names, device=device, half=half, in_channels=in_channels
        )
        self.topk = topk

    def preprocess(self, frames: Sequence[Frame]) -> torch.Tensor:
        """BGR uint8 frames of any sizes → normalised float ``(N, C, crop, crop)`` on the device."""
        import torchvision.transforms.functional as F

        return self.normalised(
            torch.stack([F.center_crop(self.resized(f), [self.prep.crop]) for f in frames])
        )

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.run_model(batch)  # type: ignore[no-any-return]

    def postprocess(self, raw: torch.Tensor, batch: Any, frames: Sequence[Frame]) -> list[Classification]:
        return topk_results(raw.float().softmax(dim=1), self.topk, self.names)


def _last_linear(model: nn.Module) -> str:
    """The name of the last ``nn.Linear`` of ``model`` (the classification layer)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise UsageError(f"{type(model).__name__} has no linear classification layer.")
    return names[-1]


def load_torchvision_classifier(
    arch: str, weights: Path, class_names: Sequence[str]
) -> tuple[nn.Module, dict[int, str]]:
    """torchvision's ``arch`` with the state dict at ``weights`` → (model, id → name).

    The number of classes is read from the state dict, so a fine-tuned model with its own head
    loads too; its classes are then named ``class0``... unless ``class_names`` has as many entries.
    """
    from torchvision.models import get_model

    from densecnn.checkpoint import PICK_MODEL, load_into, load_state_dict

    state = load_state_dict(weights)
    model = get_model(arch, weights=None)
    key = f"{_last_linear(model)}.weight"
    if key not in state:
        raise UsageError(
            f"{weights} is not a {arch} state dict (it has no {key}).",
            hint="Pick the --model these weights were trained for.",
        )
    num_classes = int(state[key].shape[0])
    if num_classes != model.state_dict()[key].shape[0]:
        model = get_model(arch, weights=None, num_classes=num_classes)
    load_into(model, state, source=weights, what=arch, hint=PICK_MODEL)
    if len(class_names) == num_classes:
        return model, dict(enumerate(class_names))
    return model, {i: f"class{i}" for i in range(num_classes)}


@register_builder("classify", "torchvision")
def build_torchvision_classifier(request: BuildRequest) -> TensorClassifier:
    """A torchvision ImageNet classifier from its state dict (official or the user's)."""
    from densecnn.zoo.classification import preprocess_for

    spec, path = request.spec, request.weights_file()
    model, names = load_torchvision_classifier(spec.arch, path, spec.classes)
    return TensorClassifier(
        model=model,
        preprocess=scaled_preprocess(preprocess_for(spec), request.imgsz),
        names=names,
        device=request.device,
        half=request.half,
        topk=request.cfg.topk,
    )
