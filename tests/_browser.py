"""A real browser for the tests and benches: Debian's headless Chromium driven by Playwright, and a
loopback HTTP server that can throttle its responses (progressive playback).

Playwright's own browser download is impossible offline, so it launches ``/usr/bin/chromium``
(``make sysdeps`` installs it). :func:`chromium_or_skip` says clearly why a test is skipped.
"""

from __future__ import annotations

import mimetypes
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--autoplay-policy=no-user-gesture-required", "--mute-audio"]


def chromium_missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (run `make sysdeps`, which installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[dev]')"
    return None


@contextmanager
def launch_chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Chromium's singleton socket lives under TMPDIR; a long TMPDIR overflows AF_UNIX's 107 bytes
        env = {**os.environ, "TMPDIR": short_tmp()}
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, env=env)
        try:
            yield browser
        finally:
            browser.close()


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = (self.server.root / rel).resolve()
        if not path.is_file() or self.server.root not in path.parents:
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # the last N bytes
                start = max(size - int(match.group(2)), 0)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.server.requests.append((rel, start, end))
        try:
            self._send(path, start, end)
        except (BrokenPipeError, ConnectionResetError):
            return  # the browser cancelled this request (it often does for media)
        if start == 0 and end == size - 1:  # the whole file went out in one response
            self.server.completed.setdefault(rel, time.monotonic())

    def _send(self, path: Path, start: int, end: int) -> None:
        rate, chunk = self.server.rate, 8192
        with path.open("rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                data = fh.read(min(chunk, left))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)
                if rate:
                    time.sleep(len(data) / rate)


class LoopbackServer(ThreadingHTTPServer):
    """Serves ``root`` on 127.0.0.1 with byte ranges, at most ``rate`` bytes/s per response (None:
    unthrottled). ``completed[name]``: when a response holding all of that file first ended
    (monotonic)."""

    daemon_threads = True

    def __init__(self, root: Path, rate: float | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = Path(root).resolve()
        self.rate = rate
        self.requests: list[tuple[str, int, int]] = []
        self.completed: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@contextmanager
def serve(root: Path, rate: float | None = None) -> Iterator[LoopbackServer]:
    server = LoopbackServer(root, rate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


PLAYING_PAGE = """<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
<video id="v" muted autoplay playsinline src="{src}"></video>
<script>window.playingAt = null;
document.getElementById("v").addEventListener("playing", () => {{ window.playingAt = performance.now(); }});
</script>"""


def time_to_playing(
    browser: Any, server: LoopbackServer, name: str, timeout_s: float = 60
) -> dict[str, float]:
    """Open a page with ``<video src=name autoplay>`` from ``server``; seconds from navigation to the
    ``playing`` event, and to the last byte of ``name`` sent (``inf`` if it was not sent by then)."""
    page_name = f"_play_{Path(name).stem}.html"
    (server.root / page_name).write_text(PLAYING_PAGE.format(src=name))
    page = browser.new_page()
    try:
        t0 = time.monotonic()
        page.goto(server.url + page_name)
        page.wait_for_function("window.playingAt !== null", timeout=timeout_s * 1000)
        playing = time.monotonic() - t0
        done = server.completed.get(name)
        return {"playing_s": playing, "download_done_s": (done - t0) if done else float("inf")}
    finally:
        page.close()


def short_tmp() -> str:
    """TMPDIR, or /tmp when TMPDIR is too long for the Unix sockets browsers and Ray put in it."""
    tmp = tempfile.gettempdir()
    return tmp if len(tmp) <= 60 else "/tmp"
