"""Options shared by the prediction commands, declared once.

Single options are ``typer.Option`` objects the commands name in their signatures. The options every
prediction command takes (device, output folder, live sources...) form one group, ``Shared``: a
command decorated with ``@shared_options`` receives them as one ``shared: Shared`` argument, so no
command repeats them.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from densecnn.config import LiveConfig, OutputConfig

Source = typer.Argument(
    ...,
    help="Image, video, folder (recursive), glob ('imgs/*.jpg', quoted) or .txt list of paths; or live: "
    "a webcam index (0), an rtsp://, rtmp:// or http(s):// stream (MJPEG, HLS, MPEG-TS), or a .streams "
    "file listing several.",
)

# Model
Model = typer.Option(
    None, "--model", "-m", help="Model name from `densecnn models` (default: the task's default)."
)
Weights = typer.Option(
    None,
    "--weights",
    "-w",
    help="Local checkpoint: an Ultralytics .pt, a torchvision state dict for --model, or a densecnn "
    ".safetensors checkpoint (names its own model, backbone and classes).",
)
TrustWeights = typer.Option(
    False,
    "--trust-weights",
    envvar="DENSECNN_TRUST_WEIGHTS",
    help="Allow a full unpickle of --weights when Ultralytics' restricted load is not enough: it runs "
    "any code stored in the file, so only for files you trust (env: DENSECNN_TRUST_WEIGHTS=1). "
    "`densecnn weights convert` makes a .safetensors copy that never needs it.",
)
Backbone = typer.Option(
    None,
    "--backbone",
    "-b",
    help="Backbone of a model built on one (--model fasterrcnn); `densecnn models --matrix` lists "
    "them. A densecnn checkpoint names its own.",
)
Conf = typer.Option(
    None, "--conf", help="Confidence threshold (default: the model's, 0.25 YOLO, 0.05 R-CNN)."
)
Iou = typer.Option(None, "--iou", help="NMS IoU threshold (default: the model's, 0.7 YOLO, 0.5 R-CNN).")
Classes = typer.Option(
    None,
    "--classes",
    help="Keep only these classes: names or ids, comma-separated or repeated (person,car or 0).",
)
Imgsz = typer.Option(None, "--imgsz", help="Inference size in pixels (default: the model's, 640 YOLO).")
Device = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
Half = typer.Option(False, "--half", help="fp16 inference (CUDA only; ignored on CPU).")
Batch = typer.Option(1, "--batch", help="Frames per forward pass.")
MaxDet = typer.Option(
    None, "--max-det", help="Most detections kept per image (default: 300 YOLO, 100 R-CNN)."
)
VidStride = typer.Option(1, "--vid-stride", help="Use every N-th video frame.")
TopK = typer.Option(5, "--topk", help="Classes kept per image or frame, best first.")

# Output
Out = typer.Option(None, "--out", help="Parent folder of run folders (default: runs/<task>).")
Name = typer.Option("predict", "--name", help="Run folder name; predict2, predict3... when it exists.")
ExistOk = typer.Option(
    False, "--exist-ok", help="Reuse an existing run folder instead of numbering a new one."
)
Save = typer.Option(True, "--save/--no-save", help="Write annotated images and videos.")
SaveTxt = typer.Option(False, "--save-txt", help="Write YOLO txt labels under labels/.")
SaveConf = typer.Option(False, "--save-conf", help="Add the score to each --save-txt line.")
SaveCrops = typer.Option(False, "--save-crops", help="Write a crop of each detection under crops/<class>/.")


class ErrorPolicy(StrEnum):
    skip = "skip"
    fail = "fail"


OnError = typer.Option(
    ErrorPolicy.skip,
    "--on-error",
    help="skip: record a bad input in errors.jsonl and go on; fail: stop at the first.",
)


class CorruptPolicy(StrEnum):
    skip = "skip"
    process = "process"


OnCorrupt = typer.Option(
    CorruptPolicy.skip,
    "--on-corrupt",
    help="Truncated or corrupt images (e.g. damaged JPEG data OpenCV would decode with grey parts): "
    "skip: record them in errors.jsonl as failed inputs; process: decode them anyway.",
)
Resume = typer.Option(
    False,
    "--resume",
    help="Continue the run folder --name (default predict) after a crash or kill: inputs the earlier "
    "run finished (every output written) are skipped, the rest is redone, each frame keeps one row.",
)
Quiet = typer.Option(False, "--quiet", "-q", help="No progress bar or table: only errors and the run folder.")
Verbose = typer.Option(False, "--verbose", "-v", help="Show tracebacks and library logs.")


def default_project(task: str, out: Path | None) -> Path:
    return out if out is not None else Path("runs") / task


class StreamModeChoice(StrEnum):
    latest = "latest"
    all = "all"


StreamModeOpt = typer.Option(
    None,
    "--stream-mode",
    help="latest: infer on the newest frame, drop the rest (default for live sources); all: every "
    "frame, the source waits for the model (default for files).",
)
Reconnect = typer.Option(
    5, "--reconnect", help="Attempts in a row to reopen a lost stream (backoff 0.5 s to 10 s)."
)
StallTimeout = typer.Option(
    10.0, "--stall-timeout", help="Seconds without data after which a stream counts as lost (reconnect)."
)
MaxFrames = typer.Option(0, "--max-frames", help="Stop after this many processed frames (0: no limit).")
Duration = typer.Option(0.0, "--duration", help="Stop after this many seconds (0: no limit).")
Show = typer.Option(False, "--show", help="Show results in a window (q or Esc quits); headless: a notice.")
RequireDisplay = typer.Option(
    False, "--require-display", help="With --show: fail (exit 2) instead of going on when no display."
)


@dataclass(frozen=True)
class Shared:
    """The option group every prediction command takes (see ``shared_options``)."""

    device: str = "auto"
    half: bool = False
    batch: int = 1
    vid_stride: int = 1
    out: Path | None = None
    name: str = "predict"
    exist_ok: bool = False
    on_error: ErrorPolicy = ErrorPolicy.skip
    on_corrupt: CorruptPolicy = CorruptPolicy.skip
    stream_mode: StreamModeChoice | None = None
    reconnect: int = 5
    stall_timeout: float = 10.0
    max_frames: int = 0
    duration: float = 0.0
    show: bool = False
    require_display: bool = False
    quiet: bool = False
    verbose: bool = False

    def predict_kwargs(self) -> dict[str, Any]:
        """The ``PredictConfig`` fields of this group."""
        return {"device": self.device, "half": self.half, "batch": self.batch, "vid_stride": self.vid_stride}

    def output_config(self, task: str, **extra: Any) -> OutputConfig:
        """``OutputConfig`` for ``task`` from this group, plus the command's own fields."""
        from densecnn.config import OutputConfig

        base: dict[str, Any] = {
            "project": default_project(task, self.out),
            "name": self.name,
            "exist_ok": self.exist_ok,
            "on_error": self.on_error.value,
            "on_corrupt": self.on_corrupt.value,
        }
        return OutputConfig(**{**base, **extra})

    def live_config(self) -> LiveConfig:
        from densecnn.config import LiveConfig

        return LiveConfig(
            stream_mode=self.stream_mode.value if self.stream_mode else None,
            reconnect=self.reconnect,
            stall_timeout=self.stall_timeout,
            max_frames=self.max_frames,
            duration=self.duration,
            show=self.show,
            require_display=self.require_display,
        )


