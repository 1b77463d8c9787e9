"""The two non-torch runtimes: ONNX Runtime and OpenVINO, each called like the torch module.

Both take the predictor's batch tensor and return torch tensors (one, or a list in the exported
output order). A static graph (exported without ``--dynamic``) takes batch ``meta.batch`` at exactly
``meta.imgsz``: larger batches are run one slice at a time, and any other size is refused.
"""

from __future__ import annotations

import sys
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densecnn.errors import DenseCNNError
from densecnn.runtimes.meta import ExportMeta

_STATIC_AFTER = 16  # among many input sizes: sightings of a shape before it gets its static copy
_STATIC_KEPT = 2  # static copies kept (least recently used dropped)
_BATCH_AFTER = 8  # among many input sizes: sightings of a batch shape before it runs whole
_FEW_SIZES = 2  # input sizes (height, width) up to which every shape gets its static copy at once


class ShapeMismatch(DenseCNNError):
    """An input the static exported graph cannot take."""


class _Runtime:
    """``path`` (an exported model) opened for ``device``; ``threads``: the runtime's own (None: its
    default); ``half``: the run's ``--half`` (None: not given). Subclasses open it in ``_open``."""

    backend = "?"
    builds_per_shape = False
    """Kernels are built for each new input shape (a folder of many sizes is better run at few)."""

    def __init__(
        self,
        path: Path,
        meta: ExportMeta,
        *,
        device: torch.device,
        threads: int | None = None,
        half: bool | None = None,
    ) -> None:
        self.path = path
        self.meta = meta
        self.dynamic = meta.dynamic
        self.precision = "int8" if meta.int8 else "fp16" if meta.half else "fp32"
        """What the graph computes in: fp32, fp16 (an fp16 ONNX graph), bf16 or int8."""
        self._open(device, threads, half)

    def _open(self, device: torch.device, threads: int | None, half: bool | None) -> None:
        raise NotImplementedError

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

    def _open(self, device: torch.device, threads: int | None, half: bool | None) -> None:
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
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return [np.asarray(o, dtype=np.float32) for o in outs]


