"""Live sources: webcams, RTSP/RTMP/HTTP(S) streams and ``.streams`` lists, one capture thread each.

One decode path per kind: stream URLs (and any file named in a ``.streams`` list) are decoded with
PyAV, RTSP over TCP; a webcam index goes through OpenCV's ``VideoCapture`` (this PyAV build has no
``v4l2`` device input). Both backends only open and read frames: the capture thread around them,
its reconnect policy, stall watchdog, frame hand-off and counters are one shared piece of code, so
the tests that exercise it on RTSP and HTTP streams cover the webcam path too.

Each capture thread emits, for its stream: ``InputStart`` once (first successful open), every
frame as a ``Frame`` with its capture fields set (wall-clock and monotonic stamps), then
``InputFailure`` when the stream is lost for good, and ``InputEnd``. A stream that stops
delivering (read error, end of stream, or no data for ``stall_timeout`` seconds) is reopened with
exponential backoff, up to ``reconnect`` attempts in a row; the outputs carry on across the gap
(no new ``InputStart``). Frame indices and timestamps run on across reconnects.

Frame hand-off: ``all`` blocks the capture thread while the consumer is busy (back-pressure, no
frame lost by densecnn); ``latest`` never blocks it, and the pipeline keeps only the newest frame
per stream (see ``pipeline.LatestQueue``), so inference always runs on the freshest frame.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from densecnn.config import LiveConfig
from densecnn.errors import UsageError
from densecnn.redact import redact
from densecnn.results import Frame
from densecnn.sources.base import InputEnd, InputFailure, InputRef, InputStart, SourceEvent, VideoInfo

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})
_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 10.0
_CHANNEL_SIZE = 8


@dataclass(frozen=True)
class StreamSpec:
    """One live input: ``target`` is what the backend opens (URL, path or webcam index);
    ``shown`` is it with any password masked (what messages and outputs show)."""

    target: str
    name: str
    shown: str

    @property
    def is_webcam(self) -> bool:
        return self.target.isdigit()


@dataclass
class StreamStats:
    """Per-stream counters, written by its capture thread."""

    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- recognising live sources


def is_live(spec: str | Path) -> bool:
    """A webcam index, a stream URL (rtsp, rtmp, http(s), udp, tcp, srt) or a ``.streams`` file."""
    text = str(spec).strip()
    if text.isdigit():
        return True
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme in LIVE_SCHEMES or text.lower().endswith(".streams")


def stream_name(target: str) -> str:
    """A file-name-safe name for outputs, without dots (no false suffix): ``webcam0``,
    ``rtsp_127_0_0_1_8554_test``..."""
    if target.isdigit():
        return f"webcam{target}"
    parts = urlsplit(target)
    if not parts.scheme:
        return re.sub(r"[^A-Za-z0-9-]+", "_", Path(target).stem).strip("_") or "stream"
    raw = "_".join(x for x in (parts.scheme, parts.hostname or "", str(parts.port or ""), parts.path) if x)
    return re.sub(r"[^A-Za-z0-9-]+", "_", raw).strip("_")[:100] or "stream"


def parse_live(spec: str) -> list[StreamSpec]:
    """The streams of ``spec``: itself, or each line of a ``.streams`` file (``#`` starts a comment).

    Names are made unique (``_2``, ``_3``...) so outputs of two streams never collide.
    """
    text = spec.strip()
    if text.lower().endswith(".streams") and "://" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"stream list not found: {text}")
        lines = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        targets = [ln for ln in lines if ln]
        if not targets:
            raise UsageError(f"{text} lists no streams", hint="One URL or webcam index per line.")
    else:
        targets = [text]
    specs: list[StreamSpec] = []
    seen: dict[str, int] = {}
    for target in targets:
        base = stream_name(target)
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        specs.append(StreamSpec(target=target, name=name, shown=redact(target)))
    return specs


# ---------------------------------------------------------------- backends: open and read only


class _Backend(Protocol):
    info: VideoInfo

    def read(self) -> np.ndarray | None:
        """The next ``HxWx3`` uint8 BGR frame; None at the end of the stream."""
        ...

    def close(self) -> None: ...


class _AvBackend:
    """PyAV: RTSP over TCP; ``timeout`` makes a read that gets no data for ``stall_s`` fail."""

    def __init__(self, target: str, *, open_s: float, stall_s: float) -> None:
        import av

        # short probing: the stream starts sooner. Not "fflags nobuffer": on MPEG-TS over HTTP it
        # held back the first frame for seconds.
        options = {"analyzeduration": "1000000", "probesize": "1000000"}
        if target.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"
        self._av = av
        self._container = av.open(target, options=options, timeout=(open_s, stall_s))
        try:
            if not self._container.streams.video:
                raise OSError("no video stream")
            stream = self._container.streams.video[0]
            stream.thread_type = "SLICE"  # frame threads would hold back a frame each: latency
            ctx = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate
            self.info = VideoInfo(Fraction(rate or 0), int(ctx.width), int(ctx.height), 0, ctx.name)
            self._frames = self._container.decode(stream)
        except BaseException:
            self._container.close()
            raise

    def read(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        return None if frame is None else frame.to_ndarray(format="bgr24")

    def close(self) -> None:
        self._container.close()


class _WebcamBackend:
    """OpenCV ``VideoCapture`` for a camera index (V4L2 on Linux, AVFoundation, DirectShow...)."""

    def __init__(self, index: int) -> None:
        import cv2

        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise OSError(f"no camera at index {index} (or it is busy)")
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver keeps one frame: the newest
        fps = self._cap.get(cv2.CAP_PROP_FPS) or 0
        width, height = (
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.info = VideoInfo(Fraction(fps).limit_denominator(1001), width, height, 0, "webcam")

    def read(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        return image if ok else None

    def close(self) -> None:
        self._cap.release()


def _open_backend(spec: StreamSpec, *, open_s: float, stall_s: float) -> _Backend:
    if spec.is_webcam:
        return _WebcamBackend(int(spec.target))
    return _AvBackend(spec.target, open_s=open_s, stall_s=stall_s)


def _reason(exc: BaseException, *, timeout: float | None = None) -> str:
    text = str(getattr(exc, "strerror", None) or exc).strip()
    line = (text.splitlines() or [type(exc).__name__])[0]
    if timeout is not None and "Immediate exit requested" in line:  # FFmpeg's word for its timeout
        return f"timed out: no data within {timeout:g} s"
    return line


# ---------------------------------------------------------------- the shared capture thread


class _Capture(threading.Thread):
    """Open, read, reopen: one stream's frames into ``out``, in order, with its events."""

    def __init__(
        self, spec: StreamSpec, out: queue.Queue[Any], stop: threading.Event, cfg: LiveConfig
    ) -> None:
        super().__init__(name=f"densecnn-capture-{spec.name}", daemon=True)
        self.spec, self.out, self.stop, self.cfg = spec, out, stop, cfg
        self.t0: float | None = None  # first frame's capture time: timestamps count from it
        self.ref = InputRef(Path(spec.name), spec.name, "video")
        self.stats = StreamStats()
        self.opened = False  # its InputStart was sent

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # never die silently: the stream ends with its reason
            self._emit(InputFailure(self.ref, f"capture failed: {_reason(exc)}"))
        finally:
            self._emit(InputEnd(self.ref, self.stats.frames))

    def _loop(self) -> None:
        started, attempts = False, 0
        while not self.stop.is_set():
            backend, error = self._open()
            if backend is not None:
                if not started:
                    self._emit(InputStart(self.ref, backend.info))
                    started = self.opened = True
                elif attempts:
                    self.stats.reconnects += 1
                delivered, error = self._read_all(backend)
                if delivered:
                    attempts = 0  # the stream worked again: the next loss starts a fresh budget
            if self.stop.is_set():
                return
            if not started:  # never connected: fail fast, a typo should not wait for backoff
                self.opened = True
                self._emit(InputStart(self.ref))
                self._emit(InputFailure(self.ref, f"cannot open {self.spec.shown}: {error}"))
                return
            attempts += 1
            if attempts > self.cfg.reconnect:
                tries = (
                    f"after {self.cfg.reconnect} reconnect attempts"
                    if self.cfg.reconnect
                    else "(--reconnect 0)"
                )
                self._emit(InputFailure(self.ref, f"stream lost {tries}: {error}", frame=self.stats.frames))
                return
            self.stats.errors.append(error)
            self.stop.wait(min(_BACKOFF_MAX_S, _BACKOFF_START_S * 2 ** (attempts - 1)))

    def _open(self) -> tuple[_Backend | None, str]:
        try:
            return _open_backend(self.spec, open_s=self.cfg.open_timeout, stall_s=self.cfg.stall_timeout), ""
        except Exception as exc:
            return None, _reason(exc, timeout=self.cfg.open_timeout)

    def _read_all(self, backend: _Backend) -> tuple[int, str]:
        """Frames until the stream ends or fails (or ``stop``); returns (frames read, why it ended)."""
        delivered = 0
        try:
            while not self.stop.is_set():
                image = backend.read()
                if image is None:
                    return delivered, "stream ended"
                self._deliver(image)
                delivered += 1
            return delivered, "stopped"
        except Exception as exc:
            return delivered, _reason(exc, timeout=self.cfg.stall_timeout)
        finally:
            backend.close()

    def _deliver(self, image: np.ndarray) -> None:
        mono, wall = time.perf_counter(), time.time()
        if self.t0 is None:
            self.t0 = mono
        frame = Frame(
            image=image,
            source=self.spec.name,
            path=self.spec.shown,
            index=self.stats.frames,
            timestamp=mono - self.t0,
            is_video=True,
            captured_at=wall,
            captured_mono=mono,
        )
        self.stats.frames += 1
        if self.cfg.stream_mode == "latest":
            try:
                self.out.put_nowait(frame)
            except queue.Full:  # the consumer fell far behind: this frame was never seen
                self.stats.dropped += 1
        else:
            self._emit(frame)

    def _emit(self, item: SourceEvent) -> None:
        """Blocking put (back-pressure) that gives up once the run stops and nobody drains ``out``."""
        while True:
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    return


class LiveSource:
    """The live inputs of one ``densecnn`` run; a context manager that owns the capture threads."""

    def __init__(self, specs: list[StreamSpec], cfg: LiveConfig, *, spec: str = "") -> None:
        self.specs, self.cfg, self.spec = specs, cfg, spec
        self.inputs = [InputRef(Path(s.name), s.name, "video") for s in specs]
        self._stop = threading.Event()
        size = 64 * len(specs) if cfg.stream_mode == "latest" else _CHANNEL_SIZE
        self._channel: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._captures: list[_Capture] = []

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveSource({self.spec!r}, streams={len(self.specs)})"

    def estimated_frames(self) -> int:
        return int(self.cfg.max_frames or 0)

    @property
    def reconnects(self) -> int:
        return sum(c.stats.reconnects for c in self._captures)

    @property
    def dropped(self) -> int:
        return sum(c.stats.dropped for c in self._captures)

    def silent(self) -> list[tuple[StreamSpec, bool]]:
        """``(stream, opened)`` of the streams that delivered no frame at all (e.g. still connecting
        when ``--duration`` ended the run): a stream that gave nothing is never a success."""
        return [(c.spec, c.opened) for c in self._captures if c.stats.frames == 0]

    def events(self, stop: threading.Event | None = None) -> Iterator[SourceEvent]:
        """Start one capture thread per stream and yield their events until every stream has ended
        or ``stop`` is set; the threads are stopped when the generator ends or is closed."""
        self._captures = [_Capture(s, self._channel, self._stop, self.cfg) for s in self.specs]
        for capture in self._captures:
            capture.start()
        open_streams = len(self._captures)
        try:
            while open_streams and not (stop is not None and stop.is_set()):
                try:
                    item = self._channel.get(timeout=0.1)
                except queue.Empty:
                    continue
                if isinstance(item, InputEnd):
                    open_streams -= 1
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the capture threads. A thread blocked in a network read ends by its own timeout;
        it is a daemon, so it never holds the process open."""
        self._stop.set()
        for capture in self._captures:
            capture.join(timeout=1.0)


def open_live(spec: str, cfg: LiveConfig) -> LiveSource:
    """A ``LiveSource`` for a webcam index, a stream URL or a ``.streams`` file (``is_live``)."""
    cfg = replace(cfg, stream_mode=cfg.mode_for(live=True))
    return LiveSource(parse_live(spec), cfg, spec=redact(spec))
