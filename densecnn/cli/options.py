"""Every option of the densecnn CLI, declared once: the table every command takes its options from.

An option is an ``Annotated`` alias: flag names, help text and type (``Device = Annotated[str,
option("--device", help=...)]``). A command names the alias in its signature and takes the default
from the config dataclass that holds the value (``device: opt.Device = TrainConfig.device``), so a
default is written once too. The same concept has the same flag and the same help in every command;
where it truly means a little more in one of them (``--imgsz`` is the crop size of a classifier),
that command's alias is ``noted``: the shared help plus one sentence, declared here with the rest.
``option`` refuses a flag declared twice; tests/test_cli_options.py checks every command's options.

The options every prediction command takes (device, output folder, live sources...) form one group,
``Shared``: a command decorated with ``@shared_options(task)`` receives them as one
``shared: Shared`` argument, so no command repeats them.
"""

from __future__ import annotations

import copy
import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from densecnn import config as _cfg
from densecnn.config import EngineConfig, LiveConfig, OutputConfig, PredictConfig
from densecnn.errors import UsageError

HELP: dict[str, str] = {}
"""The help text of every option, by its long flag (a ``noted`` alias adds one sentence to it)."""


def option(*decls: str, help: str, **kwargs: Any) -> Any:
    """A ``typer.Option`` for an ``Annotated`` alias; its help is recorded under its long flag, once."""
    flag = decls[0].split("/")[0]
    if flag in HELP:
        raise RuntimeError(f"{flag} is declared twice: use its alias in densecnn.cli.options.")
    HELP[flag] = help
    return typer.Option(*decls, help=help, **kwargs)


def noted(info: Any, note: str) -> Any:
    """``info`` with ``note`` after its help: for the command where the option means a little more."""
    variant = copy.copy(info)
    variant.help = f"{info.help} {note}"
    return variant


def _choices(name: str, literal: Any) -> type[StrEnum]:
    """The CLI choice of a config ``Literal`` (its values stay defined in densecnn.config only)."""
    return StrEnum(name, [(v, v) for v in get_args(literal)])  # type: ignore[return-value]


OnErrorChoice = _choices("OnErrorChoice", _cfg.OnError)
OnCorruptChoice = _choices("OnCorruptChoice", _cfg.OnCorrupt)
StreamModeChoice = _choices("StreamModeChoice", _cfg.StreamMode)
MaskModeChoice = _choices("MaskModeChoice", _cfg.MaskMode)
BackendChoice = _choices("BackendChoice", _cfg.Backend)
ExportFormatChoice = _choices("ExportFormatChoice", _cfg.ExportFormat)
TileMergeChoice = _choices("TileMergeChoice", _cfg.TileMerge)
TileMatchChoice = _choices("TileMatchChoice", _cfg.TileMatch)


# ---- Sources -------------------------------------------------------------------------------------

Source = Annotated[
    str,
    typer.Argument(
        help="Image, video, folder (recursive), glob ('imgs/*.jpg', quoted) or .txt list of paths; or "
        "live: a webcam index (0), an rtsp://, rtmp:// or http(s):// stream (MJPEG, HLS, MPEG-TS), or "
        "a .streams file listing several.",
        show_default=False,
    ),
]

# ---- Model ---------------------------------------------------------------------------------------

Model = Annotated[
    str | None,
    option(
        "--model",
        "-m",
        help="Model name from `densecnn models` (default: the task's default; a densecnn checkpoint "
        "names its own).",
    ),
]

_WEIGHTS = option(
    "--weights",
    "-w",
    help="Weight file: an Ultralytics .pt, a torchvision state dict for --model, a densecnn "
    ".safetensors checkpoint (names its own model, backbone and classes), or an export (.onnx, "
    "OpenVINO).",
)
Weights = Annotated[Path | None, _WEIGHTS]
TrustWeights = Annotated[
    bool,
    option(
        "--trust-weights",
        envvar="DENSECNN_TRUST_WEIGHTS",
        help="Allow a full unpickle of --weights when Ultralytics' restricted load is not enough: it "
        "runs any code stored in the file, so only for files you trust (env: DENSECNN_TRUST_WEIGHTS=1). "
        "`densecnn weights convert` makes a .safetensors copy that never needs it.",
    ),
]
SegmentWeights = Annotated[
    Path | None,
    noted(
        _WEIGHTS,
        "A -seg .pt gives instance masks; a U-Net / DeepLabV3+ state dict needs --backbone and "
        "--num-classes or --class-names.",
    ),
]
StartWeights = Annotated[
    Path | None, noted(_WEIGHTS, "Training starts from it (a new class count re-initialises the head).")
]
EvalWeights = Annotated[Path, noted(_WEIGHTS, "The checkpoint to evaluate.")]

