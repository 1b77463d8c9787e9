"""Sources: what ``densecnn detect SOURCE`` reads, as an ordered stream of ``SourceEvent``s.

The event types load eagerly (sinks and the pipeline import them); ``open_source``, ``FileSource``,
``open_live``, ``LiveSource``, ``is_live``, ``read_image`` and ``decode_image`` load on first use,
so importing this package stays free of OpenCV and PyAV (the CLI's ``--help`` stays instant).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from densecnn.sources.files import FileSource, open_source
    from densecnn.sources.images import MAX_IMAGE_PIXELS, decode_image, read_image
    from densecnn.sources.stream import LiveSource, is_live, open_live

# name -> the submodule that defines it (imported on first use)
_LAZY = {
    "MAX_IMAGE_PIXELS": "images",
    "FileSource": "files",
    "LiveSource": "stream",
    "is_live": "stream",
    "open_live": "stream",
    "decode_image": "images",
    "open_source": "files",
    "read_image": "images",
}

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "VIDEO_SUFFIXES",
    "FileSource",
    "InputEnd",
    "InputFailure",
    "InputKind",
    "InputRef",
    "InputStart",
    "LiveSource",
    "SourceEvent",
    "VideoInfo",
    "decode_image",
    "is_live",
    "open_live",
    "open_source",
    "read_image",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
