"""Options shared by the prediction commands, declared once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

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
Quiet = typer.Option(False, "--quiet", "-q", help="No progress bar or table: only errors and the run folder.")
Verbose = typer.Option(False, "--verbose", "-v", help="Show tracebacks and library logs.")


def default_project(task: str, out: Path | None) -> Path:
    return out if out is not None else Path("runs") / task
