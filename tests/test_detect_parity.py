"""Parity: densecnn's detections equal Ultralytics' own predict and torchvision's own model call
on the same weights and images (boxes IoU >= 0.99, score difference <= 1e-3, same classes)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _factories import loaded, make_yolo_checkpoint
from conftest import COCO8, need_data

from densecnn.config import PredictConfig
from densecnn.results import Detections, Frame


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def assert_same(ours: Detections, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
    """Every reference detection has a partner of the same class, IoU >= 0.99, |score diff| <= 1e-3.

    Boxes clipped to zero width at the image border have no IoU: for them, corners within 0.5 px.
    """
    assert len(ours) == len(boxes)
    if len(boxes) == 0:
        return
    boxes = boxes.astype(np.float32)
    iou = _iou(ours.boxes, boxes)
    iou = np.where(np.abs(ours.boxes[:, None] - boxes[None]).max(-1) <= 0.5, np.maximum(iou, 1.0), iou)
    same = (ours.class_ids[:, None] == labels[None, :]) & (
        np.abs(ours.scores[:, None] - scores[None, :]) <= 1e-3
    )
    best = np.where(same, iou, 0).max(axis=0)
    assert best.min() >= 0.99, f"worst match IoU {best.min():.4f}"


def _images() -> list[Path]:
    return sorted(need_data(COCO8).rglob("*.jpg"))


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"])
def test_yolo_matches_ultralytics_predict(tmp_path: Path, cfg: str) -> None:
    from ultralytics import YOLO

    weights = make_yolo_checkpoint(tmp_path / f"{cfg}.pt", cfg=cfg)
    predictor, _ = loaded("detect", PredictConfig(weights=weights, device="cpu"))
    reference = YOLO(str(weights))
    total = 0
    for path in _images():
        image = cv2.imread(str(path))
        ours = predictor.predict([Frame(image=image, source=path.name, path=str(path))])[0]
        ref = reference.predict(image, conf=0.25, iou=0.7, imgsz=640, device="cpu", verbose=False)[0].boxes
        assert_same(ours, ref.xyxy.numpy(), ref.conf.numpy(), ref.cls.numpy().astype(np.int64))
        total += len(ours)
    assert total > 0, "the test weights must produce detections, or this test proves nothing"


def test_yolo_batch_and_classes_match_ultralytics(yolo_weights: Path) -> None:
    """A batch of differently sized images, filtered by class names, still matches Ultralytics."""
    from ultralytics import YOLO

    predictor, _ = loaded(
        "detect",
        PredictConfig(weights=yolo_weights, device="cpu", imgsz=320, conf=0.3, classes=("person,car", "2")),
    )
    assert predictor.classes == [0, 2]
    images = [cv2.imread(str(p)) for p in _images()]
    frames = [Frame(image=im, source=str(i), path=str(i)) for i, im in enumerate(images)]
    ours = predictor.predict(frames)
    refs = YOLO(str(yolo_weights)).predict(
        images, conf=0.3, iou=0.7, imgsz=320, classes=[0, 2], verbose=False
    )
    for det, ref in zip(ours, refs, strict=True):
        assert set(det.class_ids.tolist()) <= {0, 2}
        assert_same(
            det, ref.boxes.xyxy.numpy(), ref.boxes.conf.numpy(), ref.boxes.cls.numpy().astype(np.int64)
        )


def test_restricted_input_sizes_letterbox_as_ultralytics_at_that_size(yolo_weights: Path) -> None:
    """A model restricted to a few input sizes (a folder of many sizes on OpenVINO) letterboxes each
    image at its own scale into the smallest of them that holds it: the pixels of Ultralytics'
    LetterBox straight to that size; an image whose own size is one of them is unchanged."""
    from ultralytics.data.augment import LetterBox

    predictor, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cpu", imgsz=320))
    image = cv2.imread(str(_images()[0]))
    wide, tall, four_three = (cv2.resize(image, size) for size in ((320, 200), (180, 320), (400, 300)))
    assert [predictor.own_size(im.shape) for im in (wide, tall, four_three)] == [
        (224, 320),
        (320, 192),
        (256, 320),
    ]
    plain = predictor.preprocess([Frame(four_three, source="a", path="a")])
    sample = [(300, 400)] * 3 + [(640, 480)] * 2 + [(200, 320)]  # 4:3 the commonest, then 3:4
    assert predictor.restrict_input_sizes(sample) == ((256, 320), (320, 256), (320, 320))
    for im, size in ((wide, (256, 320)), (tall, (320, 256)), (four_three, (256, 320))):
        frame = Frame(im, source="a", path="a")
        assert predictor.batch_key(frame) == size
        x = predictor.preprocess([frame])
        want = LetterBox(size, auto=False, stride=32)(image=im)
        want = torch.from_numpy(want[..., ::-1].copy()).permute(2, 0, 1).float().div(255)
        torch.testing.assert_close(x[0], want, atol=0, rtol=0)
    torch.testing.assert_close(predictor.preprocess([Frame(four_three, source="a", path="a")]), plain)


def test_faster_rcnn_matches_torchvision(rcnn_weights: Path) -> None:
    from PIL import Image
    from torchvision.models.detection import (
        FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
        fasterrcnn_mobilenet_v3_large_320_fpn,
    )

    predictor, spec = loaded(
        "detect",
        PredictConfig(model="fasterrcnn_mobilenet_v3_large_320_fpn", weights=rcnn_weights, device="cpu"),
    )
    assert spec.conf == 0.05 and spec.iou == 0.5
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    model.load_state_dict(torch.load(rcnn_weights, weights_only=True))
    model.eval()
    transform = FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT.transforms()
    total = 0
    for path in _images():
        ours = predictor.predict([Frame(image=cv2.imread(str(path)), source=path.name, path=str(path))])[0]
        with torch.inference_mode():
            ref = model([transform(Image.open(path).convert("RGB"))])[0]
        assert_same(ours, ref["boxes"].numpy(), ref["scores"].numpy(), ref["labels"].numpy())
        total += len(ours)
    assert total > 0, "the test weights must produce detections, or this test proves nothing"


def test_yolo_path_never_touches_the_network(monkeypatch: pytest.MonkeyPatch, yolo_weights: Path) -> None:
    """Loading and predicting through densecnn opens no socket and resolves no host name."""

    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(repr(args[:2]))
        raise OSError("network use in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    predictor, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cpu"))
    image = cv2.imread(str(_images()[0]))
    predictor.predict([Frame(image=image, source="a.jpg", path="a.jpg")])
    assert calls == []
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "false"