_BACKBONE = option(
    "--backbone",
    "-b",
    help="Registry backbone of fasterrcnn, unet, deeplabv3plus or classifier (`densecnn models "
    "--matrix` lists them); a densecnn checkpoint names its own.",
)
Backbone = Annotated[str | None, _BACKBONE]
TrainBackbone = Annotated[str | None, noted(_BACKBONE, "Default: resnet18.")]

# ---- Inference -----------------------------------------------------------------------------------

_CONF = option("--conf", help="Confidence threshold (default: the model's, 0.25 YOLO, 0.05 R-CNN).")
Conf = Annotated[float | None, _CONF]
InstanceConf = Annotated[float | None, noted(_CONF, "Instance models only.")]
EvalConf = Annotated[
    float, noted(_CONF, "eval detect only, where it defaults to 0.001: mAP needs the low-scoring detections.")
]
_IOU = option("--iou", help="NMS IoU threshold (default: the model's, 0.7 YOLO, 0.5 R-CNN).")
Iou = Annotated[float | None, _IOU]
InstanceIou = Annotated[float | None, noted(_IOU, "Instance models only.")]
EvalIou = Annotated[float, noted(_IOU, "eval detect only, where it defaults to 0.7.")]

_IMGSZ = option("--imgsz", help="Input size in pixels (default: the model's or the checkpoint's).")
Imgsz = Annotated[int | None, _IMGSZ]
ExportImgsz = Annotated[
    int | None,
    noted(_IMGSZ, "export: the graph's input size (the only one it takes, unless --dynamic)."),
]
SegmentImgsz = Annotated[
    int | None,
    noted(_IMGSZ, "Semantic models: the shorter image side; instance (YOLO) models: the letterbox side."),
]
ClassifyImgsz = Annotated[int | None, noted(_IMGSZ, "Here: the centre-crop side.")]

Classes = Annotated[
    list[str] | None,
    option(
        "--classes",
        help="Keep only these classes: names or ids, comma-separated or repeated (person,car or 0).",
    ),
]
Device = Annotated[str, option("--device", help="auto, cpu, cuda or cuda:N.")]
_HALF = option(
    "--half/--no-half",
    help="16-bit inference: fp16 on CUDA; bf16 under OpenVINO on a CPU that computes it natively (AMX, "
    "AVX512-BF16). Not given: bf16 there (OpenVINO's own default there, ~2.5x fp32's speed; held-out mAP "
    "within 0.5 points), fp32 everywhere else. --no-half keeps fp32 (scores equal to torch's).",
)
Half = Annotated[bool | None, _HALF]
ExportHalf = Annotated[
    bool,
    noted(
        _HALF,
        "export: fp16 weights (OpenVINO: compressed weights, computed at the run's precision; ONNX: an "
        "fp16 graph, needs --device cuda).",
    ),
]
_BATCH = option("--batch", help="Images or video frames per batch.")
Batch = Annotated[int, _BATCH]
PredictBatch = Annotated[
    int | None,
    noted(
        _BATCH,
        "Default: for files, the fastest of 1, 2, 4, 8 for this model and device, measured once and "
        "cached (batch_sizes.json in the weight cache); live sources 1. Results do not depend on it.",
    ),
]
BackendOpt = Annotated[
    BackendChoice,
    option(
        "--backend",
        metavar="<name>",
        help="auto, torch, onnxruntime or openvino: where the model runs (the last two are the densecnn "
        "extras onnx and openvino); auto picks the fastest installed one for this model, device and "
        "size, measured once per machine. Exported weights (.onnx, OpenVINO .xml) run on their own.",
    ),
]
MaxDet = Annotated[
    int | None,
    option("--max-det", help="Most detections kept per image (default: 300 YOLO, 100 R-CNN)."),
]
VidStride = Annotated[int, option("--vid-stride", help="Use every N-th video frame.")]
TopK = Annotated[int, option("--topk", help="Classes kept per image or frame, best first.")]
Alpha = Annotated[float, option("--alpha", help="Overlay opacity of the class colours, 0 to 1.")]

