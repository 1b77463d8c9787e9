"""``densecnn run``: several models over one decode; each task's outputs equal its own command's."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _factories import make_yolo_cls_checkpoint

from tests.conftest import COCO8, STREET_VIDEO, need_data, write_video


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder with a 4-frame H.264 video and a real photo."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "clip.mp4", frames=4)
    for photo in sorted(need_data(COCO8).rglob("*.jpg"))[:1]:
        shutil.copy(photo, folder / photo.name)
    return folder


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count every decoded video frame and image as the sources decode them."""
    from densecnn.sources import images, video

    counts = {"video": 0, "image": 0}
    upright, decode_image = video._upright, images.decode_image

    def counted_upright(*args: Any, **kwargs: Any) -> Any:
        counts["video"] += 1
        return upright(*args, **kwargs)

    def counted_decode(*args: Any, **kwargs: Any) -> Any:
        counts["image"] += 1
        return decode_image(*args, **kwargs)

    monkeypatch.setattr(video, "_upright", counted_upright)
    monkeypatch.setattr(images, "decode_image", counted_decode)
    return counts


def test_one_decode_and_outputs_equal_to_each_command(
    run_cli, tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    classifier = make_yolo_cls_checkpoint(tmp_path / "cls.pt", imgsz=64)
    counts = _count_decodes(monkeypatch)
    (tmp_path / "tasks.yaml").write_text(
        "detect:\n  model: person-yolov8n\n  conf: 0.05\nclassify:\n  topk: 3\n"
    )
    r = run_cli(
        "run", "in", "--tasks", "tasks.yaml", "--segment", "person-unet",
        "--classify-weights", str(classifier), "--save-crops",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert counts == {"video": 4, "image": 1}  # each frame decoded once for three models
    run = tmp_path / "runs" / "run" / "predict"
    rows = _rows(run / "predictions.jsonl")
    assert len(rows) == 5 and all(row["tasks"] == ["detect", "segment", "classify"] for row in rows)
    assert _frames(run / "clip.mp4") == 4  # one annotated video with every task
    assert len(list(run.glob("*.jpg"))) == 1  # and the annotated photo
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["tasks"]) == {"detect", "segment", "classify"} and summary["frames"] == 5

    # each task alone, on the same inputs and settings (batch 1, as `run` uses; a short run of one
    # model would batch 4 frames, whose boxes may differ in the 4th decimal)
    alone = {
        "detect": ["detect", "in", "--model", "person-yolov8n", "--conf", "0.05", "--save-crops"],
        "segment": ["segment", "in", "--model", "person-unet"],
        "classify": ["classify", "in", "--weights", str(classifier), "--topk", "3"],
    }
    for task, args in alone.items():
        no_save = "--no-save" if task != "segment" else "--no-save-overlay"
        r = run_cli(*args, "--name", "alone", "--batch", "1", no_save)
        assert r.returncode == 0, r.stderr
        own = tmp_path / "runs" / task / "alone"
        assert _rows(run / task / "predictions.jsonl") == _rows(own / "predictions.jsonl"), task
        for i, row in enumerate(_rows(own / "predictions.jsonl")):
            for key in ("detections", "segments", "instances", "classes"):
                if key in row:
                    assert rows[i][key] == row[key], (task, key)
    for name in ("predictions.coco.json",):
        assert json.loads((run / "detect" / name).read_text()) == json.loads(
            (tmp_path / "runs" / "detect" / "alone" / name).read_text()
        )
    masks = sorted(p.relative_to(run / "segment") for p in (run / "segment" / "masks").rglob("*.png"))
    assert len(masks) == 5
    for rel in masks:
        ours = cv2.imread(str(run / "segment" / rel), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(tmp_path / "runs" / "segment" / "alone" / rel), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(ours, theirs), rel
    crops = sorted(p.relative_to(run / "detect") for p in (run / "detect" / "crops").rglob("*.jpg"))
    assert crops == sorted(
        p.relative_to(tmp_path / "runs" / "detect" / "alone")
        for p in (tmp_path / "runs" / "detect" / "alone" / "crops").rglob("*.jpg")
    )
    assert (run / "classify" / "predictions.csv").read_text() == (
        tmp_path / "runs" / "classify" / "alone" / "predictions.csv"
    ).read_text()


def _street_clip(path: Path, first: int, frames: int) -> Path:
    """Frames ``first..`` of the real street video, where several people walk, as their own file."""
    import av

    with av.open(str(need_data(STREET_VIDEO))) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i >= first + frames:
                break
            if i >= first:
                dst.mux(
                    stream.encode(
                        av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
                    )
                )
        dst.mux(stream.encode())
    return path


def test_track_composes_with_run(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--track tracks the detect task exactly as `densecnn track` does: same ids, boxes and counts
    (the embedded person detector on 10 street frames, with a classifier alongside)."""
    import yaml
    from ultralytics.utils import ROOT as ULTRALYTICS

    _street_clip(tmp_path / "street.mp4", 385, 10)
    settings = yaml.safe_load((ULTRALYTICS / "cfg" / "trackers" / "bytetrack.yaml").read_text())
    low = {"track_high_thresh": 0.15, "track_low_thresh": 0.1, "new_track_thresh": 0.15, "fuse_score": False}
    (tmp_path / "low.yaml").write_text(yaml.safe_dump({**settings, **low}))
    (tmp_path / "tasks.yaml").write_text("detect:\n  model: person-yolov8n\n  conf: 0.1\n  imgsz: 640\n")
    common = ["--tracker", "low.yaml", "--line", "mid=320,0,320,360", "--no-save"]
    r = run_cli("run", "street.mp4", "--tasks", "tasks.yaml", "--track", *common)
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "track", "street.mp4", "--model", "person-yolov8n", "--conf", "0.1", "--imgsz", "640", *common
    )
    assert r.returncode == 0, r.stderr
    ours = _rows(tmp_path / "runs" / "run" / "predict" / "predictions.jsonl")
    theirs = _rows(tmp_path / "runs" / "track" / "predict" / "predictions.jsonl")
    assert len(ours) == len(theirs) == 10
    assert sum("track_id" in d for row in theirs for d in row["detections"]) >= 5  # people were tracked
    for a, b in zip(ours, theirs, strict=True):
        assert a["detections"] == b["detections"] and a["counts"] == b["counts"]
    detect_rows = _rows(tmp_path / "runs" / "run" / "predict" / "detect" / "predictions.jsonl")
    assert [row["detections"] for row in detect_rows] == [row["detections"] for row in theirs]
    summary = json.loads((tmp_path / "runs" / "run" / "predict" / "summary.json").read_text())
    tracked = json.loads((tmp_path / "runs" / "track" / "predict" / "summary.json").read_text())
    assert summary["counts"] == tracked["counts"] and summary["tracks"] == tracked["tracks"]


def test_run_needs_a_task(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    r = run_cli("run", "a.png")
    assert r.returncode == 2 and "at least one task" in r.stderr
    (tmp_path / "t.yaml").write_text("detect:\n  confidence: 0.3\n")
    r = run_cli("run", "a.png", "--tasks", "t.yaml")
    assert r.returncode == 2 and "unknown key 'confidence'" in r.stderr
