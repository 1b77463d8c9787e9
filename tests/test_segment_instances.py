"""``densecnn segment`` with YOLO instance models: the zoo entries, parity with Ultralytics' own
``predict`` on the same seeded weights (boxes, classes, masks in input pixels), the
InstanceSegmentation result, and CLI runs (mixed folder, video, COCO and RLE outputs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from _factories import loaded, make_yolo_seg_checkpoint
from conftest import COCO8, CliRunner, need_data, write_video
from pycocotools import mask as mask_utils
from test_cli_detect import probe

from densecnn.config import PredictConfig
from densecnn.draw import color_for, draw_result
from densecnn.errors import UsageError
from densecnn.integrations.ultralytics import import_ultralytics
from densecnn.results import Frame, InstanceSegmentation
from densecnn.sinks.jsonl import read_jsonl
from densecnn.zoo import MODELS, default_model
from densecnn.zoo.coco import COCO80

ARCHS = {"yolov8n-seg": "yolov8n-seg.yaml", "yolo11n-seg": "yolo11n-seg.yaml"}


def _images() -> list[Path]:
    return sorted(need_data(COCO8).rglob("*.jpg"))


@pytest.fixture(scope="session")
def seg_pts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seeded yolov8n-seg and yolo11n-seg checkpoints, calibrated on the coco8 photos."""
    folder = tmp_path_factory.mktemp("w")
    return {
        name: make_yolo_seg_checkpoint(folder / f"tiny-{name}.pt", images=_images(), cfg=cfg)
        for name, cfg in ARCHS.items()
    }


def _frame(image: np.ndarray, name: str = "x.jpg") -> Frame:
    return Frame(image=image, source=name, path=name)


def test_zoo_entries() -> None:
    for name in ARCHS:
        spec = MODELS.get(name)
        assert (spec.task, spec.family, spec.arch, spec.classes) == ("segment", "yolo", name, COCO80)
        assert spec.weights is not None and spec.weights.pickled
        assert spec.weights.url == f"https://github.com/ultralytics/assets/releases/download/v8.4.0/{name}.pt"
        assert spec.weights.sha256 is None  # no digest could be sourced: not invented either
    assert default_model("segment").name == "deeplabv3_mobilenet_v3_large"


# -- parity with Ultralytics ---------------------------------------------------------------------------