# ---- Tiled inference ----------------------------------------------------------------------------

Tile = Annotated[
    int | None,
    option(
        "--tile",
        help="Tiled inference for small objects: cut each frame into SIZE x SIZE tiles (SAHI's slicing), "
        "run them through the model as a batch, merge the results. Detection and instance masks: boxes "
        "merged across tiles; label maps: logits blended (no seams).",
        metavar="SIZE",
    ),
]
TileOverlap = Annotated[
    float, option("--tile-overlap", help="With --tile: overlap of neighbouring tiles, a fraction of SIZE.")
]
TileMerge = Annotated[
    TileMergeChoice | None,  # type: ignore[valid-type]
    option(
        "--tile-merge",
        help="With --tile: nmm merges matching boxes into their union (SAHI's default GREEDYNMM); nms "
        "keeps the best. Default nmm, or nms matching by iou when the confidence threshold is below "
        "0.1 (as SAHI).",
    ),
]
TileMatch = Annotated[
    TileMatchChoice,  # type: ignore[valid-type]
    option(
        "--tile-match",
        help="With --tile: how boxes match: ios (intersection over the smaller box, SAHI's default) or iou.",
    ),
]
TileThreshold = Annotated[
    float, option("--tile-threshold", help="With --tile: boxes match at this --tile-match value or more.")
]
TileFull = Annotated[
    bool,
    option("--tile-full", help="With --tile: also predict the whole frame and merge it in (large objects)."),
]

TileBatch = Annotated[
    int,
    option(
        "--tile-batch",
        help="With --tile: tiles per model call (0: all tiles of a frame in one batch). Lower it to bound "
        "memory on very large frames.",
    ),
]


def tile_config(
    size: int | None, overlap: float, merge: Any, match: Any, threshold: float, full: bool, batch: int
) -> _cfg.TileConfig | None:
    """The ``--tile*`` options as a TileConfig (None without --tile)."""
    if size is None:
        return None
    return _cfg.TileConfig(
        size=size,
        overlap=overlap,
        merge=str(merge) if merge is not None else None,  # type: ignore[arg-type]
        match=str(match),  # type: ignore[arg-type]
        threshold=threshold,
        full=full,
        batch=batch,
    )


# ---- Output --------------------------------------------------------------------------------------

