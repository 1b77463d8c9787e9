"""``densecnn classify``: the zoo table, parity with torchvision's and Ultralytics' own predictions on
the same weights, and CLI runs (``run_cli``, in-process) on real images and a generated video."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _factories import loaded, make_classifier_weights, make_yolo_cls_checkpoint
from conftest import COCO8, CliRunner, need_data, write_video
from test_cli_detect import probe

from densecnn.config import PredictConfig
from densecnn.errors import UsageError
from densecnn.results import Classification, Frame
from densecnn.sinks.csv import csv_header
from densecnn.sinks.jsonl import read_jsonl
from densecnn.zoo import MODELS, default_model
from densecnn.zoo.classification import imagenet_names, preprocess_for, ultralytics_imagenet_names
from densecnn.zoo.store import WeightStore

FRAME_KEYS = {"source", "frame", "timestamp", "width", "height", "classes"}
CLASS_KEYS = {"class_id", "class_name", "score"}
CLASSIFY = [name for name, spec in MODELS.items() if spec.task == "classify"]


@pytest.fixture(scope="session")
def yolo_cls_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_cls_checkpoint(tmp_path_factory.mktemp("w") / "tiny-yolov8n-cls.pt")


@pytest.fixture(scope="session")
def mbv3_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "mobilenet_v3_large-5c1a4163.pth"
    return make_classifier_weights(path, arch="mobilenet_v3_large")


def _images() -> list[Path]:
    return sorted(need_data(COCO8).rglob("*.jpg"))


def _frame(path: Path) -> Frame:
    return Frame(image=cv2.imread(str(path)), source=path.name, path=str(path))


def assert_same(ours: Classification, ids: np.ndarray, scores: np.ndarray) -> None:
    assert ours.class_ids.tolist() == [int(i) for i in ids]
    assert np.abs(ours.scores - scores).max() <= 1e-4
    assert ours.scores[0] > 0.02, "scores near uniform (0.001): the test weights prove nothing"


# -- the zoo -------------------------------------------------------------------------------------------


def test_classify_zoo_and_default() -> None:
    assert {"resnet18", "mobilenet_v3_large", "efficientnet_b0", "yolov8n-cls", "yolo11n-cls"} <= set(
        CLASSIFY
    )
    assert default_model("classify").name == "mobilenet_v3_large"
    assert [n for n in CLASSIFY if MODELS.get(n).default] == ["mobilenet_v3_large"]


@pytest.mark.parametrize("name", [n for n in CLASSIFY if MODELS.get(n).family == "torchvision"])
def test_torchvision_entry_matches_its_weights_enum(name: str) -> None:
    """URL, preprocessing and categories equal torchvision's own ``Weights`` (what transforms() uses)."""
    from torchvision.models import get_model_weights

    spec = MODELS.get(name)
    official = get_model_weights(spec.arch).DEFAULT
    t = official.transforms()
    prep = preprocess_for(spec)
    assert spec.weights is not None and spec.weights.url == official.url
    assert (prep.resize, prep.crop) == (t.resize_size[0], t.crop_size[0]) and t.antialias
    assert prep.interpolation == t.interpolation.value
    assert (prep.mean, prep.std) == (tuple(t.mean), tuple(t.std))
    assert spec.classes == imagenet_names() == tuple(official.meta["categories"])


@pytest.mark.parametrize("name", ["yolov8n-cls", "yolo11n-cls"])
def test_yolo_cls_entry(name: str) -> None:
    import importlib.util

    import yaml

    spec = MODELS.get(name)
    w = spec.weights
    assert w is not None and w.full_digest and w.pickled and w.size is not None and w.size > 5_000_000
    assert w.url == f"https://github.com/ultralytics/assets/releases/download/v8.4.0/{name}.pt"
    found = importlib.util.find_spec("ultralytics")
    assert found is not None and found.submodule_search_locations
    root = Path(next(iter(found.submodule_search_locations)))
    names = yaml.safe_load((root / "cfg/datasets/ImageNet.yaml").read_text())["names"]
    assert spec.classes == ultralytics_imagenet_names() == tuple(names[i] for i in range(1000))


