"""Hostile live sources on loopback (issue 13): each ends with a clear error in errors.jsonl and exit
1 (never a hang, a traceback or a local file read), and no URL password reaches any output.

Policy: a stream that cannot be opened or is lost is one failed input (errors.jsonl: the masked URL
and the reason); frames received before the loss are processed and their outputs stay valid.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, CliRunner

SECRET = "s3cr3t-pw"
CLIP = ROOT / "samples" / "clip.mp4"


class HostileServer:
    """One-thread HTTP server on 127.0.0.1 that misbehaves as ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://viewer:{SECRET}@127.0.0.1:{self.port}/cam"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.recv(65536)
                self._answer(conn)
            except OSError:
                conn.close()

    def _answer(self, conn: socket.socket) -> None:
        if self.mode == "stall":  # accept, read the request, never answer
            self.held.append(conn)
            return
        if self.mode == "garbage":
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + bytes(range(256)) * 800)
        elif self.mode == "redirect":
            location = f"file://{CLIP}".encode()
            conn.sendall(b"HTTP/1.0 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")
        elif self.mode == "midframe":  # a real MP4 cut in the middle of its data
            data = CLIP.read_bytes()
            head = b"HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n" % len(data)
            conn.sendall(head + data[: len(data) // 2])
        conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    srv = HostileServer(request.param)
    yield srv
    srv.close()


def _no_secret_anywhere(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"password written to {path}"


def _errors(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ("garbage", ""),
        ("redirect", ""),
        ("midframe", "stream lost"),
        ("stall", "timed out"),
    ],
    indirect=["server"],
)
def test_hostile_http(run_cli: CliRunner, tmp_path: Path, server: HostileServer, reason: str) -> None:
    proc = run_cli(
        "detect", server.url, "--out", "o", "--reconnect", "0", "--stall-timeout", "1", "-v", timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    run = tmp_path / "o" / "predict"
    (err,) = _errors(run)
    assert reason in err["error"]
    if server.mode != "midframe":  # it opened: the loss names no URL
        assert "viewer:***@127.0.0.1" in err["error"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["source"] == server.url.replace(SECRET, "***")
    assert summary["inputs_failed"] == 1
    rows = (run / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == summary["frames"]  # every processed frame has its row, and no other
    if server.mode == "midframe":
        assert summary["frames"] > 0  # frames before the cut are processed
        import av

        (video,) = run.glob("*.mp4")
        with av.open(str(video)) as container:
            assert sum(1 for _ in container.decode(video=0)) == summary["frames"]
    else:
        assert summary["frames"] == 0  # nothing read from the redirect target or the garbage
    _no_secret_anywhere(tmp_path, proc.stdout, proc.stderr)


def test_rtsp_closed_port_masks_password(run_cli: CliRunner, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{port}/live"
    for task in ("detect", "segment"):  # the embedded models (offline)
        proc = run_cli(task, url, "--out", "o", "--name", task, "--reconnect", "0", "-v")
        assert proc.returncode == 1, proc.stderr
        (err,) = _errors(tmp_path / "o" / task)
        assert "Connection refused" in err["error"] and "admin:***@" in err["error"]
        _no_secret_anywhere(tmp_path, proc.stdout, proc.stderr)


def test_password_masked_in_usage_errors(run_cli: CliRunner, tmp_path: Path) -> None:
    """A URL quoted in an error message (here --resume with a live source) is masked too."""
    proc = run_cli("segment", f"rtsp://a:{SECRET}@127.0.0.1:1/x", "--resume")
    assert proc.returncode == 2
    _no_secret_anywhere(tmp_path, proc.stdout, proc.stderr)


def test_redact_text() -> None:
    from densecnn.redact import redact, redact_text

    assert redact_text(f"cannot open rtsp://u:{SECRET}@h:554/a and http://x:p@ss@h/b") == (
        "cannot open rtsp://u:***@h:554/a and http://x:***@h/b"
    )
    assert redact_text("rtsp://h/x, /a:b@c") == "rtsp://h/x, /a:b@c"
    assert redact(f"rtsp://u:{SECRET}@h:bad/x") == "rtsp://u:***@h:bad/x"  # bad port: still masked


def test_stream_names_carry_no_password(tmp_path: Path) -> None:
    """Recording names, window titles, JSONL ``source`` come from the stream name; messages from
    ``shown``: neither holds the password, also for streams listed in a .streams file."""
    from densecnn.sources.stream import parse_live

    listing = tmp_path / "cams.streams"
    listing.write_text(f"rtsp://u:{SECRET}@cam:554/a\nhttp://v:{SECRET}@cam/b  # lobby\n")
    for spec in parse_live(str(listing)):
        assert SECRET not in spec.name and SECRET not in spec.shown and "***" in spec.shown


def test_streams_file_listing_itself(run_cli: CliRunner, tmp_path: Path) -> None:
    listing = tmp_path / "cams.streams"
    listing.write_text(f"{listing}\n")
    proc = run_cli("detect", str(listing), "--out", "o", "--reconnect", "0", timeout=60)
    assert proc.returncode == 1, proc.stderr
    (err,) = _errors(tmp_path / "o" / "predict")
    assert "cannot open" in err["error"]


@pytest.mark.parametrize("server", ["stall"], indirect=True)
def test_stalled_stream_ended_by_duration_is_reported(
    run_cli: CliRunner, tmp_path: Path, server: HostileServer
) -> None:
    """--duration ends the run while the stream is still connecting: that stream is a failed input
    (it gave nothing), not a silent success."""
    proc = run_cli("detect", server.url, "--out", "o", "--reconnect", "0", "--duration", "2", timeout=120)
    assert proc.returncode == 1, proc.stderr
    run = tmp_path / "o" / "predict"
    (err,) = _errors(run)
    assert "no frame from http://viewer:***@127.0.0.1" in err["error"]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["inputs"], summary["inputs_failed"], summary["frames"]) == (1, 1, 0)
    assert summary["stopped_by"] == "duration"
    _no_secret_anywhere(tmp_path, proc.stdout, proc.stderr)
