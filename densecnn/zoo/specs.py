"""Models and their weight files as typed data (the torchvision ``Weights`` idea)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import nn

    from densecnn.backbones.specs import BackboneSpec

Task = Literal["detect", "segment", "classify"]
Family = str  # "yolo", "torchvision", "densecnn" built in; a plug-in registers its own builder

_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable weight file.

    ``sha256`` is the full 64-hex digest, or a prefix of it where only a prefix is published
    (torchvision puts the first 8 hex digits of the sha256 in the file name and checks that).
    ``None`` where no digest could be sourced: the file is then not verified (``matches`` accepts
    any digest; ``densecnn models`` shows none). ``pickled`` files run code when loaded (Ultralytics
    ``.pt``): they are loaded with Ultralytics' ``weights_only`` allow-list; a full unpickle happens
    only for a file the user named *and* allowed (``--trust-weights``). ``embedded`` files ship with
    densecnn in the checkout's ``weights/`` folder (``url`` is empty): never downloaded,
    digest-checked on every use.
    """

    file_name: str
    url: str
    sha256: str | None
    size: int | None = None
    license: str = ""
    pickled: bool = False
    embedded: bool = False

    def __post_init__(self) -> None:
        if self.sha256 is not None and (not _HEX.match(self.sha256) or not 8 <= len(self.sha256) <= 64):
            raise ValueError(f"{self.file_name}: sha256 must be 8-64 lowercase hex digits")

    @property
    def full_digest(self) -> bool:
        return self.sha256 is not None and len(self.sha256) == 64

    def matches(self, hexdigest: str) -> bool:
        return self.sha256 is None or hexdigest.lower().startswith(self.sha256)


@dataclass(frozen=True)
class Preprocess:
    """How a model's weights expect images: resize, centre crop, normalise (RGB or gray, [0, 1]).

    ``mean``/``std`` have one value per input channel (3 for RGB).
    """

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"

    def for_channels(self, in_channels: int) -> Preprocess:
        """The same preprocessing for ``in_channels`` inputs: one channel gets the mean of the RGB
        values (gray images), more channels repeat them cyclically (as timm adapts the first conv)."""
        if in_channels == len(self.mean):
            return self
        if in_channels == 1:
            mean, std = (sum(self.mean) / len(self.mean),), (sum(self.std) / len(self.std),)
        else:
            mean = tuple(self.mean[i % len(self.mean)] for i in range(in_channels))
            std = tuple(self.std[i % len(self.std)] for i in range(in_channels))
        return replace(self, mean=mean, std=std)


@dataclass(frozen=True)
class HeadSpec:
    """A head that sits on any registered backbone: the backbone ``strides`` it needs, the
    ``num_classes`` it is measured at (``densecnn models --matrix``, at the model's ``imgsz``), and
    its ``builder`` (``module:function``, imported on first use) of the form ``build(backbone: str,
    num_classes: int, *, pretrained_backbone=False, in_channels=3, ...) -> nn.Module``."""

    name: str
    task: str
    strides: tuple[int, ...]
    input_size: int
    num_classes: int
    builder: str
    description: str = ""

    def load(self) -> Callable[..., nn.Module]:
        module, _, func = self.builder.partition(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]

    def build(self, backbone: str, num_classes: int, **kwargs: Any) -> nn.Module:
        return self.load()(backbone, num_classes, **kwargs)

    def check(self, backbone: BackboneSpec) -> None:
        """UsageError (the reason) when ``backbone`` cannot serve this head; no torch involved."""
        backbone.require(head=self.name, strides=self.strides)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: how to build it, where its weights come from, and its task defaults.

    ``arch`` is the torchvision builder name (family ``torchvision``), the Ultralytics model stem
    (family ``yolo``) or a densecnn head (family ``densecnn``: built on a registry backbone named
    with ``--backbone``; no official weights, its weights and classes come from a densecnn
    checkpoint). ``classes[i]`` is the name of class id ``i``. ``conf``/``iou`` are the default
    detection thresholds (None for tasks without them, e.g. classify).
    """

    name: str
    task: Task
    family: Family
    arch: str
    weights: WeightsFile | None
    classes: tuple[str, ...]
    imgsz: int
    conf: float | None = None
    iou: float | None = None
    max_det: int = 300
    description: str = ""
    default: bool = False
    fallback: bool = False  # the embedded model used when the task's default is unavailable
    head: HeadSpec | None = None  # a head on any registry backbone (family "densecnn")
