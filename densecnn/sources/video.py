"""Video inputs: open and decode one file with PyAV into ``InputStart``, ``Frame``s and ``InputEnd``.

- Videos are decoded with PyAV (every frame, in presentation order); ``vid_stride`` keeps frames whose
  decoded index ``i`` has ``i % vid_stride == 0``. A damaged packet is skipped (decoding goes on,
  and the video gets an ``InputFailure`` naming the first damage). ``Frame.timestamp`` is
  ``(pts - first_pts) * time_base`` in seconds, never ``index / fps``. A video that stops decoding
  early (a read error, or clearly fewer frames than the container declares: a truncated file)
  gets an ``InputFailure`` after the frames already yielded, which stay valid.
- A video that cannot be opened yields ``InputFailure`` with a one-line reason, never silence.
- Rotation metadata (a display matrix: phone videos) is applied, as for images' EXIF orientation:
  frames come upright, as OpenCV and players show them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from densecnn.results import Frame
from densecnn.sources.base import InputEnd, InputFailure, InputRef, InputStart, SourceEvent, VideoInfo


def _av_message(e: Exception) -> str:
    return str(getattr(e, "strerror", None) or e).strip().splitlines()[0]


def _fps(stream: VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate) if rate else Fraction(0)


def _frame_count(container: InputContainer, stream: VideoStream) -> int:
    """The container's frame count, else duration x fps; 0 when unknown."""
    if stream.frames:
        return int(stream.frames)
    fps = _fps(stream)
    if stream.duration is not None and stream.time_base:
        seconds = Fraction(stream.duration) * stream.time_base
    elif container.duration:
        seconds = Fraction(container.duration, av.time_base)
    else:
        return 0
    return max(0, round(seconds * fps))


def probe_frame_count(path: Path) -> int:
    """The declared frame count of the file's first video stream; 0 when unknown or unreadable."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            return _frame_count(container, container.streams.video[0])
    except (av.FFmpegError, OSError, ValueError):
        return 0


def open_video(path: Path, hwaccel: str | None = None) -> InputContainer:
    """``av.open`` for decoding, on ``hwaccel``'s device when given ("cuda", "cuda:1", "vaapi"...):
    FFmpeg decodes there and hands back frames in system memory, falling back to software for streams
    the hardware cannot decode. A device that cannot be opened at all means software decoding."""
    if hwaccel:
        from av.codec.hwaccel import HWAccel

        kind, _, index = hwaccel.partition(":")
        try:
            accel = HWAccel(device_type=kind, device=index or None, allow_software_fallback=True)
            return av.open(str(path), hwaccel=accel)
        except (av.FFmpegError, OSError, ValueError, RuntimeError):
            pass  # no such device here: decode on the CPU
    return av.open(str(path))


def video_events(
    ref: InputRef, vid_stride: int, stop: threading.Event | None, hwaccel: str | None = None
) -> Iterator[SourceEvent]:
    """``InputStart``, every ``vid_stride``-th ``Frame``, maybe ``InputFailure``, ``InputEnd``.

    Checks ``stop`` between frames; the container is closed when the generator ends or is closed.
    ``hwaccel``: decode on that device (see :func:`open_video`).
    """
    if not ref.path.is_file():
        yield from _failed(ref, "is a folder, not a video file" if ref.path.is_dir() else "file not found")
        return
    try:
        container = open_video(ref.path, hwaccel)
    except (av.FFmpegError, OSError, ValueError) as e:
        hint = (
            " (not a video, or truncated: an MP4 whose writer died has no index)"
            if "Invalid data" in str(e)
            else ""
        )
        yield from _failed(ref, f"cannot open video: {_av_message(e)}{hint}")
        return
    try:
        if not container.streams.video:
            yield from _failed(ref, "no video stream in file")
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        expected = _frame_count(container, stream)
        ctx = stream.codec_context
        info = VideoInfo(_fps(stream), int(ctx.width), int(ctx.height), expected, ctx.name)
        yield InputStart(ref, info)
        emitted = decoded = 0
        first_pts: int | None = None
        damage: list[tuple[int, str]] = []  # (frame index, reason) of each packet that did not decode
        frames = _decode(container, stream)
        while True:
            if stop is not None and stop.is_set():
                yield InputEnd(ref, emitted)  # cut short on request: not a failure of the input
                return
            index = decoded
            try:
                frame = next(frames, None)
                if frame is None:
                    break
                if isinstance(frame, Exception):
                    damage.append((index, _av_message(frame)))
                    continue
                decoded += 1
                if first_pts is None:
                    first_pts = frame.pts
                if index % vid_stride:
                    continue
                image = _upright(frame.to_ndarray(format="bgr24"), frame)
            except (av.FFmpegError, OSError, ValueError) as e:
                damage.append((index, _av_message(e)))
                break
            timestamp = _timestamp(frame, first_pts, stream.time_base, index, info.fps)
            yield Frame(image, ref.source, str(ref.path), index=index, timestamp=timestamp, is_video=True)
            emitted += 1
        failure = _damaged(ref, damage, decoded) or _short_video(ref, decoded, int(stream.frames or 0))
        if failure is not None:
            yield failure
        yield InputEnd(ref, emitted)
    finally:
        container.close()


def _decode(container: InputContainer, stream: VideoStream) -> Iterator[av.VideoFrame | Exception]:
    """The stream's frames in order; a packet that fails to decode (damaged data) is yielded as its
    exception and decoding goes on with the next one, so the frames after the damage still come.
    A read error of the container (a truncated file) ends it."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets, None)
        except (av.FFmpegError, OSError, ValueError) as e:
            yield e
            return
        if packet is None:
            return
        try:
            decoded = packet.decode()
        except (av.FFmpegError, OSError, ValueError) as e:
            yield e
            continue
        yield from decoded


