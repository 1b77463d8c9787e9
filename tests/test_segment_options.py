"""``densecnn segment``: plain state dicts with ``--num-classes`` / ``--class-names``, mask names that
never collide, and ``--resume`` with videos (skipped when complete, redone without duplicate rows)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _factories import loaded, make_segmentation_state_dict
from conftest import COCO8, CliRunner, need_data, write_video

from densecnn.config import PredictConfig
from densecnn.errors import UsageError
from densecnn.results import Frame
from densecnn.sinks.jsonl import read_jsonl


@pytest.fixture(scope="module")
def unet_state_dict(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A U-Net on resnet18 with 3 classes, seeded, saved as a plain ``torch.save`` state dict."""
    from densecnn.tasks.segment.smp_heads import build_unet

    torch.manual_seed(0)
    model = build_unet("resnet18", 3).eval()
    path = tmp_path_factory.mktemp("w") / "unet_plain.pth"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def seg_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "deeplabv3_mobilenet_v3_large-fc3c493d.pth"
    return make_segmentation_state_dict(path)


def _image() -> np.ndarray:
    return cv2.imread(str(sorted(need_data(COCO8).rglob("*.jpg"))[0]))


def test_plain_state_dict_with_class_names(unet_state_dict: tuple[Path, torch.nn.Module]) -> None:
    """The model loaded from the plain file gives the label maps of the model that wrote it
    (ImageNet normalisation, shorter side --imgsz, logits resized back, argmax)."""
    from torchvision.transforms._presets import SemanticSegmentation as Preset

    path, model = unet_state_dict
    cfg = PredictConfig(model="unet", backbone="resnet18", weights=path, imgsz=128, device="cpu")
    predictor, spec = loaded("segment", cfg, class_names=("road", "car", "person"))
    assert spec.name == "unet" and predictor.names == {0: "road", 1: "car", 2: "person"}
    image = _image()[:201, :333]
    ours = predictor.predict([Frame(image=image, source="x.jpg", path="x.jpg")])[0]
    rgb = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
    with torch.inference_mode():
        logits = model(Preset(resize_size=128)(rgb).unsqueeze(0))
        ref = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)[0].argmax(0)
    assert (ours.label_map == ref.numpy()).mean() >= 0.999 and len(np.unique(ours.label_map)) >= 2


def test_plain_state_dict_errors(unet_state_dict: tuple[Path, torch.nn.Module], seg_weights: Path) -> None:
    path, _ = unet_state_dict
    cfg = PredictConfig(model="unet", backbone="resnet18", weights=path, device="cpu")
    with pytest.raises(UsageError) as info:
        loaded("segment", cfg)
    assert "--num-classes" in str(info.value.hint) and "--class-names" in str(info.value.hint)
    with pytest.raises(UsageError) as info:
        loaded("segment", cfg, class_names=("a", "b"))
    assert "does not fit unet on resnet18" in str(info.value) and "--num-classes 3" in str(info.value.hint)
    with pytest.raises(UsageError, match="has 21 classes, not 2"):
        loaded("segment", PredictConfig(weights=seg_weights, device="cpu"), class_names=("a", "b"))


def test_cli_num_classes_and_class_names(
    tmp_path: Path, run_cli: CliRunner, unet_state_dict: tuple[Path, torch.nn.Module]
) -> None:
    path, _ = unet_state_dict
    cv2.imwrite(str(tmp_path / "a.jpg"), _image()[:150, :211])
    base = ("segment", "a.jpg", "--model", "unet", "--backbone", "resnet18", "--weights", str(path))
    base = (*base, "--imgsz", "96")
    r = run_cli(*base, "--num-classes", "3", "--name", "n")
    assert r.returncode == 0, r.stderr
    classes = json.loads((tmp_path / "runs/segment/n/classes.json").read_text())["classes"]
    assert [c["name"] for c in classes] == ["class0", "class1", "class2"]
    mask = cv2.imread(str(tmp_path / "runs/segment/n/masks/a.jpg.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (150, 211) and mask.max() <= 2
    r = run_cli(*base, "--class-names", "road,car", "--class-names", "person", "--name", "c")
    assert r.returncode == 0, r.stderr
    classes = json.loads((tmp_path / "runs/segment/c/classes.json").read_text())["classes"]
    assert [c["name"] for c in classes] == ["road", "car", "person"]
    r = run_cli(*base)
    assert r.returncode == 2 and "--num-classes" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(*base, "--num-classes", "4", "--class-names", "a,b,c")
    assert r.returncode == 2 and "--num-classes 4 but 3 --class-names" in r.stderr
    r = run_cli("segment", "a.jpg", "--conf", "0.5")
    assert r.returncode == 2 and "instance models" in r.stderr


def test_same_stem_inputs_get_their_own_masks(tmp_path: Path, run_cli: CliRunner, seg_weights: Path) -> None:
    """``a.jpg`` and ``a.png`` in one folder: masks/a.jpg.png and masks/a.png.png, each its input's
    size; overlays keep the inputs' own names; --resume finds both done."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), _image()[:120, :160])
    cv2.imwrite(str(photos / "a.png"), _image()[:90, :70])
    args = ("segment", "photos", "--weights", str(seg_weights), "--imgsz", "96")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/segment/predict"
    sizes = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape for p in (run / "masks").iterdir()}
    assert sizes == {"a.jpg.png": (120, 160), "a.png.png": (90, 70)}
    assert cv2.imread(str(run / "a.jpg")).shape == (120, 160, 3)
    assert cv2.imread(str(run / "a.png")).shape == (90, 70, 3)
    r = run_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "summary.json").read_text())["skipped_done"] == 2


def test_resume_skips_complete_videos_and_redoes_cut_ones(
    tmp_path: Path, run_cli: CliRunner, seg_weights: Path
) -> None:
    """A complete video (its masks/<video>/complete.json exists) is skipped on --resume; one without
    the marker (an interrupted run) is redone and its earlier rows are replaced, not duplicated."""
    media = tmp_path / "media"
    media.mkdir()
    write_video(media / "one.mp4", frames=5, width=96, height=64)
    write_video(media / "two.mp4", frames=4, width=96, height=64)
    shutil.copy(sorted(need_data(COCO8).rglob("*.jpg"))[0], media / "photo.jpg")
    args = ("segment", "media", "--weights", str(seg_weights), "--imgsz", "64", "--no-save-overlay")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/segment/predict"
    assert len(read_jsonl(run / "predictions.jsonl")) == 10
    done = {p.parent.name: json.loads(p.read_text()) for p in (run / "masks").rglob("complete.json")}
    assert done == {
        "one.mp4": {"source": "one.mp4", "frames": 5},
        "two.mp4": {"source": "two.mp4", "frames": 4},
    }

    r = run_cli(*args, "--resume")  # everything done: nothing redone, nothing appended
    assert r.returncode == 0, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["skipped_done"], summary["frames"]) == (3, 10)  # the whole run, nothing redone
    assert len(read_jsonl(run / "predictions.jsonl")) == 10

    (run / "masks/two.mp4/complete.json").unlink()  # as if the first run died inside two.mp4
    r = run_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["skipped_done"], summary["frames"], summary["inputs"]) == (2, 10, 3)  # 6 kept + 4 redone
    rows = read_jsonl(run / "predictions.jsonl")
    assert sorted((row["source"], row["frame"]) for row in rows) == sorted(
        [("one.mp4", i) for i in range(5)] + [("two.mp4", i) for i in range(4)] + [("photo.jpg", 0)]
    )
    assert (run / "masks/two.mp4/complete.json").is_file()
