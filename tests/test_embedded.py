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
# Floors on the 28 held-out Penn-Fudan images, a margin below what `make models` measured (MODELS.md).
RECALL_FLOOR = 0.50
PRECISION_FLOOR = 0.70
PERSON_IOU_FLOOR = 0.37


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
    assert path.stat().st_size < 16_000_000  # "a few MB": U-Net on mobilenet_v3_large is 13.5 MB in fp16


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


def test_embedded_detector_recall_on_held_out_pennfudan() -> None:
    need_data(DATA / "pennfudan")
    split = embedded_data.pennfudan_split(DATA)
    test = split.test
    assert len(test) == 28 and not set(test) & set(split.train + split.val)
    figures = eval_embedded.detection_recall(DATA, test)
    assert figures["recall50"] >= RECALL_FLOOR, figures
    assert figures["precision50"] >= PRECISION_FLOOR, figures


def test_embedded_segmenter_iou_on_held_out_pennfudan() -> None:
    need_data(DATA / "pennfudan")
    test = embedded_data.pennfudan_split(DATA).test
    figures = eval_embedded.segmentation_iou(DATA, test)
    assert figures["person_iou"] >= PERSON_IOU_FLOOR, figures
