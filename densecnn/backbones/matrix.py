"""The head x backbone matrix: parameters and GFLOPs of every head on every backbone, measured.

Each model is built on the meta device (no memory, no weights) and counted with
``torch.utils.flop_counter.FlopCounterMode`` on a forward pass at the head's default square input
size (``HeadSpec.input_size``) and class count (``HeadSpec.num_classes``). **GFLOPs are
multiply-accumulates / 1e9** (FlopCounterMode's FLOPs / 2), the convention of torchvision's model
tables (ResNet-18 classifier at 224: 1.81). Convolutions and matrix products are counted;
pooling, interpolation, normalisation, RoIAlign and NMS are not.

Faster R-CNN: backbone + FPN + RPN head on the whole image, plus the box head on 1000 RoIs
(torchvision's test-time post-NMS proposal count); the data-dependent proposal selection between
them is skipped. Combinations a backbone cannot serve carry the reason instead.

Measuring every cell takes a while on a CPU, so results are cached in ``model_matrix.json`` in the
weight cache folder, keyed by the densecnn, torch, torchvision and smp versions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from densecnn.backbones.registry import BACKBONES
from densecnn.errors import UsageError
from densecnn.fsutil import atomic_write_json
from densecnn.zoo.heads import HEADS, HeadSpec

CACHE_NAME = "model_matrix.json"
METHOD = 1  # bump when the way cells are measured changes
RPN_TEST_PROPOSALS = 1000


@dataclass(frozen=True)
class Cell:
    """One head on one backbone: ``params_m`` (millions) and ``gflops`` (GMACs) at ``input_size``,
    or ``reason`` it cannot be built."""

    backbone: str
    head: str
    input_size: int
    params_m: float | None = None
    gflops: float | None = None
    reason: str | None = None


def versions() -> dict[str, Any]:
    """What the cached numbers depend on (read from package metadata: no torch import)."""
    from importlib.metadata import PackageNotFoundError, version

    import densecnn

    out: dict[str, Any] = {"densecnn": densecnn.__version__, "method": METHOD}
    for dist in ("torch", "torchvision", "segmentation-models-pytorch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def measure(backbone: str, head: str) -> Cell:
    """Build ``head`` on ``backbone`` on the meta device and count its parameters and MACs."""
    import torch

    spec = HEADS.get(head)
    size = spec.input_size
    try:
        spec.check(BACKBONES.get(backbone))
        with torch.device("meta"):
            model = spec.build(backbone, spec.num_classes).eval()
    except UsageError as exc:
        return Cell(backbone, head, size, reason=exc.message)
    if head == "fasterrcnn":
        params, macs = count(model, size, forward=_rcnn_forward)
    else:
        params, macs = count(model, size)
    return Cell(backbone, head, size, params_m=round(params / 1e6, 3), gflops=round(macs / 1e9, 3))


def count(model: Any, size: int, *, forward: Callable[[Any, Any], object] | None = None) -> tuple[int, int]:
    """(parameters, multiply-accumulates) of ``model`` on one ``(1, 3, size, size)`` input, on the
    device of its parameters (meta: nothing is computed). ``forward(model, x)`` replaces ``model(x)``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    x = torch.empty(1, 3, size, size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if forward is None:
            model(x)
        else:
            forward(model, x)
    return params, counter.get_total_flops() // 2


def _rcnn_forward(model: Any, x: Any) -> None:
    """The counted parts of a Faster R-CNN pass (see the module docstring)."""
    import torch

    feats = model.backbone(x)
    model.rpn.head(list(feats.values()))
    channels = model.backbone.out_channels
    rois = torch.empty(RPN_TEST_PROPOSALS, channels, 7, 7, device=x.device)
    model.roi_heads.box_predictor(model.roi_heads.box_head(rois))


def _load(path: Path, current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("versions") != current:
        return {}
    cells = data.get("cells")
    return cells if isinstance(cells, dict) else {}


def measure_matrix(
    *,
    cache_dir: Path,
    refresh: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_cell: Callable[[str], None] | None = None,
) -> list[Cell]:
    """Every registered head on every registered backbone, backbone-major.

    Cells found in ``cache_dir/model_matrix.json`` for the current versions are reused (all are
    re-measured with ``refresh``); the rest are measured and the cache rewritten. ``on_start(n)``
    gets the number of cells to measure, ``on_cell(label)`` is called before each.
    """
    current = versions()
    path = Path(cache_dir) / CACHE_NAME
    cached = {} if refresh else _load(path, current)
    heads: list[HeadSpec] = [spec for _, spec in HEADS.items()]
    keys = [(b, h.name, h.input_size) for b in BACKBONES.names() for h in heads]
    todo = [k for k in keys if cached.get(f"{k[0]}/{k[1]}", {}).get("input_size") != k[2]]
    if on_start is not None:
        on_start(len(todo))
    for backbone, head, _ in todo:
        if on_cell is not None:
            on_cell(f"{head} on {backbone}")
        cached[f"{backbone}/{head}"] = asdict(measure(backbone, head))
    if todo:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"versions": current, "cells": cached})
        except OSError:
            pass  # a read-only cache folder only costs the next run the measuring time
    return [Cell(**cached[f"{b}/{h}"]) for b, h, _ in keys]
