"""Live sources end to end: real RTSP and HTTP streams served on loopback, real CLI runs.

The webcam path shares the capture thread (reconnect, stall, hand-off, counters) exercised here;
only its OpenCV open/read backend is not run (no camera on CI). Every CLI run here is a real process
(``run_cli_process``, ``start_cli``): capture threads, FFmpeg's network timeouts, wall-clock limits
and signals are what these tests are about.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from _live import RtspServer, TsServer, free_port, jsonl_lines, need_rtsp, need_tool, summary, wait_for
from conftest import STREET_VIDEO, need_data, write_video

from densecnn.sinks.jsonl import read_jsonl

RUN = Path("runs/detect/predict")
FAST = ("--imgsz", "128", "--device", "cpu")


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    need_rtsp()
    server = RtspServer(free_port()).start()
    yield server
    server.stop()


def start_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m densecnn ARGS`` in the background (for signals and server restarts mid-run)."""
    full_env = {**os.environ, "DENSECNN_OFFLINE": "1", "COLUMNS": "120", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "densecnn", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


def test_rtsp_stream_writes_jsonl_recording_and_live_summary(
    run_cli_process, tmp_path, yolo_weights, rtsp
) -> None:
    res = run_cli_process(
        "detect", rtsp.url, "-w", str(yolo_weights), *FAST, "--max-frames", "12", timeout=180
    )
    assert res.returncode == 0, res.stderr
    out = tmp_path / RUN
    s = summary(out)
    assert s["frames"] == 12 and s["stopped_by"] == "max-frames"
    assert s["stream_mode"] == "latest" and s["reconnects"] == 0
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p95"] <= s["latency_ms"]["max"]
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) == 12
    assert {r["source"] for r in records} == {f"rtsp_127_0_0_1_{rtsp.url.split(':')[2].split('/')[0]}_test"}
    assert all(0 < r["latency_ms"] < 60_000 for r in records)
    captured = [r["captured_at"] for r in records]
    assert captured == sorted(captured) and abs(captured[0] - time.time()) < 120
    assert [r["frame"] for r in records] == sorted(r["frame"] for r in records)
    assert (records[0]["width"], records[0]["height"]) == (320, 240)
    recording = out / f"{records[0]['source']}.mp4"
    assert decoded_frames(recording) == 12
    assert "Stream mode" in res.stdout and "Latency" in res.stdout and "p95" in res.stdout


def test_server_restart_mid_run_reconnects_once_and_keeps_writing(tmp_path, yolo_weights, rtsp) -> None:
    proc = start_cli(tmp_path, "detect", rtsp.url, "-w", str(yolo_weights), *FAST, "--max-frames", "40")
    jsonl = tmp_path / RUN / "predictions.jsonl"
    try:
        wait_for(lambda: jsonl_lines(jsonl) >= 8, 120, "8 frames before the outage")
        rtsp.stop()
        time.sleep(1.5)  # the run sees the stream end and starts backing off
        before = jsonl_lines(jsonl)
        rtsp.start()
        _out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    s = summary(tmp_path / RUN)
    assert s["reconnects"] == 1 and s["frames"] == 40 and s["errors"] == 0
    records = read_jsonl(jsonl)
    assert len(records) == 40 and before < 40
    gaps = [b["captured_at"] - a["captured_at"] for a, b in itertools.pairwise(records)]
    assert max(gaps) > 1.0  # the outage shows in the capture times...
    assert [r["frame"] for r in records] == sorted({r["frame"] for r in records})  # ...indices run on
    times = frame_times(tmp_path / RUN / f"{records[0]['source']}.mp4")
    assert len(times) == 40  # one recording, on across the gap, in real time (the gap is held)
    assert abs((times[-1] - times[0]) - (records[-1]["captured_at"] - records[0]["captured_at"])) < 0.1


def test_stalled_stream_is_detected_by_the_stall_timeout_and_reopened(tmp_path, yolo_weights, rtsp) -> None:
    args = ("-w", str(yolo_weights), *FAST, "--max-frames", "30", "--stall-timeout", "1")
    proc = start_cli(tmp_path, "detect", rtsp.url, *args)
    jsonl = tmp_path / RUN / "predictions.jsonl"
    try:
        wait_for(lambda: jsonl_lines(jsonl) >= 5, 120, "5 frames before the stall")
        rtsp.pause(True)  # the socket stays open, nothing arrives: only the watchdog can tell
        time.sleep(4)
        rtsp.pause(False)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    s = summary(tmp_path / RUN)
    assert (s["reconnects"], s["frames"], s["errors"]) == (1, 30, 0)
    records = read_jsonl(jsonl)
    gaps = [b["captured_at"] - a["captured_at"] for a, b in itertools.pairwise(records)]
    assert max(gaps) > 3.0


