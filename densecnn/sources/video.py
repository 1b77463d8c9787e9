"""Video inputs: open and decode one file with PyAV into ``InputStart``, ``Frame``s and ``InputEnd``.

- Videos are decoded with PyAV (every frame, in presentation order); ``vid_stride`` keeps frames whose
  decoded index ``i`` has ``i % vid_stride == 0``. ``Frame.timestamp`` is ``(pts - first_pts) *
  time_base`` in seconds, never ``index / fps``. A video that stops decoding early (a decode error,
  or clearly fewer frames than the container declares: a truncated file) gets an ``InputFailure``
  after the frames already yielded, which stay valid.
- A video that cannot be opened yields ``InputFailure`` with a one-line reason, never silence.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
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


def video_events(ref: InputRef, vid_stride: int, stop: threading.Event | None) -> Iterator[SourceEvent]:
    """``InputStart``, every ``vid_stride``-th ``Frame``, maybe ``InputFailure``, ``InputEnd``.

    Checks ``stop`` between frames; the container is closed when the generator ends or is closed.
    """
    if not ref.path.is_file():
        yield from _failed(ref, "is a folder, not a video file" if ref.path.is_dir() else "file not found")
        return
    try:
        container = av.open(str(ref.path))
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
        failure: InputFailure | None = None
        frames = container.decode(stream)
        while True:
            if stop is not None and stop.is_set():
                yield InputEnd(ref, emitted)  # cut short on request: not a failure of the input
                return
            index = decoded
            try:
                frame = next(frames, None)
                if frame is None:
                    break
                decoded += 1
                if first_pts is None:
                    first_pts = frame.pts
                if index % vid_stride:
                    continue
                image = frame.to_ndarray(format="bgr24")
            except (av.FFmpegError, OSError, ValueError) as e:
                failure = InputFailure(ref, f"decode error at frame {index}: {_av_message(e)}", frame=index)
                break
            timestamp = _timestamp(frame, first_pts, stream.time_base, index, info.fps)
            yield Frame(image, ref.source, str(ref.path), index=index, timestamp=timestamp, is_video=True)
            emitted += 1
        failure = failure or _short_video(ref, decoded, int(stream.frames or 0))
        if failure is not None:
            yield failure
        yield InputEnd(ref, emitted)
    finally:
        container.close()


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
