"""``densecnn detect`` on real files (in-process; Ctrl-C in a real process), outputs opened and checked."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import pytest
from conftest import COCO8, DATA, STREET_VIDEO, CliRunner, need_data, write_video

from densecnn.sinks.jsonl import read_jsonl

FRAME_KEYS = {"source", "frame", "timestamp", "width", "height", "detections"}
DET_KEYS = {"class_id", "class_name", "score", "box"}


def probe(path: Path) -> tuple[str, int, float, int, int]:
    """(codec, decoded frame count, fps, width, height) of a video, by decoding every frame."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return s.codec_context.name, n, float(s.average_rate), s.width, s.height


def check_jsonl(path: Path, n: int) -> list[dict]:
    rows = read_jsonl(path)
    assert len(rows) == n
    for row in rows:
        assert set(row) == FRAME_KEYS
        for det in row["detections"]:
            assert set(det) == DET_KEYS
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= row["width"] and 0 <= y1 <= y2 <= row["height"]
            assert 0 <= det["score"] <= 1
    return rows


def test_video_to_h264_with_same_frames_and_fps(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=40, width=320, height=240, fps=25)
    r = run_cli("detect", str(video), "--weights", str(yolo_weights), "--imgsz", "320")
    assert r.returncode == 0, r.stderr + r.stdout
    run = tmp_path / "runs/detect/predict"
    codec, n, fps, w, h = probe(run / "clip.mp4")
    assert (codec, n, fps, w, h) == ("h264", 40, 25.0, 320, 240)
    rows = check_jsonl(run / "predictions.jsonl", 40)
    assert [r["frame"] for r in rows] == list(range(40))
    assert rows[1]["timestamp"] == pytest.approx(0.04, abs=1e-6)
    assert sum(len(r["detections"]) for r in rows) > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["frames"] == 40 and summary["inputs_failed"] == 0
    assert set(summary["stage_ms_per_frame"]) == {
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "draw",
        "encode",
    }
    assert not (run / "errors.jsonl").exists() and not (run / "predictions.coco.json").exists()
    assert "Summary" in r.stdout and "frames/s" in r.stdout


def test_street_video_with_stride(tmp_path: Path, run_cli: CliRunner, yolo_weights: Path) -> None:
    video = need_data(STREET_VIDEO)
    r = run_cli("detect", str(video), "--weights", str(yolo_weights), "--vid-stride", "10", "--imgsz", "320",
                "--conf", "0.6", "--out", "out", "--name", "street")  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = tmp_path / "out/street"
    codec, n, fps, w, h = probe(run / "slow_traffic_small.mp4")
    assert codec == "h264" and n == 92 and (w, h) == (640, 360)  # ceil(914 / 10)
    assert fps == pytest.approx(29.97 / 10, rel=1e-3)
    rows = check_jsonl(run / "predictions.jsonl", 92)
    assert [r["frame"] for r in rows[:3]] == [0, 10, 20]
    assert rows[3]["timestamp"] == pytest.approx(30 / 29.97, abs=2e-3)


