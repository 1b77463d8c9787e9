"""Run settings as frozen dataclasses; every check of a user-given value happens here."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.track.geometry import Line, Zone

# The choices of --on-error, --stream-mode and --mask-mode, defined here only (the CLI's come from these)
OnError = Literal["skip", "fail"]
OnCorrupt = Literal["skip", "process"]
StreamMode = Literal["latest", "all"]
MaskMode = Literal["labels", "instances-to-foreground"]
Engine = Literal["local", "ray"]
# --backend: where the model runs (densecnn.runtimes); auto picks the fastest measured here
Backend = Literal["auto", "torch", "onnxruntime", "openvino"]
# densecnn export --format
ExportFormat = Literal["onnx", "openvino"]
TileMerge = Literal["nms", "nmm"]
TileMatch = Literal["ios", "iou"]


def check_choice(flag: str, value: object, choices: object) -> None:
    """Raise a UsageError unless ``value`` is one of the ``Literal`` ``choices``."""
    allowed = get_args(choices)
    if value not in allowed:
        raise UsageError(f"{flag} must be {' or '.join(map(str, allowed))}, got {value!r}.")


def check_run_name(name: str) -> None:
    """``--name`` of every command that makes a run folder: a plain folder name under ``--out``."""
    if not name or "/" in name or name in (".", ".."):
        raise UsageError(f"--name must be a plain folder name, got {name!r}.")


@dataclass(frozen=True)
class TileConfig:
    """Tiled inference (``--tile``): square tiles of ``size`` pixels overlapping by ``overlap`` of
    their side; results merged by ``merge`` (None: ``nmm``, or ``nms`` with ``iou`` below 0.1
    confidence, as SAHI) comparing boxes by ``match`` at ``threshold``; ``full`` adds the
    full-frame pass; ``batch`` tiles go through the model per call. See ``densecnn.tasks.tiling``."""

    size: int
    overlap: float = 0.2
    merge: TileMerge | None = None
    match: TileMatch = "ios"
    threshold: float = 0.5
    full: bool = False
    batch: int = 0
    """Tiles per model call (0: all tiles of a frame at once); bounds memory on very large frames."""

    def __post_init__(self) -> None:
        if self.batch < 0:
            raise UsageError(f"--tile-batch must be 0 (all tiles) or more, got {self.batch}.")
        if not 32 <= self.size <= 8192:
            raise UsageError(f"--tile must be between 32 and 8192 pixels, got {self.size}.")
        if not 0.0 <= self.overlap < 1.0:
            raise UsageError(f"--tile-overlap must be at least 0 and below 1, got {self.overlap}.")
        if self.merge is not None:
            check_choice("--tile-merge", self.merge, TileMerge)
        check_choice("--tile-match", self.match, TileMatch)
        if not 0.0 < self.threshold <= 1.0:
            raise UsageError(f"--tile-threshold must be above 0 and at most 1, got {self.threshold}.")

    def resolved_merge(self, conf: float | None) -> tuple[str, str]:
        """(merge, match metric) for a model with confidence threshold ``conf``."""
        if self.merge is None and conf is not None and conf < 0.1:
            return "nms", "iou"
        return self.merge or "nmm", self.match


@dataclass(frozen=True)
class PredictConfig:
    """Model and inference settings. ``None`` means: the model's own default."""

    model: str | None = None
    weights: Path | None = None
    backbone: str | None = None
    conf: float | None = None
    iou: float | None = None
    imgsz: int | None = None
    classes: tuple[str, ...] = ()
    device: str = "auto"
    half: bool | None = None
    """16-bit inference: True fp16 on CUDA / bf16 under OpenVINO on a CPU with native bf16; None: that
    bf16 only (OpenVINO's default); False: fp32 everywhere."""
    batch: int | None = None
    """Frames per forward pass; None: chosen per model and device (``densecnn.batching``)."""
    backend: Backend = "auto"
    max_det: int | None = None
    topk: int = 5
    vid_stride: int = 1
    trust_weights: bool = False
    """Consent to a full (code-running) unpickle of ``weights`` when a restricted load is not enough."""
    tile: TileConfig | None = None
    """Tiled inference (detect, segment); None: whole frames."""

    def __post_init__(self) -> None:
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UsageError(f"--{name} must be between 0 and 1, got {value}.")
        if self.imgsz is not None and not 32 <= self.imgsz <= 8192:
            raise UsageError(f"--imgsz must be between 32 and 8192 pixels, got {self.imgsz}.")
        check_choice("--backend", self.backend, Backend)
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}.")
        if self.max_det is not None and self.max_det < 1:
            raise UsageError(f"--max-det must be at least 1, got {self.max_det}.")
        if self.topk < 1:
            raise UsageError(f"--topk must be at least 1, got {self.topk}.")
        if self.vid_stride < 1:
            raise UsageError(f"--vid-stride must be at least 1, got {self.vid_stride}.")
        if self.backbone is not None and not self.backbone.strip():
            raise UsageError("--backbone must name a backbone (see `densecnn models --matrix`).")
        if self.weights is not None and not (self.weights.is_file() or _exported_folder(self.weights)):
            raise UsageError(
                f"--weights {self.weights}: no such file.",
                hint="Give the path of a local checkpoint (an Ultralytics .pt, a torchvision state dict "
                "or a densecnn .safetensors checkpoint), or one from `densecnn export` (.onnx, OpenVINO "
                ".xml or its folder).",
            )


