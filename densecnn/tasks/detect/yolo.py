"""YOLO detectors through Ultralytics, split into densecnn's preprocess/forward/postprocess.

Each step calls the same Ultralytics functions its own ``predict`` uses (LetterBox, AutoBackend,
non_max_suppression, scale_boxes), so boxes match ``yolo predict`` on the same weights.
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from densecnn.errors import DenseCNNError, UsageError
from densecnn.integrations.ultralytics import (
    TRUST_ENV,
    full_unpickling,
    import_ultralytics,
    needs_full_unpickling,
    restricted_unpickling,
    untrusted_error,
    weights_trusted,
)
from densecnn.results import Detections, Frame
from densecnn.tasks.base import Predictor
from densecnn.tasks.builders import BuildRequest, register_builder

if TYPE_CHECKING:
    from densecnn.runtimes.meta import ExportGraph, ExportMeta

log = logging.getLogger(__name__)


def load_yolo_module(path: Path, *, user_named: bool, trust: bool = False) -> torch.nn.Module:
    """Load an Ultralytics ``.pt`` checkpoint (or a densecnn YOLO ``.safetensors``) into an fp32
    ``nn.Module`` (never downloads).

    Loading is ``weights_only`` against Ultralytics' allow-list of model classes, so no code in the
    file runs. A file that needs more is unpickled in full (which runs whatever code it holds) only
    with the user's consent: ``trust`` (``--trust-weights``) or ``DENSECNN_TRUST_WEIGHTS=1``;
    otherwise :class:`UntrustedWeightsError` (exit 3) says what the file needs and how to allow it.
    """
    if not path.is_file():
        raise UsageError(f"Weights file not found: {path}")
    if path.suffix == ".safetensors":  # densecnn's own YOLO files: no pickle (see yolo_state.py)
        from densecnn.tasks.detect.yolo_state import load_yolo_state

        return load_yolo_state(path)
    damage = pt_damage(path)
    if damage is not None:
        raise UsageError(
            f"Could not load {path}: {damage}.",
            hint="Copy, download or export the file again (compare its size with the original).",
        )
    import_ultralytics()
    from ultralytics.nn.tasks import load_checkpoint

    try:
        with restricted_unpickling():
            model, _ = load_checkpoint(str(path.resolve()))
    except (TypeError, ModuleNotFoundError, pickle.UnpicklingError) as exc:
        if not needs_full_unpickling(exc):
            raise UsageError(
                f"Could not load {path} as an Ultralytics checkpoint: {_first_line(exc)}",
                hint="The file is damaged or not a checkpoint: download or export it again.",
            ) from exc
        if not user_named:
            raise UsageError(f"Could not load {path}: {_first_line(exc)}") from exc
        if not weights_trusted(trust):
            raise untrusted_error(path) from exc
        log.warning("%s: full unpickling, as allowed by --trust-weights / %s", path, TRUST_ENV)
        try:
            with full_unpickling():
                model, _ = load_checkpoint(str(path.resolve()))
        except Exception as exc2:
            raise UsageError(
                f"Could not load {path} as an Ultralytics checkpoint: {_first_line(exc2)}",
                hint="Pass a .pt file written by Ultralytics (YOLO(...).save / yolo train) or pick a "
                "torchvision --model for a state dict.",
            ) from exc2
    except DenseCNNError:
        raise
    except Exception as exc:
        raise UsageError(
            f"Could not load {path} as an Ultralytics checkpoint: {_first_line(exc)}",
            hint="If it came from the weight cache, run `densecnn weights verify` and pull it again.",
        ) from exc
    return model


def pt_damage(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file (read as bytes, never unpickled), or None."""
    import zipfile

    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(4)
    if size == 0:
        return "truncated or corrupt file: it is empty (0 bytes)"
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            return (
                f"truncated or corrupt file: {size:,} bytes, and the torch.save zip archive has no "
                "central directory (the end of the file is missing)"
            )
        return None
    if not head.startswith(b"\x80"):  # a legacy torch.save pickle starts with its protocol opcode
        return f"not a PyTorch checkpoint ({size:,} bytes, neither a torch.save zip nor a pickle)"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class YoloDetector(Predictor):
    """An Ultralytics detection model (``task``: the Ultralytics task its checkpoints must have)."""

    task = "detect"
    input_sizes: tuple[tuple[int, int], ...] = ()
    """The network input sizes a run restricted this model to (:meth:`restrict_input_sizes`); empty:
    each image's own letterbox size."""
    wrong_task_hint = "Use a detection checkpoint (yolov8n.pt, yolo11n.pt, ...) with `densecnn detect`."

    def __init__(
        self,
        *,
        weights: Path,
        user_named: bool,
        device: torch.device,
        half: bool,
        conf: float,
        iou: float,
        imgsz: int,
        max_det: int,
        trust_weights: bool = False,
    ) -> None:
        super().__init__()
        import_ultralytics()
        from ultralytics.nn.autobackend import AutoBackend
        from ultralytics.utils.checks import check_imgsz

        module = load_yolo_module(weights, user_named=user_named, trust=trust_weights)
        if getattr(module, "task", "detect") != self.task:
            raise UsageError(
                f"{weights} is an Ultralytics {module.task!r} model, not a {self.task} model.",
                hint=self.wrong_task_hint,
            )
        # Same arguments as Ultralytics' predictor.setup_model with default settings.
        self.model = AutoBackend(
            model=module, device=device, fp16=half, fuse=True, verbose=False, end2end=False
        )
        self.model.eval()
        self.device = self.model.device
        self.stride = int(self.model.stride)  # AutoBackend reduces it to the largest stride
        self.imgsz = check_imgsz(imgsz, stride=self.stride, min_dim=2)
        self.names = {int(k): str(v) for k, v in self.model.names.items()}
        self.fp16 = bool(self.model.fp16)
        self.end2end = bool(getattr(self.model, "end2end", False))
        self._thresholds(conf, iou, max_det)

    def _thresholds(self, conf: float, iou: float, max_det: int) -> None:
        self.conf, self.iou, self.max_det = conf, iou, max_det
        # Ultralytics' NMS gives up after 2 s + 0.05 s per image and drops the rest; evaluation sets
        # this to inf so results never depend on how busy the machine is.
        self.nms_time_per_image = 0.05

    @classmethod
    def from_export(cls, meta: ExportMeta, request: BuildRequest) -> YoloDetector:
        """The adapter around an exported graph (``densecnn export``): the same preprocessing and NMS,
        the letterbox size, stride and classes from the file's metadata (no torch module)."""
        self = cls.__new__(cls)
        Predictor.__init__(self)
        self.device = torch.device("cpu")
        self.stride = int(meta.preprocess["stride"])
        if meta.dynamic and request.imgsz is not None:  # any size: letterbox to --imgsz as torch does
            from ultralytics.utils.checks import check_imgsz

            self.imgsz = check_imgsz(request.imgsz, stride=self.stride, min_dim=2)
        else:
            self.imgsz = list(meta.imgsz)
        self.names = dict(meta.names)
        self.fp16 = False
        self.end2end = False
        self._thresholds(
            float(request.conf if request.conf is not None else 0.25),
            float(request.iou if request.iou is not None else 0.7),
            request.max_det,
        )
        return self

    def export_graph(self) -> ExportGraph:
        """The fused module in Ultralytics' export mode: one ``(N, 4 + classes [+ 32], anchors)``
        prediction tensor (and, for -seg, the ``(N, 32, h/4, w/4)`` prototypes); no NMS."""
        import copy

        from densecnn.runtimes.meta import ExportGraph

        module = copy.deepcopy(self.model.model).float().cpu().eval()
        for m in module.modules():
            if hasattr(m, "export"):
                m.export = True
                m.format = "onnx"
        outputs = ["output0", "output1"] if self.instances else ["output0"]
        head = len(module.model) - 1  # the Detect / Segment head, last in Ultralytics' layer list
        return ExportGraph(
            module=module,
            input_shape=(1, 3, *self.imgsz),
            outputs=outputs,
            kind=f"yolo-{self.task}",
            preprocess={"letterbox": "ultralytics", "stride": self.stride, "scale": "rgb/255"},
            set_dynamic=_yolo_dynamic,
            int8_ignored=[rf".*/model\.{head}/.*"],
        )

    def letterbox(self) -> Any:
        """Ultralytics' LetterBox as ``yolo predict`` uses it one image at a time: to the smallest stride
        multiple, or exactly ``imgsz`` for a static exported graph."""
        from ultralytics.data.augment import LetterBox

        return LetterBox(self.imgsz, auto=not self.static_input, stride=self.stride)

    def own_size(self, image_shape: Sequence[int]) -> tuple[int, int]:
        """The letterboxed input size of an image of ``image_shape`` ``(H, W, ...)`` on its own."""
        p = self.letterbox().get_params({"img": np.empty((image_shape[0], image_shape[1], 0), np.uint8)})
        return p["new_unpad"][1] + p["top"] + p["bottom"], p["new_unpad"][0] + p["left"] + p["right"]

    def restrict_input_sizes(
        self, image_sizes: Sequence[tuple[int, int]], keep: int = 2
    ) -> tuple[tuple[int, int], ...]:
        """Run at few network input sizes from now on, for images of these ``(height, width)`` (a sample
        of a folder of photos of many sizes): the ``keep`` commonest own letterbox sizes of the sample
        (seen at least twice) and ``imgsz`` itself. An image is scaled as on its own and padded,
        centred, to the smallest of them that holds it (:meth:`input_size`); ``imgsz`` is how
        Ultralytics runs every image on a static export. Returns the sizes (empty: unchanged)."""
        if self.static_input:
            return ()
        counts = Counter(self.own_size(size) for size in image_sizes)
        common = [size for size, n in counts.most_common(keep) if n >= 2]
        self.input_sizes = tuple(dict.fromkeys([*common, (int(self.imgsz[0]), int(self.imgsz[1]))]))
        return self.input_sizes

    def input_size(self, frame: Frame) -> tuple[int, int]:
        """The network input size of ``frame``: its own letterbox size, or with restricted input sizes
        the smallest of them that holds it."""
        return self._fit(self.own_size(frame.image.shape))

    def _fit(self, own: tuple[int, int]) -> tuple[int, int]:
        fits = [s for s in self.input_sizes if s[0] >= own[0] and s[1] >= own[1]]
        return min(fits, key=lambda s: s[0] * s[1]) if fits else own

    def batch_key(self, frame: Frame) -> tuple[int, int]:
        """The network input size: frames that share it share a forward pass (see ``preprocess``)."""
        return self.input_size(frame)

    def preprocess(self, frames: Sequence[Frame]) -> torch.Tensor:
        """BGR uint8 frames → letterboxed RGB float ``(N, 3, H, W)`` in [0, 1] on the model's device.

        Each frame is letterboxed on its own, as ``yolo predict`` does one image at a time, so a frame's
        result does not depend on its batch; the pipeline batches only frames of one :meth:`batch_key`.
        """
        letterbox = self.letterbox()
        boxed = [self._letterboxed(f.image, letterbox) for f in frames]
        x = torch.from_numpy(boxed[0]).unsqueeze(0) if len(boxed) == 1 else torch.from_numpy(np.stack(boxed))
        x = x.to(self.device)  # upload uint8 (4x less than float), convert on the device
        x = x.permute(0, 3, 1, 2).contiguous().flip(1)
        return (x.half() if self.fp16 else x.float()).div_(255)

    def _letterboxed(self, image: np.ndarray, letterbox: Any) -> np.ndarray:
        """``image`` letterboxed to its own size, then padded (centred, as LetterBox pads) to its
        restricted input size: pixels equal to a letterbox straight to that size at the own scale."""
        boxed = letterbox(image=image)
        own = boxed.shape[:2]
        height, width = self._fit(own) if self.input_sizes else own
        if (height, width) == own:
            return boxed
        import cv2

        p = letterbox.get_params({"img": image})
        new_w, new_h = p["new_unpad"]
        top = round((height - new_h) / 2 - 0.1) - p["top"]
        left = round((width - new_w) / 2 - 0.1) - p["left"]
        bottom, right = height - own[0] - top, width - own[1] - left
        return cv2.copyMakeBorder(boxed, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))

    def forward(self, batch: torch.Tensor) -> Any:
        return self.run_model(batch)

    def nms(self, raw: Any, *, nc: int = 0) -> list[torch.Tensor]:
        """Ultralytics' NMS with this predictor's thresholds → per image ``(n, 6 + extra)`` rows
        ``x1, y1, x2, y2, score, class, ...`` in letterboxed pixels (``nc`` > 0: extra columns follow
        the ``nc`` class scores, e.g. mask coefficients)."""
        from ultralytics.utils import nms

        return nms.non_max_suppression(
            raw,
            self.conf,
            self.iou,
            self.classes,
            False,
            max_det=self.max_det,
            nc=nc,
            max_time_img=self.nms_time_per_image,
            end2end=self.end2end,
        )

    def postprocess(self, raw: Any, batch: torch.Tensor, frames: Sequence[Frame]) -> list[Detections]:
        from ultralytics.utils import ops

        preds = self.nms(raw)
        out = []
        for pred, frame in zip(preds, frames, strict=True):
            pred[:, :4] = ops.scale_boxes(batch.shape[2:], pred[:, :4], frame.image.shape)
            p = pred[:, :6].float().cpu().numpy()
            out.append(Detections(p[:, :4], p[:, 4], p[:, 5].astype(np.int64), self.names))
        return out


