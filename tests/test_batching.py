"""Batching by default: the chosen batch size never changes a result, live sources stay at one frame,
and the measured choice is cached (densecnn/batching.py, Predictor.batch_key).

"Never changes a result" up to float rounding: PyTorch runs a small convolution of a single image
through another kernel than the same convolution on a batch (its oneDNN heuristic), so raw outputs
differ by ~1e-4 pixel, which can move the 5th decimal of a score written to predictions.jsonl.
Everything else (frames, detections, classes, order) must be identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from _factories import loaded
from conftest import COCO8, CliRunner, need_data, write_video

from densecnn.batching import CACHE_NAME, SHORT_RUN, choose_batch
from densecnn.config import PredictConfig


def same_predictions(a: bytes, b: bytes) -> None:
    """Two predictions.jsonl files with the same lines, detections and classes; scores within 1e-4 and
    box corners within 0.02 pixel (see the module docstring)."""
    rows_a, rows_b = [json.loads(x) for x in a.splitlines()], [json.loads(x) for x in b.splitlines()]
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        dets_a, dets_b = ra.pop("detections"), rb.pop("detections")
        assert ra == rb
        assert [d["class_name"] for d in dets_a] == [d["class_name"] for d in dets_b], ra
        for da, db in zip(dets_a, dets_b, strict=True):
            assert da["score"] == pytest.approx(db["score"], abs=1e-4)
            assert da["box"] == pytest.approx(db["box"], abs=0.02)


def _run(run_cli: CliRunner, source: Path, weights: Path, name: str, *extra: str) -> tuple[bytes, dict]:
    r = run_cli(
        "detect", str(source), "--weights", str(weights), "--imgsz", "320", "--backend", "torch",
        "--name", name, *extra,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    run = source.parent / "runs/detect" / name
    return (run / "predictions.jsonl").read_bytes(), json.loads((run / "summary.json").read_text())


def test_default_batching_changes_no_video_output(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=14, width=320, height=240)
    batched, summary = _run(run_cli, video, yolo_weights, "auto")
    assert summary["batch"] == 4 and summary["batch_from"] == "short run"  # 14 frames < SHORT_RUN
    one, summary_one = _run(run_cli, video, yolo_weights, "one", "--batch", "1")
    assert summary_one["batch"] == 1 and summary_one["batch_from"] == "--batch"
    assert batched.count(b"\n") == 14 and b'"detections":[{' in batched
    same_predictions(batched, one)


def test_default_batching_changes_no_output_on_mixed_sizes(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    """Images of several sizes in one batch: each is letterboxed on its own, as at batch 1."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    sources = sorted(need_data(COCO8).rglob("*.jpg"))[:4]
    for i, path in enumerate(sources):
        shutil.copy(path, folder / f"{i}a.jpg")
        image = cv2.imread(str(path))
        # same size as the original (shares its letterbox), a smaller one, a tall narrow one
        cv2.imwrite(str(folder / f"{i}b.png"), cv2.flip(image, 1))
        cv2.imwrite(str(folder / f"{i}c.png"), cv2.resize(image, (200, 150)))
        cv2.imwrite(str(folder / f"{i}d.png"), cv2.resize(image, (97, 301)))
    batched, summary = _run(run_cli, folder, yolo_weights, "auto", "--batch", "8")
    default, summary_default = _run(run_cli, folder, yolo_weights, "default")
    one, _ = _run(run_cli, folder, yolo_weights, "one", "--batch", "1")
    assert summary["frames"] == 16 and summary["batch"] == 8
    # no input size covers half of these images: the default does not batch them
    assert (summary_default["batch"], summary_default["batch_from"]) == (1, "images of many sizes")
    assert b'"detections":[{' in one
    same_predictions(batched, one)
    same_predictions(default, one)


def test_batch_choice_measured_once_then_cached(tmp_path: Path, yolo_weights: Path) -> None:
    predictor, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cpu", imgsz=64))
    kwargs = {"requested": None, "live": False, "cache_dir": tmp_path}
    first = choose_batch(predictor, frames=0, **kwargs)  # unknown length: measure
    assert first.origin == "measured" and first.ms_per_frame and 1 in first.ms_per_frame
    assert first.size in first.ms_per_frame
    assert all(ms > 0 for ms in first.ms_per_frame.values())
    assert predictor.timers.seconds == {}  # the measurement is not counted as the run's time
    cache = json.loads((tmp_path / CACHE_NAME).read_text())
    assert len(cache) == 1 and "imgsz=[64, 64]" in next(iter(cache))
    again = choose_batch(predictor, frames=SHORT_RUN * 10, **kwargs)
    assert (again.size, again.origin) == (first.size, "cached")
    assert choose_batch(predictor, frames=5000, live=True, requested=None, cache_dir=tmp_path).size == 1
    assert choose_batch(predictor, frames=5000, live=False, requested=3, cache_dir=tmp_path).size == 3


def test_folders_of_many_sizes_run_one_at_a_time(tmp_path: Path, yolo_weights: Path) -> None:
    """Batch 1 when no network input size covers half the sampled images; photos of one size (and
    of few sizes, one of them common) are measured as usual; fewer than 8 sizes tell nothing."""
    predictor, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cpu", imgsz=64))
    kwargs = {"requested": None, "live": False, "frames": 0, "cache_dir": tmp_path}
    many = [(640, 640), (320, 640), (640, 320)] * 3  # at imgsz 64: three letterbox sizes, a third each
    assert choose_batch(predictor, image_sizes=many, **kwargs).origin == "images of many sizes"
    common = [(640, 640)] * 10 + [(320, 640), (640, 320)]
    assert choose_batch(predictor, image_sizes=common, **kwargs).origin == "measured"
    assert choose_batch(predictor, image_sizes=many[:7], **kwargs).origin == "cached"
    given = choose_batch(predictor, image_sizes=many, **{**kwargs, "requested": 4})
    assert (given.size, given.origin) == (4, "--batch")


@pytest.mark.parametrize("frames", [1, SHORT_RUN - 1])
def test_short_runs_are_not_measured(tmp_path: Path, yolo_weights: Path, frames: int) -> None:
    predictor, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cpu", imgsz=64))
    choice = choose_batch(predictor, requested=None, live=False, frames=frames, cache_dir=tmp_path)
    assert choice.origin == "short run" and 1 <= choice.size <= frames
    assert not (tmp_path / CACHE_NAME).exists()