def _damaged(ref: InputRef, damage: list[tuple[int, str]], decoded: int) -> InputFailure | None:
    """The failure that reports damaged packets (the frames around them were processed)."""
    if not damage:
        return None
    at, reason = damage[0]
    if decoded == at:  # nothing decoded after the first damage
        return InputFailure(ref, f"decode error at frame {at}: {reason}", frame=at)
    return InputFailure(
        ref,
        f"decode error at frame {at}: {reason}; {len(damage)} damaged packet(s) skipped, the frames "
        "before and after them were processed",
        frame=at,
    )


def _upright(image: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """The frame as it is meant to be shown: rotated by its display matrix (phone videos store
    portrait frames sideways plus a rotation), as OpenCV's ``VideoCapture`` and players show it."""
    rotation = getattr(frame, "rotation", 0) or 0
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _failed(ref: InputRef, error: str) -> Iterator[SourceEvent]:
    yield InputStart(ref)
    yield InputFailure(ref, error)
    yield InputEnd(ref, 0)


def _timestamp(
    frame: av.VideoFrame, first_pts: int | None, stream_tb: Fraction | None, index: int, fps: Fraction
) -> float:
    """``(pts - first_pts) * time_base`` in seconds; ``index / fps`` only when the frame has no pts."""
    time_base = frame.time_base or stream_tb
    if frame.pts is None or first_pts is None or not time_base:
        return float(index / fps) if fps else 0.0
    return float((frame.pts - first_pts) * time_base)


def _short_video(ref: InputRef, decoded: int, declared: int) -> InputFailure | None:
    """A clean end with no frames, or clearly fewer than the container's frame count, means a
    truncated or broken file. Duration x fps is no yardstick here: it misjudges variable frame rate."""
    if decoded == 0:
        return InputFailure(ref, "no frames could be decoded (truncated or not a video?)", frame=0)
    if declared and decoded + max(2, declared // 20) < declared:
        return InputFailure(
            ref,
            f"video ended early: decoded {decoded} of {declared} declared frames (truncated file?)",
            frame=decoded,
        )
    return None
