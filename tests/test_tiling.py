"""Tiled inference (``--tile``): SAHI parity, the recall it buys on small people, seamless label maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

import densecnn
from densecnn.config import TileConfig
from densecnn.results import Frame, InstanceSegmentation, Segmentation
from densecnn.tasks.tiling import match_matrix, merge_detections, tile_boxes

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tools"))
import embedded_data  # noqa: E402 - tools/ is not a package: imported from its folder

pytest.importorskip("sahi")


def assert_same_boxes(ours: np.ndarray, theirs: np.ndarray) -> None:
    """The same number of boxes, each with a partner at IoU >= 0.99 (one-to-one)."""
    assert len(ours) == len(theirs) > 0
    overlap = match_matrix(ours, theirs, "iou")
    assert overlap.max(1).min() >= 0.99 and overlap.max(0).min() >= 0.99
    assert len(set(overlap.argmax(1).tolist())) == len(ours)


# --- slicing and merging, rule by rule ----------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "size", "overlap"),
    [
        (600, 900, 320, 0.2),
        (960, 1280, 256, 0.25),
        (100, 700, 320, 0.2),
        (641, 640, 320, 0.0),
        (50, 40, 64, 0.5),
    ],
)
def test_tiles_are_sahis_slices(height: int, width: int, size: int, overlap: float) -> None:
    from sahi.slicing import get_slice_bboxes

    expected = get_slice_bboxes(height, width, size, size, False, overlap, overlap)
    assert [list(b) for b in tile_boxes(height, width, size, overlap)] == expected


@pytest.mark.parametrize(("method", "sahi_type"), [("nms", "NMS"), ("nmm", "GREEDYNMM")])
@pytest.mark.parametrize("metric", ["ios", "iou"])
def test_merge_equals_sahi_postprocess(method: str, sahi_type: str, metric: str) -> None:
    """Random clusters of overlapping boxes of two classes (ties in score included) merge exactly as
    SAHI's postprocess merges the same ObjectPredictions."""
    from sahi.predict import POSTPROCESS_NAME_TO_CLASS
    from sahi.prediction import ObjectPrediction

    rng = np.random.default_rng(3)
    centres = rng.uniform(50, 450, (12, 2))
    xy = centres[rng.integers(0, 12, 200)] + rng.normal(0, 8, (200, 2))
    wh = rng.uniform(10, 60, (200, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).clip(0, 500).astype(np.float32)
    scores = rng.choice([0.3, 0.5, 0.55, 0.9], 200).astype(np.float32)  # ties on purpose
    classes = rng.integers(0, 2, 200)
    det = densecnn.results.Detections(boxes, scores, classes, {0: "a", 1: "b"})
    ours = merge_detections(det, method=method, metric=metric, threshold=0.5)
    preds = [
        ObjectPrediction(bbox=b.tolist(), category_id=int(c), category_name=str(c), score=float(s))
        for b, s, c in zip(boxes, scores, classes, strict=True)
    ]
    post = POSTPROCESS_NAME_TO_CLASS[sahi_type](
        match_threshold=0.5, match_metric=metric.upper(), class_agnostic=False
    )
    theirs = post(preds)
    assert 12 <= len(ours) < 180  # clusters really merged, not all
    ref = np.array([p.bbox.to_xyxy() for p in theirs])
    assert_same_boxes(ours.boxes, ref)
    order = match_matrix(ours.boxes, ref, "iou").argmax(1)
    np.testing.assert_allclose(ours.scores, [theirs[i].score.value for i in order], rtol=1e-6)
    assert ours.class_ids.tolist() == [theirs[i].category.id for i in order]


# --- whole predictions against sahi.predict.get_sliced_prediction --------------------------------


def _sahi_boxes(model: Any, image_bgr: np.ndarray, tile: TileConfig) -> np.ndarray:
    from sahi.predict import get_sliced_prediction

    merge = {"nms": "NMS", "nmm": "GREEDYNMM", None: "GREEDYNMM"}[tile.merge]
    result = get_sliced_prediction(
        np.ascontiguousarray(image_bgr[:, :, ::-1]),  # SAHI takes RGB
        model,
        slice_height=tile.size,
        slice_width=tile.size,
        overlap_height_ratio=tile.overlap,
        overlap_width_ratio=tile.overlap,
        perform_standard_pred=tile.full,
        postprocess_type=merge,
        postprocess_match_metric=tile.match.upper(),
        postprocess_match_threshold=tile.threshold,
        verbose=0,
    )
    return np.array([p.bbox.to_xyxy() for p in result.object_prediction_list]).reshape(-1, 4)


@pytest.fixture(scope="module")
def mosaic() -> tuple[np.ndarray, np.ndarray]:
    """16 held-out Penn-Fudan photos shrunk into a 1280x960 canvas, and their person boxes."""
    if not (DATA / "pennfudan").is_dir():
        pytest.skip("../shared/data/pennfudan not found")
    return embedded_data.small_people_mosaic(DATA, grid=4)


@pytest.mark.parametrize(
    "tile",
    [TileConfig(320), TileConfig(256, overlap=0.3, merge="nms", match="iou", full=True)],
    ids=["sahi-defaults", "nms-iou-full"],
)
def test_yolo_tiles_equal_sahi(mosaic: tuple[np.ndarray, np.ndarray], tile: TileConfig) -> None:
    """The embedded person detector on 600x900 px of the small-people mosaic: densecnn's tiled boxes
    are SAHI's (its Ultralytics model wrapping the same network)."""
    from sahi.models.ultralytics import UltralyticsDetectionModel
    from ultralytics import YOLO

    from densecnn.tasks.detect.yolo_state import load_yolo_state
    from densecnn.zoo.store import embedded_weights_dir

    image = np.ascontiguousarray(mosaic[0][:600, :900])
    reference = YOLO("yolov8n.yaml", task="detect")  # a shell for the embedded network (no download)
    reference.model = load_yolo_state(embedded_weights_dir() / "person-yolov8n.safetensors")
    sahi_model = UltralyticsDetectionModel(
        model=reference, confidence_threshold=0.25, image_size=320, device="cpu"
    )
    ours = densecnn.load("person-yolov8n", device="cpu", conf=0.25, tile=tile)
    assert_same_boxes(
        ours.predict([Frame(image, "m.png", "m.png")])[0].boxes, _sahi_boxes(sahi_model, image, tile)
    )


def test_rcnn_tiles_equal_sahi(rcnn_weights: Path, mosaic: tuple[np.ndarray, np.ndarray]) -> None:
    """Faster R-CNN at its default confidence 0.05: both switch the merge to NMS / IoU (SAHI's rule
    for low thresholds) and keep the same boxes. SAHI's torchvision model takes one slice per call,
    so here do we (``batch=1``): batched convolutions differ in the last float bits, enough to swap
    near-duplicate boxes of these random weights inside the model's own NMS."""
    from sahi.models.torchvision import TorchVisionDetectionModel

    image = np.ascontiguousarray(mosaic[0][:400, :560])
    ours = densecnn.load(
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        weights=rcnn_weights,
        device="cpu",
        tile=TileConfig(320, batch=1),
    )
    assert (ours.merge, ours.metric) == ("nms", "iou")
    sahi_model = TorchVisionDetectionModel(
        model=ours.inner.model,
        confidence_threshold=0.05,
        category_mapping={str(k): v for k, v in ours.names.items()},
        device="cpu",
        load_at_init=False,
    )
    sahi_model.set_model(ours.inner.model)
    assert_same_boxes(
        ours.predict([Frame(image, "m.png", "m.png")])[0].boxes,
        _sahi_boxes(sahi_model, image, TileConfig(320)),
    )


# --- the gain -------------------------------------------------------------------------------------


def test_tiles_find_the_small_people(run_cli, tmp_path: Path, mosaic: tuple[np.ndarray, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    """16 held-out Penn-Fudan photos shrunk into a 1280x960 mosaic: the embedded detector (320 px
    input) misses nearly every person on the whole frame and finds most of them with --tile 320."""
    image, truth = mosaic
    cv2.imwrite(str(tmp_path / "mosaic.png"), image)
    found = {}
    for name, extra in (("whole", []), ("tiled", ["--tile", "320"])):
        r = run_cli("detect", "mosaic.png", "--name", name, "--no-save", *extra)
        assert r.returncode == 0, r.stderr
        row = json.loads((tmp_path / "runs" / "detect" / name / "predictions.jsonl").read_text())
        found[name] = np.array([d["box"] for d in row["detections"]]).reshape(-1, 4)
    summary = json.loads((tmp_path / "runs" / "detect" / "tiled" / "summary.json").read_text())
    assert summary["tile"] == {
        "size": 320,
        "overlap": 0.2,
        "merge": "nmm",
        "match": "ios",
        "threshold": 0.5,
        "full": False,
        "batch": 0,
    }
    whole, tiled = (
        embedded_data.recall_at(truth, found["whole"]),
        embedded_data.recall_at(truth, found["tiled"]),
    )
    assert len(truth) == 44 and whole <= 0.1 and tiled >= 0.5, (whole, tiled)


# --- segmentation -----------------------------------------------------------------------------


def _edge_sensitive_segmenter() -> Any:
    """A 3x3 conv with zero padding: class 1 inside a uniform image, class 0 on its 1-pixel border
    (the padding lowers the class-1 logit there). Cut into tiles without blending, every tile
    border would become a class-0 seam."""
    from densecnn.tasks.segment.semantic import SemanticSegmenter
    from densecnn.zoo.specs import Preprocess

    conv = torch.nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1] = 1.0 / 3
        conv.bias.copy_(torch.tensor([3.8, 0.0]))  # class-1 logit: 4.5 inside, 3.0 on edges
    return SemanticSegmenter(
        model=conv,
        preprocess=Preprocess(resize=96, crop=96, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        names={0: "edge", 1: "inside"},
        device=torch.device("cpu"),
        half=False,
    )


def test_semantic_tiles_leave_no_seams() -> None:
    from densecnn.tasks.tiling import TiledPredictor

    inner = _edge_sensitive_segmenter()
    frame = Frame(np.full((200, 300, 3), 128, np.uint8), "u.png", "u.png")
    one_tile = inner.predict([Frame(frame.image[:96, :96].copy(), "t", "t")])[0].label_map
    assert (one_tile[0] == 0).all() and (one_tile[1:-1, 1:-1] == 1).all()  # the model does make edges
    result = TiledPredictor(inner, TileConfig(96, overlap=0.25)).predict([frame])[0]
    assert isinstance(result, Segmentation) and result.label_map.shape == (200, 300)
    labels = result.label_map
    assert (labels[1:-1, 1:-1] == 1).all()  # no seam anywhere inside
    assert (labels[0] == 0).all() and (labels[:, 0] == 0).all()  # the frame's own border stays


def test_instance_masks_merge_across_tiles(tmp_path: Path) -> None:
    """A YOLO -seg model tiled: frame-sized masks, one per merged box, each inside its box."""
    from _factories import make_yolo_seg_checkpoint

    photos = sorted((DATA / "coco8" / "images").rglob("*.jpg"))[:2]
    if not photos:
        pytest.skip("coco8 not found")
    weights = make_yolo_seg_checkpoint(tmp_path / "seg.pt", images=photos)
    image = cv2.imread(str(photos[0]))
    predictor = densecnn.load(weights=weights, task="segment", device="cpu", tile=TileConfig(256))
    result = predictor.predict([Frame(image, "a.jpg", "a.jpg")])[0]
    assert isinstance(result, InstanceSegmentation) and len(result) > 0
    assert result.masks.shape[1:] == image.shape[:2]
    for box, mask in zip(result.boxes, result.masks, strict=True):
        ys, xs = np.nonzero(mask)
        assert len(xs) and xs.min() >= box[0] - 1 and xs.max() <= box[2] + 1
        assert ys.min() >= box[1] - 1 and ys.max() <= box[3] + 1


def test_tile_options_are_checked(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64, 3), np.uint8))
    r = run_cli("detect", "a.png", "--tile", "320", "--tile-overlap", "1.5")
    assert r.returncode == 2 and "--tile-overlap" in r.stderr
    r = run_cli("detect", "a.png", "--tile", "16")
    assert r.returncode == 2 and "--tile must be between 32 and 8192" in r.stderr