Out = Annotated[Path, option("--out", help="Parent folder of run folders.")]
Project = Annotated[Path | None, option("--project", help="Old name of --out.", hidden=True)]
Name = Annotated[
    str,
    option(
        "--name",
        help="Run folder name under --out; numbered (name2, name3...) when it exists, unless --exist-ok.",
    ),
]
ExistOk = Annotated[
    bool, option("--exist-ok", help="Reuse an existing run folder instead of numbering a new one.")
]
Save = Annotated[bool, option("--save/--no-save", help="Write annotated images and videos.")]
SaveTxt = Annotated[bool, option("--save-txt", help="Write YOLO txt labels under labels/.")]
SaveConf = Annotated[bool, option("--save-conf", help="Add the score to each --save-txt line.")]
SaveCrops = Annotated[
    bool, option("--save-crops", help="Write a crop of each detection under crops/<class>/.")
]
SaveMasks = Annotated[
    bool,
    option(
        "--save-masks/--no-save-masks",
        help="Write label maps (uint8 PNG, value = class id) under masks/.",
    ),
]
SaveOverlay = Annotated[
    bool,
    option("--save-overlay/--no-save-overlay", help="Write colour overlays of images and H.264 videos."),
]
_RESUME = option("--resume", help="Continue an interrupted run.")
ResumeSegment = Annotated[
    bool,
    noted(
        _RESUME,
        "The run folder --name (default predict) is reused: images whose mask is there and videos "
        "marked complete are skipped; the rest is redone (their old predictions.jsonl rows are dropped "
        "first, so none appears twice).",
    ),
]
ConvertOutput = Annotated[
    Path | None,
    option("--output", "-o", help="The .safetensors file to write (default: FILE.safetensors beside it)."),
]
ResumePredict = Annotated[
    bool,
    noted(
        _RESUME,
        "The run folder --name (default predict) is reused after a crash or kill: inputs the earlier "
        "run finished (every output written) are skipped, the rest is redone, each frame keeps one row.",
    ),
]
ResumeTrain = Annotated[Path | None, noted(_RESUME, "Give its folder or its weights/last.safetensors.")]
OnError = Annotated[
    OnErrorChoice,  # type: ignore[valid-type]
    option(
        "--on-error",
        help="skip: record a bad input in errors.jsonl and go on; fail: stop at the first.",
    ),
]
OnCorrupt = Annotated[
    OnCorruptChoice,  # type: ignore[valid-type]
    option(
        "--on-corrupt",
        help="Truncated or corrupt images (damaged JPEG data OpenCV would decode with grey parts): "
        "skip: record them in errors.jsonl as failed inputs; process: decode them anyway.",
    ),
]
Quiet = Annotated[
    bool,
    option("--quiet", "-q", help="No progress bar or table: only errors and the run folder."),
]
Verbose = Annotated[bool, option("--verbose", "-v", help="Show tracebacks and library logs.")]
Json = Annotated[bool, option("--json", help="Print JSON instead of a table.")]

# ---- Engine --------------------------------------------------------------------------------------

EngineChoice = _choices("EngineChoice", _cfg.Engine)
Engine = Annotated[
    EngineChoice,  # type: ignore[valid-type]
    option(
        "--engine",
        help="local: this process (threads); ray: a Ray cluster, for millions of images (image files "
        "only; needs pip install 'densecnn\\[ray]'). Same outputs either way.",
    ),
]
Address = Annotated[
    str | None,
    option(
        "--address",
        help="--engine ray: the cluster, auto (the one `ray start` runs here) or HOST:PORT; default: "
        "RAY_ADDRESS, else a new Ray instance on this machine.",
    ),
]
GpusPerWorker = Annotated[
    float, option("--gpus-per-worker", help="--engine ray: GPUs each worker reserves (0.5 shares one).")
]
CpusPerWorker = Annotated[float, option("--cpus-per-worker", help="--engine ray: CPUs each worker reserves.")]

# ---- Live sources and run limits -----------------------------------------------------------------

StreamMode = Annotated[
    StreamModeChoice | None,  # type: ignore[valid-type]
    option(
        "--stream-mode",
        help="latest: infer on the newest frame, drop the rest (default for live sources); all: every "
        "frame, the source waits for the model (default for files).",
    ),
]
Reconnect = Annotated[
    int,
    option("--reconnect", help="Attempts in a row to reopen a lost stream (backoff 0.5 s to 10 s)."),
]
StallTimeout = Annotated[
    float,
    option(
        "--stall-timeout",
        help="Seconds without data after which a stream counts as lost (reconnect).",
    ),
]
MaxFrames = Annotated[
    int, option("--max-frames", help="Stop after this many processed frames (0: no limit).")
]
Duration = Annotated[float, option("--duration", help="Stop after this many seconds (0: no limit).")]
Show = Annotated[
    bool, option("--show", help="Show results in a window (q or Esc quits); headless: a notice.")
]
RequireDisplay = Annotated[
    bool,
    option("--require-display", help="With --show: fail (exit 2) instead of going on when no display."),
]

# ---- Tracking and counting (track) ---------------------------------------------------------------

