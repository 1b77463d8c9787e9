"""``densecnn export``: a predictor's model to a self-describing ONNX file or OpenVINO IR folder.

The graph is traced with ``torch.onnx.export`` (the TorchScript exporter, opset 17) on the module the
predictor runs, in the form the predictor's postprocessing reads (YOLO: Ultralytics' export mode of
its heads, NMS outside; segmenters: logits). Nothing is installed or downloaded on the way.
OpenVINO IRs are converted from that ONNX graph (``openvino.convert_model``); ``int8`` quantizes them
with NNCF's post-training quantization on calibration images run through the predictor's own
preprocessing. Files are written atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from densecnn.errors import UsageError
from densecnn.runtimes.meta import FORMATS, META_KEY, ExportMeta

if TYPE_CHECKING:
    from densecnn.tasks.base import Predictor

log = logging.getLogger(__name__)

OPSET = 17
CALIBRATION_IMAGES = 300
"""Most calibration images used for INT8 (NNCF's default subset size)."""


def exportable(predictor: Predictor) -> bool:
    return callable(getattr(predictor, "export_graph", None))


def not_exportable(predictor: Predictor) -> UsageError:
    name = predictor.spec.name if predictor.spec is not None else type(predictor).__name__
    return UsageError(
        f"{name} cannot be exported: it runs on torch only.",
        hint="Faster R-CNN's data-dependent proposal and RoI steps do not trace to a graph that matches "
        "torchvision's outputs; use --backend torch (the README's Backends section says more).",
    )


def source_digest(predictor: Predictor) -> str | None:
    from densecnn.zoo.store import sha256_file

    path = predictor.weights_path
    return sha256_file(path) if path is not None and path.is_file() else None


def export_name(predictor: Predictor, fmt: str, meta: ExportMeta) -> str:
    """``<model>-<digest8>-<size>[-dynamic][-fp16|-int8]`` + ``.onnx`` or ``-openvino`` (a folder)."""
    digest = (meta.source.get("sha256") or "nodigest")[:8]
    size = f"{meta.imgsz[0]}" if meta.imgsz[0] == meta.imgsz[1] else f"{meta.imgsz[0]}x{meta.imgsz[1]}"
    tags = ["dynamic"] if meta.dynamic else []
    tags += ["int8"] if meta.int8 else ["fp16"] if meta.half else []
    stem = "-".join([meta.model, digest, size, *tags])
    return f"{stem}.onnx" if fmt == "onnx" else f"{stem}-openvino"


def export(
    predictor: Predictor,
    *,
    fmt: str,
    out_dir: Path,
    dynamic: bool = False,
    half: bool = False,
    int8: bool = False,
    calibration: Sequence[Path] = (),
    name: str | None = None,
    from_onnx: Path | None = None,
) -> tuple[Path, ExportMeta]:
    """Export ``predictor``'s model into ``out_dir``; returns (the .onnx file or the OpenVINO folder,
    its metadata). The input size is the predictor's (``--imgsz`` when it was loaded with one).
    ``from_onnx``: an fp32 ONNX export of this predictor with the same settings, converted to
    OpenVINO instead of tracing the module again."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be {' or '.join(FORMATS)}, got {fmt!r}.")
    if not exportable(predictor):
        raise not_exportable(predictor)
    if int8 and fmt != "openvino":
        raise UsageError("--int8 is made with OpenVINO's NNCF: use it with --format openvino.")
    if int8 and not calibration:
        raise UsageError("--int8 needs calibration images: pass --data with a folder of images.")
    if half and fmt == "onnx" and predictor.device.type != "cuda":
        raise UsageError(
            "An fp16 ONNX graph runs slower than fp32 on a CPU; --half with --format onnx needs "
            "--device cuda.",
            hint="For a smaller CPU model use --format openvino --half (fp16 weights) or --int8.",
        )
    _require_packages(fmt, int8)
    graph = predictor.export_graph()  # type: ignore[attr-defined]
    dynamic = dynamic or graph.spatial_dynamic
    if graph.set_dynamic is not None:
        graph.set_dynamic(graph.module, dynamic)
    spec = predictor.spec
    import densecnn

    meta = ExportMeta(
        format=fmt,
        model=spec.name if spec is not None else type(predictor).__name__,
        task=spec.task if spec is not None else "detect",
        kind=graph.kind,
        names=dict(predictor.names),
        imgsz=graph.imgsz or (int(graph.input_shape[2]), int(graph.input_shape[3])),
        dynamic=dynamic,
        batch=None if dynamic else int(graph.input_shape[0]),
        preprocess=graph.preprocess,
        source={
            "file": predictor.weights_path.name if predictor.weights_path else None,
            "sha256": source_digest(predictor),
        },
        half=half,
        int8=int8,
        backbone=predictor.backbone,
        outputs=tuple(graph.outputs),
        densecnn=densecnn.__version__,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (name or export_name(predictor, fmt, meta))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        if from_onnx is not None and fmt == "openvino":
            shutil.copyfile(from_onnx, onnx_path)  # the same graph, traced already
        else:
            _to_onnx(graph, onnx_path, dynamic=dynamic, half=half and fmt == "onnx", meta=meta)
        if fmt == "onnx":
            os.replace(onnx_path, target)
            return target, meta
        folder = Path(tmp) / "openvino"
        _to_openvino(
            onnx_path, folder, meta, predictor=predictor, calibration=calibration, ignored=graph.int8_ignored
        )
        if target.exists():
            shutil.rmtree(target)  # the same model, digest and settings: this replaces a stale copy
        os.replace(folder, target)
    return target, meta


def _require_packages(fmt: str, int8: bool) -> None:
    import importlib.util

    extra = "int8" if int8 else "openvino" if fmt == "openvino" else "onnx"
    needs = ["onnx", *(["openvino"] if fmt == "openvino" else []), *(["nncf"] if int8 else [])]
    for module in needs:
        if importlib.util.find_spec(module) is None:
            raise UsageError(
                f"Export to {fmt}{' INT8' if int8 else ''} needs the {module} package.",
                hint=f'Install it: pip install "densecnn[{extra}]"',
            )


def _to_onnx(graph: object, path: Path, *, dynamic: bool, half: bool, meta: ExportMeta) -> None:
    import onnx

    module = graph.module  # type: ignore[attr-defined]
    x = torch.zeros(graph.input_shape)  # type: ignore[attr-defined]
    if half:
        module, x = module.half().cuda(), x.half().cuda()
    axes = {"images": {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    if axes is not None:
        for name in graph.outputs:  # type: ignore[attr-defined]
            axes[name] = {0: "batch"}
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of torch.export, which does not yet take
        # Ultralytics' heads with dynamic shapes; it still writes the graphs tested here
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # static shapes are meant to be fixed
        module(x)  # one forward first: Ultralytics heads set their anchors and strides on it
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=["images"],
            output_names=list(graph.outputs),  # type: ignore[attr-defined]
            opset_version=OPSET,
            dynamic_axes=axes,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    onnx.save(model, str(path))


def _to_openvino(
    onnx_path: Path,
    folder: Path,
    meta: ExportMeta,
    *,
    predictor: Predictor,
    calibration: Sequence[Path],
    ignored: Sequence[str] = (),
) -> None:
    from densecnn.runtimes import import_openvino

    ov = import_openvino()

    model = ov.convert_model(str(onnx_path))
    if meta.int8:
        model = _quantize(model, meta, predictor, calibration, ignored)
    model.set_rt_info(meta.to_json(), [META_KEY])
    folder.mkdir()
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=meta.half)


def _quantize(
    model: object, meta: ExportMeta, predictor: Predictor, images: Sequence[Path], ignored: Sequence[str]
) -> object:
    """NNCF post-training quantization, calibrated on ``images`` prepared as the predictor prepares
    them (a static graph: the square letterbox it runs with)."""
    import nncf

    from densecnn.results import Frame
    from densecnn.sources.images import read_image

    inputs = []
    static = not meta.dynamic
    previous = predictor.static_input
    predictor.static_input = static
    try:
        for path in list(images)[:CALIBRATION_IMAGES]:
            frame = Frame(read_image(path), source=path.name, path=str(path))
            with torch.inference_mode():
                x = predictor.preprocess([frame])
            if isinstance(x, list):  # semantic models: one tensor per image
                x = x[0].unsqueeze(0)
            inputs.append(x.float().cpu().numpy())
    finally:
        predictor.static_input = previous
    log.info("INT8: calibrating on %d images", len(inputs))
    # MIXED: symmetric weights, asymmetric activations (YOLO's SiLU outputs are not centred on 0)
    preset = nncf.QuantizationPreset.MIXED
    scope = nncf.IgnoredScope(patterns=list(ignored), validate=False) if ignored else None
    return nncf.quantize(
        model, nncf.Dataset(inputs), preset=preset, subset_size=len(inputs), ignored_scope=scope
    )
