"""File sources: one image, one video, a folder, a glob or a ``.txt`` list of paths.

Decode policy (one path for every image, the same as ``cv2.imread`` and Ultralytics):

- Images are read as bytes and decoded by ``cv2.imdecode(buf, cv2.IMREAD_COLOR)``: EXIF orientation
  is applied, grayscale becomes 3-channel BGR, alpha is dropped, 16-bit is scaled to 8-bit. The result
  is always ``HxWx3`` uint8 BGR.
- Before decoding, the pixel size is read from the header with Pillow's format plugins and more than
  ``MAX_IMAGE_PIXELS`` pixels are refused (OpenCV raises above ~1 gigapixel, and a decompression bomb
  would exhaust memory first).
- OpenCV does not reliably report truncated files, so a JPEG must reach its end-of-image marker
  ``FFD9`` and a PNG its ``IEND`` chunk (trailing padding or appended data after them is allowed).
- Videos are decoded with PyAV (every frame, in presentation order); ``vid_stride`` keeps frames whose
  decoded index ``i`` has ``i % vid_stride == 0``. ``Frame.timestamp`` is ``(pts - first_pts) *
  time_base`` in seconds, never ``index / fps``. A video that stops decoding early (a decode error,
  or clearly fewer frames than the container declares: a truncated file) gets an ``InputFailure``
  after the frames already yielded, which stay valid.

Every input discovered is reported: a bad one yields ``InputFailure`` with a one-line reason, never
silence. Folder and glob inputs are sorted by their relative POSIX path; a ``.txt`` list keeps its
own order.
"""

from __future__ import annotations

import glob
import io
import math
import os
import re
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path, PurePath, PurePosixPath

import av
import cv2
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream
from PIL import Image

from densecnn.errors import InputError, UsageError
from densecnn.results import Frame
from densecnn.sources.base import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    InputEnd,
    InputFailure,
    InputKind,
    InputRef,
    InputStart,
    SourceEvent,
    VideoInfo,
)

MAX_IMAGE_PIXELS = 250_000_000
"""Images declaring more pixels than this are refused before decoding."""

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_MAGIC = re.compile(r"[*?[]")
_PADDING = b"\x00 \t\r\n"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
# Pillow plugins for the formats OpenCV decodes; all identify files by magic bytes. (Plugins without
# magic, such as TGA, would "recognise" random bytes and report a random size.)
_SIZE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "JPEG2000", "PPM")


def _accepted() -> str:
    return (
        f"Accepted: images {' '.join(sorted(IMAGE_SUFFIXES))}; videos {' '.join(sorted(VIDEO_SUFFIXES))}; "
        "or a .txt file listing paths (any letter case)."
    )


# ---------------------------------------------------------------- discovery


def open_source(spec: str | Path, *, vid_stride: int = 1, exclude: Sequence[Path] = ()) -> FileSource:
    """Discover the inputs of ``spec``: an image, a video, a folder, a glob or a ``.txt`` list.

    ``exclude`` lists folders whose contents a folder or glob never yields (the run's own output
    folder may sit inside the input folder). Raises ``UsageError`` when there is nothing to run.
    """
    if isinstance(vid_stride, bool) or not isinstance(vid_stride, int) or vid_stride < 1:
        raise UsageError(f"--vid-stride must be an integer >= 1, got {vid_stride!r}")
    text = str(spec)
    if isinstance(spec, str):
        _refuse_live(text)
    path = Path(os.path.expanduser(text))
    excluded = [Path(e).resolve() for e in exclude]
    if path.is_dir():
        return FileSource(_walk_folder(path, excluded), vid_stride=vid_stride, form="folder", spec=text)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".txt":
            return FileSource(_read_list(path), vid_stride=vid_stride, form="list", spec=text)
        kind = _kind(path.name)
        if kind is None:
            raise UsageError(
                f"unsupported file type {path.suffix or '(no suffix)'!r}: {text}", hint=_accepted()
            )
        return FileSource([InputRef(path, path.name, kind)], vid_stride=vid_stride, form=kind, spec=text)
    if path.exists():
        raise UsageError(f"not a regular file or folder: {text}", hint=_accepted())
    if _GLOB_MAGIC.search(text):
        return FileSource(_glob(str(path), excluded), vid_stride=vid_stride, form="glob", spec=text)
    raise UsageError(
        f"source not found: {text}",
        hint="Check the path. Quote glob patterns so the shell passes them on, e.g. 'images/**/*.jpg'.",
    )


def _refuse_live(text: str) -> None:
    if text.strip().isdigit() or _URL_RE.match(text.strip()):
        raise UsageError(
            f"live sources (webcams, streams) and URLs are not supported yet in this version: {text!r}",
            hint="Pass an image, a video, a folder, a glob or a .txt list of files. "
            "Download or record the source to a file first (e.g. ffmpeg -i URL -t 60 clip.mp4).",
        )


