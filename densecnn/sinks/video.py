"""Annotated video output: H.264 in fragmented MP4 through PyAV.

One ``.mp4`` per video input, at ``output_path(root, source, suffix=".mp4")``. While a run goes, the
container is a fragmented MP4 flushed at every fragment (one per keyframe), so a run killed mid-way,
even by SIGKILL, leaves a playable file holding every completed fragment. Keyframes come every
``keyframe_interval`` output frames (default: about two seconds), which bounds what such a kill can
lose.

When the input ends, the file is remuxed (packets copied, nothing re-encoded) into a fragmented MP4
with a global ``sidx`` index after the ``moov`` and atomically put in its place. Chromium plays a
fragmented MP4 progressively over HTTP only when it has that index (without it, it waits for the
whole download); Firefox plays both. A run killed during the remux keeps the fragmented file.
``bench/report_browser.py`` measured this against a ``faststart`` (unfragmented) rewrite.

Every output frame is stamped with its input frame's ``timestamp`` as predictions.jsonl records it,
in whole microseconds (milliseconds for the MPEG-4 fallback), truncated the way browsers truncate a
seek time (the double nearest 0.5005 is just below it: that frame starts at 500499 µs), and no
B-frames are used, so there are no composition offsets and no edit list: at the JSONL timestamp of
frame k, and until that of frame k+1, any player shows output frame k (a dropped frame or a
reconnect gap of a live stream plays in real time, shown as a held frame).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from densecnn.fsutil import atomic_write_json, output_path
from densecnn.results import Prediction
from densecnn.sinks.base import Sink
from densecnn.sources.base import InputEnd, InputStart

PREFERRED_CODEC = "libx264"
FALLBACK_CODEC = "mpeg4"
# empty_moov + frag_keyframe: no index at the end to lose; flush_packets: each fragment reaches the OS
# as soon as it is complete, not when a 32 KiB buffer happens to fill.
_CONTAINER_OPTIONS = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "flush_packets": "1",
}
# What the remux at close adds: a global sidx (segment index) right after the moov.
_STREAMING_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof+global_sidx"}
_FALLBACK_FPS = Fraction(25)
_US = Fraction(1, 1_000_000)  # pts unit: the JSONL timestamps have 6 decimals, so they map exactly
_MS = Fraction(1, 1000)  # the MPEG-4 Part 2 fallback's unit (its time base denominator must be < 2^16)


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except (ValueError, av.FFmpegError):
        return False
    return True


GPU_CODEC = "h264_nvenc"
# NVENC's constant-quality mode at the same quality target as libx264's CRF 23 (p4: its balanced preset)
_NVENC_OPTIONS = {"preset": "p4", "tune": "hq", "rc": "vbr", "cq": "23", "b": "0"}
_nvenc_works: bool | None = None  # per process: a trial encode answers it once


def nvenc_works() -> bool:
    """Whether h264_nvenc encodes here: in this PyAV build *and* an NVIDIA GPU with NVENC answers
    (one 64x64 frame encoded into memory; the build alone says nothing without the hardware)."""
    global _nvenc_works
    if _nvenc_works is None:
        _nvenc_works = _has_encoder(GPU_CODEC) and _trial_encode(GPU_CODEC, _NVENC_OPTIONS)
    return _nvenc_works


def _trial_encode(codec: str, options: dict[str, str]) -> bool:
    import io

    try:
        with av.open(io.BytesIO(), "w", format="mp4") as container:
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            stream.options = options
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="bgr24")
            container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except (av.FFmpegError, OSError, ValueError):
        return False
    return True


def select_codec(
    available: set[str] | frozenset[str] | None = None, *, gpu: bool = False
) -> tuple[str, str | None]:
    """The one place the video codec is chosen: ``(codec name, note for the user or None)``.

    ``gpu`` (the model runs on CUDA): h264_nvenc when it works here, so encoding leaves the CPU too.
    Otherwise libx264 (H.264) when this PyAV build has it, else MPEG-4 Part 2 with a note saying so.
    ``available`` overrides the encoder lookup (tests; NVENC then counts as working when listed).
    """

    def has(name: str) -> bool:
        return name in available if available is not None else _has_encoder(name)

    if gpu and (GPU_CODEC in available if available is not None else nvenc_works()):
        return GPU_CODEC, None
    if has(PREFERRED_CODEC):
        return PREFERRED_CODEC, None
    return FALLBACK_CODEC, (
        "This PyAV build has no libx264 encoder: annotated videos are written as MPEG-4 Part 2 "
        "(larger and less widely playable than H.264). Install a PyAV wheel with libx264 for H.264."
    )


@dataclass(frozen=True)
class EncoderPlan:
    """libx264's ``preset`` and ``threads`` for annotated videos, and how they were chosen."""

    preset: str
    threads: int
    origin: str  # "measured", "cached" or "default"
    measured: dict[str, dict[str, float]] | None = None  # preset → CPU ms per frame, PSNR dB, kbit/s