def test_stream_lost_for_good_fails_after_the_reconnect_budget(tmp_path, yolo_weights, rtsp) -> None:
    proc = start_cli(tmp_path, "detect", rtsp.url, "-w", str(yolo_weights), *FAST, "--reconnect", "1")
    jsonl = tmp_path / RUN / "predictions.jsonl"
    try:
        wait_for(lambda: jsonl_lines(jsonl) >= 3, 120, "3 frames")
        rtsp.stop()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    s = summary(tmp_path / RUN)
    assert s["inputs_failed"] == 1 and s["frames"] >= 3
    errors = read_jsonl(tmp_path / RUN / "errors.jsonl")
    assert "stream lost after 1 reconnect attempts" in errors[0]["error"]


def test_unreachable_stream_fails_fast_with_the_reason(run_cli_process, tmp_path, yolo_weights) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    t0 = time.monotonic()
    res = run_cli_process("detect", url, "-w", str(yolo_weights), *FAST, timeout=120)
    assert res.returncode == 1
    errors = read_jsonl(tmp_path / RUN / "errors.jsonl")
    assert errors[0]["error"].startswith(f"cannot open {url}")
    assert time.monotonic() - t0 < 60  # no backoff before the first connection


def test_webcam_index_without_a_camera_fails_fast(run_cli_process, tmp_path, yolo_weights) -> None:
    """The webcam backend's open path (no camera here): the same capture thread reports it."""
    index = next(str(i) for i in range(10) if not Path(f"/dev/video{i}").exists())
    res = run_cli_process("detect", index, "-w", str(yolo_weights), *FAST, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "1 live stream, latest mode" in res.stdout
    errors = read_jsonl(tmp_path / RUN / "errors.jsonl")
    assert errors[0]["source"] == f"webcam{index}"
    assert errors[0]["error"] == f"cannot open {index}: no camera at index {index} (or it is busy)"


def test_duration_ends_a_run_whose_stream_never_answers(run_cli_process, tmp_path, yolo_weights) -> None:
    with socket.socket() as silent:  # accepts the connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/cam.mjpg"
        t0 = time.monotonic()
        res = run_cli_process("detect", url, "-w", str(yolo_weights), *FAST, "--duration", "2", timeout=120)
        elapsed = time.monotonic() - t0
    # the run ends on time; the stream that gave nothing is a failed input, not a silent success
    assert res.returncode == 1, res.stderr
    s = summary(tmp_path / RUN)
    assert (s["frames"], s["stopped_by"], s["inputs_failed"]) == (0, "duration", 1)
    assert "no frame from" in read_jsonl(tmp_path / RUN / "errors.jsonl")[0]["error"]
    assert elapsed < 60  # not the 10 s open timeout times the reconnects


def test_latest_mode_drops_frames_of_a_fast_stream_and_bounds_latency(
    run_cli_process, tmp_path, yolo_weights
) -> None:
    need_tool("ffmpeg")
    server = TsServer(free_port(), need_data(STREET_VIDEO), rate=8).start()  # ~240 frames/s
    try:
        args = ("-w", str(yolo_weights), "--imgsz", "320", "--device", "cpu", "--max-frames", "15")
        res = run_cli_process("detect", server.url, *args, timeout=180)
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr
    s = summary(tmp_path / RUN)
    assert s["stream_mode"] == "latest" and s["frames"] == 15
    assert s["dropped_frames"] > 15  # the model saw the newest frames only
    per_frame = sum(s["stage_ms_per_frame"][k] for k in ("preprocess", "inference", "postprocess", "encode"))
    # newest-frame-wins: a frame waits at most one model step, never a growing queue
    assert s["latency_ms"]["p95"] < 3 * per_frame + 300, (s["latency_ms"], per_frame)
    indices = [r["frame"] for r in read_jsonl(tmp_path / RUN / "predictions.jsonl")]
    assert indices[-1] - indices[0] > 15  # frames were skipped between those processed


def test_all_mode_on_a_file_processes_every_frame(run_cli_process, tmp_path, yolo_weights) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=30)
    res = run_cli_process("detect", str(video), "-w", str(yolo_weights), *FAST, timeout=180)
    assert res.returncode == 0, res.stderr
    s = summary(tmp_path / RUN)
    assert (s["stream_mode"], s["frames"], s["dropped_frames"], s["latency_ms"]) == ("all", 30, 0, None)
    assert [r["frame"] for r in read_jsonl(tmp_path / RUN / "predictions.jsonl")] == list(range(30))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_live_run_flushes_outputs_exit_130(tmp_path, yolo_weights, rtsp, sig) -> None:
    proc = start_cli(tmp_path, "detect", rtsp.url, "-w", str(yolo_weights), *FAST)
    jsonl = tmp_path / RUN / "predictions.jsonl"
    try:
        wait_for(lambda: jsonl_lines(jsonl) >= 5, 120, "5 frames")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    s = summary(tmp_path / RUN)
    assert s["interrupted"] and s["frames"] >= 5
    records = read_jsonl(jsonl)
    assert len(records) == s["frames"]
    assert decoded_frames(tmp_path / RUN / f"{records[0]['source']}.mp4") == s["frames"]
    assert "Latency" in out