def _parity_images() -> list[np.ndarray]:
    """coco8 photos plus an odd-sized crop, a tall strip and a gray image (as 3 equal channels)."""
    images = [cv2.imread(str(p)) for p in _images()]
    gray = cv2.cvtColor(images[0], cv2.COLOR_BGR2GRAY)
    return [*images, images[1][:333, :127], images[2][:, 200:297], cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.mark.parametrize("arch", list(ARCHS))
def test_masks_match_ultralytics_predict(seg_pts: dict[str, Path], arch: str) -> None:
    """Same instances, classes and boxes as ``YOLO(pt).predict(retina_masks=True)``; every mask at the
    input's exact size with IoU >= 0.99 against Ultralytics' own."""
    import_ultralytics()
    from ultralytics import YOLO

    predictor, spec = loaded("segment", PredictConfig(weights=seg_pts[arch], device="cpu"))
    assert spec.family == "yolo" and predictor.names == dict(enumerate(COCO80))
    reference = YOLO(str(seg_pts[arch]))
    total, fills = 0, []
    for image in _parity_images():
        ours = predictor.predict([_frame(image)])[0]
        ref = reference.predict(image, retina_masks=True, verbose=False, device="cpu")[0]
        assert isinstance(ours, InstanceSegmentation)
        assert ours.masks.shape == (len(ref.boxes), *image.shape[:2])
        if ref.masks is None:
            continue
        np.testing.assert_allclose(ours.boxes, ref.boxes.xyxy.numpy(), atol=1e-3)
        np.testing.assert_array_equal(ours.class_ids, ref.boxes.cls.numpy().astype(np.int64))
        np.testing.assert_allclose(ours.scores, ref.boxes.conf.numpy(), atol=1e-5)
        ref_masks = ref.masks.data.numpy().astype(bool)
        assert ref_masks.shape[1:] == image.shape[:2]
        assert min(_iou(a, b) for a, b in zip(ours.masks, ref_masks, strict=True)) >= 0.99
        total += len(ours)
        w, h = (ours.boxes[:, 2:] - ours.boxes[:, :2]).T
        fills += list(ours.masks.sum((1, 2)) / np.maximum(w * h, 1))
    assert total >= 20, "too few instances: the test weights prove little"
    if arch == "yolo11n-seg":  # masks with edges inside their boxes, not just filled boxes
        assert np.median(fills) < 0.95


def test_wrong_checkpoints_are_usage_errors(seg_pts: dict[str, Path], yolo_weights: Path) -> None:
    with pytest.raises(UsageError, match="not a segment model"):
        loaded("segment", PredictConfig(weights=yolo_weights, device="cpu"))
    with pytest.raises(UsageError, match="not a YOLO model"):
        loaded("segment", PredictConfig(model="lraspp_mobilenet_v3_large", weights=seg_pts["yolov8n-seg"]))
    with pytest.raises(UsageError, match="leave out --backbone"):
        loaded("segment", PredictConfig(weights=seg_pts["yolov8n-seg"], backbone="resnet18"))


# -- the result ----------------------------------------------------------------------------------------


def _toy(scale: int = 1) -> InstanceSegmentation:
    masks = np.zeros((3, 20, 30), dtype=bool)
    masks[0, 2:12, 3:15] = True  # person, 0.9
    masks[1, 8:18, 10:25] = True  # car, 0.5: under the person where they overlap
    masks[2, 0:2, 0:2] = True  # dog, 0.7
    return InstanceSegmentation(
        boxes=np.array([[3, 2, 15, 12], [10, 8, 25, 18], [0, 0, 2, 2]]) * scale,
        scores=[0.9, 0.5, 0.7],
        class_ids=[0, 2, 16],
        names=dict(enumerate(COCO80)),
        masks=masks.repeat(scale, 1).repeat(scale, 2),
    )


def test_instance_result_label_map_and_record() -> None:
    inst = _toy()
    labels = inst.label_map
    assert labels.shape == (20, 30) and labels.dtype == np.uint8
    assert labels[10, 12] == 0  # overlap: the better-scoring person wins
    assert labels[15, 20] == 2 and labels[1, 1] == 16 and labels[19, 29] == 255
    record = inst.record()
    fractions = {s["class_id"]: s["fraction"] for s in record["segments"]}
    assert fractions[255] == pytest.approx((labels == 255).mean())
    assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-5)
    for row, mask in zip(record["instances"], inst.masks, strict=True):
        assert row["mask"]["size"] == [20, 30] and isinstance(row["mask"]["counts"], str)
        decoded = mask_utils.decode({"size": row["mask"]["size"], "counts": row["mask"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), mask)
    kept = inst.filter(inst.scores > 0.6)
    assert isinstance(kept, InstanceSegmentation) and kept.masks.shape == (2, 20, 30)
    with pytest.raises(ValueError, match="masks"):
        InstanceSegmentation(boxes=[[0, 0, 1, 1]], scores=[1.0], class_ids=[0], masks=np.zeros((0, 4, 4)))


@pytest.mark.parametrize(
    ("proto", "shape"),
    [
        ((160, 160), (480, 640)),
        ((120, 160), (480, 640)),
        ((160, 120), (640, 427)),
        ((48, 80), (360, 640)),
        ((160, 128), (500, 375)),
        ((160, 160), (1080, 1920)),
    ],
)
def test_masks_in_boxes_equal_ultralytics_process_mask_native(
    proto: tuple[int, int], shape: tuple[int, int]
) -> None:
    """Box-only mask computation against Ultralytics' whole-frame one (what retina_masks=True runs)
    on random prototypes and boxes, some reaching out of the image: the same pixels (float rounding
    may flip a logit within ~1e-6 of 0), the same empty masks, windows = the box pixels."""
    import torch

    import_ultralytics()
    from ultralytics.utils import ops

    from densecnn.tasks.segment.instance_masks import masks_in_boxes

    generator = torch.Generator().manual_seed(sum(shape))
    (mh, mw), (h, w) = proto, shape
    protos = torch.randn(32, mh, mw, generator=generator)
    coefficients = torch.randn(24, 32, generator=generator) * 0.3
    corner = torch.rand(24, 2, generator=generator) * torch.tensor([w, h]) - 20
    boxes = torch.cat(
        [corner, corner + torch.rand(24, 2, generator=generator) * torch.tensor([w, h]) * 0.7], 1
    )
    boxes[0] = torch.tensor([5.2, 5.0, 5.8, 30.0])  # holds no pixel column (x >= 5.2 and x < 5.8): empty
    ref = ops.process_mask_native(protos, coefficients, boxes.clone(), shape).bool().numpy()
    masks, windows, nonempty = masks_in_boxes(protos, coefficients, boxes, shape)
    assert masks.shape == ref.shape == (24, h, w)
    assert (masks != ref).sum() <= ref.size * 1e-5
    assert np.array_equal(nonempty, ref.reshape(24, -1).any(1)) and not nonempty[0]
    for mask, (y0, y1, x0, x1) in zip(masks, windows, strict=True):
        outside = mask.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()


def test_rle_of_a_window_equals_pycocotools_whole_mask() -> None:
    """RLE computed over a mask's window (its columns' crop) equals pycocotools on the whole mask:
    windows that touch every edge, full-height ones, empty masks, masks of one pixel."""
    from densecnn.results import encode_rle, mask_windows

    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = rng.integers(1, 30, 2)
        mask = np.zeros((h, w), dtype=bool)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = rng.integers(y0, h + 1), rng.integers(x0, w + 1)
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.random()
        want = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        for window in ((y0, y1, x0, x1), tuple(mask_windows(mask[None])[0]), None):
            assert encode_rle(mask, window)["counts"] == want


def test_windows_carry_through_filter_and_are_computed_when_missing() -> None:
    inst = _toy()
    assert inst.windows is None
    assert inst.mask_windows().tolist() == [[2, 12, 3, 15], [8, 18, 10, 25], [0, 2, 0, 2]]
    kept = inst.filter(np.array([True, False, True]))
    assert kept.windows is not None and kept.windows.tolist() == [[2, 12, 3, 15], [0, 2, 0, 2]]
    assert inst.areas() == inst.masks.sum((1, 2)).tolist() == [120, 150, 4]
    top = inst.top_instance
    assert top[10, 12] == 0 and top[15, 20] == 1 and top[1, 1] == 2 and top[19, 29] == -1


def test_instance_overlay() -> None:
    inst = _toy(scale=10)
    image = np.full((200, 300, 3), 100, dtype=np.uint8)
    out = draw_result(image, inst, alpha=0.5)
    assert out.shape == image.shape and np.all(image == 100)
    inside = np.rint(0.5 * 100 + 0.5 * np.array(color_for(2))).astype(np.uint8)
    assert np.array_equal(out[150, 200], inside)  # inside the car mask, off its outline and the labels
    assert np.array_equal(out[180, 10], image[180, 10])  # no instance there
    assert np.array_equal(out[120, 249], np.array(color_for(2), np.uint8))  # the car box right edge


# -- the CLI -------------------------------------------------------------------------------------------


def _folder(root: Path) -> dict[str, tuple[int, int]]:
    """coco8 photos in two subfolders, an odd-sized crop, a gray PNG, an RGBA PNG and a cut JPEG."""
    photos = root / "photos"
    for p in _images()[:4]:
        (photos / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, photos / p.parent.name / p.name)
    base = cv2.imread(str(_images()[0]))
    cv2.imwrite(str(photos / "odd.jpg"), base[:157, :263])
    cv2.imwrite(str(photos / "gray.png"), cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)[:301, :199])
    alpha = np.full((177, 231), 200, dtype=np.uint8)
    cv2.imwrite(str(photos / "rgba.png"), np.dstack([base[:177, :231], alpha]))
    good = {
        p.relative_to(photos).as_posix(): cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2]
        for p in sorted(photos.rglob("*"))
        if p.is_file()
    }
    data = (photos / "odd.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(data[: len(data) // 2])
    return good


def test_folder_run_outputs(tmp_path: Path, run_cli: CliRunner, seg_pts: dict[str, Path]) -> None:
    """Masks the size of each input whose values are the top instance's class (255: none), JSONL
    rows whose RLEs decode to the input size, a COCO file pycocotools loads, overlays; exit 1 for the
    cut file."""
    from pycocotools.coco import COCO

    good = _folder(tmp_path)
    r = run_cli("segment", "photos", "--weights", str(seg_pts["yolo11n-seg"]), "--batch", "2")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Instances per class" in r.stdout
    run = tmp_path / "runs/segment/predict"
    errors = [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()]
    assert [e["source"] for e in errors] == ["cut.jpg"]
    rows = {row["source"]: row for row in read_jsonl(run / "predictions.jsonl")}
    assert sorted(rows) == sorted(good)
    n_instances = 0
    for source, (h, w) in good.items():
        row = rows[source]
        mask = cv2.imread(str(run / "masks" / f"{source}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (h, w) and mask.dtype == np.uint8
        expected = np.full((h, w), 255, dtype=np.uint8)
        for inst in sorted(row["instances"], key=lambda i: i["score"]):
            assert inst["mask"]["size"] == [h, w] and inst["class_name"] == COCO80[inst["class_id"]]
            rle = {"size": inst["mask"]["size"], "counts": inst["mask"]["counts"].encode()}
            expected[mask_utils.decode(rle).astype(bool)] = inst["class_id"]
        assert (mask == expected).mean() >= 0.9999  # ties in score may order differently
        for s in row["segments"]:
            assert (mask == s["class_id"]).mean() == pytest.approx(s["fraction"], abs=1e-5)
        assert cv2.imread(str(run / source)).shape == (h, w, 3)  # the overlay
        n_instances += len(row["instances"])
    assert n_instances > 10
    coco = COCO(str(run / "predictions.coco.json"))
    assert len(coco.getImgIds()) == len(good) and len(coco.getAnnIds()) == n_instances
    annotations = json.loads((run / "predictions.coco.json").read_text())["annotations"]
    results = coco.loadRes(annotations)  # COCO results format: takes the list as it is
    assert len(results.getAnnIds()) == n_instances
    for ann in coco.loadAnns(coco.getAnnIds())[:20]:
        assert ann["area"] == int(mask_utils.area(ann["segmentation"]))  # the mask's pixels
        image = coco.loadImgs(ann["image_id"])[0]
        assert coco.annToMask(ann).shape == (image["height"], image["width"])
    classes = json.loads((run / "classes.json").read_text())
    assert [c["name"] for c in classes["classes"]] == list(COCO80) and classes["ignore_id"] == 255
    assert "no instance" in classes["label_map"]


def test_video_run(tmp_path: Path, run_cli: CliRunner, seg_pts: dict[str, Path]) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=6, width=192, height=128, fps=25)
    r = run_cli("segment", str(video), "--weights", str(seg_pts["yolov8n-seg"]), "--imgsz", "320",
                "--conf", "0.1", "--name", "v")  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/segment/v"
    assert probe(run / "clip.mp4") == ("h264", 6, 25.0, 192, 128)
    rows = read_jsonl(run / "predictions.jsonl")
    assert [row["frame"] for row in rows] == list(range(6))
    assert all(i["mask"]["size"] == [128, 192] for row in rows for i in row["instances"])
    masks = sorted((run / "masks/clip.mp4").glob("*.png"))
    assert len(masks) == 6 and cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape == (128, 192)
    assert json.loads((run / "masks/clip.mp4/complete.json").read_text()) == {
        "source": "clip.mp4",
        "frames": 6,
    }
    assert not (run / "predictions.coco.json").exists()  # COCO output is for image inputs
