"""What a source emits, in order, for each input it discovered.

For every input: ``InputStart``, then zero or more ``Frame``s, then optionally ``InputFailure``
(the input, or the rest of it, could not be decoded), then ``InputEnd``. Sinks see the same events in
the same order, so a video writer opens on ``InputStart`` and finalizes on ``InputEnd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from densecnn.results import Frame

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)

InputKind = Literal["image", "video"]


def text_name(name: str) -> str:
    """``name`` as valid Unicode: bytes of a file name that are not UTF-8 (held by Python as lone
    surrogates) become ``\\xNN`` escapes, so JSON, CSV and terminals can carry it."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


@dataclass(frozen=True)
class InputRef:
    """One input found by a source: ``source`` is its path relative to the source root (POSIX),
    as valid Unicode (see :func:`text_name`; ``path`` keeps the real file name)."""

    path: Path
    source: str
    kind: InputKind

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", text_name(self.source))


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts read when a video opens. ``frame_count`` is the container's estimate (0: unknown)."""

    fps: Fraction
    width: int
    height: int
    frame_count: int
    codec: str


@dataclass(frozen=True)
class InputStart:
    ref: InputRef
    video: VideoInfo | None = None


@dataclass(frozen=True)
class InputFailure:
    """``error`` is a one-line message a user can act on; ``frame`` is set when a video broke mid-way."""

    ref: InputRef
    error: str
    frame: int | None = None


@dataclass(frozen=True)
class InputEnd:
    ref: InputRef
    frames: int


SourceEvent = InputStart | Frame | InputFailure | InputEnd
