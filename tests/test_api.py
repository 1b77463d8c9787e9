"""The Python API: ``densecnn.load`` picks what the CLI picks, ``densecnn.predict`` gives what the CLI
writes (same pipeline), lazily; a model family registered from outside is usable everywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from _factories import make_classifier_weights, make_yolo_seg_checkpoint
from conftest import COCO8, DATA, CliRunner, need_data, write_video
from typer.testing import CliRunner as TyperRunner

import densecnn
from densecnn.config import PredictConfig
from densecnn.errors import UsageError, WeightsUnavailableError
from densecnn.results import Detections, Frame
from densecnn.sinks.jsonl import read_jsonl
from densecnn.tasks.base import Predictor
from densecnn.tasks.builders import BUILDERS, BuildRequest, register_builder
from densecnn.tasks.loading import resolve_request
from densecnn.zoo import MODELS
from densecnn.zoo.specs import ModelSpec, WeightsFile
from densecnn.zoo.store import WeightStore

FRAME_FIELDS = {"source", "frame", "timestamp", "width", "height"}


@pytest.fixture
def offline_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the CLI tests run in: offline, an empty weight cache."""
    root = tmp_path / "_weights"
    monkeypatch.setenv("DENSECNN_WEIGHTS_DIR", str(root))
    monkeypatch.setenv("DENSECNN_OFFLINE", "1")
    return root