def _exported_folder(path: Path) -> bool:
    """An OpenVINO export folder (``densecnn export --format openvino``) holding one .xml."""
    return path.is_dir() and len(list(path.glob("*.xml"))) == 1


@dataclass(frozen=True)
class OutputConfig:
    """Where outputs go and which ones are written. ``save``: annotated images and videos (segment:
    overlays); ``save_masks``, ``alpha`` (overlay opacity) and ``resume`` (continue the run folder
    ``name``) are segment's."""

    project: Path = Path("runs/detect")
    name: str = "predict"
    exist_ok: bool = False
    save: bool = True
    save_txt: bool = False
    save_conf: bool = False
    save_crops: bool = False
    save_masks: bool = True
    alpha: float = 0.5
    resume: bool = False
    on_error: OnError = "skip"
    on_corrupt: OnCorrupt = "skip"

    def __post_init__(self) -> None:
        check_choice("--on-error", self.on_error, OnError)
        check_choice("--on-corrupt", self.on_corrupt, OnCorrupt)
        check_run_name(self.name)
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"--alpha must be between 0 and 1, got {self.alpha}.")
        if self.resume and not self.save_masks:
            raise UsageError("--resume finds finished images by their masks; it needs --save-masks.")


def resolve_classes(tokens: Sequence[str], names: Mapping[int, str]) -> list[int] | None:
    """Class ids for ``--classes`` given as names or ids (comma-separated or repeated); None: all."""
    if not tokens:
        return None
    by_name = {v.lower(): k for k, v in names.items()}
    ids: list[int] = []
    for raw in tokens:
        for token in (t.strip() for t in raw.split(",")):
            if not token:
                continue
            if token.isdigit():
                if int(token) not in names:
                    raise UsageError(f"--classes: this model has no class id {token}.")
                ids.append(int(token))
            elif token.lower() in by_name:
                ids.append(by_name[token.lower()])
            else:
                close = difflib.get_close_matches(token.lower(), by_name, n=3)
                listing = ", ".join(names[k] for k in sorted(names)) if len(names) <= 30 else ""
                see = f"Its classes: {listing}." if listing else "`densecnn models MODEL` lists its classes."
                hint = f"Did you mean: {', '.join(close)}? {see}" if close else see
                raise UsageError(f"--classes: this model has no class {token!r}.", hint=hint)
    return sorted(set(ids))


def resolve_class_names(num_classes: int | None, class_names: Sequence[str] | None) -> tuple[str, ...] | None:
    """``--num-classes`` / ``--class-names`` → class names (``class0``... for a bare count); None: neither."""
    if class_names:
        if num_classes is not None and num_classes != len(class_names):
            raise UsageError(f"--num-classes {num_classes} but {len(class_names)} --class-names.")
        return tuple(class_names)
    if num_classes is None:
        return None
    if not 1 <= num_classes <= 255:
        raise UsageError(f"--num-classes must be between 1 and 255, got {num_classes}.")
    return tuple(f"class{i}" for i in range(num_classes))


