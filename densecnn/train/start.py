"""Where a model's training starts: ImageNet backbone weights from the store, or a task checkpoint.

- ``--pretrained`` (default): the backbone's ImageNet weights when the weight store holds them
  (``densecnn weights pull``); no download is tried, and without them training starts from
  scratch and says so.
- ``--weights FILE``: a densecnn checkpoint (or a state dict) of the same architecture; tensors
  whose shape differs (the classifier layer when the class count changes) are left freshly
  initialised, and the run says which.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from densecnn.checkpoint import CheckpointMeta, load_state_dict, read_meta
from densecnn.errors import UsageError


def imagenet_weights(backbone: str, *, pretrained: bool, notes: list[str]) -> Path | bool:
    """The cached ImageNet file of ``backbone`` (for ``pretrained_backbone=``), else False with a note."""
    if not pretrained:
        return False
    from densecnn.backbones import BACKBONES
    from densecnn.zoo.store import WeightStore

    spec = BACKBONES.get(backbone)
    if spec.weights is None:
        notes.append(f"{backbone} has no ImageNet weights: training from scratch.")
        return False
    store = WeightStore()
    if not store.is_cached(spec.weights):
        notes.append(
            f"No ImageNet weights for {backbone} in the weight store ({store.path(spec.weights)}): "
            f"training from scratch. `densecnn weights pull {spec.classifier_arch or backbone}` "
            "gets them where the network allows."
        )
        return False
    notes.append(f"Backbone {backbone}: ImageNet weights from {store.path(spec.weights)}")
    return store.path(spec.weights)


def start_meta(weights: Path | None, *, task: str) -> CheckpointMeta | None:
    """The metadata of a densecnn ``--weights`` checkpoint of ``task`` (None for other files)."""
    if weights is None:
        return None
    if not weights.is_file():
        raise UsageError(f"--weights {weights}: no such file.")
    meta = read_meta(weights)
    if meta is not None and meta.task != task:
        raise UsageError(
            f"--weights {weights} is a densecnn {meta.task} checkpoint; `train {task}` needs a {task} one."
        )
    return meta


def load_matching(model: nn.Module, weights: Path, notes: list[str]) -> None:
    """Load the tensors of ``weights`` that fit ``model``; the rest stay as initialised (noted)."""
    state = load_state_dict(weights)
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise UsageError(
            f"--weights {weights}: none of its tensors fit this model.",
            hint="Start from a checkpoint of the same architecture and backbone.",
        )
    reshaped = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    missing = sorted(k for k in own if k not in fits)
    with torch.no_grad():
        model.load_state_dict(fits, strict=False)
    notes.append(f"Started from {weights}: {len(fits)}/{len(own)} tensors loaded.")
    if reshaped:
        notes.append(
            f"Re-initialised {len(reshaped)} tensor(s) whose shape differs (a new class count or width): "
            + ", ".join(reshaped[:6])
            + (" ..." if len(reshaped) > 6 else "")
        )
    elif missing:
        notes.append(
            f"{len(missing)} tensor(s) not in the file stay freshly initialised: {', '.join(missing[:4])}"
        )


SCRATCH_BN_MOMENTUM = 0.1  # PyTorch's default


def scratch_batchnorm(model: nn.Module, notes: list[str]) -> None:
    """Not from ImageNet weights (random init, or a densecnn checkpoint being fine-tuned): raise slow
    BatchNorm running-stat momenta (torchvision's MobileNetV3 / EfficientNet use 0.01, tuned for long
    ImageNet schedules) to PyTorch's 0.1. At 0.01 the running statistics trail the changing weights
    for hundreds of steps, and a short run's validation (eval mode) then predicts one class
    everywhere although training loss falls (seen from scratch, and fine-tuning person-unet at lr
    3e-3: validation pixel accuracy 0.16, all person)."""
    slow = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    slow = [m for m in slow if m.momentum is not None and m.momentum < SCRATCH_BN_MOMENTUM]
    for m in slow:
        m.momentum = SCRATCH_BN_MOMENTUM
    if slow:
        notes.append(
            f"BatchNorm momentum {SCRATCH_BN_MOMENTUM} in {len(slow)} layers (short run, no ImageNet start)."
        )
