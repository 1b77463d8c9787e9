"""Live-source pieces without a server: recognising sources, naming, the newest-frame queue, options."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np
import pytest

from densecnn.config import LiveConfig
from densecnn.errors import UsageError
from densecnn.fsutil import output_path
from densecnn.latest import LatestQueue, latency_stats
from densecnn.results import Frame
from densecnn.sources.base import InputEnd, InputRef
from densecnn.sources.stream import is_live, parse_live, redact, stream_name


@pytest.mark.parametrize(
    ("spec", "live"),
    [
        ("0", True),
        ("12", True),
        ("rtsp://cam/1", True),
        ("RTSP://cam/1", True),
        ("rtmp://host/app", True),
        ("https://host/live.m3u8", True),
        ("cams.streams", True),
        ("clip.mp4", False),
        ("photos/", False),
        ("file:///x.mp4", False),
        ("list.txt", False),
    ],
)
def test_is_live(spec: str, live: bool) -> None:
    assert is_live(spec) is live


def test_names_are_file_safe_unique_and_hide_passwords(tmp_path) -> None:
    assert stream_name("0") == "webcam0"
    assert stream_name("rtsp://user:secret@10.0.0.5:554/Streaming/Channels/101") == (
        "rtsp_10_0_0_5_554_Streaming_Channels_101"
    )
    assert "secret" not in stream_name("rtsp://user:secret@cam/x")
    assert redact("rtsp://user:secret@cam:554/x") == "rtsp://user:***@cam:554/x"
    assert redact("http://cam/x") == "http://cam/x"
    # the name is the output's stem: no dot may be taken for a suffix
    name = stream_name("http://192.168.1.20:8080/video.mjpg")
    assert output_path(tmp_path, name, suffix=".mp4").name == f"{name}.mp4"

    listing = tmp_path / "cams.streams"
    listing.write_text("# yard\nrtsp://a:pw@cam/1  # front\n\n0\nrtsp://cam/1\n")
    specs = parse_live(str(listing))
    assert [s.name for s in specs] == ["rtsp_cam_1", "webcam0", "rtsp_cam_1_2"]
    assert specs[0].shown == "rtsp://a:***@cam/1" and specs[0].target == "rtsp://a:pw@cam/1"


def test_empty_or_missing_stream_lists_are_usage_errors(tmp_path) -> None:
    (tmp_path / "none.streams").write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="lists no streams"):
        parse_live(str(tmp_path / "none.streams"))
    with pytest.raises(UsageError, match="stream list not found"):
        parse_live(str(tmp_path / "missing.streams"))


def _frame(source: str, index: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), source, source, index=index, is_video=True)


def test_latest_queue_keeps_the_newest_frame_per_source_and_every_event() -> None:
    q = LatestQueue()
    end = InputEnd(InputRef(Path("a"), "a", "video"), 3)
    for item in (_frame("a", 0), _frame("b", 0), _frame("a", 1), _frame("a", 2), end):
        q.put(item)
    got = [q.get(timeout=0) for _ in range(3)]
    assert [(x.source, x.index) for x in got[:2]] == [("b", 0), ("a", 2)] and got[2] is end
    assert q.dropped == 2 and q.empty()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)


def test_latest_queue_get_wakes_on_put_from_another_thread() -> None:
    q = LatestQueue()
    threading.Timer(0.05, q.put, args=(_frame("a", 7),)).start()
    assert q.get(timeout=5).index == 7


def test_latency_stats() -> None:
    assert latency_stats([]) is None
    stats = latency_stats([float(x) for x in range(1, 101)])
    assert stats == {"p50": 50.5, "p95": 95.05, "max": 100.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream_mode": "newest"}, "--stream-mode"),
        ({"reconnect": -1}, "--reconnect"),
        ({"stall_timeout": 0}, "--stall-timeout"),
        ({"max_frames": -5}, "--max-frames"),
        ({"duration": -1.0}, "--duration"),
        ({"require_display": True}, "--require-display applies to --show"),
    ],
)
def test_live_config_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        LiveConfig(**kwargs)


def test_stream_mode_defaults_by_source_kind() -> None:
    assert LiveConfig().mode_for(live=True) == "latest"
    assert LiveConfig().mode_for(live=False) == "all"
    assert LiveConfig(stream_mode="all").mode_for(live=True) == "all"


def test_cli_usage_errors_for_live_options(run_cli) -> None:
    r = run_cli("detect", "rtsp://127.0.0.1:1/x", "--stream-mode", "newest")
    assert r.returncode == 2 and "newest" in r.stderr
    r = run_cli("detect", "rtsp://127.0.0.1:1/x", "--require-display")
    assert r.returncode == 2 and "--require-display applies to --show" in r.stderr
    r = run_cli("segment", "rtsp://127.0.0.1:1/x", "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr
