"""Training augmentation with torchvision transforms v2: masks (``tv_tensors.Mask``) move with the image.

Inputs are ``(C, H, W)`` uint8 RGB tensors (``tv_tensors.Image``) and, for segmentation, ``(H, W)``
label maps (``tv_tensors.Mask``: resized with nearest neighbour, untouched by colour jitter and
normalisation). Outputs: float images normalised with ``mean``/``std``, masks as int64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def segment_transform(
    size: int, *, augment: bool, mean: Sequence[float], std: Sequence[float]
) -> Callable[..., Any]:
    """Square ``size`` crops for training batches: random resized crop (35-100% of the area),
    horizontal flip and colour jitter with ``augment``; else shorter side to ``size`` and centre crop."""
    if augment:
        geometry: list[Any] = [
            v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02),
        ]
    else:
        geometry = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*geometry, *_to_float(mean, std)])


def classify_transform(
    size: int, *, resize: int, augment: bool, mean: Sequence[float], std: Sequence[float]
) -> Callable[..., Any]:
    """Random resized crop (50-100%), flip and colour jitter with ``augment``; else what the
    predictor does (shorter side to ``resize``, centre crop ``size``)."""
    if augment:
        geometry: list[Any] = [
            v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02),
        ]
    else:
        geometry = [v2.Resize(resize, antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*geometry, *_to_float(mean, std)])


def bgr_to_image(bgr: np.ndarray, *, in_channels: int = 3) -> tv_tensors.Image:
    """``HxWx3`` uint8 BGR (densecnn's decoded frames) → ``(C, H, W)`` uint8 RGB ``tv_tensors.Image``
    (gray by ITU-R 601 luma when ``in_channels`` is 1, as the predictors do)."""
    x = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)
    if in_channels == 1:
        x = v2.functional.rgb_to_grayscale(x)
    return tv_tensors.Image(x)


CACHE_ITEMS = 512
"""Datasets up to this many images stay decoded in memory (about 1 MB per photo), per worker."""


class DecodeCache:
    """Decoded samples of a small dataset, kept so each epoch only re-augments them."""

    def __init__(self, size: int) -> None:
        self.store: dict[int, Any] | None = {} if size <= CACHE_ITEMS else None

    def get(self, index: int, load: Callable[[], Any]) -> Any:
        if self.store is None:
            return load()
        if index not in self.store:
            self.store[index] = load()
        return self.store[index]