_SHARED_OPTIONS: dict[str, Any] = {
    "device": Device,
    "half": Half,
    "batch": Batch,
    "vid_stride": VidStride,
    "out": Out,
    "name": Name,
    "exist_ok": ExistOk,
    "on_error": OnError,
    "on_corrupt": OnCorrupt,
    "stream_mode": StreamModeOpt,
    "reconnect": Reconnect,
    "stall_timeout": StallTimeout,
    "max_frames": MaxFrames,
    "duration": Duration,
    "show": Show,
    "require_display": RequireDisplay,
    "quiet": Quiet,
    "verbose": Verbose,
}


def shared_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the ``Shared`` options to ``command``'s CLI signature and pass them as ``shared=Shared(...)``.

    Typer reads ``__signature__`` and the resolved ``__annotations__``: the command's own parameters
    come first (minus ``shared``), then the group, in the order of ``Shared``'s fields.
    """
    own = inspect.signature(command)
    hints = typing.get_type_hints(command)
    group_hints = typing.get_type_hints(Shared)
    params = [p for name, p in own.parameters.items() if name != "shared"]
    kw = inspect.Parameter.KEYWORD_ONLY
    for f in fields(Shared):
        params.append(
            inspect.Parameter(f.name, kw, default=_SHARED_OPTIONS[f.name], annotation=group_hints[f.name])
        )

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        group = {f.name: kwargs.pop(f.name) for f in fields(Shared)}
        command(**kwargs, shared=Shared(**group))

    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{k: v for k, v in hints.items() if k != "shared"},
        **{f.name: group_hints[f.name] for f in fields(Shared)},
    }
    del wrapper.__wrapped__  # inspect.signature must see __signature__, not the original
    return wrapper