# -- parity ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_large"])
def test_torchvision_parity(tmp_path: Path, arch: str) -> None:
    """Official file name in the weight cache → same top-5 as ``Weights.transforms()`` + ``model(x)``."""
    from torchvision.models import get_model, get_model_weights

    spec = MODELS.get(arch)
    assert spec.weights is not None
    weights = make_classifier_weights(tmp_path / spec.weights.file_name, arch=arch)
    store = WeightStore(root=tmp_path, offline=True)
    predictor, used = loaded("classify", PredictConfig(model=arch, device="cpu"), store=store)
    assert used is spec
    model = get_model(arch, weights=None)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    transforms = get_model_weights(arch).DEFAULT.transforms()
    frames = [_frame(p) for p in _images()[::2]]  # 2 train + 2 val images, 4 different sizes
    batched = predictor.predict(frames)
    for frame, together in zip(frames, batched, strict=True):
        ours = predictor.predict([frame])[0]
        rgb = torch.from_numpy(np.ascontiguousarray(frame.image[..., ::-1])).permute(2, 0, 1)
        with torch.inference_mode():
            probs = model(transforms(rgb).unsqueeze(0)).softmax(1)[0]
        scores, ids = probs.topk(5)
        assert_same(ours, ids.numpy(), scores.numpy())
        assert_same(together, ids.numpy(), scores.numpy())  # batches of different sizes
        assert ours.names[int(ids[0])] == imagenet_names()[int(ids[0])]


@pytest.mark.parametrize(("cfg", "imgsz"), [("yolov8n-cls.yaml", None), ("yolo11n-cls.yaml", 160)])
def test_yolo_cls_matches_ultralytics_predict(
    tmp_path: Path, yolo_cls_weights: Path, cfg: str, imgsz: int | None
) -> None:
    """Trained size (224) with the checkpoint's own transforms, and --imgsz 160 with the defaults."""
    from ultralytics import YOLO

    weights = (
        yolo_cls_weights
        if cfg == "yolov8n-cls.yaml"
        else make_yolo_cls_checkpoint(tmp_path / "y.pt", cfg=cfg)
    )
    predictor, spec = loaded("classify", PredictConfig(weights=weights, device="cpu", imgsz=imgsz))
    assert spec.name == "yolov8n-cls"  # recognised as an Ultralytics file without --model
    reference = YOLO(str(weights))
    images = [cv2.imread(str(p)) for p in _images()]
    kwargs = {"imgsz": imgsz} if imgsz else {}
    refs = reference.predict(images, device="cpu", verbose=False, **kwargs)
    ours = predictor.predict([Frame(image=im, source=str(i), path=str(i)) for i, im in enumerate(images)])
    for mine, ref in zip(ours, refs, strict=True):
        assert_same(mine, np.array(ref.probs.top5), ref.probs.top5conf.numpy())
        assert mine.class_name(mine.class_ids[0]) == ref.names[ref.probs.top1]


def test_wrong_models_and_weights_are_usage_errors(yolo_weights: Path, mbv3_weights: Path) -> None:
    with pytest.raises(UsageError, match="is a detect model"):
        loaded("classify", PredictConfig(model="yolov8n"))
    with pytest.raises(UsageError, match="not a classifier"):
        loaded("classify", PredictConfig(model="yolov8n-cls", weights=yolo_weights, device="cpu"))
    with pytest.raises(UsageError, match="is not a resnet18 state dict"):
        loaded("classify", PredictConfig(model="resnet18", weights=mbv3_weights, device="cpu"))
    with pytest.raises(UsageError, match="needs trained weights"):
        loaded("classify", PredictConfig(model="classifier"))
    with pytest.raises(UsageError, match="train classify --backbone lenet"):
        loaded("classify", PredictConfig(model="classifier", backbone="lenet"))
    with pytest.raises(UsageError, match="--topk"):
        PredictConfig(topk=0)


