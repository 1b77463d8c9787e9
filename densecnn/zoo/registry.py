"""The model registry. Importing ``densecnn.zoo`` fills it; ``densecnn models`` is a view of it."""

from __future__ import annotations

from densecnn.registry import Registry
from densecnn.zoo.specs import ModelSpec

MODELS: Registry[ModelSpec] = Registry("model")