Tracker = Annotated[
    str,
    option(
        "--tracker",
        help="bytetrack or botsort (Ultralytics' trackers, their default settings), or a YAML file of "
        "tracker settings in Ultralytics' format (tracker_type: bytetrack, plus the keys to change: "
        "track_high_thresh, new_track_thresh, track_buffer, match_thresh...).",
    ),
]
CountLine = Annotated[
    list[str] | None,
    option(
        "--line",
        help="Count crossings of the line x1,y1,x2,y2 (pixels), in and out per class; repeatable; "
        "name it as NAME=x1,y1,x2,y2 (door=100,0,100,480). In = the line's direction turned 90° "
        "counter-clockwise on screen: left to right across a line drawn top to bottom.",
    ),
]
CountZone = Annotated[
    list[str] | None,
    option(
        "--zone",
        help="Count objects inside the polygon x1,y1,x2,y2,x3,y3,... (pixels) per frame, and entries "
        'and exits; repeatable; NAME=x1,y1,...; or a JSON file {"NAME": [[x, y], ...], ...}.',
    ),
]
Anchor = Annotated[
    str,
    option(
        "--anchor",
        help="The point of a box that is counted and trailed: center, or bottom (bottom centre: the "
        "feet of a person).",
    ),
]
Trail = Annotated[int, option("--trail", help="Past positions shown in each track's drawn trail (0: none).")]

# ---- Several models over one decode (run) -------------------------------------------------------

_TASK_MODEL = "Run the {task} task with this model (a name from `densecnn models`; default: the task's)."
_TASK_WEIGHTS = "Weight file of the {task} task (as `densecnn {task} --weights`); runs the task."
DetectModel = Annotated[str | None, option("--detect", help=_TASK_MODEL.format(task="detect"))]
DetectWeights = Annotated[Path | None, option("--detect-weights", help=_TASK_WEIGHTS.format(task="detect"))]
SegmentModel = Annotated[str | None, option("--segment", help=_TASK_MODEL.format(task="segment"))]
SegmentTaskWeights = Annotated[
    Path | None, option("--segment-weights", help=_TASK_WEIGHTS.format(task="segment"))
]
ClassifyModel = Annotated[str | None, option("--classify", help=_TASK_MODEL.format(task="classify"))]
ClassifyWeights = Annotated[
    Path | None, option("--classify-weights", help=_TASK_WEIGHTS.format(task="classify"))
]
TasksFile = Annotated[
    Path | None,
    option(
        "--tasks",
        help="YAML file of tasks and their settings: detect:, segment:, classify:, each with model, "
        "weights (relative to the file), conf, iou, imgsz, classes, max_det, topk, tile, backbone, "
        "(segment) num_classes, class_names. --detect etc. override it.",
    ),
]
Track = Annotated[
    bool,
    option(
        "--track",
        help="Track the detect task's boxes (or an instance segment task's) as `densecnn track` does, "
        "with --tracker, --line, --zone, --anchor, --trail.",
    ),
]

# ---- Datasets (train, eval, data check) ----------------------------------------------------------

_DATA = option(
    "--data", "-d", help="Dataset, in a format named above (`densecnn data check` lists its problems)."
)
Data = Annotated[Path, _DATA]
DataOrResume = Annotated[Path | None, _DATA]
CalibrationData = Annotated[
    Path | None,
    noted(
        _DATA,
        "export --int8: calibration images (a folder, searched recursively, or a .txt list); keep "
        "the images you evaluate on out of it.",
    ),
]

# ---- Export --------------------------------------------------------------------------------------

ExportModel = Annotated[
    str | None,
    typer.Argument(
        help="Model name from `densecnn models` (its official or embedded weights); or give --weights.",
        show_default=False,
    ),
]
ExportFormat = Annotated[
    ExportFormatChoice,
    option("--format", "-f", help="onnx (ONNX Runtime) or openvino (an IR folder: model.xml + model.bin)."),
]
Dynamic = Annotated[
    bool,
    option(
        "--dynamic",
        help="Any batch, height and width (YOLO: the rectangular letterbox torch uses); without it "
        "the graph takes batch 1 at --imgsz only. Semantic segmenters are always dynamic.",
    ),
]
Int8 = Annotated[
    bool,
    option(
        "--int8",
        help="OpenVINO INT8 by NNCF post-training quantization, calibrated on --data images; check "
        "the accuracy with `densecnn eval` on held-out data.",
    ),
]