def assert_same_rows(a: Any, b: Any, path: str = "") -> None:
    """Equal records, numbers within float noise: the same weights in two processes may differ in the
    last printed digit (thread count changes the summation order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_same_rows(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_rows(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=0.02), path
    else:
        assert a == b, path


def _api_rows(predictions: Any) -> dict[tuple[str, int], dict[str, Any]]:
    """``densecnn.predict`` results keyed like predictions.jsonl rows, JSON-normalised."""
    rows = {}
    for p in predictions:
        rows[(p.frame.source, p.frame.index)] = json.loads(json.dumps(p.result.record()))
    return rows


def _keyed(rows: dict[tuple[str, int], Any]) -> dict[str, Any]:
    return {f"{source}#{frame}": row for (source, frame), row in rows.items()}


def _cli_rows(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (r["source"], r["frame"]): {k: v for k, v in r.items() if k not in FRAME_FIELDS}
        for r in read_jsonl(path)
    }


def _images(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted((need_data(COCO8) / "val").glob("*.jpg"))[:n]:
        shutil.copy(src, folder / src.name)
    return folder


def test_predict_detect_equals_the_cli_on_images_and_video(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path, offline_store: Path
) -> None:
    folder = _images(tmp_path)
    write_video(folder / "clip.mp4", frames=10, width=320, height=240)
    r = run_cli("detect", "photos", "--weights", str(yolo_weights), "--imgsz", "320", "--device", "cpu")
    assert r.returncode == 0, r.stderr + r.stdout
    cli = _cli_rows(tmp_path / "runs/detect/predict/predictions.jsonl")
    stream = densecnn.predict(folder, weights=yolo_weights, imgsz=320, device="cpu")
    api = _api_rows(stream)
    assert len(api) == 13 and api.keys() == cli.keys()  # 3 photos + 10 video frames
    assert_same_rows(_keyed(api), _keyed(cli))
    assert sum(len(row["detections"]) for row in api.values()) > 0
    assert stream.run_dir is None and stream.summary is not None and stream.summary.frames == 13


def test_predict_with_out_writes_what_the_cli_writes(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path, offline_store: Path
) -> None:
    folder = _images(tmp_path, n=2)
    r = run_cli("detect", "photos", "--weights", str(yolo_weights), "--imgsz", "320", "--save-txt")
    assert r.returncode == 0, r.stderr
    stream = densecnn.predict(folder, weights=yolo_weights, imgsz=320, out=tmp_path / "api", save_txt=True)
    assert len(list(stream)) == 2
    assert stream.run_dir == tmp_path / "api" / "predict"
    run = stream.run_dir
    cli_dir = tmp_path / "runs/detect/predict"
    names = {p.relative_to(cli_dir).as_posix() for p in cli_dir.rglob("*") if p.is_file()}
    assert names == {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert_same_rows(
        _keyed(_cli_rows(cli_dir / "predictions.jsonl")), _keyed(_cli_rows(run / "predictions.jsonl"))
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["frames"] == 2 and summary["command"] == "detect"


def test_predict_semantic_segment_equals_the_cli(
    tmp_path: Path, run_cli: CliRunner, offline_store: Path
) -> None:
    """The embedded person-unet (the offline default) on real Penn-Fudan photos: same label maps."""
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted((need_data(DATA / "pennfudan") / "images").glob("*.png"))[:2]:
        shutil.copy(src, folder / src.name)
    r = run_cli("segment", "photos", "--no-save-overlay")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs/segment/predict"
    predictions = list(densecnn.predict(folder, task="segment"))
    assert len(predictions) == 2
    for p in predictions:
        cli_mask = cv2.imread(str(run / "masks" / f"{p.frame.source}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cli_mask, p.result.label_map)
        assert 0 < (p.result.label_map == 1).mean() < 1  # persons found, not the whole photo
    assert_same_rows(_keyed(_cli_rows(run / "predictions.jsonl")), _keyed(_api_rows(predictions)))


def test_predict_instance_segment_equals_the_cli(
    tmp_path: Path, run_cli: CliRunner, offline_store: Path
) -> None:
    folder = _images(tmp_path, n=2)
    weights = make_yolo_seg_checkpoint(tmp_path / "seg.pt", images=sorted(folder.glob("*.jpg")), imgsz=320)
    r = run_cli("segment", "photos", "--weights", str(weights), "--imgsz", "320", "--no-save-overlay")
    assert r.returncode == 0, r.stderr
    api = _api_rows(densecnn.predict(folder, weights=weights, imgsz=320))
    assert_same_rows(_keyed(api), _keyed(_cli_rows(tmp_path / "runs/segment/predict/predictions.jsonl")))
    assert sum(len(row["instances"]) for row in api.values()) > 0


def test_predict_classify_equals_the_cli(tmp_path: Path, run_cli: CliRunner, offline_store: Path) -> None:
    folder = _images(tmp_path, n=2)
    weights = make_classifier_weights(tmp_path / "r18.pth")
    r = run_cli("classify", "photos", "--model", "resnet18", "--weights", str(weights), "--topk", "3")
    assert r.returncode == 0, r.stderr
    api = _api_rows(densecnn.predict(folder, model="resnet18", weights=weights, topk=3))
    assert_same_rows(_keyed(api), _keyed(_cli_rows(tmp_path / "runs/classify/predict/predictions.jsonl")))


def test_predict_is_lazy(tmp_path: Path, yolo_weights: Path) -> None:
    """The first prediction arrives while later inputs do not even exist yet."""
    photo = sorted((need_data(COCO8) / "val").glob("*.jpg"))[0]
    paths = [tmp_path / f"{i:02d}.jpg" for i in range(24)]
    for p in paths[:-1]:
        shutil.copy(photo, p)
    stream = densecnn.predict(paths, weights=yolo_weights, imgsz=320, device="cpu")
    first = next(stream)
    assert first.frame.source == "00.jpg"
    shutil.copy(photo, paths[-1])  # written only now: the reader has not reached it
    rest = list(stream)
    assert len(rest) == 23 and rest[-1].frame.source == "23.jpg"
    assert stream.summary is not None and stream.summary.inputs_failed == 0


def test_closing_early_stops_the_run_cleanly(tmp_path: Path, yolo_weights: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=60)
    stream = densecnn.predict(video, weights=yolo_weights, imgsz=320, out=tmp_path / "out")
    for _, _p in zip(range(3), stream, strict=False):
        pass
    stream.close()
    summary = json.loads((tmp_path / "out/predict/summary.json").read_text())
    assert summary["stopped_by"] == "caller" and 3 <= summary["frames"] < 60


@pytest.mark.parametrize("name", MODELS.names())
def test_load_resolves_every_zoo_entry(name: str, tmp_path: Path) -> None:
    """Spec, weight file, device and thresholds for every registered model, as the CLI resolves them
    (the store hands back a placeholder file: building real weights is each family's own test)."""

    class PlaceholderStore(WeightStore):
        def fetch(self, weights: WeightsFile, **_: Any) -> Path:
            if weights.embedded:
                return super().fetch(weights)
            path = tmp_path / weights.file_name
            path.write_bytes(b"")
            return path

    spec = MODELS.get(name)
    cfg = PredictConfig(model=name, device="cpu")
    if spec.head is not None:  # heads need a densecnn checkpoint: resolved here, refused by the builder
        with pytest.raises(UsageError, match=r"needs trained weights|no trained weights"):
            densecnn.load(name, device="cpu")
        return
    request = resolve_request(cfg, store=PlaceholderStore(root=tmp_path, offline=True))
    assert request.spec is spec and request.device.type == "cpu" and not request.half
    assert (request.conf, request.iou, request.max_det) == (spec.conf, spec.iou, spec.max_det)
    assert request.weights.path is not None and request.weights.path.name == spec.weights.file_name
    assert request.weights.origin == ("embedded" if spec.weights.embedded else "store")
    tuned = resolve_request(
        PredictConfig(model=name, device="cpu", conf=0.5, iou=0.4, max_det=7),
        store=PlaceholderStore(root=tmp_path, offline=True),
    )
    assert (tuned.conf, tuned.iou, tuned.max_det) == (0.5, 0.4, 7)


def test_load_defaults_and_weight_files(
    tmp_path: Path, yolo_weights: Path, rcnn_weights: Path, offline_store: Path
) -> None:
    """The default (offline: the embedded model), an Ultralytics file, a plain state dict."""
    detector = densecnn.load(device="cpu")
    assert detector.spec.name == "person-yolov8n" and detector.device.type == "cpu"
    assert (detector.conf, detector.iou, detector.imgsz) == (0.25, 0.7, [320, 320])
    segmenter = densecnn.load(task="segment")
    assert segmenter.spec.name == "person-unet" and segmenter.backbone == "mobilenet_v3_large"
    yolo = densecnn.load(weights=yolo_weights, conf=0.4)
    assert yolo.spec.name == "yolov8n" and yolo.conf == 0.4 and yolo.weights_path == yolo_weights
    rcnn = densecnn.load("fasterrcnn_mobilenet_v3_large_320_fpn", weights=rcnn_weights)
    assert rcnn.model.roi_heads.score_thresh == 0.05 and rcnn.model.roi_heads.nms_thresh == 0.5
    with pytest.raises(WeightsUnavailableError, match=r"yolov8n\.pt"):
        densecnn.load("yolov8n")
    with pytest.raises(UsageError, match="Unknown option 'confidence'"):
        densecnn.load(weights=yolo_weights, confidence=0.3)


# --- a model family registered from outside densecnn (what a plug-in module would hold) --------


class BrightBox(Predictor):
    """A toy detector: one box around the pixels brighter than ``conf`` x 255."""

    names: ClassVar[dict[int, str]] = {0: "bright"}

    def __init__(self, request: BuildRequest) -> None:
        super().__init__()
        import torch

        self.device = torch.device("cpu")
        self.level = 255 * (request.conf or 0.5)

    def preprocess(self, frames: Any) -> Any:
        return [f.image.max(axis=2) for f in frames]

    def forward(self, batch: Any) -> Any:
        return [np.argwhere(gray > self.level) for gray in batch]

    def postprocess(self, raw: Any, batch: Any, frames: Any) -> list[Detections]:
        out = []
        for points in raw:
            if len(points) == 0:
                out.append(Detections(names=self.names))
                continue
            (y1, x1), (y2, x2) = points.min(axis=0), points.max(axis=0)
            out.append(Detections([[x1, y1, x2 + 1, y2 + 1]], [1.0], [0], self.names))
        return out


@pytest.fixture
def toy_family() -> Any:
    MODELS.add(
        "toy",
        ModelSpec(
            name="toy",
            task="detect",
            family="toy",
            arch="toy",
            weights=None,
            classes=("bright",),
            imgsz=64,
            conf=0.8,
            description="test family",
        ),
    )
    register_builder("detect", "toy")(BrightBox)
    yield
    MODELS._entries.pop("toy")
    BUILDERS._entries.pop("detect/toy")


def test_a_registered_family_runs_in_the_cli_and_the_api(
    tmp_path: Path, toy_family: Any, monkeypatch: Any
) -> None:
    import cv2

    image = np.zeros((48, 64, 3), np.uint8)
    image[10:20, 30:40] = 255
    cv2.imwrite(str(tmp_path / "spot.png"), image)
    (p,) = densecnn.predict(tmp_path / "spot.png", model="toy")
    assert p.result.boxes.tolist() == [[30.0, 10.0, 40.0, 20.0]]
    monkeypatch.chdir(tmp_path)
    from densecnn.cli.app import app

    result = TyperRunner().invoke(app, ["detect", "spot.png", "--model", "toy", "--quiet"])
    assert result.exit_code == 0, result.output
    (row,) = read_jsonl(tmp_path / "runs/detect/predict/predictions.jsonl")
    assert row["detections"][0]["box"] == [30.0, 10.0, 40.0, 20.0]
    assert row["detections"][0]["class_name"] == "bright"


def test_predictor_runs_on_frames_directly(yolo_weights: Path) -> None:
    model = densecnn.load(weights=yolo_weights, imgsz=320)
    frame = Frame(image=np.full((240, 320, 3), 114, np.uint8), source="grey", path="grey")
    (result,) = model.predict([frame])
    assert isinstance(result, Detections)


def test_readme_python_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python API block, verbatim, offline, from a folder holding ``samples/``."""
    import contextlib
    import io
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    shutil.copytree(Path(__file__).parents[1] / "samples", tmp_path / "samples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DENSECNN_OFFLINE", "1")
    monkeypatch.setenv("DENSECNN_WEIGHTS_DIR", str(tmp_path / "_weights"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == sorted(p.name for p in Path("samples").glob("*.jpg"))
    assert any("'person'" in line for line in lines)
    run_dir, frames, n_masks = lines[-1].split()
    assert Path(run_dir) == Path("runs/api/predict") and int(frames) == int(n_masks) == 12
    assert (tmp_path / "runs/api/predict/summary.json").is_file()
    assert len(list((tmp_path / "runs/api/predict/masks/clip.mp4").glob("*.png"))) == int(frames)