def _kind(name: str) -> InputKind | None:
    suffix = PurePath(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _is_excluded(path: Path, excluded: Sequence[Path]) -> bool:
    if not excluded:
        return False
    resolved = path.resolve()
    return any(resolved == e or resolved.is_relative_to(e) for e in excluded)


def _walk_folder(root: Path, excluded: Sequence[Path]) -> list[InputRef]:
    """Recursive, hidden files and folders skipped, symlinked folders followed once."""
    refs: list[InputRef] = []
    seen_dirs = {root.resolve()}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        keep = []
        for name in dirnames:
            sub = here / name
            real = sub.resolve()
            if name.startswith(".") or real in seen_dirs or _is_excluded(sub, excluded):
                continue
            seen_dirs.add(real)
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            kind = _kind(name)
            if kind is not None and not name.startswith("."):
                path = here / name
                refs.append(InputRef(path, path.relative_to(root).as_posix(), kind))
    if not refs:
        raise UsageError(
            f"no image or video files in folder {root}",
            hint=f"{_accepted()} Hidden files and folders are skipped.",
        )
    return sorted(refs, key=lambda r: r.source)


def _glob_base(pattern: str) -> Path:
    """The leading part of ``pattern`` without wildcards: sources are named relative to it."""
    parts = PurePath(pattern).parts
    plain: list[str] = []
    for part in parts[:-1]:
        if _GLOB_MAGIC.search(part):
            break
        plain.append(part)
    return Path(*plain) if plain else Path()


def _glob(pattern: str, excluded: Sequence[Path]) -> list[InputRef]:
    base = _glob_base(pattern)
    refs: list[InputRef] = []
    for match in glob.glob(pattern, recursive=True):
        path = Path(match)
        kind = _kind(path.name)
        if kind is None or not path.is_file() or _is_excluded(path, excluded):
            continue
        rel = os.path.relpath(match, base)
        source = path.name if rel.startswith("..") else PurePath(rel).as_posix()
        refs.append(InputRef(path, source, kind))
    if not refs:
        raise UsageError(f"no image or video files match {pattern!r}", hint=_accepted())
    return _unique(sorted(refs, key=lambda r: r.source))


def _read_list(list_path: Path) -> list[InputRef]:
    """One path per line; blank lines and ``#`` comments skipped; relative to the list's folder.

    Every listed path becomes an input, even a missing one (it fails at decode), so nothing the user
    listed disappears silently. An unknown suffix also fails at decode, with the accepted ones.
    """
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read list {list_path}: {e}") from e
    base = Path(os.path.abspath(list_path.parent))
    refs: list[InputRef] = []
    for lineno, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.isdigit() or _URL_RE.match(entry):
            try:
                _refuse_live(entry)
            except UsageError as e:
                raise UsageError(f"{list_path}:{lineno}: {e.message}", hint=e.hint) from None
        path = Path(os.path.normpath(base / os.path.expanduser(entry)))
        rel = os.path.relpath(path, base)
        source = path.name if rel.startswith("..") else PurePath(rel).as_posix()
        refs.append(InputRef(path, source, _kind(path.name) or "image"))
    if not refs:
        raise UsageError(f"no paths listed in {list_path}", hint="One image or video path per line.")
    return _unique(refs)


def _unique(refs: list[InputRef]) -> list[InputRef]:
    """Rename repeated sources ``name_2.ext``, ``name_3.ext``… (never to a name already present)."""
    taken = {r.source for r in refs}
    used: set[str] = set()
    out = []
    for ref in refs:
        if ref.source in used:
            p = PurePosixPath(ref.source)
            n = 2
            while (candidate := str(p.with_name(f"{p.stem}_{n}{p.suffix}"))) in taken:
                n += 1
            taken.add(candidate)
            ref = replace(ref, source=candidate)
        used.add(ref.source)
        out.append(ref)
    return out


# ---------------------------------------------------------------- the source


class FileSource:
    """Inputs discovered up front; ``events()`` decodes them one by one (see ``sources.base``).

    ``form`` says what the spec was: ``image``, ``video``, ``folder``, ``glob`` or ``list``. Holds no
    open resources between calls: each video container is closed by the generator that opened it.
    """

    def __init__(
        self, inputs: list[InputRef], *, vid_stride: int = 1, form: str = "", spec: str = ""
    ) -> None:
        self.inputs = inputs
        self.vid_stride = vid_stride
        self.form = form
        self.spec = spec
        self._estimate: int | None = None

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"FileSource({self.spec!r}, form={self.form!r}, inputs={len(self.inputs)})"

    def estimated_frames(self) -> int:
        """Images + ``ceil(frames / vid_stride)`` per video (container metadata; 0 if unreadable)."""
        if self._estimate is None:
            total = 0
            for ref in self.inputs:
                if ref.kind == "image":
                    total += 1
                else:
                    total += math.ceil(_probe_frame_count(ref.path) / self.vid_stride)
            self._estimate = total
        return self._estimate

    def events(self, stop: threading.Event | None = None) -> Iterator[SourceEvent]:
        """Per input: ``InputStart``, ``Frame``s, maybe ``InputFailure``, ``InputEnd``.

        ``stop`` is checked between inputs and between video frames; a video cut short by it still
        gets its ``InputEnd`` (so sinks finalize), and no further input starts.
        """
        for ref in self.inputs:
            if stop is not None and stop.is_set():
                return
            if ref.kind == "video":
                yield from _video_events(ref, self.vid_stride, stop)
            else:
                yield from _image_events(ref)


# ---------------------------------------------------------------- images


def _image_events(ref: InputRef) -> Iterator[SourceEvent]:
    yield InputStart(ref)
    try:
        image = read_image(ref.path)
    except InputError as e:
        yield InputFailure(ref, e.message)
        yield InputEnd(ref, 0)
        return
    yield Frame(image=image, source=ref.source, path=str(ref.path), index=0, timestamp=0.0, is_video=False)
    yield InputEnd(ref, 1)


def read_image(path: Path) -> np.ndarray:
    """Decode one image file to ``HxWx3`` uint8 BGR (policy in the module docstring).

    Raises ``InputError`` with a one-line reason when the file cannot be used.
    """
    if path.is_dir():
        raise InputError("is a folder, not an image file")
    if _kind(path.name) != "image" and path.exists():
        raise InputError(f"unsupported file type {path.suffix or '(no suffix)'!r}: not an image suffix")
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found") from None
    except OSError as e:
        raise InputError(f"cannot read file: {e.strerror or e}") from None
    return decode_image(buf)


def decode_image(buf: bytes) -> np.ndarray:
    """Decode encoded image bytes to ``HxWx3`` uint8 BGR; ``InputError`` when they are unusable."""
    if not buf:
        raise InputError("empty file (0 bytes)")
    fmt, size = _declared_size(buf)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise InputError(
            f"image too large: {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels "
            f"(limit {MAX_IMAGE_PIXELS:,}); downscale it first"
        )
    if buf.startswith(b"\xff\xd8\xff") and not _jpeg_complete(buf):
        raise InputError("truncated JPEG (no end-of-image marker)")
    if buf.startswith(_PNG_SIGNATURE) and not _png_complete(buf):
        raise InputError("truncated PNG (no IEND chunk)")
    try:
        image = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise InputError(f"cannot decode image: {str(e).strip().splitlines()[-1]}") from None
    if image is None:
        what = f"corrupt {fmt} data" if fmt else "unrecognised format"
        raise InputError(f"not a decodable image ({what})")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"decoder returned {image.shape} {image.dtype}, expected HxWx3 uint8")
    return image


