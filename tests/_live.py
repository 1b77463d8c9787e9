"""Real stream servers on loopback for the live-source tests: an RTSP server (GStreamer, run by
Debian's python3-gi in tests/live/rtsp_server.py) and an HTTP MPEG-TS server (ffmpeg -listen 1)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

RTSP_SCRIPT = Path(__file__).parent / "live" / "rtsp_server.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_rtsp() -> None:
    """Skip (with the reason) when the GStreamer RTSP server packages are absent."""
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import GstRtspServer; gi.require_version('Gst', '1.0'); "
        "from gi.repository import Gst; Gst.init(None); "
        "assert Gst.ElementFactory.find('x264enc'), 'x264enc'"
    )
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no /usr/bin/python3 for the GStreamer RTSP server (make sysdeps installs it)")
    ok = subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, timeout=60).returncode == 0
    if not ok:
        pytest.skip(
            "GStreamer RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0, x264enc) missing: make sysdeps"
        )


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (make sysdeps installs it)")
    return path


class RtspServer:
    """rtsp://127.0.0.1:PORT/test: a live 320x240 test pattern, H.264; start/stop as often as needed."""

    def __init__(self, port: int, fps: int = 25) -> None:
        self.port, self.fps = port, fps
        self.url = f"rtsp://127.0.0.1:{port}/test"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RtspServer:
        self.proc = subprocess.Popen(
            [str(SYSTEM_PYTHON), str(RTSP_SCRIPT), str(self.port), str(self.fps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == b"READY", f"RTSP server did not start: {line!r}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT: the connection stays open but no data flows (a stalled camera)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)


class TsServer:
    """http://127.0.0.1:PORT/live.ts: ``video`` as MPEG-TS over HTTP, paced by ffmpeg at ``rate`` x
    real time, looping; ffmpeg's ``-listen 1`` serves one client."""

    def __init__(self, port: int, video: Path, rate: float = 1.0) -> None:
        self.url = f"http://127.0.0.1:{port}/live.ts"
        self.video, self.rate = video, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TsServer:
        cmd = [need_tool("ffmpeg"), "-nostdin", "-loglevel", "error", "-readrate", str(self.rate)]
        cmd += ["-stream_loop", "-1", "-i", str(self.video), "-an", "-c:v", "copy"]
        self.proc = subprocess.Popen([*cmd, "-f", "mpegts", "-listen", "1", self.url])
        time.sleep(0.5)  # ffmpeg listens once it has opened the input
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def jsonl_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
