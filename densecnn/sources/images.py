"""Image inputs: read and decode one file to ``HxWx3`` uint8 BGR, with the checks before decoding.

Decode policy (one path for every image, the same as ``cv2.imread`` and Ultralytics):

- Images are read as bytes and decoded by ``cv2.imdecode(buf, cv2.IMREAD_COLOR)``: EXIF orientation
  is applied, grayscale becomes 3-channel BGR, alpha is dropped, 16-bit is scaled to 8-bit. The result
  is always ``HxWx3`` uint8 BGR.
- Before decoding, the pixel size is read from the header with Pillow's format plugins and more than
  ``MAX_IMAGE_PIXELS`` pixels are refused (OpenCV raises above ~1 gigapixel, and a decompression bomb
  would exhaust memory first).
- OpenCV does not reliably report truncated files, so a JPEG must reach its end-of-image marker
  ``FFD9`` and a PNG its ``IEND`` chunk (trailing padding or appended data after them is allowed).
- OpenCV (libjpeg) decodes a JPEG with corrupt entropy-coded data as a full-size image with grey
  or garbled parts and only a "Corrupt JPEG data" line on stderr. So every JPEG is first decoded
  strictly by FFmpeg's JPEG decoder (``err_detect=explode``, ~1 ms per megapixel), which raises on
  such data. ``on_corrupt="skip"`` (``--on-corrupt``, default) reports truncated or corrupt files
  as failed inputs; ``"process"`` decodes them anyway, as OpenCV does.

A bad image yields ``InputFailure`` with a one-line reason, never silence.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from densecnn.errors import InputError
from densecnn.results import Frame
from densecnn.sources.base import IMAGE_SUFFIXES, InputEnd, InputFailure, InputRef, InputStart, SourceEvent

MAX_IMAGE_PIXELS = 250_000_000
"""Images declaring more pixels than this are refused before decoding."""

_PADDING = b"\x00 \t\r\n"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
# Pillow plugins for the formats OpenCV decodes; all identify files by magic bytes. (Plugins without
# magic, such as TGA, would "recognise" random bytes and report a random size.)
_SIZE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "JPEG2000", "PPM")


OnCorrupt = Literal["skip", "process"]


def image_events(
    ref: InputRef, *, on_corrupt: OnCorrupt = "skip", data: bytes | InputError | None = None
) -> Iterator[SourceEvent]:
    """``InputStart``, one ``Frame`` (or an ``InputFailure``), ``InputEnd`` for one image input.

    ``data``: the file's bytes, or why they could not be read, when an earlier stage read them (the
    Ray engine reads in one stage and decodes in the worker); None: read ``ref.path`` here.
    """
    yield InputStart(ref)
    try:
        if isinstance(data, InputError):
            raise data
        buf = read_image_bytes(ref.path) if data is None else data
        image = decode_image(buf, on_corrupt=on_corrupt)
    except InputError as e:
        yield InputFailure(ref, e.message)
        yield InputEnd(ref, 0)
        return
    yield Frame(image=image, source=ref.source, path=str(ref.path), index=0, timestamp=0.0, is_video=False)
    yield InputEnd(ref, 1)


def read_image(path: Path, *, on_corrupt: OnCorrupt = "skip") -> np.ndarray:
    """Decode one image file to ``HxWx3`` uint8 BGR (policy in the module docstring).

    Raises ``InputError`` with a one-line reason when the file cannot be used.
    """
    return decode_image(read_image_bytes(path), on_corrupt=on_corrupt)


def read_image_bytes(path: Path) -> bytes:
    """The encoded bytes of the image file ``path``; ``InputError`` with a one-line reason when it is
    a folder, has no image suffix, or cannot be read."""
    if path.is_dir():
        raise InputError("is a folder, not an image file")
    if PurePath(path.name).suffix.lower() not in IMAGE_SUFFIXES and path.exists():
        raise InputError(f"unsupported file type {path.suffix or '(no suffix)'!r}: not an image suffix")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found") from None
    except OSError as e:
        raise InputError(f"cannot read file: {e.strerror or e}") from None


def decode_image(buf: bytes, *, on_corrupt: OnCorrupt = "skip") -> np.ndarray:
    """Decode encoded image bytes to ``HxWx3`` uint8 BGR; ``InputError`` when they are unusable
    (``on_corrupt="process"``: truncated or corrupt JPEG/PNG data is decoded anyway)."""
    if not buf:
        raise InputError("empty file (0 bytes)")
    fmt, size = _declared_size(buf)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise InputError(
            f"image too large: {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels "
            f"(limit {MAX_IMAGE_PIXELS:,}); downscale it first"
        )
    strict = on_corrupt != "process"
    if strict and buf.startswith(b"\xff\xd8\xff"):
        if not _jpeg_complete(buf):
            raise InputError("truncated JPEG (no end-of-image marker)")
        damage = _jpeg_damage(buf)
        if damage is not None:
            raise InputError(f"corrupt JPEG data ({damage}); --on-corrupt process decodes it anyway")
    if strict and buf.startswith(_PNG_SIGNATURE) and not _png_complete(buf):
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


def header_size(path: Path, *, head: int = 262_144) -> tuple[int, int] | None:
    """``(height, width)`` as an image file's header declares it (read from its first ``head``
    bytes, nothing decoded; EXIF orientation not applied); None when unreadable."""
    try:
        with open(path, "rb") as fh:
            buf = fh.read(head)
    except OSError:
        return None
    _, size = _declared_size(buf)
    return (size[1], size[0]) if size is not None else None


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


def _jpeg_damage(buf: bytes) -> str | None:
    """What FFmpeg's JPEG decoder finds wrong with ``buf`` when told to stop at any damage
    (``err_detect=explode``), or None. Only "invalid data" counts: a feature FFmpeg does not
    support (e.g. arithmetic coding) is left to OpenCV."""
    import av

    try:
        codec = av.CodecContext.create("mjpeg", "r")
        codec.options = {"err_detect": "explode"}
        codec.decode(av.Packet(buf))
        codec.decode(None)
    except av.error.InvalidDataError:
        return "the decoder found invalid data in the compressed image"
    except Exception:
        return None
    return None


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