# -- the CLI ---------------------------------------------------------------------------------------------


def _mixed_folder(root: Path) -> tuple[list[str], list[str]]:
    good = []
    for p in _images()[:4]:
        dst = root / "photos" / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
        good.append(dst.relative_to(root / "photos").as_posix())
    data = (root / "photos" / good[0]).read_bytes()
    (root / "photos/cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "photos/empty.jpg").write_bytes(b"")
    return sorted(good), ["cut.jpg", "empty.jpg"]


def _check_jsonl(path: Path, n: int, k: int) -> list[dict]:
    rows = read_jsonl(path)
    assert len(rows) == n
    for row in rows:
        assert set(row) == FRAME_KEYS and len(row["classes"]) == k
        assert all(set(c) == CLASS_KEYS and 0 <= c["score"] <= 1 for c in row["classes"])
        scores = [c["score"] for c in row["classes"]]
        assert scores == sorted(scores, reverse=True)
    return rows


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_folder_with_corrupt_files(tmp_path: Path, run_cli: CliRunner, mbv3_weights: Path) -> None:
    """Default model (mobilenet_v3_large) with --weights: bad files recorded, the rest classified."""
    good, bad = _mixed_folder(tmp_path)
    r = run_cli("classify", "photos", "--weights", str(mbv3_weights), "--topk", "3")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Top-1 classes" in r.stdout
    run = tmp_path / "runs/classify/predict"
    errors = [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["source"] for e in errors) == bad
    rows = _check_jsonl(run / "predictions.jsonl", len(good), 3)
    assert sorted(row["source"] for row in rows) == good
    table = _read_csv(run / "predictions.csv")
    assert list(table[0]) == csv_header(3)
    assert [t["source"] for t in table] == [row["source"] for row in rows]
    for t, row in zip(table, rows, strict=True):
        assert [int(t[f"class_id_{i}"]) for i in (1, 2, 3)] == [c["class_id"] for c in row["classes"]]
        assert float(t["score_1"]) == row["classes"][0]["score"]
        assert t["class_name_1"] in imagenet_names()
    for rel in good:
        annotated, original = cv2.imread(str(run / rel)), cv2.imread(str(tmp_path / "photos" / rel))
        assert annotated.shape == original.shape and not np.array_equal(annotated, original)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["inputs"], summary["inputs_failed"], summary["frames"]) == (len(good) + 2, 2, len(good))
    assert summary["model"] == "mobilenet_v3_large" and summary["topk"] == 3
    assert sum(summary["class_counts"].values()) == len(good)


def test_video_to_h264_with_a_line_per_frame(
    tmp_path: Path, run_cli: CliRunner, yolo_cls_weights: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=30, width=320, height=240, fps=25)
    r = run_cli("classify", str(video), "--weights", str(yolo_cls_weights), "--batch", "4", "--name", "v")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/classify/v"
    assert probe(run / "clip.mp4") == ("h264", 30, 25.0, 320, 240)
    rows = _check_jsonl(run / "predictions.jsonl", 30, 5)
    assert [row["frame"] for row in rows] == list(range(30))
    assert rows[1]["timestamp"] == pytest.approx(0.04, abs=1e-6)
    table = _read_csv(run / "predictions.csv")
    assert [int(t["frame"]) for t in table] == list(range(30))
    assert {t["class_name_1"] for t in table} <= set(ultralytics_imagenet_names())
    assert not (run / "errors.jsonl").exists()


