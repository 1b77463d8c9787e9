"""The inputs of a Ray run, listed on the driver: what ``open_source`` finds for local folders, globs
and ``.txt`` lists (the same sources, names and order as the local engine), or the image files under a
URI that pyarrow's filesystems open (``s3://bucket/prefix``, ``gs://...``, ``file:///...``; a glob in
the last part, ``s3://bucket/imgs/*.jpg``, filters them). Videos and live sources are refused.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path, PurePosixPath
from typing import Any

from densecnn.errors import UsageError
from densecnn.sources.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputRef

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_MAGIC = re.compile(r"[*?[]")

LOCAL_ONLY = "Run it with the local engine (without --engine ray)."


def list_inputs(spec: str, *, exclude: list[Path], on_corrupt: str) -> tuple[Any, Any]:
    """``(FileSource, filesystem)``: the image inputs of ``spec`` and the pyarrow filesystem their
    ``path`` is read from (None: the local one, read as the local engine reads it)."""
    from densecnn.sources.files import FileSource, open_source
    from densecnn.sources.stream import is_live

    if is_live(spec):
        raise UsageError(
            f"--engine ray runs over image files; {spec!r} is a live source (webcam or stream).",
            hint=LOCAL_ONLY,
        )
    if _URI_RE.match(spec):
        fs, refs = _list_uri(spec)
        source = FileSource(refs, form="uri", spec=spec)
    else:
        source, fs = open_source(spec, exclude=exclude, on_corrupt=on_corrupt), None  # type: ignore[arg-type]
    videos = [ref.source for ref in source.inputs if ref.kind == "video"]
    if videos:
        shown = ", ".join(videos[:3]) + (f" and {len(videos) - 3} more" if len(videos) > 3 else "")
        raise UsageError(
            f"--engine ray runs over images only; {spec} has {len(videos)} video(s): {shown}.",
            hint=f"{LOCAL_ONLY} Or give a folder, glob or list of images.",
        )
    source.on_corrupt = on_corrupt
    return source, fs


def _list_uri(uri: str) -> tuple[Any, list[InputRef]]:
    """The pyarrow filesystem of ``uri`` and its image files, sorted by their path under the root."""
    import pyarrow.fs as pafs

    head, _, last = uri.rstrip("/").rpartition("/")
    pattern = last if _GLOB_MAGIC.search(last) else None
    root_uri = head if pattern else uri
    try:
        fs, root = pafs.FileSystem.from_uri(root_uri)
        info = fs.get_file_info(root)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(
            f"cannot open {uri}: {exc}",
            hint="Check the URI and the credentials of its store (pyarrow reads s3://, gs://, hdfs://, "
            "file://).",
        ) from None
    if info.type == pafs.FileType.File and pattern is None:
        files = [(root, PurePosixPath(root).name)]
    elif info.type == pafs.FileType.Directory:
        selector = pafs.FileSelector(root, recursive=pattern is None)
        files = []
        for entry in fs.get_file_info(selector):
            rel = PurePosixPath(entry.path).relative_to(PurePosixPath(root)).as_posix()
            hidden = any(part.startswith(".") for part in rel.split("/"))
            if entry.type != pafs.FileType.File or hidden:
                continue
            if pattern is None or fnmatch.fnmatch(PurePosixPath(rel).name, pattern):
                files.append((entry.path, rel))
    else:
        raise UsageError(f"source not found: {uri}", hint="Check the bucket and prefix.")
    refs = []
    for path, rel in sorted(files, key=lambda f: f[1]):
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
            refs.append(InputRef(Path(path), rel, "image" if suffix in IMAGE_SUFFIXES else "video"))
    if not refs:
        raise UsageError(f"no image files under {uri}", hint=f"Accepted: {' '.join(sorted(IMAGE_SUFFIXES))}.")
    return fs, refs


def read_bytes(path: str, filesystem: Any) -> bytes:
    """The bytes of one input file, from ``filesystem`` (pyarrow) or the local disk (None: the local
    engine's checks and messages). Raises ``InputError`` with a one-line reason."""
    from densecnn.errors import InputError
    from densecnn.sources.images import read_image_bytes

    if filesystem is None:
        return read_image_bytes(Path(path))
    try:
        with filesystem.open_input_stream(path) as fh:
            return bytes(fh.readall())
    except FileNotFoundError:
        raise InputError("file not found") from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc}") from None
