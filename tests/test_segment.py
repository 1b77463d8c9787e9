"""``densecnn segment``: the zoo table, parity with torchvision's own forward pass on the same weights,
the Segmentation result and its drawing, and CLI runs (folders with odd, gray, RGBA and corrupt
files; a video; ``--resume``, after a Ctrl-C sent to a real process)."""

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
from test_cli_detect import probe

from densecnn.checkpoint import CheckpointMeta, save_checkpoint
from densecnn.config import PredictConfig
from densecnn.draw import color_for, draw_result, draw_segmentation
from densecnn.errors import UsageError
from densecnn.results import Frame, Segmentation
from densecnn.sinks.jsonl import read_jsonl
from densecnn.zoo import MODELS, default_model
from densecnn.zoo.segmentation import SEGMENTATION_PREPROCESS, VOC21
from densecnn.zoo.store import WeightStore

SEGMENT = [name for name, spec in MODELS.items() if spec.task == "segment"]
TORCH_SEGMENT = [n for n in SEGMENT if MODELS.get(n).family == "torchvision"]
FRAME_KEYS = {"source", "frame", "timestamp", "width", "height", "segments"}


@pytest.fixture(scope="session")
def seg_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "deeplabv3_mobilenet_v3_large-fc3c493d.pth"
    return make_segmentation_state_dict(path)


def _images() -> list[Path]:
    return sorted(need_data(COCO8).rglob("*.jpg"))


def _frame(image: np.ndarray, name: str = "x.png") -> Frame:
    return Frame(image=image, source=name, path=name)


# -- the zoo -------------------------------------------------------------------------------------------


def test_segment_zoo_and_default() -> None:
    assert set(TORCH_SEGMENT) == {
        "deeplabv3_mobilenet_v3_large",
        "deeplabv3_resnet50",
        "deeplabv3_resnet101",
        "lraspp_mobilenet_v3_large",
    }
    assert {"unet", "deeplabv3plus"} <= set(SEGMENT)
    assert default_model("segment").name == "deeplabv3_mobilenet_v3_large"


@pytest.mark.parametrize("name", TORCH_SEGMENT)
def test_torchvision_entry_matches_its_weights_enum(name: str) -> None:
    from torchvision.models import get_model_weights

    spec = MODELS.get(name)
    official = get_model_weights(spec.arch).DEFAULT
    t = official.transforms()
    assert spec.weights is not None and spec.weights.url == official.url
    assert spec.weights.file_name == official.url.rsplit("/", 1)[1]
    assert spec.weights.sha256 == spec.weights.file_name.rsplit("-", 1)[1][:8]
    assert t.resize_size == [SEGMENTATION_PREPROCESS.resize] and t.antialias
    assert t.interpolation.value == SEGMENTATION_PREPROCESS.interpolation
    assert (tuple(t.mean), tuple(t.std)) == (SEGMENTATION_PREPROCESS.mean, SEGMENTATION_PREPROCESS.std)
    assert spec.classes == VOC21 == tuple(official.meta["categories"])


# -- parity ----------------------------------------------------------------------------------------------


def _reference(model: torch.nn.Module, transforms, bgr: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """torchvision's documented usage: ``transforms(img)`` → ``model(batch)["out"]``, then the logits
    resized (bilinear) to the input size and argmax over classes."""
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)
    with torch.inference_mode():
        out = model(transforms(rgb).unsqueeze(0))["out"]
        out = F.interpolate(out, size=bgr.shape[:2], mode="bilinear", align_corners=False)
    return out[0].argmax(0).numpy().astype(np.uint8)


