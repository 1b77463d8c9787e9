"""Step 6 of ``densecnn.load``: put the predictor on the backend ``--backend`` asks for.

* A torch checkpoint on onnxruntime / openvino: its model is exported once (dynamic shapes, fp32)
  into the weight store's ``exports/auto`` folder, named by the checkpoint's SHA-256, and that graph
  runs behind the predictor's ``forward``; preprocessing and postprocessing stay the predictor's.
* An exported file (``--weights model.onnx`` / an OpenVINO folder or .xml) is read with its own
  metadata: the predictor is rebuilt around it without torch weights (:func:`exported_predictor`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from densecnn.errors import UsageError
from densecnn.runtimes import require
from densecnn.runtimes.export import exportable, not_exportable

if TYPE_CHECKING:
    from densecnn.runtimes.base import Runtime
    from densecnn.runtimes.meta import ExportMeta
    from densecnn.tasks.base import Predictor
    from densecnn.tasks.builders import BuildRequest
    from densecnn.zoo.store import WeightStore

AUTO_EXPORTS = "exports/auto"


def apply_backend(predictor: Predictor, request: BuildRequest, store: WeightStore | None = None) -> None:
    """Set ``predictor.backend`` (and its runtime) from ``request.cfg.backend``."""
    if predictor.runtime is not None:  # built around an exported file: its runtime is set
        return
    from densecnn.zoo.store import WeightStore

    store = store or WeightStore()
    backend = request.cfg.backend
    if backend == "auto":
        from densecnn.runtimes.select import choose_backend

        backend = choose_backend(predictor, request, store)
    if backend == "torch":
        predictor.backend = "torch"
        return
    require(backend)
    if not exportable(predictor):
        raise not_exportable(predictor)
    set_runtime(predictor, auto_runtime(predictor, backend, store, half=request.cfg.half))


def set_runtime(predictor: Predictor, runtime: Runtime) -> None:
    predictor.runtime = runtime
    predictor.backend = runtime.backend
    predictor.static_input = not runtime.dynamic


def auto_runtime(
    predictor: Predictor, backend: str, store: WeightStore, *, half: bool | None = None
) -> Runtime:
    """``predictor``'s model as a dynamic fp32 graph on ``backend``, exported once per checkpoint;
    ``half`` as ``--half`` (OpenVINO on a CPU: None computes in bf16 where the CPU does natively)."""
    from densecnn.runtimes.engines import open_runtime

    path, meta = auto_export(predictor, "onnx" if backend == "onnxruntime" else "openvino", store)
    return open_runtime(backend, path, meta, device=predictor.device, half=half)


def auto_export(predictor: Predictor, fmt: str, store: WeightStore) -> tuple[Path, ExportMeta]:
    """The cached dynamic export of ``predictor``'s checkpoint in ``fmt`` (made now when missing or
    written by another densecnn version)."""
    import densecnn
    from densecnn.runtimes.export import export, source_digest
    from densecnn.runtimes.meta import exported_model_file, read_meta

    digest = source_digest(predictor)
    if digest is None:
        raise UsageError(
            "Only a model loaded from a weight file can run on another backend.", hint="Use --backend torch."
        )
    model = predictor.spec.name if predictor.spec is not None else "model"
    folder = store.root / AUTO_EXPORTS

    def cached(fmt: str) -> tuple[Path, ExportMeta] | None:
        target = folder / (f"{model}-{digest[:16]}-dynamic" + (".onnx" if fmt == "onnx" else "-openvino"))
        found = exported_model_file(target) if target.exists() else None
        if found is None:
            return None
        meta = read_meta(found)
        if meta.densecnn != densecnn.__version__ or meta.source.get("sha256") != digest:
            return None
        return found, meta

    hit = cached(fmt)
    if hit is not None:
        return hit
    onnx = cached("onnx") if fmt == "openvino" else None
    name = f"{model}-{digest[:16]}-dynamic" + (".onnx" if fmt == "onnx" else "-openvino")
    print(f"densecnn: exporting {model} for {fmt} (once, into {folder})", file=sys.stderr)
    path, meta = export(
        predictor, fmt=fmt, out_dir=folder, dynamic=True, name=name, from_onnx=onnx[0] if onnx else None
    )
    found = exported_model_file(path)
    assert found is not None
    return found, meta


# ---- exported files as --weights -------------------------------------------------------------------

_KINDS = {
    "yolo-detect": ("densecnn.tasks.detect.yolo", "YoloDetector"),
    "yolo-segment": ("densecnn.tasks.segment.yolo_seg", "YoloSegmenter"),
    "classify": ("densecnn.tasks.classify.torch_cls", "TensorClassifier"),
    "semantic": ("densecnn.tasks.segment.semantic", "SemanticSegmenter"),
}


def exported_predictor(request: BuildRequest) -> Predictor:
    """The predictor of an exported file, on ONNX Runtime (.onnx) or OpenVINO (its IR; an .onnx too
    with ``--backend openvino``), after checking the run asks nothing the file was not exported for."""
    import importlib

    from densecnn.runtimes.engines import open_runtime

    meta, path = request.weights.export, request.weights.path
    assert meta is not None and path is not None
    if meta.kind not in _KINDS:
        raise UsageError(f"{path}: unknown exported model kind {meta.kind!r} (a newer densecnn?).")
    check_settings(meta, path, request)
    backend = request.cfg.backend
    if backend == "auto":
        backend = "onnxruntime" if meta.format == "onnx" else "openvino"
    if backend == "torch":
        raise UsageError(
            f"{path} is an exported {meta.format} graph; torch runs checkpoints.",
            hint=f"Leave out --backend, or pass the checkpoint it came from ({meta.source.get('file')}).",
        )
    if backend == "onnxruntime" and meta.format != "onnx":
        raise UsageError(
            f"{path} is an OpenVINO model; ONNX Runtime runs .onnx files.", hint="Use --backend openvino."
        )
    require(backend)
    module, name = _KINDS[meta.kind]
    cls = getattr(importlib.import_module(module), name)
    predictor: Predictor = cls.from_export(meta, request)
    set_runtime(predictor, open_runtime(backend, path, meta, device=request.device, half=request.cfg.half))
    return predictor


def check_settings(meta: ExportMeta, path: Path, request: BuildRequest) -> None:
    """Refuse a run that asks for what a static file was not exported for (another input size);
    a dynamic one takes ``--imgsz`` as the torch model does."""
    cfg = request.cfg
    if cfg.backbone is not None or request.class_names:
        raise UsageError(
            f"{path} names its own backbone and classes; leave out --backbone, --num-classes and "
            "--class-names."
        )
    if cfg.imgsz is None or meta.dynamic:
        return
    size = meta.imgsz[1] if meta.kind.startswith("yolo") else min(meta.imgsz)
    if cfg.imgsz != size:
        raise UsageError(
            f"{path} was exported for {meta.imgsz[0]}x{meta.imgsz[1]} inputs with static shapes; "
            f"--imgsz {cfg.imgsz} would feed it another size.",
            hint=f"Leave out --imgsz, or export again with --imgsz {cfg.imgsz} (or --dynamic for any size).",
        )
