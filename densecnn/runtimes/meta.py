"""What an exported file says about itself (:class:`ExportMeta`), and what a predictor hands the
exporter (:class:`ExportGraph`).

The metadata is one JSON string stored in the file: under the ``densecnn`` key of the ONNX model's
``metadata_props``, and in the OpenVINO IR's ``rt_info`` under ``densecnn``. It holds everything the
predictor needs to prepare inputs and read outputs exactly as the torch model does (classes, input
size, letterbox or resize/crop/normalisation), how the graph was exported (static or dynamic shapes,
fp16, int8) and the SHA-256 of the checkpoint it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from densecnn.config import ExportFormat
from densecnn.errors import UsageError

META_KEY = "densecnn"
META_VERSION = 1
FORMATS: tuple[str, ...] = get_args(ExportFormat)


@dataclass(frozen=True)
class ExportMeta:
    """The self-description of an exported model.

    ``kind`` picks the predictor that runs it (yolo-detect, yolo-segment, classify, semantic).
    ``imgsz`` is the exported input ``[height, width]``; ``dynamic`` says height and width (and batch)
    may differ from it; otherwise the graph takes ``batch`` x 3 x height x width only.
    """

    format: str
    model: str
    task: str
    kind: str
    names: dict[int, str]
    imgsz: tuple[int, int]
    dynamic: bool
    batch: int | None
    preprocess: dict[str, Any]
    source: dict[str, Any]
    half: bool = False
    int8: bool = False
    backbone: str | None = None
    outputs: tuple[str, ...] = ("output0",)
    densecnn: str = ""
    version: int = META_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["names"] = {str(k): v for k, v in self.names.items()}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: Path) -> ExportMeta:
        try:
            data = json.loads(text)
            if data.get("version", 0) > META_VERSION:
                raise UsageError(
                    f"{where} was exported by a newer densecnn (metadata v{data['version']}).",
                    hint="Upgrade densecnn, or export the model again with this one.",
                )
            data["names"] = {int(k): str(v) for k, v in data["names"].items()}
            data["imgsz"] = tuple(data["imgsz"])
            data["outputs"] = tuple(data.get("outputs", ("output0",)))
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{where}: its densecnn metadata is damaged ({exc}).",
                hint="Export the model again with `densecnn export`.",
            ) from exc

    def describe(self) -> str:
        shape = "dynamic" if self.dynamic else f"static {self.imgsz[0]}x{self.imgsz[1]}, batch {self.batch}"
        precision = "int8" if self.int8 else "fp16" if self.half else "fp32"
        return f"{self.model} {self.format} ({shape}, {precision})"


@dataclass
class ExportGraph:
    """What a predictor gives the exporter: the module to trace (tensors in, tensors out), an
    example input shape, output names, its ``kind`` and preprocessing fields for :class:`ExportMeta`.
    ``set_dynamic`` prepares the module for dynamic shapes (YOLO heads compute anchors in-graph);
    ``spatial_dynamic`` forces dynamic height/width (semantic models see any aspect ratio)."""

    module: Any
    input_shape: tuple[int, ...]
    outputs: list[str]
    kind: str
    preprocess: dict[str, Any]
    set_dynamic: Callable[[Any, bool], None] | None = None
    spatial_dynamic: bool = False
    imgsz: tuple[int, int] | None = None
    """The nominal input size recorded in the metadata (None: the example input's)."""
    int8_ignored: list[str] = field(default_factory=list)
    """Node name patterns INT8 quantization leaves in float (YOLO: the box decoding after the head,
    whose concatenated pixel coordinates and [0, 1] scores one int8 scale cannot hold both)."""


def exported_model_file(path: Path) -> Path | None:
    """The model file of an exported ``path`` (an .onnx, an OpenVINO .xml, or a folder holding one
    .xml or .onnx), or None when ``path`` is not one."""
    if path.is_dir():
        found = sorted(path.glob("*.xml")) or sorted(path.glob("*.onnx"))
        return found[0] if len(found) == 1 else None
    if path.suffix.lower() in (".onnx", ".xml") and path.is_file():
        return path
    return None


def read_meta(path: Path) -> ExportMeta:
    """The metadata of an exported model file (:func:`exported_model_file`); a UsageError when the
    file has none (exported by another tool) or cannot be read."""
    model = exported_model_file(path)
    if model is None:
        raise UsageError(f"{path} is not an exported model (.onnx, OpenVINO .xml or a folder with one).")
    text = _onnx_meta(model) if model.suffix.lower() == ".onnx" else _openvino_meta(model)
    if text is None:
        raise UsageError(
            f"{model} has no densecnn metadata (classes, input size, preprocessing), so densecnn "
            "cannot know how to feed it.",
            hint="Export it with `densecnn export MODEL --format onnx|openvino`.",
        )
    return ExportMeta.from_json(text, where=model)


def _onnx_meta(path: Path) -> str | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"Could not read {path} as an ONNX model: {exc}") from exc
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            return str(prop.value)
    return None


def _openvino_meta(path: Path) -> str | None:
    from densecnn.runtimes import import_openvino

    ov = import_openvino()

    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:
        raise UsageError(f"Could not read {path} as an OpenVINO model: {exc}") from exc
    if not model.has_rt_info(META_KEY):
        return None
    return str(model.get_rt_info(META_KEY).astype(str))