class OpenVinoRuntime(_Runtime):
    """An OpenVINO IR (.xml + .bin) or an .onnx file on OpenVINO's CPU plugin.

    Precision (``half``): True, or None except on Windows, computes in bf16 where the CPU does so
    natively (AMX or AVX512-BF16; OpenVINO's own default there, ~2.5x the fp32 speed of yolov8n-seg
    on a Sapphire Rapids core), else fp32; False keeps fp32 (scores equal to torch's within 1e-3).
    An INT8 model runs as quantized.

    Shapes of a dynamic model: while inputs came in at most ``few_sizes`` sizes (a video, photos of
    one size, a folder of photos restricted to a few input sizes) and the run did not say they are
    many (``many_sizes``), each batch shape gets a static copy compiled at once (at least
    ``_STATIC_KEPT`` kept; a shorter batch runs padded on a longer one's copy): ~10% faster per
    frame than the dynamic graph (yolov8n at 640, batch 4) and ~100 MB less memory than running the
    dynamic graph first. Among more sizes (a folder of photos; those
    copies are dropped) the dynamic graph runs them, a shape seen ``_STATIC_AFTER`` times gets its
    static copy, and a batch shape's frames run one at a time for its first ``_BATCH_AFTER``
    sightings (compiling a copy costs ~140 ms, building kernels for a new shape on the dynamic graph
    ~75 ms in bf16: a folder of photos of many sizes would pay that for every new shape)."""

    backend = "openvino"
    builds_per_shape = True

    def _open(self, device: torch.device, threads: int | None, half: bool | None) -> None:
        from densecnn.runtimes import import_openvino

        ov = import_openvino()

        if device.type != "cpu":
            from densecnn.errors import UsageError

            raise UsageError(
                f"--backend openvino runs on the CPU here, not on {device}.",
                hint="Use --device cpu, or --backend torch / onnxruntime on the GPU.",
            )
        self.core = ov.Core()
        self.model = self.core.read_model(str(self.path))
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if not self.meta.int8:
            # Not by default on Windows: Ultralytics forces fp32 there after reduced-precision CPU
            # kernels failed in VMs that report AMX
            wanted = half is True or (half is None and sys.platform != "win32")
            self.precision = "bf16" if wanted and cpu_has_bf16(self.core) else "fp32"
            self.config["INFERENCE_PRECISION_HINT"] = "bf16" if self.precision == "bf16" else "f32"
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self._compiled: Any = None  # the model as read (dynamic or not), compiled on first use
        self._request: Any = None
        self._static: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # shape → its own request
        self._seen: Counter[tuple[int, ...]] = Counter()
        self._sizes: set[tuple[int, ...]] = set()  # the (height, width) inputs came in
        self.few_sizes = _FEW_SIZES
        """Input sizes that get static copies at once; a run that restricts its model to more input
        sizes (a folder of photos of many sizes: ``Predictor.restrict_input_sizes``) raises it."""
        self.many_sizes = False
        """Inputs come in many sizes (set by the run for a folder of photos of many sizes, or when a
        third size comes): the dynamic graph runs them (see the class docstring)."""

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        shape = tuple(x.shape)
        if not self.dynamic:
            return self._infer(self._static_request(shape, compile_=False) or self._dynamic_request(), x)
        self._sizes.add(shape[2:])
        if len(self._sizes) <= self.few_sizes and not self.many_sizes:
            return self._run_static(x)
        if not self.many_sizes:  # the sizes just became many: the static copies go (their memory)
            self.many_sizes = True
            self._static.clear()
        request = self._static_request(shape, compile_=self._seen[shape] >= _STATIC_AFTER)
        if request is not None:
            return self._infer(request, x)
        self._seen[shape] += 1
        if len(x) > 1 and self._seen[shape] <= _BATCH_AFTER:
            # Many sizes (a folder of photos): most batch shapes come a few times, and each new one
            # costs a kernel build (~90 ms for yolov8n-seg at 640 on 2 cores, four frames'
            # inference) while a batch saves ~10% a frame: their frames run one at a time at first.
            parts = [self._run(x[i : i + 1]) for i in range(len(x))]
            return [np.concatenate(outs) for outs in zip(*parts, strict=True)]
        return self._infer(self._dynamic_request(), x)

    def _run_static(self, x: np.ndarray) -> list[np.ndarray]:
        """``x`` on a static copy: its own, or one for more frames of the same size (the batch
        padded with copies of its last frame, whose outputs are dropped: a video's last batch)."""
        n, size = len(x), x.shape[1:]
        for shape in reversed(self._static):
            if shape[1:] == size and shape[0] > n:
                padded = np.concatenate([x, np.repeat(x[-1:], shape[0] - n, axis=0)])
                return [out[:n] for out in self._infer(self._static_request(shape), padded)]
        return self._infer(self._static_request(tuple(x.shape)), x)

    @staticmethod
    def _infer(request: Any, x: np.ndarray) -> list[np.ndarray]:
        request.infer({0: x})
        outputs = range(len(request.model_outputs))
        return [np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in outputs]

    def _static_request(self, shape: tuple[int, ...], *, compile_: bool = True) -> Any:
        """The static copy for ``shape`` (compiled now if missing and ``compile_``), else None."""
        request = self._static.get(shape)
        if request is not None:
            self._static.move_to_end(shape)
            return request
        if not compile_:
            return None
        from densecnn.runtimes import import_openvino

        # The dynamic request's buffers (sized for the largest input it ran) go first, so the static
        # copy can reuse their memory; it is made again if another shape comes.
        self._request = None
        model = self.model.clone()
        model.reshape({model.inputs[0]: import_openvino().PartialShape(list(shape))})
        request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        self._static[shape] = request
        while len(self._static) > max(_STATIC_KEPT, self.few_sizes):
            self._static.popitem(last=False)
        return request

    def _dynamic_request(self) -> Any:
        if self._compiled is None:
            config = self.config
            if self.many_sizes:
                # Kernels built for one shape are not kept for the next: among many sizes they
                # are seldom reused (DeepLabV3 over coco128: 53 sizes, 76 MB less, same time)
                config = {**config, "CPU_RUNTIME_CACHE_CAPACITY": 0}
            self._compiled = self.core.compile_model(self.model, "CPU", config)
        if self._request is None:
            self._request = self._compiled.create_infer_request()
        return self._request

    def forget_shapes(self) -> None:
        """Drop the static copies and the dynamic request's buffers (sized for the largest input)."""
        self._static.clear()
        self._seen.clear()
        self._sizes.clear()
        self.many_sizes = False
        self._request = None


def cpu_has_bf16(core: Any = None) -> bool:
    """Whether OpenVINO computes bf16 natively on this CPU (its capability list names BF16)."""
    if core is None:
        from densecnn.runtimes import import_openvino

        core = import_openvino().Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


RUNTIMES: dict[str, type[_Runtime]] = {"onnxruntime": OnnxRuntime, "openvino": OpenVinoRuntime}


def open_runtime(backend: str, path: Path, meta: ExportMeta, **options: Any) -> _Runtime:
    """``path`` (an exported model file) on ``backend``; ``options``: ``device``, ``threads`` and
    ``half`` as :class:`_Runtime` takes them (``half``, the run's ``--half``, is bf16 under OpenVINO on
    a CPU: see :class:`OpenVinoRuntime`)."""
    return RUNTIMES[backend](path, meta, **options)
