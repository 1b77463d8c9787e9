"""Models and their weight files as typed data (the torchvision ``Weights`` idea)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Task = Literal["detect", "segment", "classify"]
Family = Literal["yolo", "torchvision"]

_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable weight file.

    ``sha256`` is the full 64-hex digest, or a prefix of it where only a prefix is published
    (torchvision puts the first 8 hex digits of the sha256 in the file name and checks that).
    ``pickled`` files run code when loaded (Ultralytics ``.pt``): they are loaded only once the
    digest matches, or when the user named the file.
    """

    file_name: str
    url: str
    sha256: str
    size: int | None = None
    license: str = ""
    pickled: bool = False

    def __post_init__(self) -> None:
        if not _HEX.match(self.sha256) or not 8 <= len(self.sha256) <= 64:
            raise ValueError(f"{self.file_name}: sha256 must be 8-64 lowercase hex digits")

    @property
    def full_digest(self) -> bool:
        return len(self.sha256) == 64

    def matches(self, hexdigest: str) -> bool:
        return hexdigest.lower().startswith(self.sha256)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: how to build it, where its weights come from, and its task defaults.

    ``arch`` is the torchvision builder name (family ``torchvision``) or the Ultralytics model stem
    (family ``yolo``). ``classes[i]`` is the name of class id ``i``.
    """

    name: str
    task: Task
    family: Family
    arch: str
    weights: WeightsFile | None
    classes: tuple[str, ...]
    conf: float
    iou: float
    imgsz: int
    max_det: int = 300
    description: str = ""
    default: bool = False
