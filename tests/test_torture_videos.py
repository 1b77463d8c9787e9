"""Hostile and unusual video files (issue 13), decoded in-process, plus one CLI run.

Policy (densecnn/sources/video.py): a video that cannot be opened, has no video stream or no
decodable frame is a failed input with its reason; a truncated one keeps the frames before the cut
and fails after them; a damaged packet is skipped (frames before and after it are processed, the
input is reported failed); rotation metadata is applied; timestamps come from pts.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import CliRunner
from test_sources import pts_seconds, write_video

from densecnn.results import Frame
from densecnn.sources import open_source
from densecnn.sources.base import InputFailure


def _run(path: Path) -> tuple[list[Frame], list[InputFailure]]:
    frames: list[Frame] = []
    failures: list[InputFailure] = []
    for event in open_source(path).events():
        if isinstance(event, Frame):
            frames.append(event)
        elif isinstance(event, InputFailure):
            failures.append(event)
    return frames, failures


@pytest.fixture(scope="module")
def faststart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 frames, 96x64, index (moov) before the data, a keyframe every 10 frames."""
    path = tmp_path_factory.mktemp("v") / "fs.mp4"
    return write_video(path, frames=50, size=(96, 64), options={"movflags": "faststart"})


def test_moov_at_end_truncated(tmp_path: Path) -> None:
    data = write_video(tmp_path / "v.mp4", frames=30).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    frames, (failure,) = _run(tmp_path / "cut.mp4")
    assert not frames and "cannot open video" in failure.error and "truncated" in failure.error


def test_moov_at_front_truncated(tmp_path: Path, faststart: Path) -> None:
    data = faststart.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    frames, (failure,) = _run(tmp_path / "cut.mp4")
    assert 0 < len(frames) < 50 and [f.index for f in frames] == list(range(len(frames)))
    assert failure.frame == len(frames)


def test_zero_decodable_frames(tmp_path: Path, faststart: Path) -> None:
    data = faststart.read_bytes()
    mdat = data.find(b"mdat") + 4
    (tmp_path / "empty.mp4").write_bytes(data[: mdat + 16])  # index, but no frame data
    frames, (failure,) = _run(tmp_path / "empty.mp4")
    assert not frames and failure.frame == 0


def test_audio_only(tmp_path: Path) -> None:
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames, (failure,) = _run(path)
    assert not frames and failure.error == "no video stream in file"


def _damaged(tmp_path: Path, faststart: Path) -> Path:
    data = bytearray(faststart.read_bytes())
    mdat = data.find(b"mdat") + 4
    at = mdat + (len(data) - mdat) // 2
    data[at : at + 1500] = np.random.default_rng(0).integers(0, 255, 1500, dtype=np.uint8).tobytes()
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    return tmp_path / "damaged.mp4"


def test_damaged_packets_mid_stream(tmp_path: Path, faststart: Path) -> None:
    frames, (failure,) = _run(_damaged(tmp_path, faststart))
    assert failure.frame is not None and 0 < failure.frame < 50
    after = [f for f in frames if f.index >= failure.frame]
    assert len(frames) > failure.frame and after, "frames after the damage were not processed"
    assert "damaged packet" in failure.error


def test_variable_frame_rate_timestamps(tmp_path: Path) -> None:
    path = write_video(tmp_path / "vfr.mp4", pts=[0, 40, 200, 240, 1000, 1040])
    frames, failures = _run(path)
    assert not failures
    assert [round(f.timestamp, 3) for f in frames] == [round(t, 3) for t in pts_seconds(path)]
    assert [round(f.timestamp, 3) for f in frames] == [0.0, 0.04, 0.2, 0.24, 1.0, 1.04]


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotation_metadata(tmp_path: Path, rotate: int) -> None:
    """Frames come upright, as OpenCV's VideoCapture shows them."""
    import cv2

    src = write_video(tmp_path / "v.mp4", frames=3, size=(96, 64))
    path = tmp_path / f"rot{rotate}.mp4"
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-c", "copy"]
    try:
        subprocess.run([*cmd, "-metadata:s:v:0", f"rotate={rotate}", str(path)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"ffmpeg cannot write rotation metadata here: {exc}")
    frames, failures = _run(path)
    assert not failures and len(frames) == 3
    ok, shown = cv2.VideoCapture(str(path)).read()
    assert ok and frames[0].image.shape == shown.shape
    assert np.abs(frames[0].image.astype(int) - shown.astype(int)).mean() < 3


def test_cli_damaged_video_outputs_stay_valid(run_cli: CliRunner, tmp_path: Path, faststart: Path) -> None:
    damaged = _damaged(tmp_path, faststart)
    proc = run_cli("detect", str(damaged), "--out", "o")
    assert proc.returncode == 1, proc.stderr
    run = tmp_path / "o" / "predict"
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    (err,) = [json.loads(x) for x in (run / "errors.jsonl").read_text().splitlines()]
    assert len(rows) > err["frame"] and rows[-1]["frame"] > err["frame"]
    with av.open(str(run / "damaged.mp4")) as container:
        stream = container.streams.video[0]
        stamps = [round(float(f.pts * f.time_base), 6) for f in container.decode(stream)]
        assert stream.guessed_rate == Fraction(25)
    # one output frame per row, at the source's time: the lost frame leaves a gap, not a shift
    assert stamps == [row["timestamp"] for row in rows]
    assert any(round(b - a, 6) == 0.08 for a, b in itertools.pairwise(stamps))