_PLAIN_STATE_DICT = "For a plain state dict's head."
_MASKS_FOLDER = "For masks folders."
_NUM_CLASSES = option(
    "--num-classes", help="Number of classes, named class0, class1... unless --class-names names them."
)
NumClasses = Annotated[int | None, noted(_NUM_CLASSES, _PLAIN_STATE_DICT)]
DataNumClasses = Annotated[int | None, noted(_NUM_CLASSES, _MASKS_FOLDER)]
_CLASS_NAMES = option(
    "--class-names",
    help="Class names in class-id order: comma-separated or repeated (a,b,c).",
)
ClassNames = Annotated[list[str] | None, noted(_CLASS_NAMES, _PLAIN_STATE_DICT)]
DataClassNames = Annotated[list[str] | None, noted(_CLASS_NAMES, _MASKS_FOLDER)]

_MASK_MODE = option(
    "--mask-mode",
    help="labels: pixel = class id (255 ignored); instances-to-foreground: 0 background, "
    "any instance id → class 1 (Penn-Fudan style masks).",
)
MaskMode = Annotated[MaskModeChoice, _MASK_MODE]  # type: ignore[valid-type]
EvalMaskMode = Annotated[
    MaskModeChoice | None,  # type: ignore[valid-type]
    noted(_MASK_MODE, "Default: the checkpoint's."),
]
IgnoreIndex = Annotated[int, option("--ignore-index", help="Mask value that is not scored.")]

_TRAINED_WITH = "Default: the one the checkpoint was trained with."
_VAL_FRACTION = option(
    "--val-fraction", help="Held-out share of a dataset without a val split (a split seeded by --seed)."
)
ValFraction = Annotated[float, _VAL_FRACTION]
EvalValFraction = Annotated[float | None, noted(_VAL_FRACTION, _TRAINED_WITH)]
_SEED = option("--seed", help="Seed of the held-out split.")
Seed = Annotated[int, _SEED]
TrainSeed = Annotated[int, noted(_SEED, "Also of the initialisation and the augmentation.")]
EvalSeed = Annotated[int | None, noted(_SEED, _TRAINED_WITH)]

# ---- Training ------------------------------------------------------------------------------------

Pretrained = Annotated[
    bool,
    option(
        "--pretrained/--no-pretrained",
        help="Backbone ImageNet weights (torchvision segmenters: their VOC weights) when the weight "
        "store has them.",
    ),
]
Epochs = Annotated[int, option("--epochs", help="Epochs (with --resume: the new total).")]
Optimizer = Annotated[str, option("--optimizer", help="adamw or sgd (momentum 0.9, Nesterov).")]
Lr = Annotated[float | None, option("--lr", help="Peak learning rate (default: the task's; SGD 10x).")]
WeightDecay = Annotated[float, option("--weight-decay", help="Weight decay (not on biases and norms).")]
WarmupEpochs = Annotated[float, option("--warmup-epochs", help="Linear warmup before the cosine decay.")]
ClipGrad = Annotated[float | None, option("--clip-grad", help="Max gradient norm (0: off).")]
Patience = Annotated[int, option("--patience", help="Stop after N epochs without a better fitness (0: off).")]
Freeze = Annotated[int, option("--freeze", help="Freeze the first N backbone stages...")]
FreezeEpochs = Annotated[
    int | None,
    option("--freeze-epochs", help="...for this many epochs, then unfreeze (default: all epochs)."),
]
Amp = Annotated[bool, option("--amp/--no-amp", help="Mixed precision (CUDA only).")]
Deterministic = Annotated[bool, option("--deterministic", help="Deterministic torch kernels.")]
_WORKERS = option("--workers", help="Worker processes.")
Workers = Annotated[int, noted(_WORKERS, "Data-loading ones (0: in the main one).")]
RayWorkers = Annotated[
    int,
    noted(
        _WORKERS,
        "--engine ray: model actors, each building the model once (0: as many as the cluster's CPUs, "
        "or GPUs, allow at the CPUs and GPUs each worker reserves).",
    ),
]
Augment = Annotated[bool, option("--augment/--no-augment", help="Random crops, flips, colour jitter.")]
DecoderChannels = Annotated[
    str | None,
    option(
        "--decoder-channels",
        metavar="W,W,...",
        help="U-Net decoder widths, deepest block first (smp's decoder_channels; default "
        "256,128,64,32,16, one per block). Narrower: a smaller, faster model.",
    ),
]
Cache = Annotated[
    bool,
    option("--cache", help="YOLO: keep the decoded training images in RAM (Ultralytics' cache=ram)."),
]

