"""Faults around a run (issue 13): an output folder that cannot be written, a full disk, kill -9
then --resume, SIGTERM, two runs into one folder.

Policy: an unwritable --out is one line naming the folder and the reason, exit 2, before any model
loads; what a run wrote before it died stays valid, and --resume finishes with every input done
once (no duplicate, no missing row).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, CliRunner

IMAGE = ROOT / "samples" / "coffee.jpg"


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (skips where this user cannot mount)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join(("size=1m", *options))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("where", ["proc", "through-file", "read-only"])
def test_unwritable_out(run_cli: CliRunner, tmp_path: Path, where: str) -> None:
    with contextlib.ExitStack() as stack:
        if where == "proc":
            out, folder = "/proc/nope", "/proc"
        elif where == "through-file":
            (tmp_path / "a-file").write_text("x")
            out, folder = str(tmp_path / "a-file" / "runs"), str(tmp_path / "a-file")
        else:
            ro = stack.enter_context(tmpfs(tmp_path / "ro", "ro"))
            out, folder = str(ro / "runs"), str(ro)
        proc = run_cli("detect", str(IMAGE), "--out", out)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and folder in lines[0] and out in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "embedded model" not in proc.stderr  # no model loaded
    assert not proc.stdout.strip()


def test_unwritable_project_train_eval(run_cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    bad = str(tmp_path / "a-file" / "runs")
    weights = ROOT / "weights" / "person-yolov8n.safetensors"
    for args in (
        ["train", "classify", "--data", str(tmp_path), "--project", bad],
        ["eval", "detect", "--weights", str(weights), "--data", str(tmp_path), "--project", bad],
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert "a-file is not a folder" in proc.stderr and "Traceback" not in proc.stderr


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _images(folder: Path, n: int, size: tuple[int, int] = (96, 64)) -> Path:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"im{i:02d}.jpg"), img)
    return folder


def _env() -> dict[str, str]:
    import os
    import sys

    env = {**os.environ, "DENSECNN_OFFLINE": "1", "COLUMNS": "120"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["_PY"] = sys.executable
    return env


def _popen(*args: str, cwd: Path) -> subprocess.Popen[str]:
    import sys

    env = _env()
    env["DENSECNN_WEIGHTS_DIR"] = str(cwd / "_weights")
    return subprocess.Popen(
        [sys.executable, "-m", "densecnn", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(pred, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_disk_full(run_cli: CliRunner, tmp_path: Path) -> None:
    import cv2

    src = _images(tmp_path / "in", 8, size=(640, 480))  # ~250 KB each as noise JPEGs
    with tmpfs(tmp_path / "full") as full:
        proc = run_cli("detect", str(src), "--out", str(full))
        assert proc.returncode == 4, proc.stderr
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        run = full / "predict"
        rows = _rows(run / "predictions.jsonl")  # every line complete
        assert 0 < len(rows) < 8 and len({r["source"] for r in rows}) == len(rows)
        for image in run.glob("*.jpg"):  # what was written is whole
            assert cv2.imread(str(image)) is not None
        assert not list(run.glob(".*.tmp"))  # no temp file left behind


def test_two_runs_started_together_get_their_own_folders(tmp_path: Path) -> None:
    src = _images(tmp_path / "in", 3)
    procs = [_popen("detect", str(src), "--out", "o", "-q", cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = sorted(out.strip().splitlines()[-1] for out, _ in outs)
    assert folders == ["o/predict", "o/predict2"]
    for folder in folders:
        assert len(_rows(tmp_path / folder / "predictions.jsonl")) == 3


def test_second_writer_into_a_busy_folder_is_refused(run_cli: CliRunner, tmp_path: Path) -> None:
    import fcntl

    src = _images(tmp_path / "in", 1)
    run = tmp_path / "o" / "predict"
    run.mkdir(parents=True)
    with (run / ".densecnn.lock").open("a+") as lock:  # as a running densecnn holds it
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        lock.write("4242")
        lock.flush()
        proc = run_cli("detect", str(src), "--out", "o", "--exist-ok")
        assert proc.returncode == 2 and "in use by another densecnn run (pid 4242)" in proc.stderr
        proc = run_cli("segment", str(src), "--out", "o", "--name", "predict", "--resume")
        assert proc.returncode == 2 and "in use" in proc.stderr
    proc = run_cli("detect", str(src), "--out", "o", "--exist-ok")  # released: fine
    assert proc.returncode == 0, proc.stderr


def test_sigterm_finalizes_video(tmp_path: Path) -> None:
    import signal

    import av
    from conftest import write_video

    video = write_video(tmp_path / "v.mp4", frames=200, width=160, height=120)
    proc = _popen("detect", str(video), "--out", "o", cwd=tmp_path)
    rows = tmp_path / "o" / "predict" / "predictions.jsonl"
    assert _wait_for(lambda: rows.is_file() and rows.read_text().count("\n") >= 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    summary = json.loads((tmp_path / "o" / "predict" / "summary.json").read_text())
    assert summary["interrupted"] and 0 < summary["frames"] < 200
    assert len(_rows(rows)) == summary["frames"]
    with av.open(str(tmp_path / "o" / "predict" / "v.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == summary["frames"]


def _check_segment_run(run: Path, sources: list[str], *, overlays: bool = True) -> None:
    import cv2

    rows = _rows(run / "predictions.jsonl")
    assert sorted(r["source"] for r in rows) == sorted(sources)  # no duplicate, no missing row
    for s in sources:
        assert cv2.imread(str(run / "masks" / f"{s}.png"), cv2.IMREAD_UNCHANGED) is not None
        if overlays:
            assert cv2.imread(str(run / s)) is not None
    summary = json.loads((run / "summary.json").read_text())
    assert summary["inputs"] == len(sources) and summary["frames"] == len(sources)


def test_segment_resume_redoes_an_image_without_overlay(run_cli: CliRunner, tmp_path: Path) -> None:
    """kill -9 between an image's mask and its overlay: --resume redoes it (it is not done), keeps
    one row per image, and summary.json describes the whole run."""
    src = _images(tmp_path / "in", 4)
    assert run_cli("segment", str(src), "--out", "o").returncode == 0
    run = tmp_path / "o" / "predict"
    full = json.loads((run / "summary.json").read_text())
    (run / "im02.jpg").unlink()  # the overlay the kill prevented
    (run / "summary.json").unlink()
    with (run / "predictions.jsonl").open("a") as fh:
        fh.write('{"source":"im03.jpg","fra')  # and a torn last line
    proc = run_cli("segment", str(src), "--out", "o", "--resume")
    assert proc.returncode == 0, proc.stderr
    _check_segment_run(run, [f"im{i:02d}.jpg" for i in range(4)])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_done"] == 3
    assert summary["class_counts"] == full["class_counts"]


@pytest.mark.parametrize("after", [1, 3])
def test_segment_kill9_then_resume(run_cli: CliRunner, tmp_path: Path, after: int) -> None:
    import signal

    src = _images(tmp_path / "in", 6)
    proc = _popen("segment", str(src), "--out", "o", cwd=tmp_path)
    masks = tmp_path / "o" / "predict" / "masks"
    assert _wait_for(lambda: masks.is_dir() and len(list(masks.glob("*.png"))) >= after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    proc2 = run_cli("segment", str(src), "--out", "o", "--resume")
    assert proc2.returncode == 0, proc2.stderr
    _check_segment_run(tmp_path / "o" / "predict", [f"im{i:02d}.jpg" for i in range(6)])


def test_detect_kill9_leaves_valid_outputs(tmp_path: Path) -> None:
    import signal

    import cv2

    from densecnn.sinks.jsonl import read_jsonl

    src = _images(tmp_path / "in", 12)
    proc = _popen("detect", str(src), "--out", "o", cwd=tmp_path)
    rows = tmp_path / "o" / "predict" / "predictions.jsonl"
    assert _wait_for(lambda: rows.is_file() and rows.read_text().count("\n") >= 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    records = read_jsonl(rows)  # a torn last line is dropped, every other line parses
    assert len({r["source"] for r in records}) == len(records) >= 2
    for image in (tmp_path / "o" / "predict").glob("*.jpg"):
        assert cv2.imread(str(image)) is not None


def test_piped_output_never_wraps(run_cli: CliRunner, tmp_path: Path) -> None:
    """Messages for machines and logs do not depend on the terminal width: a long run folder path
    stays whole on its line even with COLUMNS=40 (stdout is a pipe here)."""
    out = tmp_path / ("deep-" * 12) / "runs"
    src = _images(tmp_path / "in", 1)
    proc = run_cli("detect", str(src), "--out", str(out), env={"COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    (header,) = [line for line in proc.stdout.splitlines() if line.startswith("densecnn detect")]
    assert header.endswith(str(out / "predict"))


@pytest.fixture(scope="module")
def cls_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _factories import make_yolo_cls_checkpoint

    return make_yolo_cls_checkpoint(tmp_path_factory.mktemp("w") / "tiny-cls.pt", imgsz=64)


def _media(folder: Path) -> list[tuple[str, int]]:
    """6 images and a 40-frame video: (source, frame) of every row a complete run writes."""
    from conftest import write_video

    _images(folder, 6)
    write_video(folder / "clip.mp4", frames=40, width=96, height=64)
    return sorted([(f"im{i:02d}.jpg", 0) for i in range(6)] + [("clip.mp4", i) for i in range(40)])


@pytest.mark.parametrize(("task", "rows_before_kill"), [("detect", 2), ("detect", 12), ("classify", 9)])
def test_kill9_then_resume_detect_classify(
    run_cli: CliRunner, tmp_path: Path, cls_weights: Path, task: str, rows_before_kill: int
) -> None:
    """kill -9 at some row (in the images, or inside the video), then --resume: every frame has
    exactly one row, the outputs decode, and summary.json describes the whole run."""
    import signal

    import av

    expected = _media(tmp_path / "in")
    extra = ["--weights", str(cls_weights)] if task == "classify" else []
    proc = _popen(task, "in", "--out", "o", *extra, cwd=tmp_path)
    rows = tmp_path / "o" / "predict" / "predictions.jsonl"
    assert _wait_for(lambda: rows.is_file() and rows.read_text().count("\n") >= rows_before_kill)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (tmp_path / "o" / "predict" / "summary.json").exists()  # killed before the end
    again = run_cli(task, "in", "--out", "o", *extra, "--resume")
    assert again.returncode == 0, again.stderr
    run = tmp_path / "o" / "predict"
    got = sorted((r["source"], r["frame"]) for r in _rows(rows))
    assert got == expected
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["inputs"], summary["frames"]) == (7, len(expected))
    with av.open(str(run / "clip.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 40
    if task == "detect":
        coco = json.loads((run / "predictions.coco.json").read_text())
        assert sorted(i["file_name"] for i in coco["images"]) == [f"im{i:02d}.jpg" for i in range(6)]
    else:
        import csv

        with (run / "predictions.csv").open() as fh:
            table = list(csv.DictReader(fh))
        assert sorted((r["source"], int(r["frame"])) for r in table) == expected


def test_instance_segment_resume_keeps_coco_whole(run_cli: CliRunner, tmp_path: Path) -> None:
    """An instance model's predictions.coco.json after --resume holds the finished images of both
    runs (rebuilt from their kept rows) and loads in pycocotools."""
    from _factories import make_yolo_seg_checkpoint
    from pycocotools.coco import COCO

    weights = make_yolo_seg_checkpoint(tmp_path / "seg.pt", images=[IMAGE], imgsz=160)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        (src / f"p{i}.jpg").write_bytes(IMAGE.read_bytes())
    args = ("segment", "in", "--weights", str(weights), "--imgsz", "160", "--out", "o")
    assert run_cli(*args).returncode == 0
    run = tmp_path / "o" / "predict"
    whole = json.loads((run / "predictions.coco.json").read_text())
    (run / "p1.jpg").unlink()  # killed before this overlay and before the COCO file was written
    (run / "predictions.coco.json").unlink()
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    coco = COCO(str(run / "predictions.coco.json"))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert len(coco.dataset["annotations"]) == len(whole["annotations"]) > 0
    rows = _rows(run / "predictions.jsonl")
    assert sum(len(r["instances"]) for r in rows) == len(whole["annotations"])
