"""Run settings as frozen dataclasses; every check of a user-given value happens here."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from densecnn.errors import UsageError


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
    half: bool = False
    batch: int = 1
    max_det: int | None = None
    topk: int = 5
    vid_stride: int = 1
    trust_weights: bool = False
    """Consent to a full (code-running) unpickle of ``weights`` when a restricted load is not enough."""

    def __post_init__(self) -> None:
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UsageError(f"--{name} must be between 0 and 1, got {value}.")
        if self.imgsz is not None and not 32 <= self.imgsz <= 8192:
            raise UsageError(f"--imgsz must be between 32 and 8192 pixels, got {self.imgsz}.")
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}.")
        if self.max_det is not None and self.max_det < 1:
            raise UsageError(f"--max-det must be at least 1, got {self.max_det}.")
        if self.topk < 1:
            raise UsageError(f"--topk must be at least 1, got {self.topk}.")
        if self.vid_stride < 1:
            raise UsageError(f"--vid-stride must be at least 1, got {self.vid_stride}.")
        if self.backbone is not None and not self.backbone.strip():
            raise UsageError("--backbone must name a backbone (see `densecnn models --matrix`).")
        if self.weights is not None and not self.weights.is_file():
            raise UsageError(
                f"--weights {self.weights}: no such file.",
                hint="Give the path of a local checkpoint (an Ultralytics .pt, a torchvision state dict "
                "or a densecnn .safetensors checkpoint).",
            )


@dataclass(frozen=True)
class OutputConfig:
    """Where outputs go and which ones are written."""

    project: Path = Path("runs/detect")
    name: str = "predict"
    exist_ok: bool = False
    save: bool = True
    save_txt: bool = False
    save_conf: bool = False
    save_crops: bool = False
    on_error: Literal["skip", "fail"] = "skip"
    on_corrupt: Literal["skip", "process"] = "skip"

    def __post_init__(self) -> None:
        if self.on_error not in ("skip", "fail"):
            raise UsageError(f"--on-error must be skip or fail, got {self.on_error!r}.")
        if self.on_corrupt not in ("skip", "process"):
            raise UsageError(f"--on-corrupt must be skip or process, got {self.on_corrupt!r}.")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise UsageError(f"--name must be a plain folder name, got {self.name!r}.")


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
                hint = f"Did you mean: {', '.join(close)}?" if close else "See `densecnn models`."
                raise UsageError(f"--classes: this model has no class {token!r}.", hint=hint)
    return sorted(set(ids))


StreamMode = Literal["latest", "all"]


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
        if self.stream_mode not in (None, "latest", "all"):
            raise UsageError(f"--stream-mode must be latest or all, got {self.stream_mode!r}.")
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
