"""File sources on real files: generated images and videos, broken files, and the shared data."""

from __future__ import annotations

import io
import itertools
import math
import struct
import threading
import time
import zlib
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from densecnn.errors import UsageError
from densecnn.results import Frame
from densecnn.sources import (
    FileSource,
    InputEnd,
    InputFailure,
    InputStart,
    SourceEvent,
    VideoInfo,
    open_source,
    read_image,
)
from densecnn.sources import images as images_mod
from densecnn.sources import video as video_mod

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "slow_traffic_small.mp4"
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- helpers


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w) if c == 1 else (h, w, c)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def write_video(
    path: Path,
    frames: int = 20,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    options: dict[str, str] | None = None,
    pts: list[int] | None = None,
) -> Path:
    """H.264 via PyAV; with ``pts`` (milliseconds) the frame times are set explicitly (VFR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if pts is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(frames if pts is None else len(pts)):
            frame = av.VideoFrame.from_ndarray(noise(h, w), format="bgr24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def pts_seconds(path: Path) -> list[float]:
    """Reference timestamps straight from PyAV: (pts - first pts) * time_base."""
    with av.open(str(path)) as container:
        stamps = [f.pts * f.time_base for f in container.decode(video=0)]
    return [float(t - stamps[0]) for t in stamps]


def collect(source: FileSource, **kw: Any) -> list[SourceEvent]:
    events = list(source.events(**kw))
    check_order(events)
    return events


def check_order(events: Iterable[SourceEvent]) -> None:
    """Per input: InputStart, Frames, at most one InputFailure (after the frames), InputEnd."""
    current = None
    frames = 0
    failed = False
    for e in events:
        if isinstance(e, InputStart):
            assert current is None, "InputStart before the previous InputEnd"
            current, frames, failed = e.ref, 0, False
        elif isinstance(e, Frame):
            assert current is not None and not failed
            assert e.source == current.source and e.path == str(current.path)
            frames += 1
        elif isinstance(e, InputFailure):
            assert e.ref == current and not failed
            assert e.error and "\n" not in e.error
            failed = True
        elif isinstance(e, InputEnd):
            assert e.ref == current and e.frames == frames
            current = None
        else:
            raise AssertionError(f"unexpected event {e!r}")
    assert current is None, "last input has no InputEnd"


def only_input(events: list[SourceEvent]) -> tuple[list[Frame], list[InputFailure]]:
    return [e for e in events if isinstance(e, Frame)], [e for e in events if isinstance(e, InputFailure)]


def single(path: Path, **kw: Any) -> tuple[list[Frame], list[InputFailure]]:
    return only_input(collect(open_source(path, **kw)))


def png_with_header(width: int, height: int) -> bytes:
    """A structurally valid PNG (IHDR, a tiny IDAT, IEND) that declares ``width`` x ``height``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


class ContainerSpy:
    """Wraps ``av.open`` to record whether every container it opened was closed."""

    def __init__(self) -> None:
        self.opened: list[Any] = []
        self.closed = 0
        self._real = av.open

    def __call__(self, *args: Any, **kw: Any) -> Any:
        spy = self

        class Proxy:
            def __init__(self, inner: Any) -> None:
                self._inner = inner

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

            def close(self) -> None:
                spy.closed += 1
                self._inner.close()

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                self.close()

        proxy = Proxy(self._real(*args, **kw))
        self.opened.append(proxy)
        return proxy


# ---------------------------------------------------------------- discovery


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    write_image(root / "b.jpg", noise(48, 64))
    write_image(root / "A.PNG", noise(10, 12))
    write_image(root / "sub" / "c.png", noise(30, 20))
    write_image(root / "sub" / "deep" / "d.bmp", noise(17, 33))
    write_video(root / "sub" / "clip.mp4", frames=5)
    write_image(root / ".hidden" / "h.jpg", noise(8, 8))
    write_image(root / ".dot.jpg", noise(8, 8))
    write_image(root / "runs" / "exp" / "out.jpg", noise(8, 8))
    (root / "notes.txt").write_text("not an input\n")
    (root / "labels.json").write_text("{}")
    return root


