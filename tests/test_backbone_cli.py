"""Backbone-built models from the command line (in-process CLI runs): a densecnn Faster R-CNN
checkpoint alone drives ``densecnn detect``; models that cannot run say why; ``models --matrix``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _factories import loaded, make_fasterrcnn_checkpoint
from conftest import COCO8, CliRunner, need_data

from densecnn.backbones import BACKBONES
from densecnn.checkpoint import CheckpointMeta, save_checkpoint
from densecnn.config import PredictConfig
from densecnn.errors import UsageError
from densecnn.sinks.jsonl import read_jsonl
from densecnn.zoo.heads import HEADS


@pytest.fixture(scope="module")
def frcnn_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fasterrcnn_checkpoint(tmp_path_factory.mktemp("ckpt") / "frcnn-r18.safetensors")


def _image() -> Path:
    return sorted(need_data(COCO8 / "val").glob("*.jpg"))[0]


def test_detect_with_a_checkpoint_alone(tmp_path: Path, run_cli: CliRunner, frcnn_ckpt: Path) -> None:
    image = _image()
    r = run_cli("detect", str(image), "--weights", str(frcnn_ckpt), "--imgsz", "256")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "fasterrcnn (resnet18 backbone)" in r.stdout
    run = tmp_path / "runs/detect/predict"
    (row,) = read_jsonl(run / "predictions.jsonl")
    assert row["source"].endswith(image.name) and row["frame"] == 0
    assert row["detections"], "random weights over 2 classes still score above --conf 0.05"
    for det in row["detections"]:
        assert set(det) == {"class_id", "class_name", "score", "box"}
        assert (det["class_id"], det["class_name"]) in {(1, "person"), (2, "car")}
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= row["width"] and 0 <= y1 <= y2 <= row["height"]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["model"], summary["backbone"]) == ("fasterrcnn", "resnet18")
    assert (run / image.name).is_file()  # annotated image


def test_fasterrcnn_on_lenet_fails_with_the_reason(run_cli: CliRunner) -> None:
    r = run_cli("detect", str(_image()), "--model", "fasterrcnn", "--backbone", "lenet")
    assert r.returncode == 2, r.stderr
    assert "strides [8, 16, 32]" in r.stderr and "lenet has stages at strides [2, 4, 8]" in r.stderr
    assert "Traceback" not in r.stderr


def test_fasterrcnn_without_weights_says_how_to_get_some(run_cli: CliRunner) -> None:
    r = run_cli("detect", str(_image()), "--model", "fasterrcnn")
    assert r.returncode == 2, r.stderr
    err = " ".join(r.stderr.split())
    assert "fasterrcnn has no trained weights yet" in err
    assert "densecnn train detect --model fasterrcnn" in err and "--weights CKPT.safetensors" in err
    assert "Traceback" not in r.stderr
    with pytest.raises(UsageError, match="fasterrcnn on resnet18 has no trained weights yet") as info:
        loaded("detect", PredictConfig(model="fasterrcnn", backbone="resnet18"))
    assert "--backbone resnet18" in (info.value.hint or "")


def test_checkpoint_conflicts_are_usage_errors(frcnn_ckpt: Path, tmp_path: Path, rcnn_weights: Path) -> None:
    with pytest.raises(UsageError, match="holds a fasterrcnn model"):
        loaded("detect", PredictConfig(model="yolov8n", weights=frcnn_ckpt))
    with pytest.raises(UsageError, match="trained on resnet18"):
        loaded("detect", PredictConfig(weights=frcnn_ckpt, backbone="resnet50"))
    with pytest.raises(UsageError, match="not a densecnn checkpoint"):
        loaded("detect", PredictConfig(model="fasterrcnn", backbone="resnet18", weights=rcnn_weights))
    with pytest.raises(UsageError, match="--backbone goes with"):
        loaded("detect", PredictConfig(model="yolov8n", backbone="resnet18"))
    meta = CheckpointMeta(
        task="classify", arch="classifier", backbone="lenet", class_names=("a", "b"), input_size=32,
        mean=(0.5,) * 3, std=(0.5,) * 3,
    )  # fmt: skip
    save_checkpoint(tmp_path / "cls.safetensors", {}, meta)
    with pytest.raises(UsageError, match="is a classify checkpoint") as info:
        loaded("detect", PredictConfig(weights=tmp_path / "cls.safetensors"))
    assert "densecnn classify" in (info.value.hint or "")


def test_models_matrix_measures_once_and_lists_every_backbone(run_cli: CliRunner, tmp_path: Path) -> None:
    r = run_cli("models", "--matrix", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    lines = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") > 2}
    assert set(BACKBONES.names()) <= set(lines)
    assert "11.7 / 1.81" in lines["resnet18"]  # ResNet-18 classifier: torchvision's 11.69 M, 1.81 GFLOPs
    assert lines["lenet"].count("— no stride") == 4  # fasterrcnn, unet, deeplabv3plus, deeplabv3
    assert "not cached" in lines["resnet18"]
    cache = tmp_path / "_weights" / "model_matrix.json"
    stamp = cache.stat().st_mtime_ns
    r = run_cli("models", "--matrix", "--json")
    assert r.returncode == 0, r.stderr
    assert cache.stat().st_mtime_ns == stamp  # read from the cache, not measured again
    records = {rec["backbone"]: rec for rec in json.loads(r.stdout)}
    assert set(records) == set(BACKBONES.names())
    for rec in records.values():
        assert set(rec["heads"]) == set(HEADS.names())
    assert records["convnext_tiny"]["strides"] == [4, 8, 16, 32]
    assert records["lenet"]["heads"]["unet"]["reason"].startswith("unet needs backbone features")
    assert records["resnet50"]["heads"]["fasterrcnn"]["input_size"] == 800


def test_plain_models_stays_torch_free() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from densecnn.cli.app import app; "
        "r = CliRunner().invoke(app, ['models']); assert r.exit_code == 0, r.output; "
        "assert 'fasterrcnn' in r.output; assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
