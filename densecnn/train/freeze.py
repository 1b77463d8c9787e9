"""Freezing backbone stages for transfer learning (``--freeze N --freeze-epochs E``).

A frozen stage keeps its weights (``requires_grad=False``) and its BatchNorm running statistics
(the modules stay in eval mode), the usual fine-tuning recipe: the small new dataset must not
drift the ImageNet statistics. Stages count from the input side, as the backbone's
``feature_info`` does, so ``--freeze 2`` on ResNet freezes the stem and ``layer1``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from densecnn.errors import UsageError


def backbone_stages(backbone: nn.Module) -> list[list[nn.Module]]:
    """The modules of each stage of a registry backbone, shallow to deep (one list per stage).

    ResNet: ``[conv1, bn1]``, ``[layer1]`` ... ``[layer4]``; ``features`` backbones (MobileNetV3,
    EfficientNet, ConvNeXt): the blocks up to each stage end; LeNet: its ``stages``. torchvision's
    DeepLabV3 / LR-ASPP ``model.backbone`` (an ``IntermediateLayerGetter``) counts the same way:
    ResNet's layers, or MobileNetV3's blocks split where a block downsamples (``_is_cn``).
    """
    from densecnn.backbones.torchvision_nets import FeaturesBackbone, ResNetBackbone

    if isinstance(backbone, ResNetBackbone) or hasattr(backbone, "layer4"):
        return [[backbone.conv1, backbone.bn1], *([getattr(backbone, f"layer{i}")] for i in range(1, 5))]
    blocks = list(backbone.children())
    if any(getattr(block, "_is_cn", False) for block in blocks):  # torchvision MobileNetV3 blocks
        groups: list[list[nn.Module]] = [[]]
        for block in blocks:
            if getattr(block, "_is_cn", False) and groups[-1]:
                groups.append([])
            groups[-1].append(block)
        return groups
    if isinstance(backbone, FeaturesBackbone):
        stages, start = [], 0
        for end in backbone.ends:
            stages.append(list(backbone.features[start : end + 1]))
            start = end + 1
        return stages
    stages_attr = getattr(backbone, "stages", None)
    if isinstance(stages_attr, nn.ModuleList):
        return [[stage] for stage in stages_attr]
    raise UsageError(f"--freeze: densecnn does not know the stages of {type(backbone).__name__}.")


class StageFreezer:
    """Freezes the first ``n`` of ``stages`` while :meth:`apply` is told to, and unfreezes them after."""

    def __init__(self, stages: Sequence[Sequence[nn.Module]], n: int) -> None:
        if n > len(stages):
            raise UsageError(f"--freeze {n}: the backbone has only {len(stages)} stages.")
        self.modules = [m for stage in stages[:n] for m in stage]
        self.frozen = False

    def apply(self, frozen: bool) -> bool:
        """Set the frozen state; True when it changed (the caller says so in the log)."""
        if not self.modules or frozen == self.frozen:
            return False
        for module in self.modules:
            for p in module.parameters():
                p.requires_grad_(not frozen)
        self.frozen = frozen
        return True

    def keep_eval(self) -> None:
        """Call after ``model.train()``: frozen stages keep their BatchNorm statistics."""
        if self.frozen:
            for module in self.modules:
                module.eval()