def test_folder_is_recursive_sorted_and_skips_hidden_and_excluded(tree: Path) -> None:
    source = open_source(tree, exclude=[tree / "runs"])
    assert [r.source for r in source.inputs] == [
        "A.PNG",
        "b.jpg",
        "sub/c.png",
        "sub/clip.mp4",
        "sub/deep/d.bmp",
    ]
    assert [r.kind for r in source.inputs] == ["image", "image", "image", "video", "image"]
    assert all(r.path == tree / r.source for r in source.inputs)
    assert source.form == "folder"
    assert source.estimated_frames() == 4 + 5
    with_runs = open_source(str(tree))
    assert "runs/exp/out.jpg" in [r.source for r in with_runs.inputs]


def test_folder_events_cover_every_input(tree: Path) -> None:
    events = collect(open_source(tree, exclude=[tree / "runs"]))
    starts = [e.ref.source for e in events if isinstance(e, InputStart)]
    assert starts == [r.source for r in open_source(tree, exclude=[tree / "runs"]).inputs]
    frames, failures = only_input(events)
    assert not failures
    assert len(frames) == 9
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3 for f in frames)


def test_glob_names_sources_relative_to_its_base(tree: Path) -> None:
    source = open_source(str(tree / "**" / "*.png"))
    assert source.form == "glob"
    assert [r.source for r in source.inputs] == ["sub/c.png"]  # the pattern itself is case-sensitive
    source = open_source(str(tree / "sub" / "*"))
    assert [r.source for r in source.inputs] == ["c.png", "clip.mp4"]  # folders and hidden files skipped
    source = open_source(str(tree / "*" / "deep" / "*.bmp"))
    assert [r.source for r in source.inputs] == ["sub/deep/d.bmp"]


def test_list_resolves_relative_paths_and_keeps_missing_entries(tree: Path, tmp_path: Path) -> None:
    outside = write_image(tmp_path / "elsewhere" / "b.jpg", noise(5, 7))
    listing = tree / "inputs.txt"
    listing.write_text(
        "# my inputs\n\nsub/c.png\n  b.jpg  \n"
        + f"{outside}\n"
        + "missing.jpg\nsub/clip.mp4\nsub\nlabels.json\ngone.mp4\n"
    )
    source = open_source(listing)
    assert source.form == "list"
    assert [r.source for r in source.inputs] == [
        "sub/c.png",
        "b.jpg",
        "b_2.jpg",  # a second b.jpg from outside the list's folder: renamed, not dropped
        "missing.jpg",
        "sub/clip.mp4",
        "sub",
        "labels.json",
        "gone.mp4",
    ]
    events = collect(source)
    frames, failures = only_input(events)
    assert [f.source for f in frames if not f.is_video] == ["sub/c.png", "b.jpg", "b_2.jpg"]
    assert frames[2].image.shape == (5, 7, 3)
    assert {f.ref.source: f.error for f in failures} == {
        "missing.jpg": "file not found",
        "sub": "is a folder, not an image file",
        "labels.json": failures[-2].error,
        "gone.mp4": "file not found",
    }
    assert "unsupported file type '.json'" in failures[-2].error