# ---- Evaluation ----------------------------------------------------------------------------------

Split = Annotated[str, option("--split", help="val (what training held out), train or all.")]
Plots = Annotated[bool, option("--plots/--no-plots", help="Write the plots.")]

# ---- Run report ----------------------------------------------------------------------------------

RunDir = Annotated[
    Path,
    typer.Argument(
        help="A prediction run folder (what detect, segment or classify wrote, e.g. runs/detect/predict).",
        show_default=False,
    ),
]

# ---- Models, weights, version --------------------------------------------------------------------

ModelName = Annotated[
    str | None,
    typer.Argument(help="Show one model in full: its classes, thresholds, input size and weight file."),
]
Task = Annotated[
    str | None,
    option("--task", "-t", help="Only models for this task (detect, segment, classify)."),
]
Matrix = Annotated[
    bool,
    option(
        "--matrix",
        help="Heads x backbones instead: parameters and GFLOPs of every head on every backbone "
        "(measured once, then cached), and whether each backbone's ImageNet weights are cached.",
    ),
]
All = Annotated[bool, option("--all", help="Pull the weights of every registered model.")]


def _print_version(value: bool) -> None:
    if value:
        from densecnn import __version__

        typer.echo(f"densecnn {__version__}")
        raise typer.Exit()


Version = Annotated[
    bool, option("--version", help="Print the version.", callback=_print_version, is_eager=True)
]


# ---- Values parsed once --------------------------------------------------------------------------


def split_names(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--class-names a,b --class-names c`` and ``--class-names "a, b, c"`` → ``(a, b, c)``;
    ``()`` when not given. An empty name (``a,,b``) is a usage error."""
    if not values:
        return ()
    names = tuple(n.strip() for v in values for n in v.split(","))
    if not all(names):
        raise UsageError("--class-names has an empty name.")
    return names


def split_widths(value: str | None) -> tuple[int, ...]:
    """``--decoder-channels "128,64,32,16,16"`` → ``(128, 64, 32, 16, 16)``; ``()`` when not given."""
    if not value:
        return ()
    try:
        return tuple(int(w) for w in value.split(","))
    except ValueError:
        raise UsageError(
            f"--decoder-channels {value!r}: give whole numbers separated by commas, e.g. 128,64,32,16,16."
        ) from None


def out_dir(ctx: typer.Context, out: Path, project: Path | None) -> Path:
    """``--out``, or ``--project``: its old name in train and eval, hidden from help but still read."""
    if project is None:
        return out
    if getattr(ctx.get_parameter_source("out"), "name", "") == "COMMANDLINE":
        raise UsageError("--project is the old name of --out: give only --out.")
    return project


def default_out(task: str) -> Path:
    """Where a prediction command's run folders go by default: runs/<task>."""
    return Path("runs") / task


# ---- The prediction commands' group --------------------------------------------------------------


@dataclass(frozen=True)
class Shared:
    """The option group every prediction command takes (see ``shared_options``); defaults are the
    config dataclasses' (``out``: runs/<task>, set by ``shared_options``)."""

    device: Device = PredictConfig.device
    half: Half = PredictConfig.half
    batch: PredictBatch = PredictConfig.batch
    backend: BackendOpt = PredictConfig.backend  # type: ignore[assignment]
    vid_stride: VidStride = PredictConfig.vid_stride
    out: Out = OutputConfig.project
    name: Name = OutputConfig.name
    exist_ok: ExistOk = OutputConfig.exist_ok
    on_error: OnError = OutputConfig.on_error
    on_corrupt: OnCorrupt = OutputConfig.on_corrupt
    stream_mode: StreamMode = None
    reconnect: Reconnect = LiveConfig.reconnect
    stall_timeout: StallTimeout = LiveConfig.stall_timeout
    max_frames: MaxFrames = LiveConfig.max_frames
    duration: Duration = LiveConfig.duration
    show: Show = LiveConfig.show
    require_display: RequireDisplay = LiveConfig.require_display
    engine: Engine = EngineConfig.engine
    address: Address = EngineConfig.address
    workers: RayWorkers = EngineConfig.workers
    gpus_per_worker: GpusPerWorker = EngineConfig.gpus_per_worker
    cpus_per_worker: CpusPerWorker = EngineConfig.cpus_per_worker
    quiet: Quiet = False
    verbose: Verbose = False

    def predict_kwargs(self) -> dict[str, Any]:
        """The ``PredictConfig`` fields of this group."""
        return {
            "device": self.device,
            "half": self.half,
            "batch": self.batch,
            "backend": str(self.backend),
            "vid_stride": self.vid_stride,
        }

    def output_config(self, **extra: Any) -> OutputConfig:
        """``OutputConfig`` from this group, plus the command's own fields."""
        base: dict[str, Any] = {
            "project": self.out,
            "name": self.name,
            "exist_ok": self.exist_ok,
            "on_error": str(self.on_error),
            "on_corrupt": str(self.on_corrupt),
        }
        return OutputConfig(**{**base, **extra})

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            engine=str(self.engine),  # type: ignore[arg-type]
            address=self.address,
            workers=self.workers,
            gpus_per_worker=self.gpus_per_worker,
            cpus_per_worker=self.cpus_per_worker,
        )

    def live_config(self) -> LiveConfig:
        return LiveConfig(
            stream_mode=str(self.stream_mode) if self.stream_mode else None,
            reconnect=self.reconnect,
            stall_timeout=self.stall_timeout,
            max_frames=self.max_frames,
            duration=self.duration,
            show=self.show,
            require_display=self.require_display,
        )