def _yolo_dynamic(module: torch.nn.Module, dynamic: bool) -> None:
    """Dynamic shapes: the Detect head recomputes its anchors from the input inside the graph."""
    for m in module.modules():
        if hasattr(m, "dynamic") and hasattr(m, "export"):
            m.dynamic = dynamic


def yolo_weights(request: BuildRequest) -> Path:
    """The file a YOLO adapter loads: an Ultralytics ``.pt`` or densecnn's own YOLO ``.safetensors``."""
    from densecnn.tasks.detect.yolo_state import is_yolo_state

    path, meta = request.weights_file(), request.weights.meta
    if meta is not None and not is_yolo_state(meta, request.spec.task):
        raise UsageError(f"{path}: {request.spec.name} models do not load from densecnn checkpoints.")
    return path


def yolo_kwargs(request: BuildRequest) -> dict[str, Any]:
    """The constructor arguments every YOLO adapter (detect, segment) takes from a request."""
    return {
        "weights": yolo_weights(request),
        "user_named": request.weights.user_named,
        "device": request.device,
        "half": request.half,
        "conf": float(request.conf if request.conf is not None else 0.25),
        "iou": float(request.iou if request.iou is not None else 0.7),
        "imgsz": request.checkpoint_size(),
        "max_det": request.max_det,
        "trust_weights": request.cfg.trust_weights,
    }


@register_builder("detect", "yolo")
def build_yolo_detector(request: BuildRequest) -> YoloDetector:
    return YoloDetector(**yolo_kwargs(request))