def _mixed_folder(root: Path) -> tuple[list[str], list[str]]:
    """coco8 images plus bad files in nested folders. Returns (good, bad) relative paths."""
    good = []
    for p in sorted(need_data(COCO8).rglob("*.jpg"))[:4]:
        dst = root / "photos" / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
        good.append(dst.relative_to(root / "photos").as_posix())
    gray = cv2.cvtColor(cv2.imread(str(root / "photos" / good[0])), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(root / "photos/gray.png"), gray)
    good.append("gray.png")
    (root / "photos/empty.jpg").write_bytes(b"")
    data = (root / "photos" / good[1]).read_bytes()
    (root / "photos/cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "photos/notes.png").write_bytes(b"not an image at all")
    return sorted(good), ["cut.jpg", "empty.jpg", "notes.png"]


def test_folder_with_corrupt_files(tmp_path: Path, run_cli: CliRunner, yolo_weights: Path) -> None:
    from pycocotools.coco import COCO

    good, bad = _mixed_folder(tmp_path)
    r = run_cli(
        "detect", "photos", "--weights", str(yolo_weights), "--conf", "0.5", "--save-txt", "--save-crops"
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    run = tmp_path / "runs/detect/predict"
    errors = [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["source"] for e in errors) == bad
    assert all(e["error"] for e in errors)
    rows = check_jsonl(run / "predictions.jsonl", len(good))
    assert sorted(r["source"] for r in rows) == good
    for rel in good:
        annotated = cv2.imread(str(run / rel))
        original = cv2.imread(str(tmp_path / "photos" / rel))
        assert annotated.shape == (*original.shape[:2], 3)
        assert (run / "labels" / Path(rel).with_suffix(".txt")).exists()
    coco = COCO(str(run / "predictions.coco.json"))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == good
    n_dets = sum(len(r["detections"]) for r in rows)
    assert len(coco.dataset["annotations"]) == n_dets > 0
    assert sum(1 for _ in (run / "crops").rglob("*.jpg")) == n_dets
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["inputs"], summary["inputs_failed"], summary["errors"]) == (len(good) + 3, 3, 3)


def test_on_error_fail_stops_at_first_bad_input(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    _mixed_folder(tmp_path)
    r = run_cli("detect", "photos", "--weights", str(yolo_weights), "--on-error", "fail", "--no-save")
    assert r.returncode == 1
    run = tmp_path / "runs/detect/predict"
    assert len((run / "errors.jsonl").read_text().splitlines()) == 1  # cut.jpg sorts first
    assert json.loads((run / "summary.json").read_text())["stopped_on_error"] is True


def test_classes_filter_and_numbered_runs(tmp_path: Path, run_cli: CliRunner, yolo_weights: Path) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    for _ in range(2):
        r = run_cli(
            "detect", str(image), "--weights", str(yolo_weights), "--classes", "cat,person", "--classes", "61"
        )
        assert r.returncode == 0, r.stderr
    rows = check_jsonl(tmp_path / "runs/detect/predict2/predictions.jsonl", 1)
    names = {d["class_name"] for d in rows[0]["detections"]}
    assert names == {"cat", "toilet"}  # 61 is toilet; the tiny test model finds no person here
    assert (tmp_path / "runs/detect/predict/000000000036.jpg").exists()


def test_missing_weights_offline_says_what_to_do(tmp_path: Path, run_cli: CliRunner) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    r = run_cli("detect", str(image), "--model", "yolov8n")  # named: no embedded fallback
    assert r.returncode == 3
    assert "yolov8n.pt" in r.stderr and "--weights" in r.stderr and "DENSECNN_WEIGHTS_MIRROR" in r.stderr
    assert str(tmp_path / "_weights") in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["does/not/exist.jpg"], "not found: does/not/exist.jpg"),
        (["IMG", "--conf", "1.5"], "--conf"),
        (["IMG", "--model", "yolov8m"], "yolov8n"),
        (["IMG", "--device", "tpu"], "--device"),
        (["IMG", "--weights", "nope.pt"], "nope.pt"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, run_cli: CliRunner, args: list[str], needle: str) -> None:
    image = str(need_data(COCO8) / "val/000000000036.jpg")
    r = run_cli("detect", *[image if a == "IMG" else a for a in args])
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_faster_rcnn_from_the_cli(tmp_path: Path, run_cli: CliRunner, rcnn_weights: Path) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    r = run_cli("detect", str(image), "--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--weights",
                str(rcnn_weights), "--conf", "0.3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = check_jsonl(tmp_path / "runs/detect/predict/predictions.jsonl", 1)
    assert rows[0]["detections"] and (rows[0]["width"], rows[0]["height"]) == (481, 640)


def test_sigint_finalizes_video_and_summary(tmp_path: Path, yolo_weights: Path) -> None:
    """Ctrl-C mid-video: exit 130, the MP4 so far plays, summary.json is written."""
    video = need_data(STREET_VIDEO)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "densecnn",
            "detect",
            str(video),
            "--weights",
            str(yolo_weights),
            "--imgsz",
            "320",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "DENSECNN_OFFLINE": "1"},
    )
    jsonl = tmp_path / "runs/detect/predict/predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run = tmp_path / "runs/detect/predict"
    written = len(read_jsonl(run / "predictions.jsonl"))
    codec, n, _, _, _ = probe(run / "slow_traffic_small.mp4")
    assert codec == "h264" and 20 <= n == written < 914
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["frames"] == written


def test_glob_and_list_sources(tmp_path: Path, run_cli: CliRunner, yolo_weights: Path) -> None:
    images = sorted(need_data(COCO8).rglob("*.jpg"))[:3]
    (tmp_path / "list.txt").write_text("\n".join(str(p) for p in images) + "\n")
    r = run_cli("detect", "list.txt", "--weights", str(yolo_weights), "--no-save", "--name", "fromlist")
    assert r.returncode == 0, r.stderr
    check_jsonl(tmp_path / "runs/detect/fromlist/predictions.jsonl", 3)
    r = run_cli("detect", str(DATA / "coco8/images/val/*.jpg"), "--weights", str(yolo_weights), "--no-save",
                "--batch", "4", "--name", "fromglob")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = check_jsonl(tmp_path / "runs/detect/fromglob/predictions.jsonl", 4)
    assert [r["source"] for r in rows] == sorted(r["source"] for r in rows)
    assert not any(p.suffix == ".jpg" for p in (tmp_path / "runs/detect/fromglob").iterdir())