def shared_options(task: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the ``Shared`` options to a prediction command's CLI signature and pass them to it as
    ``shared=Shared(...)``; ``--out`` defaults to runs/<task>.

    Typer reads ``__signature__`` and ``__annotations__``: the command's own parameters come first
    (minus ``shared``), then the group, in the order of ``Shared``'s fields.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command)
        hints = typing.get_type_hints(command, include_extras=True)
        group_hints = typing.get_type_hints(Shared, include_extras=True)
        defaults = {f.name: f.default for f in fields(Shared)} | {"out": default_out(task)}
        params = [p.replace(annotation=hints[n]) for n, p in own.parameters.items() if n != "shared"]
        kw = inspect.Parameter.KEYWORD_ONLY
        for f in fields(Shared):
            params.append(
                inspect.Parameter(f.name, kw, default=defaults[f.name], annotation=group_hints[f.name])
            )

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            group = {f.name: kwargs.pop(f.name) for f in fields(Shared)}
            command(**kwargs, shared=Shared(**group))

        wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # inspect.signature must see __signature__, not the original
        return wrapper

    return decorate


# ---- densecnn bench ------------------------------------------------------------------------------

BenchSource = Annotated[
    str,
    typer.Argument(
        help="A video, folder of images, glob or .txt list: what every model runs on.", show_default=False
    ),
]
BenchModels = Annotated[
    list[str] | None,
    noted(Model.__metadata__[0], "Repeat for several (default: each task's zoo default, unless --weights)."),
]
BenchWeights = Annotated[list[Path] | None, noted(_WEIGHTS, "Repeat for several.")]
BenchBackends = Annotated[
    list[BackendChoice] | None,  # type: ignore[valid-type]
    noted(BackendOpt.__metadata__[0], "bench: repeat for several (default: every available backend)."),
]
BenchSizes = Annotated[list[int] | None, noted(_IMGSZ, "Repeat for several.")]
BenchFrames = Annotated[
    int, option("--frames", help="Frames (or images) each model runs on, after an untimed warm-up.")
]
BenchData = Annotated[
    Path | None, noted(_DATA, "bench: also report `densecnn eval`'s headline metric on it (every image).")
]
