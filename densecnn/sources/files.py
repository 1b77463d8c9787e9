"""File sources: one image, one video, a folder, a glob or a ``.txt`` list of paths.

This module discovers the inputs; ``sources.images`` decodes images (the decode policy is there) and
``sources.video`` decodes videos with PyAV.

Every input discovered is reported: a bad one yields ``InputFailure`` with a one-line reason, never
silence. Folder and glob inputs are sorted by their relative POSIX path; a ``.txt`` list keeps its
own order.
"""

from __future__ import annotations

import glob
import math
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path, PurePath, PurePosixPath

from densecnn.errors import UsageError
from densecnn.sources.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputKind, InputRef, SourceEvent
from densecnn.sources.images import (
    MAX_IMAGE_PIXELS,
    OnCorrupt,
    decode_image,
    image_events,
    read_image,
)
from densecnn.sources.video import probe_frame_count, video_events

__all__ = ["MAX_IMAGE_PIXELS", "FileSource", "decode_image", "open_source", "read_image"]

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_MAGIC = re.compile(r"[*?[]")


def _accepted() -> str:
    return (
        f"Accepted: images {' '.join(sorted(IMAGE_SUFFIXES))}; videos {' '.join(sorted(VIDEO_SUFFIXES))}; "
        "or a .txt file listing paths (any letter case)."
    )


# ---------------------------------------------------------------- discovery


def open_source(
    spec: str | Path | Sequence[str | Path],
    *,
    vid_stride: int = 1,
    exclude: Sequence[Path] = (),
    on_corrupt: OnCorrupt = "skip",
) -> FileSource:
    """Discover the inputs of ``spec``: an image, a video, a folder, a glob, a ``.txt`` list, or (from
    Python) a sequence of image and video paths, kept in order (outputs named after each file name).
    ``on_corrupt``: what happens to truncated or corrupt images (see ``sources.images``).

    ``exclude`` lists folders whose contents a folder or glob never yields (the run's own output
    folder may sit inside the input folder). Raises ``UsageError`` when there is nothing to run.
    """
    source = _discover(spec, vid_stride=vid_stride, exclude=exclude)
    source.on_corrupt = on_corrupt
    return source


def _discover(
    spec: str | Path | Sequence[str | Path], *, vid_stride: int, exclude: Sequence[Path]
) -> FileSource:
    if isinstance(vid_stride, bool) or not isinstance(vid_stride, int) or vid_stride < 1:
        raise UsageError(f"--vid-stride must be an integer >= 1, got {vid_stride!r}")
    if not isinstance(spec, (str, Path)):
        refs = [InputRef(Path(p), Path(p).name, _kind(Path(p).name) or "image") for p in spec]
        if not refs:
            raise UsageError("the list of inputs is empty.")
        return FileSource(_unique(refs), vid_stride=vid_stride, form="list", spec=f"{len(refs)} paths")
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
            f"live sources (webcams, streams) are not file inputs: {text!r}",
            hint="Pass a live source on the command line or list several in a .streams file "
            "(densecnn.sources.stream.open_live opens them). A .txt list holds file paths.",
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

    on_corrupt: OnCorrupt = "skip"

    def __init__(
        self, inputs: list[InputRef], *, vid_stride: int = 1, form: str = "", spec: str = ""
    ) -> None:
        self.inputs = inputs
        self.vid_stride = vid_stride
        self.hwaccel: str | None = None  # decode videos on this device ("cuda:0"): set for GPU models
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
                    total += math.ceil(probe_frame_count(ref.path) / self.vid_stride)
            self._estimate = total
        return self._estimate

    def image_sizes(self, limit: int = 32) -> list[tuple[int, int]]:
        """``(height, width)`` of up to ``limit`` of the images, spread over the list, from their
        headers (no decoding); files that cannot be read are left out."""
        from densecnn.sources.images import header_size

        images = [ref for ref in self.inputs if ref.kind == "image"]
        step = max(1, len(images) // limit)
        sizes = [header_size(ref.path) for ref in images[::step][:limit]]
        return [size for size in sizes if size is not None]

    def events(self, stop: threading.Event | None = None) -> Iterator[SourceEvent]:
        """Per input: ``InputStart``, ``Frame``s, maybe ``InputFailure``, ``InputEnd``.

        ``stop`` is checked between inputs and between video frames; a video cut short by it still
        gets its ``InputEnd`` (so sinks finalize), and no further input starts.
        """
        for ref in self.inputs:
            if stop is not None and stop.is_set():
                return
            if ref.kind == "video":
                yield from video_events(ref, self.vid_stride, stop, self.hwaccel)
            else:
                yield from image_events(ref, on_corrupt=self.on_corrupt)