def test_suffixes_are_case_insensitive(tmp_path: Path) -> None:
    img = write_image(tmp_path / "UPPER.JPG", noise(9, 11))
    vid = write_video(tmp_path / "CLIP.MP4", frames=3)
    assert open_source(img).inputs[0].kind == "image"
    assert open_source(vid).inputs[0].kind == "video"
    assert open_source(img).inputs[0].source == "UPPER.JPG"


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("0", "live sources"),
        ("12", "live sources"),
        ("rtsp://x", "live sources"),
        ("http://example.com/a.mp4", "live sources"),
        ("rtmp://host/app", "live sources"),
    ],
)
def test_live_sources_are_refused(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as info:
        open_source(spec)
    assert info.value.hint


def test_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="source not found") as info:
        open_source(tmp_path / "nope.jpg")
    assert info.value.hint
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)
    write_image(empty / ".hidden" / "x.jpg", noise(4, 4))
    (empty / "readme.md").write_text("x")
    with pytest.raises(UsageError, match="no image or video files in folder") as info:
        open_source(empty)
    assert ".jpg" in (info.value.hint or "") and ".mp4" in (info.value.hint or "")
    with pytest.raises(UsageError, match="no image or video files match"):
        open_source(str(tmp_path / "*.png"))
    with pytest.raises(UsageError, match=r"unsupported file type '\.md'"):
        open_source(empty / "readme.md")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="no paths listed"):
        open_source(tmp_path / "empty.txt")
    (tmp_path / "streams.txt").write_text("a.jpg\nrtsp://cam/1\n")
    with pytest.raises(UsageError, match=r"streams.txt:2: live sources"):
        open_source(tmp_path / "streams.txt")
    write_image(tmp_path / "ok.jpg", noise(4, 4))
    for bad in (0, -1):
        with pytest.raises(UsageError, match="vid-stride"):
            open_source(tmp_path / "ok.jpg", vid_stride=bad)


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("name", "h", "w"), [("a.jpg", 48, 64), ("b.png", 1, 1), ("c.bmp", 17, 33), ("d.webp", 31, 7)]
)
def test_good_image_yields_one_frame(tmp_path: Path, name: str, h: int, w: int) -> None:
    image = noise(h, w)
    frames, failures = single(write_image(tmp_path / name, image))
    assert not failures and len(frames) == 1
    f = frames[0]
    assert f.image.shape == (h, w, 3) and f.image.dtype == np.uint8
    assert (f.index, f.timestamp, f.is_video, f.source) == (0, 0.0, False, name)
    if name.endswith((".png", ".bmp")):  # lossless
        assert np.array_equal(f.image, image)


def test_gray_rgba_and_16bit_become_bgr_uint8(tmp_path: Path) -> None:
    gray = noise(30, 40, 1)
    frames, _ = single(write_image(tmp_path / "gray.png", gray))
    assert frames[0].image.shape == (30, 40, 3)
    assert all(np.array_equal(frames[0].image[..., c], gray) for c in range(3))
    bgra = noise(10, 20, 4)
    frames, _ = single(write_image(tmp_path / "rgba.png", bgra))
    assert np.array_equal(frames[0].image, bgra[..., :3])  # alpha dropped, not composited
    deep = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300).astype(np.uint16)
    frames, _ = single(write_image(tmp_path / "deep.png", deep))
    assert frames[0].image.dtype == np.uint8
    assert np.array_equal(frames[0].image[..., 0], (deep >> 8).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20), (255, 0, 0)).save(path, exif=exif.tobytes())
    assert read_image(path).shape == (40, 20, 3)
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (40, 20), (255, 0, 0)).save(plain)  # no EXIF at all
    assert read_image(plain).shape == (20, 40, 3)


def _jpeg_bytes() -> bytes:
    ok, buf = cv2.imencode(".jpg", noise(120, 160))
    assert ok
    return buf.tobytes()


def _png_bytes() -> bytes:
    ok, buf = cv2.imencode(".png", noise(60, 80))
    assert ok
    return buf.tobytes()


