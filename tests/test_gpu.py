"""CUDA paths: skipped where torch sees no CUDA device (run on a GPU machine with `pytest -m gpu`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _factories import loaded
from conftest import COCO8, CliRunner, need_data

from densecnn.config import PredictConfig
from densecnn.results import Frame

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def _frames() -> list[Frame]:
    return [
        Frame(image=cv2.imread(str(p)), source=p.name, path=str(p))
        for p in sorted(need_data(COCO8).rglob("*.jpg"))
    ]


@pytest.mark.parametrize("half", [False, True])
def test_yolo_cuda_matches_cpu(yolo_weights: Path, half: bool) -> None:
    cpu, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cpu", conf=0.5))
    gpu, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cuda", conf=0.5, half=half))
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).is_cuda
    for frame in _frames():
        a, b = cpu.predict([frame])[0], gpu.predict([frame])[0]
        n = min(len(a), len(b), 20)  # fp16 may flip borderline boxes: compare the top ones
        assert abs(len(a) - len(b)) <= max(2, len(a) // 10)
        assert np.allclose(a.boxes[:n], b.boxes[:n], atol=2.0 if half else 0.5)


def test_rcnn_cuda_matches_cpu(rcnn_weights: Path) -> None:
    kw = {"model": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": rcnn_weights, "conf": 0.3}
    cpu, _ = loaded("detect", PredictConfig(device="cpu", **kw))
    gpu, _ = loaded("detect", PredictConfig(device="cuda", **kw))
    for frame in _frames()[:4]:
        a, b = cpu.predict([frame])[0], gpu.predict([frame])[0]
        n = min(len(a), len(b), 10)
        assert np.allclose(a.boxes[:n], b.boxes[:n], atol=1.0)


def test_cli_detect_on_cuda(tmp_path: Path, run_cli: CliRunner, yolo_weights: Path) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    r = run_cli("detect", str(image), "--weights", str(yolo_weights), "--device", "cuda", "--half")
    assert r.returncode == 0, r.stderr
    assert "cuda" in (tmp_path / "runs/detect/predict/summary.json").read_text()
