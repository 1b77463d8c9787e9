"""The two non-torch runtimes: ONNX Runtime and OpenVINO, each called like the torch module.

Both take the predictor's batch tensor and return torch tensors (one, or a list in the exported
output order). A static graph (exported without ``--dynamic``) takes batch ``meta.batch`` at exactly
``meta.imgsz``: larger batches are run one slice at a time, and any other size is refused.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densecnn.errors import DenseCNNError
from densecnn.runtimes.meta import ExportMeta

_STATIC_AFTER = 16  # sightings of an input shape before OpenVINO gets a static copy compiled for it
_STATIC_KEPT = 2  # static copies kept (least recently used dropped)


class ShapeMismatch(DenseCNNError):
    """An input the static exported graph cannot take."""


class _Runtime:
    backend = "?"

    def __init__(self, path: Path, meta: ExportMeta) -> None:
        self.path = path
        self.meta = meta
        self.dynamic = meta.dynamic

    def __call__(self, x: torch.Tensor) -> Any:
        arrays = self._split_run(np.ascontiguousarray(x.detach().cpu().float().numpy()))
        tensors = [torch.from_numpy(a) for a in arrays]
        return tensors[0] if len(tensors) == 1 else tensors

    def _split_run(self, x: np.ndarray) -> list[np.ndarray]:
        if self.dynamic:
            return self._run(x)
        want = tuple(self.meta.imgsz)
        if tuple(x.shape[2:]) != want:
            raise ShapeMismatch(
                f"{self.path.name} was exported for {want[0]}x{want[1]} inputs (static); got "
                f"{x.shape[2]}x{x.shape[3]}.",
                hint="Export again with --dynamic, or with --imgsz for this size.",
            )
        step = self.meta.batch or 1
        if x.shape[0] == step:
            return self._run(x)
        parts = [self._run(x[i : i + step]) for i in range(0, x.shape[0], step)]
        return [np.concatenate(outs) for outs in zip(*parts, strict=True)]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def forget_shapes(self) -> None:
        """Release what was built for particular input shapes (the batch-size measurement tries
        several; a run then uses one or two)."""


class OnnxRuntime(_Runtime):
    """An .onnx file on ONNX Runtime (CUDA provider on a CUDA device when installed, else CPU)."""

    backend = "onnxruntime"

    def __init__(self, path: Path, meta: ExportMeta, *, device: torch.device, threads: int | None = None):
        super().__init__(path, meta)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # No busy-waiting between calls: decode and encode threads share the cores with inference
        # (as torch runs with OMP_WAIT_POLICY=PASSIVE).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return [np.asarray(o, dtype=np.float32) for o in outs]


class OpenVinoRuntime(_Runtime):
    """An OpenVINO IR (.xml + .bin) or an .onnx file on OpenVINO's CPU plugin, in fp32 precision
    (OpenVINO would otherwise pick bf16 on CPUs that have it, and scores would drift).

    A dynamic model runs compiled with its dynamic input, and an input shape seen ``_STATIC_AFTER``
    times gets a static copy compiled for it (at most ``_STATIC_KEPT`` kept): the static copy is
    ~15% faster per frame (yolov8n at 640, batch 4), but compiling one costs ~140 ms, which a folder
    of photos of many sizes (many letterbox sizes and batch lengths) would pay for every new shape."""

    backend = "openvino"

    def __init__(self, path: Path, meta: ExportMeta, *, device: torch.device, threads: int | None = None):
        super().__init__(path, meta)
        from densecnn.runtimes import import_openvino

        ov = import_openvino()

        if device.type != "cpu":
            from densecnn.errors import UsageError

            raise UsageError(
                f"--backend openvino runs on the CPU here, not on {device}.",
                hint="Use --device cpu, or --backend torch / onnxruntime on the GPU.",
            )
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if not meta.int8:
            self.config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self._compiled: Any = None  # the model as read (dynamic or not), compiled on first use
        self._request: Any = None
        self._static: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # shape → its own request
        self._seen: Counter[tuple[int, ...]] = Counter()

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        request = self._request_for(tuple(x.shape))
        request.infer({0: x})
        outputs = range(len(request.model_outputs))
        return [np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in outputs]

    def _request_for(self, shape: tuple[int, ...]) -> Any:
        request = self._static.get(shape)
        if request is not None:
            self._static.move_to_end(shape)
            return request
        if self.dynamic:
            self._seen[shape] += 1
            if self._seen[shape] >= _STATIC_AFTER:
                return self._compile_static(shape)
        if self._compiled is None:
            self._compiled = self.core.compile_model(self.model, "CPU", self.config)
        if self._request is None:
            self._request = self._compiled.create_infer_request()
        return self._request

    def _compile_static(self, shape: tuple[int, ...]) -> Any:
        from densecnn.runtimes import import_openvino

        model = self.model.clone()
        model.reshape({model.inputs[0]: import_openvino().PartialShape(list(shape))})
        request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        self._static[shape] = request
        while len(self._static) > _STATIC_KEPT:
            self._static.popitem(last=False)
        return request

    def forget_shapes(self) -> None:
        """Drop the static copies and the dynamic request's buffers (sized for the largest input)."""
        self._static.clear()
        self._seen.clear()
        self._request = None


RUNTIMES: dict[str, type[_Runtime]] = {"onnxruntime": OnnxRuntime, "openvino": OpenVinoRuntime}


def open_runtime(
    backend: str, path: Path, meta: ExportMeta, *, device: torch.device, threads: int | None = None
) -> _Runtime:
    """``path`` (an exported model file) on ``backend``."""
    return RUNTIMES[backend](path, meta, device=device, threads=threads)  # type: ignore[call-arg]