BAD_FILES = [
    ("zero.jpg", lambda: b"", "empty file (0 bytes)"),
    ("half.jpg", lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated JPEG (no end-of-image marker)"),
    ("short.jpg", lambda: _jpeg_bytes()[:-2], "truncated JPEG"),
    ("half.png", lambda: _png_bytes()[: len(_png_bytes()) // 2], "truncated PNG (no IEND chunk)"),
    ("noise.png", lambda: RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not a decodable image"),
    ("text.jpg", lambda: b"hello, I am not a picture\n" * 20, "not a decodable image (unrecognised format)"),
    ("badbody.png", lambda: png_with_header(64, 64), "not a decodable image (corrupt PNG data)"),
]


@pytest.mark.parametrize(("name", "make", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_image_fails_with_a_clear_message(tmp_path: Path, name: str, make: Any, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(make())
    events = collect(open_source(path))
    assert [type(e) for e in events] == [InputStart, InputFailure, InputEnd]
    failure = events[1]
    assert isinstance(failure, InputFailure)
    assert message in failure.error
    assert failure.ref.source == name and failure.frame is None


def test_bad_files_in_a_folder_do_not_stop_the_others(tmp_path: Path) -> None:
    for name, make, _ in BAD_FILES:
        (tmp_path / name).write_bytes(make())
    write_image(tmp_path / "good.png", noise(5, 6))
    events = collect(open_source(tmp_path))
    frames, failures = only_input(events)
    assert [f.source for f in frames] == ["good.png"]
    assert len(failures) == len(BAD_FILES)


def test_jpeg_padding_and_appended_data_are_accepted(tmp_path: Path) -> None:
    jpeg = _jpeg_bytes()
    for name, data in [
        ("pad.jpg", jpeg + b"\0" * 100 + b"\r\n"),
        ("motion.jpg", jpeg + b"\0\0\0\x18ftypmp42" * 50),
    ]:
        (tmp_path / name).write_bytes(data)
        assert read_image(tmp_path / name).shape == (120, 160, 3)
    (tmp_path / "png_tail.png").write_bytes(_png_bytes() + b"trailing bytes")
    assert read_image(tmp_path / "png_tail.png").shape == (60, 80, 3)


def test_huge_declared_size_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(20000, 20000))

    def no_decode(*args: Any) -> None:
        raise AssertionError("cv2.imdecode must not run on a refused image")

    monkeypatch.setattr(images_mod.cv2, "imdecode", no_decode)
    frames, failures = single(path)
    assert not frames
    assert "image too large: 20000x20000 = 400,000,000 pixels" in failures[0].error


def test_pixel_limit_is_ours_not_pillows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 15000 x 15000 = 225 Mpx: above Pillow's own bomb error (~179 Mpx), below MAX_IMAGE_PIXELS.
    assert images_mod._declared_size(png_with_header(15000, 15000)) == ("PNG", (15000, 15000))
    monkeypatch.setattr(images_mod, "MAX_IMAGE_PIXELS", 1000)
    frames, failures = single(write_image(tmp_path / "small.jpg", noise(48, 64)))
    assert not frames and "64x48 = 3,072 pixels (limit 1,000)" in failures[0].error


# ---------------------------------------------------------------- videos


@pytest.mark.parametrize("stride", [1, 2, 3, 7])
def test_video_frames_stride_and_timestamps(tmp_path: Path, stride: int) -> None:
    path = write_video(tmp_path / "clip.mp4", frames=20, fps=25, size=(64, 48))
    source = open_source(path, vid_stride=stride)
    assert source.estimated_frames() == math.ceil(20 / stride)
    events = collect(source)
    start = events[0]
    assert isinstance(start, InputStart)
    assert start.video == VideoInfo(fps=Fraction(25), width=64, height=48, frame_count=20, codec="h264")
    frames, failures = only_input(events)
    assert not failures
    assert [f.index for f in frames] == list(range(0, 20, stride))
    assert all(f.is_video and f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    reference = pts_seconds(path)
    assert [f.timestamp for f in frames] == [reference[i] for i in range(0, 20, stride)]
    assert frames[0].timestamp == 0.0
    assert isinstance(events[-1], InputEnd) and events[-1].frames == len(frames)


def test_variable_frame_rate_timestamps_follow_pts(tmp_path: Path) -> None:
    pts_ms = [0, 40, 80, 200, 240, 500, 520]
    path = write_video(tmp_path / "vfr.mkv", pts=pts_ms)
    frames, failures = single(path)
    assert not failures  # duration x fps (14) overestimates VFR: no false "ended early"
    assert [f.timestamp for f in frames] == pytest.approx([p / 1000 for p in pts_ms])


def test_mkv_frame_estimate_from_duration(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", frames=30, fps=10)
    source = open_source(path, vid_stride=4)
    assert source.estimated_frames() == math.ceil(30 / 4)
    frames, _ = only_input(collect(source))
    assert len(frames) == 8


def test_truncated_videos(tmp_path: Path) -> None:
    # Default MP4 (index at the end) cut in half cannot be opened at all.
    whole = write_video(tmp_path / "whole.mp4", frames=30).read_bytes()
    (tmp_path / "half.mp4").write_bytes(whole[: len(whole) // 2])
    events = collect(open_source(tmp_path / "half.mp4"))
    assert [type(e) for e in events] == [InputStart, InputFailure, InputEnd]
    assert isinstance(events[0], InputStart) and events[0].video is None
    assert isinstance(events[1], InputFailure) and events[1].error.startswith("cannot open video: ")
    # Faststart MP4 (index first) cut in half: the first frames come out, then a failure at the cut.
    faststart = write_video(tmp_path / "fs.mp4", frames=60, size=(96, 64), options={"movflags": "faststart"})
    data = faststart.read_bytes()
    (tmp_path / "fs_half.mp4").write_bytes(data[: len(data) // 2])
    frames, failures = single(tmp_path / "fs_half.mp4")
    assert 0 < len(frames) < 60
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len(failures) == 1 and failures[0].frame == len(frames)
    assert failures[0].error.startswith(("decode error at frame", "video ended early"))


def test_not_a_video_and_no_video_stream(tmp_path: Path) -> None:
    (tmp_path / "text.mp4").write_text("no video here\n" * 100)
    (tmp_path / "empty.mkv").write_bytes(b"")
    audio = tmp_path / "audio.mkv"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    errors = {}
    for name in ("text.mp4", "empty.mkv", "audio.mkv"):
        frames, failures = single(tmp_path / name)
        assert not frames and len(failures) == 1
        errors[name] = failures[0].error
    assert errors["text.mp4"].startswith("cannot open video:")
    assert errors["empty.mkv"].startswith("cannot open video:")
    assert errors["audio.mkv"] == "no video stream in file"
    assert open_source(tmp_path / "text.mp4").estimated_frames() == 0


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_VIDEO.exists(), reason="../shared/data is not beside this checkout")
def test_shared_traffic_video() -> None:
    source = open_source(SHARED_VIDEO)
    assert source.estimated_frames() == 914
    t0 = time.perf_counter()
    events = collect(source)
    elapsed = time.perf_counter() - t0
    start = events[0]
    assert isinstance(start, InputStart) and start.video is not None
    assert (start.video.width, start.video.height, start.video.codec) == (640, 360, "h264")
    assert float(start.video.fps) == pytest.approx(29.97, abs=0.01)
    frames, failures = only_input(events)
    assert not failures and len(frames) == 914
    assert frames[0].image.shape == (360, 640, 3)
    stamps = [f.timestamp for f in frames]
    assert stamps[0] == 0.0 and all(b > a for a, b in itertools.pairwise(stamps))
    assert stamps[-1] == pytest.approx(913 * 1001 / 30000, abs=1e-3)
    print(
        f"\ndecoded {len(frames)} frames of 640x360 in {elapsed:.2f} s: {len(frames) / elapsed:.0f} frames/s"
    )
    assert open_source(SHARED_VIDEO, vid_stride=5).estimated_frames() == math.ceil(914 / 5)


# ---------------------------------------------------------------- stopping


def test_stop_event_ends_a_video_early_and_closes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_video(tmp_path / "a.mp4", frames=30)
    write_video(tmp_path / "b.mp4", frames=30)
    spy = ContainerSpy()
    monkeypatch.setattr(video_mod.av, "open", spy)
    stop = threading.Event()
    events = []
    for event in open_source(tmp_path).events(stop=stop):
        events.append(event)
        if isinstance(event, Frame) and event.index == 2:
            stop.set()
    check_order(events)
    assert [type(e) for e in events] == [InputStart, Frame, Frame, Frame, InputEnd]
    assert len(spy.opened) == 1 and spy.closed == 1


def test_stop_between_images(tmp_path: Path) -> None:
    for i in range(5):
        write_image(tmp_path / f"{i}.png", noise(4, 4))
    stop = threading.Event()
    events = []
    for event in open_source(tmp_path).events(stop):
        events.append(event)
        if isinstance(event, InputEnd):
            stop.set()
    assert [type(e) for e in events] == [InputStart, Frame, InputEnd]


def test_consumer_closing_the_generator_closes_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_video(tmp_path / "a.mp4", frames=30)
    spy = ContainerSpy()
    monkeypatch.setattr(video_mod.av, "open", spy)
    gen = open_source(tmp_path / "a.mp4").events()
    assert isinstance(next(gen), InputStart)
    assert isinstance(next(gen), Frame)
    assert spy.closed == 0
    gen.close()
    assert len(spy.opened) == 1 and spy.closed == 1


def test_package_import_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, densecnn; before = set(sys.modules); import densecnn.sources.base, densecnn.sources; "
        "print(sorted({'cv2', 'av'} & (set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pillow_sanity_for_bytes_helpers() -> None:
    # The crafted header PNG is what Pillow sees as 20000 x 20000 (keeps the bomb test honest).
    with Image.open(io.BytesIO(png_with_header(300, 200))) as im:
        assert im.size == (300, 200)