PRESETS = ("veryfast", "superfast", "ultrafast")  # the reference first: CRF 23 at veryfast
ENCODER_CACHE = "encoder_plan.json"
_PSNR_KEPT = 0.5  # dB below the reference's PSNR at the same CRF that still counts as "quality kept"
_plans: dict[str, EncoderPlan] = {}  # per process: measured once, whatever the cache folder


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; containers often give fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def encoder_threads(cores: int) -> int:
    """x264 threads: one per four cores. x264's frame threads cost CPU time (and memory, and a frame
    of delay each) rather than save it; they pay only when encoding alone cannot keep up with the
    model, which on a few cores it easily does (a 640x360 frame: ~5 ms against tens for the model),
    while the cores are better spent on inference."""
    return max(1, cores // 4)


def encoder_plan(cache_dir: Path | None, *, cores: int | None = None) -> EncoderPlan:
    """The fastest libx264 preset that keeps CRF 23 quality, measured once per machine and cached.

    Each of :data:`PRESETS` encodes the same 24-frame 640x360 test clip (moving textures and flat
    boxes, like annotated street video) at CRF 23 with one thread; the cheapest in CPU time per frame
    whose PSNR is within 0.5 dB of ``veryfast``'s wins. Quality at CRF 23 is what the user gets;
    the preset only trades CPU time against file size.
    """
    cores = cores or usable_cores()
    threads = encoder_threads(cores)
    key = f"av={av.__version__}|libx264={_x264_version()}"
    if key in _plans:
        return replace(_plans[key], threads=threads)
    path = Path(cache_dir) / ENCODER_CACHE if cache_dir is not None else None
    cached = _read_json(path).get(key) if path is not None else None
    if cached:
        plan = EncoderPlan(_pick(cached), threads, "cached", cached)
    elif not _has_encoder(PREFERRED_CODEC):
        plan = EncoderPlan(PRESETS[0], threads, "default")
    else:
        measured = {preset: _measure_preset(preset) for preset in PRESETS}
        plan = EncoderPlan(_pick(measured), threads, "measured", measured)
        if path is not None:
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(path, {**_read_json(path), key: measured})
    _plans[key] = plan
    return plan


def _pick(measured: dict[str, dict[str, float]]) -> str:
    reference = measured[PRESETS[0]]["psnr_db"]
    kept = [p for p in PRESETS if p in measured and measured[p]["psnr_db"] >= reference - _PSNR_KEPT]
    return min(kept, key=lambda p: measured[p]["cpu_ms"])


def _test_clip(n: int = 24, width: int = 640, height: int = 360) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (height, width * 2, 3), dtype=np.uint8), (0, 0), 2)
    frames = []
    for i in range(n):
        image = np.ascontiguousarray(texture[:, i * 4 : i * 4 + width])
        x = (i * 9) % (width - 120)
        cv2.rectangle(image, (x, 60), (x + 120, 200), (0, 200, 255), 2)
        cv2.putText(
            image, f"car {0.5 + i / 100:.2f}", (x, 55), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2
        )
        frames.append(image)
    return frames


