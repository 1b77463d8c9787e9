"""The embedded models (weights/person-*.safetensors): registered digests, no pickle, the offline
default-model fallback, `make demo` on a fresh export of the repository, held-out accuracy floors."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
import torch

from densecnn.checkpoint import read_meta
from densecnn.zoo import MODELS, fallback_model, fetch_default
from densecnn.zoo.store import WeightStore, embedded_weights_dir, sha256_file
from tests.conftest import DATA, ROOT, need_data

sys.path.insert(0, str(ROOT / "tools"))
import embedded_data  # tools/ is not a package: imported from its folder
import eval_embedded

EMBEDDED = [name for name, spec in MODELS.items() if spec.weights is not None and spec.weights.embedded]
PEOPLE = ("astronaut.jpg", "camera.jpg")  # the sample photos that show a person (samples/LICENSES.md)
# Floors on the held-out images (tools/eval_embedded.py), a margin below what `make models` measured
# (weights/MODELS.md): recall / precision at IoU 0.5 and the default confidence, person IoU.
DETECT_FLOORS = {"pennfudan": (0.85, 0.75), "coco-person": (0.22, 0.55)}  # measured .90/.81, .27/.66
NO_PERSON_BOXES_CEILING = 0.4  # person boxes per held-out photo without people (measured 0.18)
PERSON_IOU_FLOORS = {"pennfudan": 0.55, "coco-person": 0.32}  # measured 0.605, 0.370
# Issue 17's target: < 2 % person pixels on photos without people (version 3 measured 1.6 %).
NO_PERSON_PIXELS_CEILING = 0.02
VIDEO_WALKWAY_FRAMES = 12  # of 15: issue 17's target, not reached yet (the test is marked xfail)


def test_one_embedded_model_per_task() -> None:
    assert sorted(EMBEDDED) == ["person-unet", "person-yolov8n"]
    assert fallback_model("detect") is MODELS.get("person-yolov8n")
    assert fallback_model("segment") is MODELS.get("person-unet")
    assert fallback_model("classify") is None


@pytest.mark.parametrize("name", EMBEDDED)
def test_shipped_file_matches_its_registered_digest(name: str) -> None:
    w = MODELS.get(name).weights
    assert w is not None
    path = embedded_weights_dir() / w.file_name
    assert path.is_file(), f"{path} missing: it ships with densecnn"
    assert sha256_file(path) == w.sha256 and path.stat().st_size == w.size
    assert WeightStore(offline=True).verify(w).ok
    assert WeightStore(root=Path("/nonexistent"), offline=True).fetch(w) == path  # whatever the cache
    # "a few MB", and person-unet smaller than version 1's 13,464,380 bytes (a narrower decoder)
    assert path.stat().st_size < (13_000_000 if name == "person-unet" else 7_000_000)


@pytest.mark.parametrize("name", EMBEDDED)
def test_shipped_file_is_safetensors_fp16_not_pickle(name: str) -> None:
    """safetensors: an 8-byte header length, a JSON header, raw tensors; no pickle opcode anywhere."""
    path = embedded_weights_dir() / f"{name}.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert "F16" in dtypes and "F32" not in dtypes  # floats stored as fp16
    assert not raw.startswith(b"\x80") and b"PK\x03\x04" not in raw[:64]  # not pickle, not torch zip
    meta = read_meta(path)
    assert meta is not None and "person" in meta.class_names
    assert meta.input_size == MODELS.get(name).imgsz  # the registry runs it at the size it was trained at


def test_embedded_models_load_without_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both rebuild from their files with pickle loading disabled outright."""
    from densecnn.tasks.detect.yolo_state import load_yolo_state
    from densecnn.tasks.segment.smp_heads import load_segmentation_checkpoint

    def no_pickle(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", no_pickle)
    yolo = load_yolo_state(embedded_weights_dir() / "person-yolov8n.safetensors")
    assert yolo.names == {0: "person"}
    unet, meta = load_segmentation_checkpoint(embedded_weights_dir() / "person-unet.safetensors")
    assert meta.backbone == "mobilenet_v3_large"
    with torch.inference_mode():
        assert yolo(torch.zeros(1, 3, 320, 320))[0].shape[:2] == (1, 5)  # 4 box + 1 class
        assert unet(torch.zeros(1, 3, 96, 128)).shape == (1, 2, 96, 128)


def test_default_resolution_prefers_the_official_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Official default cached → it runs, silently; absent and offline → the embedded one, with one line."""
    store = WeightStore(root=tmp_path, offline=True)
    spec, path = fetch_default("segment", store)
    assert spec.name == "person-unet" and path == embedded_weights_dir() / "person-unet.safetensors"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "person-unet" in err[0] and "deeplabv3_mobilenet_v3_large" in err[0]
    assert "offline" in err[0]
    official = MODELS.get("deeplabv3_mobilenet_v3_large").weights
    assert official is not None
    (tmp_path / official.file_name).write_bytes(b"cached")  # present (unpickled files load on use)
    spec, path = fetch_default("segment", store)
    assert spec.name == "deeplabv3_mobilenet_v3_large" and path == tmp_path / official.file_name
    assert capsys.readouterr().err == ""


def test_named_model_never_falls_back(run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("detect", str(ROOT / "samples" / "astronaut.jpg"), "--model", "yolov8n")
    assert r.returncode == 3 and "embedded" not in r.stderr


def _fresh_export(dest: Path) -> Path:
    """The committed tree (HEAD) as a fresh clone would have it: ``git archive``, no build outputs."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], capture_output=True)
    assert tar.returncode == 0, tar.stderr
    with tarfile.open(fileobj=BytesIO(tar.stdout)) as archive:
        archive.extractall(dest, filter="data")
    return dest


@pytest.mark.slow
def test_make_demo_offline_on_a_fresh_clone(tmp_path: Path) -> None:
    """`make demo` with an empty weight cache and no network: person boxes on the photos of people,
    none on the cat / coffee / rocket, masks with person pixels; the run says it used the embedded models."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    clone = _fresh_export(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENSECNN_")}
    env |= {"PYTHONPATH": str(clone), "DENSECNN_WEIGHTS_DIR": str(tmp_path / "cache"), "COLUMNS": "120"}
    r = subprocess.run(["make", "demo", "SETUP=", f"PY={sys.executable}"], cwd=clone, env=env,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "using the embedded model person-yolov8n" in r.stderr
    assert "using the embedded model person-unet" in r.stderr
    assert "runs/demo/detect" in r.stdout and "runs/demo/segment" in r.stdout
    rows = eval_embedded.read_predictions(clone / "runs/demo/detect/predictions.jsonl")
    persons = {src: n for src, n in rows.items() if not src.endswith(".mp4")}
    assert all(persons[name] >= 1 for name in PEOPLE), persons
    assert sum(persons[n] for n in ("chelsea.jpg", "coffee.jpg", "rocket.jpg")) <= 1, persons
    for name in PEOPLE:
        assert (clone / "runs/demo/detect" / name).is_file()
        assert (clone / "runs/demo/segment" / name).is_file()
    assert (clone / "runs/demo/detect/clip.mp4").is_file()
    summary = json.loads((clone / "runs/demo/segment/summary.json").read_text())
    assert summary["model"] == "person-unet"


def test_held_out_sets_are_disjoint_from_training() -> None:
    """What the floors below are measured on was never trained on by `make models`."""
    need_data(DATA / "coco-person")
    split, coco = embedded_data.pennfudan_split(DATA), embedded_data.coco_split(DATA)
    assert len(split.test) == 28 and not set(split.test) & set(split.train + split.val)
    assert len(coco.test) == 150 and not set(coco.test) & set(coco.train + coco.val)
    assert len(coco.negatives_test) == 22 and not set(coco.negatives_test) & set(coco.negatives_train)
    assert set(coco.negatives_test) <= set(embedded_data.negative_stems(DATA))


def test_box_mask_scores_only_outside_the_widened_person_boxes() -> None:
    """The segmenter's second run learns background from photos with person boxes and no outlines:
    inside a box (widened by BOX_MARGIN + 2 px, clipped to the photo) nothing is scored."""
    h, w = 100, 200
    # a box from x 40..80, y 20..60 and one that runs off the right edge
    mask = embedded_data.box_mask(
        (h, w), [(60 / w, 40 / h, 40 / w, 40 / h), (190 / w, 50 / h, 40 / w, 20 / h)]
    )
    assert mask.shape == (h, w) and set(mask.ravel().tolist()) == {0, embedded_data.IGNORE}
    pad = 40 * embedded_data.BOX_MARGIN + 2  # 4 px
    inside = mask[int(20 - pad) : int(60 + pad), int(40 - pad) : int(80 + pad)]
    assert (inside == embedded_data.IGNORE).all()
    assert mask[int(20 - pad) - 1, 60] == 0 and mask[40, int(80 + pad) + 1] == 0
    assert (mask[50, 172:] == embedded_data.IGNORE).all() and mask[0, 0] == 0 and mask[99, 100] == 0


def test_box_masks_validate_on_outlined_people_only(tmp_path: Path) -> None:
    """masks/boxes: run 1's seeded validation share of the outlined masks, unchanged; training adds
    box-only photos whose person boxes are unscored (255) and never a held-out photo."""
    import cv2

    from densecnn.data.masks import open_masks_folder

    need_data(DATA / "coco-person")
    split, coco = embedded_data.pennfudan_split(DATA), embedded_data.coco_split(DATA)
    outlined = embedded_data.build_masks(DATA, tmp_path / "masks", split, coco)["train"]
    boxes = embedded_data.build_box_masks(DATA, tmp_path / "boxes", outlined, coco, 0.1, 0)
    run1 = open_masks_folder(outlined, val_fraction=0.1, seed=0)
    run2 = open_masks_folder(boxes)
    assert run2.explicit_split and [p.image.name for p in run2.val] == [p.image.name for p in run1.val]
    added = {p.image.stem for p in run2.train} - {p.image.stem for p in run1.train}
    assert len(added) > 500 and not added & {p.image.stem for p in run1.val}
    held_out = {f"cp_{s}" for s in coco.test} | {f"coco_{s}" for s in coco.negatives_test}
    assert not added & held_out
    sample = next(p for p in run2.train if p.image.stem in added)
    assert embedded_data.IGNORE in cv2.imread(str(sample.mask), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("held_out", ["pennfudan", "coco-person"])
def test_embedded_detector_on_held_out_people(held_out: str) -> None:
    need_data(DATA / "coco-person")
    figures = eval_embedded.detection_recall(eval_embedded.held_out_boxes(DATA, held_out))
    recall, precision = DETECT_FLOORS[held_out]
    assert figures["recall50"] >= recall, figures
    assert figures["precision50"] >= precision, figures


def test_embedded_detector_on_photos_without_people() -> None:
    need_data(DATA / "coco128")
    figures = eval_embedded.detection_recall(eval_embedded.held_out_boxes(DATA, "no-person"))
    assert figures["gt"] == 0 and figures["boxes_per_image"] <= NO_PERSON_BOXES_CEILING, figures


@pytest.mark.parametrize("held_out", ["pennfudan", "coco-person"])
def test_embedded_segmenter_iou_on_held_out_people(held_out: str) -> None:
    need_data(DATA / "coco-person")
    figures = eval_embedded.segmentation_iou(eval_embedded.held_out_masks(DATA, held_out))
    assert figures["person_iou"] >= PERSON_IOU_FLOORS[held_out], figures


def test_embedded_segmenter_on_photos_without_people() -> None:
    need_data(DATA / "coco128")
    figures = eval_embedded.segmentation_iou(eval_embedded.held_out_masks(DATA, "no-person"))
    assert figures["person_share"] < NO_PERSON_PIXELS_CEILING, figures


@pytest.mark.xfail(
    strict=True,
    reason="issue 17: version 2 finds the walkway pedestrians in 0 of 914 frames and puts 55 person "
    "boxes on cars (weights/MODELS.md); strict, so the test reports when a model reaches the target",
)
def test_embedded_detector_on_the_street_video() -> None:
    """Frames spread over the street video: the two pedestrians on the left walkway are found, and no
    person box sits on the road, where only cars drive (the zones: tools/eval_embedded.py)."""
    import cv2

    import densecnn
    from densecnn.results import Frame

    video = need_data(DATA / "video" / "slow_traffic_small.mp4")
    predictor = densecnn.load(
        None, task="detect", weights=embedded_weights_dir() / "person-yolov8n.safetensors"
    )
    cap = cv2.VideoCapture(str(video))
    walkway, road = [], 0
    for index in range(0, 914, 61):  # 15 frames
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = cap.read()
        assert ok, index
        det = predictor.predict([Frame(image=image, source=video.name, path=str(video), index=index)])[0]
        centres = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in det.boxes[det.class_ids == 0]]
        walkway.append(
            sum(eval_embedded.WALKWAY_X[0] <= cx <= eval_embedded.WALKWAY_X[1] for cx, _ in centres)
        )
        road += sum(cx >= eval_embedded.ROAD_X and cy >= eval_embedded.ROAD_MIN_Y for cx, cy in centres)
    assert sum(n >= 1 for n in walkway) >= VIDEO_WALKWAY_FRAMES, walkway
    assert road == 0
