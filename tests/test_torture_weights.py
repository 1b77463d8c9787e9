"""Hostile weight files: no --weights path runs code from a file without consent, and every bad file
gets a clear answer (issue 13).

Policy: a pickle that Ultralytics' restricted (``weights_only`` + allow-list) load refuses is refused
with exit 3 and a message naming ``--trust-weights`` / ``DENSECNN_TRUST_WEIGHTS``; torchvision state
dicts are only ever read with ``torch.load(weights_only=True)`` (exit 2 on anything else); a
truncated or lying safetensors file is "truncated or corrupt" with the sizes (exit 2).
``densecnn weights convert`` writes a .safetensors file that predicts exactly as the .pt.
"""

from __future__ import annotations

import builtins
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from _factories import make_rcnn_state_dict, make_yolo_cls_checkpoint, make_yolo_seg_checkpoint
from conftest import ROOT, CliRunner

IMAGE = ROOT / "samples" / "coffee.jpg"


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appearing means code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (builtins.open, (self.marker, "w"))


def _evil(path: Path, marker: Path, *, ultralytics: bool = True) -> Path:
    """A torch.save zip that carries the payload where the model should be; ``ultralytics``: it also
    names Ultralytics (so densecnn takes it for an Ultralytics .pt), else it poses as a state dict."""
    if ultralytics:
        torch.save({"model": _Payload(marker), "train_args": {}, "note": "ultralytics.nn.tasks"}, path)
    else:
        torch.save({"conv.weight": torch.zeros(1), "conv.bias": _Payload(marker)}, path)
    return path


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    return _evil(tmp_path / "evil.pt", marker), marker


@pytest.mark.parametrize(
    ("task", "model"),
    [
        ("detect", None),
        ("detect", "yolov8n"),
        ("segment", None),
        ("segment", "yolov8n-seg"),
        ("classify", None),
        ("classify", "yolov8n-cls"),
    ],
)
def test_pickle_payload_refused_in_every_loader(
    evil: tuple[Path, Path], task: str, model: str | None
) -> None:
    """In-process, every task's loader: restricted load, refusal, the payload never runs."""
    from densecnn.config import PredictConfig
    from densecnn.errors import UntrustedWeightsError
    from densecnn.tasks.loading import load_predictor

    weights, marker = evil
    with pytest.raises(UntrustedWeightsError, match="--trust-weights"):
        load_predictor(PredictConfig(model=model, weights=weights, device="cpu"), task=task)
    assert not marker.exists(), "the weight file ran code"


def test_refused_even_if_ultralytics_was_imported_unsafe(evil: tuple[Path, Path]) -> None:
    """A program that imported Ultralytics before densecnn (so ULTRALYTICS_SAFE_LOAD was not read)
    still gets the restricted load."""
    from densecnn.errors import UntrustedWeightsError
    from densecnn.integrations.ultralytics import import_ultralytics
    from densecnn.tasks.detect.yolo import load_yolo_module

    import_ultralytics()
    from ultralytics.nn import tasks

    weights, marker = evil
    saved, tasks.SAFE_LOAD = tasks.SAFE_LOAD, False
    try:
        with pytest.raises(UntrustedWeightsError):
            load_yolo_module(weights, user_named=True)
    finally:
        tasks.SAFE_LOAD = saved
    assert not marker.exists()


YOLO_PATHS = [["detect"], ["segment", "--model", "yolov8n-seg"], ["classify"]]


@pytest.mark.parametrize("cmd", YOLO_PATHS, ids=lambda c: "-".join(c))
def test_pickle_payload_refused_without_consent(
    run_cli: CliRunner, evil: tuple[Path, Path], tmp_path: Path, cmd: list[str]
) -> None:
    weights, marker = evil
    proc = run_cli(cmd[0], str(IMAGE), *cmd[1:], "--weights", str(weights), "--out", str(tmp_path / "o"))
    assert not marker.exists(), "the weight file ran code"
    assert proc.returncode == 3, proc.stderr
    assert "--trust-weights" in proc.stderr and "DENSECNN_TRUST_WEIGHTS" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()  # refused before any output folder


@pytest.mark.parametrize(
    "cmd",
    [
        ["detect", "--model", "fasterrcnn_mobilenet_v3_large_320_fpn"],
        ["classify", "--model", "resnet18"],
        ["segment", "--model", "deeplabv3_mobilenet_v3_large"],
    ],
    ids=lambda c: c[0],
)
def test_pickle_payload_in_state_dict_paths(run_cli: CliRunner, tmp_path: Path, cmd: list[str]) -> None:
    """torchvision state dicts load with weights_only=True: the payload is refused (exit 3, one
    short message), never run."""
    marker = tmp_path / "PWNED"
    weights = _evil(tmp_path / "evil.pth", marker, ultralytics=False)
    proc = run_cli(cmd[0], str(IMAGE), *cmd[1:], "--weights", str(weights), "--out", str(tmp_path / "o"))
    assert not marker.exists()
    assert proc.returncode == 3, proc.stderr
    assert "not a plain state dict" in proc.stderr and "io.open" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 2


