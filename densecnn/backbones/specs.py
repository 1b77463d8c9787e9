"""What a backbone offers, as data (no torch import): stage channels and strides, ImageNet weights.

``densecnn models`` and the CLI read these to tell which heads a backbone can serve before anything
is built; the built :class:`~densecnn.backbones.base.Backbone` states the same ``feature_info``
(tests/test_backbones.py checks both against real tensor shapes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from densecnn.errors import UsageError
from densecnn.zoo.specs import Preprocess, WeightsFile

if TYPE_CHECKING:
    from densecnn.backbones.base import Backbone

__all__ = ["BackboneSpec", "FeatureInfo", "Preprocess", "check_strides"]


@dataclass(frozen=True)
class FeatureInfo:
    """One stage's output: ``channels`` and ``stride`` (input pixels per feature pixel)."""

    channels: int
    stride: int


def check_strides(
    feature_info: Sequence[FeatureInfo], *, backbone: str, head: str, strides: Sequence[int]
) -> list[int]:
    """Indices of the stages with these ``strides``, or a UsageError saying what is missing."""
    have = [f.stride for f in feature_info]
    missing = [s for s in strides if s not in have]
    if missing:
        raise UsageError(
            f"{head} needs backbone features at strides {list(strides)}; {backbone} has stages at "
            f"strides {have} (missing {missing}).",
            hint="Pick another --backbone (`densecnn models --matrix` shows which heads each one serves).",
        )
    return [have.index(s) for s in strides]


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it, what it outputs, its ImageNet weights and preprocessing.

    ``build(weights_path=..., in_channels=...)`` returns a :class:`Backbone`, loading the ImageNet
    weights (a torchvision classification state dict) from ``weights_path`` when it is not None.
    ``feature_info`` is what that backbone's ``forward`` returns, stage by stage.
    ``classifier_arch`` is the torchvision classification model whose weights these are (None for
    densecnn's own backbones, which have no ``weights``).
    """

    name: str
    build: Callable[..., Backbone]
    feature_info: tuple[FeatureInfo, ...]
    weights: WeightsFile | None
    preprocess: Preprocess
    classifier_arch: str | None = None
    description: str = ""

    @property
    def strides(self) -> list[int]:
        return [f.stride for f in self.feature_info]

    def require(self, *, head: str, strides: Sequence[int]) -> list[int]:
        """As :meth:`Backbone.require`, without building the backbone."""
        return check_strides(self.feature_info, backbone=self.name, head=head, strides=strides)