def test_missing_weights_offline_says_what_to_do(tmp_path: Path, run_cli: CliRunner) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    r = run_cli("classify", str(image))  # the default model, mobilenet_v3_large
    assert r.returncode == 3, r.stderr
    assert (
        "mobilenet_v3_large-5c1a4163.pth" in r.stderr
        and "densecnn weights pull mobilenet_v3_large" in r.stderr
    )
    assert "--weights" in r.stderr and "DENSECNN_WEIGHTS_MIRROR" in r.stderr
    assert str(tmp_path / "_weights") in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()
    r = run_cli("classify", str(image), "--topk", "0")
    assert r.returncode == 2 and "--topk" in r.stderr


def test_densecnn_checkpoint(tmp_path: Path, run_cli: CliRunner) -> None:
    """A checkpoint names its backbone, classes and preprocessing: --weights alone runs it."""
    from densecnn.checkpoint import CheckpointMeta, save_checkpoint
    from densecnn.tasks.classify.head import build_classifier

    torch.manual_seed(0)
    model = build_classifier("lenet", 3, in_channels=1).eval()
    meta = CheckpointMeta(
        task="classify",
        arch="classifier",
        backbone="lenet",
        class_names=("cat", "dog", "bird"),
        input_size=32,
        mean=(0.5,),
        std=(0.25,),
        in_channels=1,
        extra={"preprocess": {"resize": 36, "interpolation": "bilinear"}},
    )
    ckpt = tmp_path / "best.safetensors"
    save_checkpoint(ckpt, model.state_dict(), meta)
    images = _images()[:3]
    (tmp_path / "list.txt").write_text("\n".join(str(p) for p in images) + "\n")
    r = run_cli("classify", "list.txt", "--weights", str(ckpt), "--no-save", "--topk", "2")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/classify/predict"
    rows = _check_jsonl(run / "predictions.jsonl", 3, 2)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["backbone"] == "lenet" and summary["model"] == "classifier"
    import torchvision.transforms.v2 as T

    reference = T.Compose(
        [T.Resize(36, antialias=True), T.CenterCrop(32), T.Grayscale(), T.ToDtype(torch.float32, scale=True)]
    )
    for row, path in zip(rows, images, strict=True):
        rgb = torch.from_numpy(cv2.imread(str(path))[..., ::-1].copy()).permute(2, 0, 1)
        with torch.inference_mode():
            probs = model(((reference(rgb) - 0.5) / 0.25).unsqueeze(0)).softmax(1)[0]
        scores, ids = probs.topk(2)
        assert [c["class_name"] for c in row["classes"]] == [meta.class_names[i] for i in ids.tolist()]
        assert np.allclose([c["score"] for c in row["classes"]], scores.numpy(), atol=1e-4)


# -- CUDA (skipped where torch sees none; run with `pytest -m gpu` on a GPU machine) -------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("half", [False, True])
def test_cuda_matches_cpu(mbv3_weights: Path, yolo_cls_weights: Path, half: bool) -> None:
    """Same classes on the GPU (fp16 may swap near-equal neighbours: top-1 within the other's top-3)."""
    frames = [_frame(p) for p in _images()[:4]]
    for weights in (mbv3_weights, yolo_cls_weights):
        cpu, _ = loaded("classify", PredictConfig(weights=weights, device="cpu"))
        gpu, _ = loaded("classify", PredictConfig(weights=weights, device="cuda", half=half))
        assert gpu.device.type == "cuda"
        for a, b in zip(cpu.predict(frames), gpu.predict(frames), strict=True):
            assert a.class_ids[0] in b.class_ids[:3] and b.class_ids[0] in a.class_ids[:3]
            assert abs(float(a.scores[0]) - float(b.scores[0])) <= (0.02 if half else 0.005)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cli_classify_on_cuda(tmp_path: Path, run_cli: CliRunner, mbv3_weights: Path) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    r = run_cli("classify", str(image), "--weights", str(mbv3_weights), "--device", "cuda", "--half")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "runs/classify/predict/summary.json").read_text())["device"] == "cuda:0"