def test_pickle_payload_train_eval_classify(run_cli: CliRunner, tmp_path: Path) -> None:
    """Starting weights for training and evaluated weights load as state dicts: refused, never run."""
    import cv2
    import numpy as np

    marker = tmp_path / "PWNED"
    weights = _evil(tmp_path / "evil.pth", marker, ultralytics=False)
    for name in ("a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / name), np.full((32, 32, 3), 100, np.uint8))
    for args in (
        ["train", "classify", "--no-pretrained", "--epochs", "1"],
        ["eval", "classify", "--model", "resnet18"],
    ):
        proc = run_cli(*args, "--data", "data", "--weights", str(weights), "--project", "runs")
        assert not marker.exists()
        assert proc.returncode == 3 and "not a plain state dict" in proc.stderr, proc.stderr


def _tiny_data(root: Path) -> Path:
    import cv2
    import numpy as np

    for split in ("train", "val"):
        for i in range(2):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            img = np.full((64, 64, 3), 80, np.uint8)
            img[10:40, 10:40] = 200
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), img)
            (root / "labels" / split / f"{i}.txt").write_text("0 0.4 0.4 0.45 0.45\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: thing}\n")
    return root / "data.yaml"


@pytest.mark.parametrize("command", ["eval", "train", "convert"])
def test_pickle_payload_eval_train_convert(
    run_cli: CliRunner, evil: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    weights, marker = evil
    if command == "convert":
        args = ["weights", "convert", str(weights)]
    else:
        data = _tiny_data(tmp_path / "ds")
        args = [command, "detect", "--weights", str(weights), "--data", str(data)]
        args += ["--model", "yolov8n", "--epochs", "1", "--imgsz", "64"] if command == "train" else []
        args += ["--project", str(tmp_path / "runs")]
    proc = run_cli(*args)
    assert not marker.exists()
    assert proc.returncode == 3, proc.stderr
    assert "--trust-weights" in proc.stderr and "Traceback" not in proc.stderr


def test_consent_flag_and_env_allow_the_unpickle(
    run_cli: CliRunner, evil: tuple[Path, Path], tmp_path: Path
) -> None:
    """With consent the file is unpickled in full (the payload runs: that is what consent means);
    it holds no model, so the run then stops with a usage error, not a traceback."""
    weights, marker = evil
    proc = run_cli("detect", str(IMAGE), "--weights", str(weights), "--trust-weights", "--out", "o")
    assert marker.exists()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    marker.unlink()
    proc = run_cli("detect", str(IMAGE), "--weights", str(weights), env={"DENSECNN_TRUST_WEIGHTS": "1"})
    assert marker.exists()
    assert proc.returncode == 2


# ------------------------------------------------------------------ safetensors that lie


def _safetensors(path: Path, header: dict, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _lying_files(tmp: Path, good: Path) -> dict[str, Path]:
    whole = good.read_bytes()
    files = {
        "truncated": tmp / "truncated.safetensors",
        "header-past-end": tmp / "hdr.safetensors",
        "offsets-past-end": _safetensors(
            tmp / "offsets.safetensors",
            {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16_000_000]}},
            b"\0" * 16,
        ),
        "huge-shape": _safetensors(
            tmp / "huge.safetensors",
            {"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 16]}},
            b"\0" * 16,
        ),
        "not-json": tmp / "notjson.safetensors",
        "empty": tmp / "empty.safetensors",
    }
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    files["header-past-end"].write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    files["not-json"].write_bytes(struct.pack("<Q", 8) + b"\xff\xfe{{{{{{")
    files["empty"].write_bytes(b"")
    return files


LIES = ["truncated", "header-past-end", "offsets-past-end", "huge-shape", "not-json", "empty"]


@pytest.mark.parametrize("lie", LIES)
def test_lying_safetensors_read_meta(tmp_path: Path, lie: str) -> None:
    from densecnn.checkpoint import read_meta
    from densecnn.errors import UsageError

    good = ROOT / "weights" / "person-yolov8n.safetensors"
    path = _lying_files(tmp_path, good)[lie]
    with pytest.raises(UsageError, match="truncated or corrupt file") as info:
        read_meta(path)
    assert "bytes" in info.value.message or "JSON" in info.value.message or "safetensors" in str(info.value)


def test_truncated_checkpoint_cli(run_cli: CliRunner, tmp_path: Path) -> None:
    good = ROOT / "weights" / "person-yolov8n.safetensors"
    bad = tmp_path / "best.safetensors"
    bad.write_bytes(good.read_bytes()[:100_000])
    for cmd in ("detect", "segment", "classify"):
        proc = run_cli(cmd, str(IMAGE), "--weights", str(bad))
        assert proc.returncode == 2, proc.stderr
        assert "truncated or corrupt file" in proc.stderr and "100,000 bytes" in proc.stderr
        assert "not a densecnn checkpoint" not in proc.stderr


def test_state_dict_for_another_architecture(run_cli: CliRunner, tmp_path: Path) -> None:
    rcnn = make_rcnn_state_dict(tmp_path / "frcnn.pth")
    proc = run_cli("classify", str(IMAGE), "--model", "resnet18", "--weights", str(rcnn))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Pick the --model" in proc.stderr or "does not fit" in proc.stderr


def test_verify_advice_for_embedded_files() -> None:
    """A corrupted embedded file is restored from the checkout (`weights pull` refuses those)."""
    from densecnn.cli.weights import _mismatch_advice
    from densecnn.zoo import MODELS
    from densecnn.zoo.store import VerifyResult

    spec = MODELS.get("person-yolov8n")
    assert spec.weights is not None and spec.weights.embedded
    result = VerifyResult("mismatch", ROOT / "weights" / spec.weights.file_name, "0" * 64)
    (line,) = _mismatch_advice([(spec, spec.weights, result)])
    assert "git checkout -- weights/person-yolov8n.safetensors" in line
    assert "weights pull" not in line and "never downloaded" in line


# ------------------------------------------------------------------ convert


def _predict(task: str, weights: Path) -> list[dict]:
    """In-process: the predictor densecnn builds for ``--weights`` on one image → its JSONL records."""
    from densecnn.config import PredictConfig
    from densecnn.results import Frame
    from densecnn.sources.images import read_image
    from densecnn.tasks.loading import load_predictor

    cfg = PredictConfig(weights=weights, device="cpu", imgsz=160 if task != "classify" else None)
    predictor = load_predictor(cfg, task=task)
    frame = Frame(read_image(IMAGE), source="coffee.jpg", path=str(IMAGE), index=0, timestamp=0.0)
    return [r.record() for r in predictor.predict([frame])]


@pytest.mark.parametrize("task", ["detect", "segment", "classify"])
def test_convert_predicts_identically(tmp_path: Path, yolo_weights: Path, task: str) -> None:
    """``weights convert``'s file (no pickle) gives exactly the .pt's predictions."""
    from densecnn.tasks.detect.yolo_state import convert_ultralytics

    if task == "detect":
        pt = tmp_path / "m.pt"
        shutil.copy(yolo_weights, pt)
    elif task == "segment":
        pt = make_yolo_seg_checkpoint(tmp_path / "m.pt", images=[IMAGE], imgsz=160)
    else:
        pt = make_yolo_cls_checkpoint(tmp_path / "m.pt", imgsz=64)
    meta = convert_ultralytics(pt, tmp_path / "m.safetensors")
    assert meta.task == task
    before, after = _predict(task, pt), _predict(task, tmp_path / "m.safetensors")
    assert before == after
    assert before[0].get("detections") or before[0].get("instances") or before[0].get("classes")


def test_convert_cli(run_cli: CliRunner, tmp_path: Path, yolo_weights: Path) -> None:
    proc = run_cli("weights", "convert", str(yolo_weights), "--output", "m.safetensors")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("detect", str(IMAGE), "--weights", "m.safetensors", "--out", "o", "-q")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("weights", "convert", "m.safetensors")
    assert proc.returncode == 2 and "already a .safetensors" in proc.stderr


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", "truncated or corrupt file: 3,000,000 bytes"),
        ("empty", "empty"),
        ("text", "not a PyTorch"),
    ],
)
def test_damaged_pt_files(tmp_path: Path, yolo_weights: Path, name: str, reason: str) -> None:
    """A damaged .pt is named as such (with its size) before Ultralytics sees it."""
    from densecnn.errors import UsageError
    from densecnn.tasks.detect.yolo import load_yolo_module

    path = tmp_path / f"{name}.pt"
    data = {"truncated": yolo_weights.read_bytes()[:3_000_000], "empty": b"", "text": b"hello\n"}[name]
    path.write_bytes(data)
    with pytest.raises(UsageError, match=reason):
        load_yolo_module(path, user_named=True)