def test_streams_file_runs_several_streams_together(run_cli_process, tmp_path, yolo_weights, rtsp) -> None:
    need_tool("ffmpeg")
    ts = TsServer(free_port(), need_data(STREET_VIDEO)).start()
    (tmp_path / "cams.streams").write_text(f"# two cameras\n{rtsp.url}\n{ts.url}  # street\n")
    try:
        res = run_cli_process(
            "detect", "cams.streams", "-w", str(yolo_weights), *FAST, "--duration", "6", timeout=180
        )
    finally:
        ts.stop()
    assert res.returncode == 0, res.stderr
    s = summary(tmp_path / RUN)
    assert s["inputs"] == 2 and s["stopped_by"] == "duration"
    by_source: dict[str, int] = {}
    for r in read_jsonl(tmp_path / RUN / "predictions.jsonl"):
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    assert len(by_source) == 2 and min(by_source.values()) >= 2, by_source
    assert {p.name for p in (tmp_path / RUN).glob("*.mp4")} == {f"{name}.mp4" for name in by_source}


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private Xvfb server; yields its DISPLAY (e.g. ``:3``)."""
    proc = subprocess.Popen(
        [need_tool("Xvfb"), "-displayfd", "1", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    display = f":{proc.stdout.readline().strip()}"
    yield display
    proc.terminate()
    proc.wait(timeout=10)


def test_show_opens_a_real_window_under_xvfb(tmp_path, yolo_weights, xvfb) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=8)
    args = ("detect", str(video), "-w", str(yolo_weights), *FAST, "--show", "--require-display")
    proc = start_cli(tmp_path, *args, env={"DISPLAY": xvfb})
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "--show:" not in err
    display = summary(tmp_path / RUN)["display"]
    assert display["requested"] and 1 <= display["shown_frames"] <= 8  # the newest frame is shown


def test_q_in_the_window_ends_a_live_run_cleanly(tmp_path, yolo_weights, rtsp, xvfb) -> None:
    xdotool = need_tool("xdotool")
    env = {**os.environ, "DISPLAY": xvfb}
    proc = start_cli(tmp_path, "detect", rtsp.url, "-w", str(yolo_weights), *FAST, "--show", env=env)

    def window() -> str:
        found = subprocess.run(
            [xdotool, "search", "--name", "densecnn: "], env=env, capture_output=True, text=True
        )
        return found.stdout.split()[0] if found.stdout.split() else ""

    try:
        wait_for(lambda: bool(window()), 120, "the densecnn window")
        wait_for(lambda: jsonl_lines(tmp_path / RUN / "predictions.jsonl") >= 5, 120, "5 frames")
        subprocess.run([xdotool, "windowfocus", "--sync", window()], env=env, check=True, timeout=30)
        subprocess.run([xdotool, "key", "q"], env=env, check=True, timeout=30)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    s = summary(tmp_path / RUN)
    assert s["stopped_by"] == "user" and s["display"]["shown_frames"] >= 1 and not s["interrupted"]
    records = read_jsonl(tmp_path / RUN / "predictions.jsonl")
    assert decoded_frames(tmp_path / RUN / f"{records[0]['source']}.mp4") == s["frames"] == len(records)


def test_show_without_display_gives_one_notice_and_goes_on(run_cli_process, tmp_path, yolo_weights) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=4)
    res = run_cli_process(
        "detect", str(video), "-w", str(yolo_weights), *FAST, "--show", env={"DISPLAY": ""}, timeout=180
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("--show:") == 1 and "no display" in res.stderr
    s = summary(tmp_path / RUN)
    assert s["frames"] == 4 and s["display"] == {"requested": True, "shown_frames": 0}
    strict = run_cli_process(
        "detect", str(video), "-w", str(yolo_weights), "--show", "--require-display", env={"DISPLAY": ""}
    )
    assert strict.returncode == 2 and "no display" in strict.stderr


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_classify_and_segment_take_live_streams_too(run_cli_process, tmp_path, rtsp, task) -> None:
    from _factories import make_segmentation_state_dict, make_yolo_cls_checkpoint

    if task == "classify":
        weights = make_yolo_cls_checkpoint(tmp_path / "cls.pt", imgsz=64)
    else:
        weights = make_segmentation_state_dict(tmp_path / "deeplabv3_mobilenet_v3_large-fc3c493d.pth")
    res = run_cli_process(
        task, rtsp.url, "-w", str(weights), "--imgsz", "64", "--max-frames", "3", timeout=180
    )
    assert res.returncode == 0, res.stderr
    out = tmp_path / "runs" / task / "predict"
    s = summary(out)
    assert (s["frames"], s["stream_mode"], s["stopped_by"]) == (3, "latest", "max-frames")
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) == 3 and all(r["captured_at"] > 0 for r in records)
    assert decoded_frames(out / f"{records[0]['source']}.mp4") == 3