@pytest.mark.parametrize("arch", ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_torchvision_parity(tmp_path: Path, arch: str) -> None:
    """Official file name in the weight cache → the label maps of torchvision's own forward pass
    (≥ 99.9 % of pixels equal), at the input's exact size, also for odd sizes and batched frames."""
    from torchvision.models import get_model, get_model_weights

    spec = MODELS.get(arch)
    assert spec.weights is not None
    weights = make_segmentation_state_dict(tmp_path / spec.weights.file_name, arch=arch)
    predictor, used = loaded(
        "segment", PredictConfig(model=arch, device="cpu"), store=WeightStore(root=tmp_path, offline=True)
    )
    assert used is spec and predictor.names == dict(enumerate(VOC21))
    kwargs = {"aux_loss": True} if arch.startswith("deeplabv3") else {}
    model = get_model(arch, weights=None, weights_backbone=None, num_classes=21, **kwargs)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    transforms = get_model_weights(arch).DEFAULT.transforms()
    images = [cv2.imread(str(p)) for p in _images()[::3]]
    gray = cv2.cvtColor(images[0], cv2.COLOR_BGR2GRAY)
    images += [images[1][:333, :127], cv2.cvtColor(gray[:201, :401], cv2.COLOR_GRAY2BGR)]
    frames = [_frame(im, f"{i}.png") for i, im in enumerate(images)]
    batched = predictor.predict(frames)
    for frame, together in zip(frames, batched, strict=True):
        ours = predictor.predict([frame])[0]
        ref = _reference(model, transforms, frame.image)
        assert ours.label_map.shape == frame.image.shape[:2] == together.label_map.shape
        assert (ours.label_map == ref).mean() >= 0.999
        assert np.array_equal(ours.label_map, together.label_map)
        assert len(np.unique(ref)) >= 2, "one class everywhere: the test weights prove nothing"


def test_wrong_models_and_missing_checkpoints_are_usage_errors(seg_weights: Path) -> None:
    with pytest.raises(UsageError, match="is a detect model"):
        loaded("segment", PredictConfig(model="yolov8n"))
    with pytest.raises(UsageError, match="needs trained weights"):
        loaded("segment", PredictConfig(model="unet"))
    with pytest.raises(UsageError, match="train segment --model unet --backbone resnet18"):
        loaded("segment", PredictConfig(model="unet", backbone="resnet18"))
    with pytest.raises(UsageError, match="not a densecnn checkpoint"):
        loaded("segment", PredictConfig(model="deeplabv3plus", weights=seg_weights))
    with pytest.raises(UsageError, match="does not fit lraspp_mobilenet_v3_large"):
        loaded("segment", PredictConfig(model="lraspp_mobilenet_v3_large", weights=seg_weights, device="cpu"))


def test_unet_checkpoint_matches_its_model(tmp_path: Path) -> None:
    """A densecnn U-Net checkpoint names backbone, classes and normalisation: shorter side resized to
    ``input_size``, logits resized back, argmax — pixel for pixel on the input."""
    from densecnn.tasks.segment.smp_heads import build_unet

    torch.manual_seed(0)
    model = build_unet("mobilenet_v3_small", 3).eval()
    meta = CheckpointMeta(
        task="segment",
        arch="unet",
        backbone="mobilenet_v3_small",
        class_names=("background", "person", "car"),
        input_size=96,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    save_checkpoint(tmp_path / "u.safetensors", model.state_dict(), meta)
    predictor, spec = loaded("segment", PredictConfig(weights=tmp_path / "u.safetensors", device="cpu"))
    assert spec.name == "unet" and predictor.backbone == "mobilenet_v3_small"  # type: ignore[attr-defined]
    image = cv2.imread(str(_images()[0]))[:150, :211]
    ours = predictor.predict([_frame(image)])[0]
    from torchvision.transforms._presets import SemanticSegmentation as Preset

    rgb = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
    x = Preset(resize_size=96, mean=meta.mean, std=meta.std)(rgb)  # what the zoo weights' transforms() is
    with torch.inference_mode():
        logits = F.interpolate(
            model(x.unsqueeze(0)), size=image.shape[:2], mode="bilinear", align_corners=False
        )
    assert (ours.label_map == logits[0].argmax(0).numpy()).mean() >= 0.999
    assert ours.names == {0: "background", 1: "person", 2: "car"}


# -- the result and its drawing ----------------------------------------------------------------------------


def test_segmentation_result_and_overlay() -> None:
    labels = np.zeros((10, 20), dtype=np.uint8)
    labels[:5, :10] = 15  # person: a quarter of the pixels
    labels[9, :] = 7  # car: one row
    seg = Segmentation(labels, dict(enumerate(VOC21)))
    assert seg.fractions() == {0: pytest.approx(0.65), 7: pytest.approx(0.1), 15: pytest.approx(0.25)}
    assert seg.labels() == ["__background__", "car", "person"]
    assert seg.record() == {
        "segments": [
            {"class_id": 0, "class_name": "__background__", "fraction": 0.65},
            {"class_id": 7, "class_name": "car", "fraction": 0.1},
            {"class_id": 15, "class_name": "person", "fraction": 0.25},
        ]
    }
    with pytest.raises(ValueError, match="uint8"):
        Segmentation(labels.astype(np.int64))
    image = np.full((200, 400, 3), 100, dtype=np.uint8)
    big = cv2.resize(labels, (400, 200), interpolation=cv2.INTER_NEAREST)
    out = draw_segmentation(image, Segmentation(big, seg.names), alpha=0.5, legend=False)
    assert out.shape == image.shape and np.array_equal(image, np.full_like(image, 100))  # input untouched
    assert np.array_equal(out[big == 0], image[big == 0])  # background stays as it was
    expected = np.rint(0.5 * 100 + 0.5 * np.array(color_for(15))).astype(np.uint8)
    assert np.array_equal(out[50, 50], expected)
    with_legend = draw_result(image, Segmentation(big, seg.names), alpha=1.0)
    assert with_legend.shape == image.shape and not np.array_equal(with_legend, out)
    assert np.array_equal(
        draw_segmentation(image, Segmentation(big, seg.names), alpha=0.0, legend=False), image
    )


# -- the CLI ---------------------------------------------------------------------------------------------


def _mixed_folder(root: Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """coco8 photos in subfolders, an odd-sized crop, a gray PNG, an RGBA PNG, and two bad files.
    Returns ({source: (height, width)} of the good ones, bad sources)."""
    photos = root / "photos"
    good: dict[str, tuple[int, int]] = {}
    for p in _images()[:3]:
        dst = photos / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    base = cv2.imread(str(_images()[0]))
    cv2.imwrite(str(photos / "odd.jpg"), base[:157, :263])
    cv2.imwrite(str(photos / "gray.png"), cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)[:301, :99])
    alpha = np.linspace(0, 255, 77 * 131).reshape(77, 131).astype(np.uint8)
    cv2.imwrite(str(photos / "rgba.png"), np.dstack([base[:77, :131], alpha]))
    for p in sorted(photos.rglob("*")):
        if p.is_file():
            h, w = cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2]
            good[p.relative_to(photos).as_posix()] = (h, w)
    data = (photos / "odd.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(data[: len(data) // 2])
    (photos / "empty.png").write_bytes(b"")
    return good, ["cut.jpg", "empty.png"]


def _mask(run: Path, source: str) -> np.ndarray:
    mask = cv2.imread(str(run / "masks" / f"{source}.png"), cv2.IMREAD_UNCHANGED)
    assert mask is not None, source
    return mask


def _check_rows(path: Path, n: int) -> list[dict]:
    rows = read_jsonl(path)
    assert len(rows) == n
    for row in rows:
        assert set(row) == FRAME_KEYS
        assert sum(s["fraction"] for s in row["segments"]) == pytest.approx(1.0, abs=1e-4)
        assert all(s["class_name"] == VOC21[s["class_id"]] for s in row["segments"])
    return rows


def test_folder_of_mixed_files(tmp_path: Path, run_cli: CliRunner, seg_weights: Path) -> None:
    """Masks have each input's exact size (gray, RGBA, odd sizes); bad files in errors.jsonl; exit 1."""
    good, bad = _mixed_folder(tmp_path)
    r = run_cli("segment", "photos", "--weights", str(seg_weights), "--imgsz", "160", "--batch", "3")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Images per class" in r.stdout
    run = tmp_path / "runs/segment/predict"
    errors = [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["source"] for e in errors) == bad
    rows = _check_rows(run / "predictions.jsonl", len(good))
    assert sorted(row["source"] for row in rows) == sorted(good)
    for source, (h, w) in good.items():
        mask = _mask(run, source)
        assert mask.dtype == np.uint8 and mask.shape == (h, w)
        row = next(r for r in rows if r["source"] == source)
        assert (row["height"], row["width"]) == (h, w)
        for s in row["segments"]:
            assert (mask == s["class_id"]).mean() == pytest.approx(s["fraction"], abs=1e-5)
        overlay = cv2.imread(str(run / source))
        assert overlay.shape == (h, w, 3)
    assert not (run / "masks/cut.jpg.png").exists() and not (run / "masks/empty.png.png").exists()
    classes = json.loads((run / "classes.json").read_text())
    assert [c["name"] for c in classes["classes"]] == list(VOC21) and classes["ignore_id"] == 255
    assert classes["classes"][0]["color"] == [0, 0, 0]
    assert classes["classes"][15]["color"] == list(color_for(15)[::-1])
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["inputs"], summary["inputs_failed"], summary["frames"]) == (len(good) + 2, 2, len(good))
    assert summary["model"] == "deeplabv3_mobilenet_v3_large" and summary["alpha"] == 0.5


def test_video_overlay_masks_and_rows(tmp_path: Path, run_cli: CliRunner, seg_weights: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=12, width=160, height=120, fps=25)
    r = run_cli("segment", str(video), "--weights", str(seg_weights), "--imgsz", "96", "--batch", "4",
                "--alpha", "0.7", "--name", "v")  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/segment/v"
    assert probe(run / "clip.mp4") == ("h264", 12, 25.0, 160, 120)
    rows = _check_rows(run / "predictions.jsonl", 12)
    assert [row["frame"] for row in rows] == list(range(12))
    masks = sorted((run / "masks/clip.mp4").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(12)]
    assert cv2.imread(str(masks[5]), cv2.IMREAD_UNCHANGED).shape == (120, 160)
    assert not (run / "errors.jsonl").exists()


def test_resume_processes_only_what_is_missing(tmp_path: Path, run_cli: CliRunner, seg_weights: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    images = _images()[:4]
    for p in images[:2]:
        shutil.copy(p, photos / p.name)
    args = ("segment", "photos", "--weights", str(seg_weights), "--imgsz", "96", "--no-save-overlay")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/segment/predict"
    assert len(list((run / "masks").glob("*.png"))) == 2
    for p in images[2:]:  # the rest of the job, as if the first run had died before them
        shutil.copy(p, photos / p.name)
    with (run / "predictions.jsonl").open("a") as fh:
        fh.write('{"source": "torn')  # a line cut by a crash
    before = {m.name: m.stat().st_mtime_ns for m in (run / "masks").glob("*.png")}
    r = run_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "runs/segment/predict2").exists()
    summary = json.loads((run / "summary.json").read_text())
    # the summary describes the whole run: the 2 inputs done before and the 2 done now
    assert (summary["skipped_done"], summary["frames"], summary["inputs"]) == (2, 4, 4)
    rows = _check_rows(run / "predictions.jsonl", 4)
    assert sorted(row["source"] for row in rows) == sorted(p.name for p in images)
    for name, mtime in before.items():
        assert (run / "masks" / name).stat().st_mtime_ns == mtime  # not rewritten
    assert len(list((run / "masks").glob("*.png"))) == 4
    assert not any(p.suffix == ".jpg" for p in run.iterdir())  # --no-save-overlay


def test_backbone_model_without_weights_exits_2(tmp_path: Path, run_cli: CliRunner) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    r = run_cli("segment", str(image), "--model", "unet", "--backbone", "resnet18")
    assert r.returncode == 2, r.stderr
    assert "no trained weights" in r.stderr and "densecnn train segment" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()
    r = run_cli("segment", str(image), "--alpha", "1.5")
    assert r.returncode == 2 and "--alpha" in r.stderr
    r = run_cli("segment", str(image), "--resume", "--no-save-masks")
    assert r.returncode == 2 and "--save-masks" in r.stderr


@pytest.mark.parametrize(
    ("h", "w", "height", "width"), [(52, 69, 1300, 1730), (97, 130, 1001, 777), (10, 10, 5, 7)]
)
def test_memory_bounded_upsampling_gives_the_same_labels(h: int, w: int, height: int, width: int) -> None:
    """Above FULL_RESIZE_FLOATS the label map is computed only at class boundaries: same labels as
    ``F.interpolate`` + argmax."""
    from densecnn.tasks.segment.semantic import labels_at

    gen = torch.Generator().manual_seed(0)
    logits = F.interpolate(torch.randn(1, 21, h // 6 + 2, w // 6 + 2, generator=gen) * 3, size=(h, w))[0]
    full = labels_at(logits, height, width)
    bounded = labels_at(logits, height, width, max_floats=0)
    assert full.shape == bounded.shape == (height, width) and len(np.unique(full)) > 3
    assert (full == bounded).mean() >= 0.9999


def test_interrupted_run_resumes_where_it_stopped(
    tmp_path: Path, run_cli: CliRunner, seg_weights: Path
) -> None:
    """Ctrl-C mid-folder (exit 130), then --resume: every image segmented exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    photos = need_data(COCO8.parent.parent / "coco128/images/train2017")
    sources = sorted(p.name for p in photos.glob("*.jpg"))[:24]
    (tmp_path / "list.txt").write_text("\n".join(str(photos / s) for s in sources) + "\n")
    args = ["segment", "list.txt", "--weights", str(seg_weights), "--imgsz", "256", "--no-save-overlay"]
    env = {**os.environ, "DENSECNN_OFFLINE": "1", "DENSECNN_WEIGHTS_DIR": str(tmp_path / "_weights")}
    proc = subprocess.Popen([sys.executable, "-m", "densecnn", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run = tmp_path / "runs/segment/predict"
    deadline = time.time() + 120
    while time.time() < deadline and len(list((run / "masks").glob("*.png"))) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    first = len(list((run / "masks").glob("*.png")))
    assert 3 <= first < len(sources)
    assert len(read_jsonl(run / "predictions.jsonl")) == first
    r = run_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["skipped_done"], summary["frames"]) == (first, len(sources))  # the whole run
    rows = _check_rows(run / "predictions.jsonl", len(sources))
    assert sorted(row["source"] for row in rows) == sources
    assert sorted(m.name for m in (run / "masks").glob("*.png")) == [f"{s}.png" for s in sources]
