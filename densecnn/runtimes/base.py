"""What a non-torch backend gives a predictor: a :class:`Runtime`, called like the torch module."""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Runtime(Protocol):
    """An exported model, ready to run. Called with the predictor's batch tensor (``(N, C, H, W)``,
    on the CPU), it returns the graph's outputs as torch tensors: one tensor, or a list of them in
    the order the export wrote them (YOLO -seg: predictions, prototypes)."""

    backend: str
    precision: str
    """What the graph computes in: fp32, fp16, bf16 or int8."""
    dynamic: bool
    """Whether height, width and batch may vary; a static graph takes its exported shape only."""

    def __call__(self, x: torch.Tensor) -> Any: ...

    def forget_shapes(self) -> None:
        """Release anything built for particular input shapes."""