def _declared_size(buf: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """``(format, (width, height))`` from the header, without decoding pixels.

    Pillow's format plugins are called directly: ``Image.open`` would raise its own decompression
    bomb error below our ``MAX_IMAGE_PIXELS`` (at twice ``Image.MAX_IMAGE_PIXELS``, ~179 Mpx).
    ``(None, None)`` for a format Pillow does not know: OpenCV's own limit (1 Gpx) still applies.
    """
    Image.init()
    prefix = buf[:16]
    for fmt in _SIZE_FORMATS:
        if fmt not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[fmt]
        accepted = accept is None or accept(prefix)
        if not accepted or isinstance(accepted, str):  # a str: "looks like it, but unsupported"
            continue
        try:
            im = factory(io.BytesIO(buf), "")
        except (SyntaxError, IndexError, TypeError, ValueError, struct.error, OSError, EOFError):
            continue
        return fmt, (int(im.size[0]), int(im.size[1]))
    return None, None


def _jpeg_complete(buf: bytes) -> bool:
    """The JPEG ends with ``FFD9`` (after padding), or its marker structure reaches ``FFD9`` (data
    appended after the image, as in motion photos)."""
    if buf.rstrip(_PADDING).endswith(b"\xff\xd9"):
        return True
    pos, n = 2, len(buf)
    while pos + 1 < n:
        if buf[pos] != 0xFF:
            return False
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # stand-alone markers
            pos += 2
            continue
        if pos + 4 > n:
            return False
        pos += 2 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # entropy-coded data: skip to the next marker that is not FF00 or RSTn
            while True:
                pos = buf.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return False
                nxt = buf[pos + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    pos += 2
                elif nxt == 0xFF:
                    pos += 1
                else:
                    break
    return False


def _png_complete(buf: bytes) -> bool:
    """The PNG ends with its ``IEND`` chunk (after padding), or its chunk list reaches ``IEND``."""
    if buf.rstrip(_PADDING).endswith(_PNG_IEND):
        return True
    pos, n = len(_PNG_SIGNATURE), len(buf)
    while pos + 8 <= n:
        length = int.from_bytes(buf[pos : pos + 4], "big")
        chunk_type = buf[pos + 4 : pos + 8]
        pos += 12 + length
        if chunk_type == b"IEND":
            return pos <= n
    return False


# ---------------------------------------------------------------- videos


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


def _probe_frame_count(path: Path) -> int:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            return _frame_count(container, container.streams.video[0])
    except (av.FFmpegError, OSError, ValueError):
        return 0


def _video_events(ref: InputRef, vid_stride: int, stop: threading.Event | None) -> Iterator[SourceEvent]:
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