@dataclass(frozen=True)
class LiveConfig:
    """How frames are taken from sources and when a run stops.

    ``stream_mode``: ``latest`` infers on the newest frame and drops the rest (default for live
    sources), ``all`` processes every frame with back-pressure (default for files); None: by source.
    ``reconnect``: attempts in a row to reopen a lost stream; ``stall_timeout``: seconds without data
    that count as a lost stream; ``max_frames`` / ``duration``: stop after that many processed frames
    or seconds (0: no limit).
    """

    stream_mode: StreamMode | None = None
    reconnect: int = 5
    stall_timeout: float = 10.0
    open_timeout: float = 10.0
    max_frames: int = 0
    duration: float = 0.0
    show: bool = False
    require_display: bool = False

    def __post_init__(self) -> None:
        if self.stream_mode is not None:
            check_choice("--stream-mode", self.stream_mode, StreamMode)
        if self.reconnect < 0:
            raise UsageError(f"--reconnect must be 0 or more attempts, got {self.reconnect}.")
        if not 0.1 <= self.stall_timeout <= 3600:
            raise UsageError(
                f"--stall-timeout must be between 0.1 and 3600 seconds, got {self.stall_timeout}."
            )
        if self.max_frames < 0:
            raise UsageError(f"--max-frames must be 0 (no limit) or more, got {self.max_frames}.")
        if self.duration < 0:
            raise UsageError(f"--duration must be 0 (no limit) or more seconds, got {self.duration}.")
        if self.require_display and not self.show:
            raise UsageError("--require-display applies to --show; add --show.")

    def mode_for(self, live: bool) -> StreamMode:
        """The stream mode in effect: the one asked for, else ``latest`` live and ``all`` for files."""
        return self.stream_mode or ("latest" if live else "all")


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs the predictions. ``local``: the threaded pipeline in this process; ``ray``:
    an actor pool on a Ray cluster (``address``: ``auto``, ``HOST:PORT`` or None for the instance
    this process already joined, else a new local one), ``workers`` actors (0: as many as the
    cluster's CPUs, or GPUs, allow), each reserving ``cpus_per_worker`` CPUs and ``gpus_per_worker``
    GPUs."""

    engine: Engine = "local"
    address: str | None = None
    workers: int = 0
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        check_choice("--engine", self.engine, Engine)
        if self.workers < 0:
            raise UsageError(f"--workers must be 0 (automatic) or more, got {self.workers}.")
        if self.gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker must be 0 or more, got {self.gpus_per_worker}.")
        if self.cpus_per_worker <= 0:
            raise UsageError(f"--cpus-per-worker must be more than 0, got {self.cpus_per_worker}.")
        if self.engine == "local":
            given = [
                flag
                for flag, value, default in (
                    ("--address", self.address, None),
                    ("--workers", self.workers, 0),
                    ("--gpus-per-worker", self.gpus_per_worker, 0.0),
                    ("--cpus-per-worker", self.cpus_per_worker, 1.0),
                )
                if value != default
            ]
            if given:
                raise UsageError(f"{', '.join(given)}: only with --engine ray.")


@dataclass(frozen=True)
class TrackConfig:
    """Tracking and counting (``densecnn track``). ``tracker``: bytetrack, botsort or a YAML file of
    Ultralytics tracker settings; ``lines`` / ``zones``: the ``--line`` / ``--zone`` values as given
    (parsed by :meth:`geometry`); ``anchor``: the point of a box that is counted and trailed (center or
    bottom); ``trail``: how many past anchor points the drawn trail of a track shows (0: none)."""

    tracker: str = "botsort"
    lines: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    anchor: str = "center"
    trail: int = 30

    def __post_init__(self) -> None:
        from densecnn.track.geometry import ANCHORS

        if self.anchor not in ANCHORS:
            raise UsageError(f"--anchor must be {' or '.join(ANCHORS)}, got {self.anchor!r}.")
        if not 0 <= self.trail <= 10_000:
            raise UsageError(f"--trail must be between 0 and 10000 points, got {self.trail}.")
        self.settings()  # a bad tracker, line or zone fails here, before any model loads
        self.geometry()

    def settings(self) -> dict[str, Any]:
        """The tracker's settings (Ultralytics' keys; see ``densecnn.track.settings``)."""
        from densecnn.track.settings import load_tracker_settings

        return load_tracker_settings(self.tracker)

    def geometry(self) -> tuple[tuple[Line, ...], tuple[Zone, ...]]:
        """The counting lines and zones."""
        from densecnn.track.geometry import parse_geometry

        return parse_geometry(self.lines, self.zones)