def _measure_preset(preset: str) -> dict[str, float]:
    """CPU ms per frame, PSNR (dB, all planes of the BGR frames) and kbit/s (at 25 fps) of ``preset``."""
    import io

    frames = _test_clip()
    buffer = io.BytesIO()
    t0 = time.process_time()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(PREFERRED_CODEC, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "23", "preset": preset, "threads": "1"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    cpu_ms = 1000 * (time.process_time() - t0) / len(frames)
    size = buffer.tell()
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    mse = np.mean([np.mean((a.astype(np.float32) - b) ** 2) for a, b in zip(frames, decoded, strict=True)])
    psnr = 10 * np.log10(255.0**2 / max(float(mse), 1e-10))
    return {
        "cpu_ms": round(cpu_ms, 3),
        "psnr_db": round(float(psnr), 3),
        "kbps": round(size * 8 * 25 / len(frames) / 1000, 1),
    }


def _x264_version() -> str:
    try:
        return str(av.library_versions.get("libavcodec", ""))
    except AttributeError:
        return ""


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _codec_options(codec: str, *, crf: int, preset: str, threads: int = 0) -> dict[str, str]:
    if codec == GPU_CODEC:
        return {**_NVENC_OPTIONS, "cq": str(crf)}
    if codec == PREFERRED_CODEC:
        return {"crf": str(crf), "preset": preset, **({"threads": str(threads)} if threads else {})}
    # mpeg4 has no CRF: fixed quantiser 4 (global_quality is in lambda units, FF_QP2LAMBDA = 118).
    return {"flags": "+qscale", "global_quality": str(4 * 118)}


class _Writer:
    """One open MP4: frames of the first frame's size (``HxWx3`` uint8 BGR), padded to even dims."""

    def __init__(
        self,
        path: Path,
        *,
        codec: str,
        rate: Fraction,
        width: int,
        height: int,
        options: dict[str, str],
        keyframe_interval: int,
    ) -> None:
        self.path = path
        self.width, self.height = width, height
        self.frames = 0
        self._unit = _MS if codec == FALLBACK_CODEC else _US
        self._period = max(1, round(self._unit.denominator / rate))  # for a timestamp that does not advance
        self._last_pts = -self._period
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(path), "w", format="mp4", container_options=_CONTAINER_OPTIONS)
        try:
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.width = width + width % 2
            self._stream.height = height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.gop_size = keyframe_interval
            # No B-frames: pts == dts, so no composition offsets and no edit list for players to
            # interpret differently (with them, Chromium and Firefox showed different frames).
            self._stream.codec_context.max_b_frames = 0
            self._stream.codec_context.time_base = self._unit
            self._stream.time_base = self._unit
            self._stream.options = options
        except BaseException:
            self._container.close()
            raise

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        if image.shape[0] != self.height or image.shape[1] != self.width:
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        pad_h, pad_w = self.height % 2, self.width % 2
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def write(self, image: np.ndarray, timestamp: float = 0.0) -> None:
        """Add a frame shown from ``timestamp`` seconds on (one frame period after the previous
        frame when ``timestamp`` does not advance)."""
        frame = av.VideoFrame.from_ndarray(self._prepare(image), format="bgr24")
        # The JSONL timestamp in whole microseconds, truncated as browsers truncate a seek time: the
        # JSONL value 0.5005 is the double 0.50049999..., so Chromium seeks to 500499 µs, and frame k
        # must have started by then (most timestamps, e.g. 0.04 or 0.12, come out exact).
        pts = int(round(timestamp, 6) * self._unit.denominator)
        if pts <= self._last_pts:
            pts = self._last_pts + self._period
        frame.pts = self._last_pts = pts
        frame.time_base = self._unit
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finalize the file (the container is closed even if flushing fails),
        then add the index Chromium needs to stream it (see :func:`add_streaming_index`)."""
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
        if self.frames:
            try:
                add_streaming_index(self.path)
            except (av.FFmpegError, OSError) as e:
                warnings.warn(
                    f"{self.path}: could not add the streaming index ({e}); the fragmented file is kept "
                    "(it plays, but Chromium downloads it whole before playing).",
                    RuntimeWarning,
                    stacklevel=2,
                )


def add_streaming_index(path: Path, *, movflags: str = _STREAMING_OPTIONS["movflags"]) -> None:
    """Remux the MP4 at ``path`` (packets copied, timestamps kept) with ``movflags`` into a temp file
    beside it, fsync, and ``os.replace`` it over ``path``: until the rename, the original stays whole.

    The default adds a global ``sidx`` to the fragmented file; ``movflags="faststart"`` would write
    an unfragmented MP4 with its ``moov`` first instead (the alternative measured in the bench).
    """
    tmp = path.with_name(f".{path.name}.index.tmp")
    try:
        with (
            av.open(str(path)) as src,
            av.open(str(tmp), "w", format="mp4", container_options={"movflags": movflags}) as dst,
        ):
            video = src.streams.video[0]
            out = dst.add_stream_from_template(video)
            for packet in src.demux(video):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = out
                dst.mux(packet)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


class VideoSink(Sink):
    """Annotated H.264 MP4 per video input (image inputs are ignored).

    Output rate is the input's ``fps / vid_stride``; every ``write`` adds one output frame. Frames of
    another size than the first are resized to it; odd sizes are padded by one pixel to even.
    ``codec_name`` says which encoder is used and ``note`` why, when it is not H.264.
    """

    needs_annotated = True

    def __init__(
        self,
        root: Path,
        *,
        vid_stride: int = 1,
        crf: int = 23,
        preset: str | None = None,
        threads: int | None = None,
        keyframe_interval: int | None = None,
        cache_dir: Path | None = None,
        gpu: bool = False,
    ) -> None:
        if vid_stride < 1:
            raise ValueError(f"vid_stride must be >= 1, got {vid_stride}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        if keyframe_interval is not None and keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {keyframe_interval}")
        self.root = Path(root)
        self.vid_stride = vid_stride
        self.keyframe_interval = keyframe_interval
        self.codec_name, self.note = select_codec(gpu=gpu)
        if self.note:
            warnings.warn(self.note, RuntimeWarning, stacklevel=2)
        self.plan: EncoderPlan | None = None
        if self.codec_name == PREFERRED_CODEC and (preset is None or threads is None):
            self.plan = encoder_plan(cache_dir)
        self._options = _codec_options(
            self.codec_name,
            crf=crf,
            preset=preset or (self.plan.preset if self.plan else PRESETS[0]),
            threads=threads if threads is not None else (self.plan.threads if self.plan else 0),
        )
        self._current: tuple[str, Fraction] | None = None  # (source, output rate) of the open input
        self._writer: _Writer | None = None
        self._written: list[Path] = []

    def _rate(self, fps: Fraction) -> Fraction:
        fps = Fraction(fps).limit_denominator(100_000) if fps and fps > 0 else _FALLBACK_FPS
        return fps / self.vid_stride

    def start_input(self, event: InputStart) -> None:
        self._finish()
        if event.video is not None:
            self._current = (event.ref.source, self._rate(event.video.fps))

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame = prediction.frame
        if self._current is None or not frame.is_video or frame.source != self._current[0]:
            return
        image = annotated if annotated is not None else frame.image
        if self._writer is None:
            path = output_path(self.root, frame.source, suffix=".mp4")
            self._writer = _Writer(
                path,
                codec=self.codec_name,
                rate=self._current[1],
                width=int(image.shape[1]),
                height=int(image.shape[0]),
                options=self._options,
                keyframe_interval=self.keyframe_interval or max(1, round(2 * self._current[1])),
            )
            self._written.append(path)
        self._writer.write(image, frame.timestamp)

    def end_input(self, event: InputEnd) -> None:
        if self._current is not None and event.ref.source == self._current[0]:
            self._finish()

    def _finish(self) -> None:
        writer, self._writer, self._current = self._writer, None, None
        if writer is not None:
            writer.close()

    def close(self) -> None:
        self._finish()

    def outputs(self) -> list[Path]:
        return list(self._written)
