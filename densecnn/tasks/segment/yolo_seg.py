"""YOLO instance segmentation through Ultralytics (``yolov8n-seg``, ``yolo11n-seg``, any ``-seg`` .pt).

Preprocessing, inference and NMS are the detection adapter's (:class:`YoloDetector`: LetterBox,
AutoBackend, ``non_max_suppression`` with the mask coefficients kept as extra columns). Masks are
the ones Ultralytics' ``predict(retina_masks=True)`` makes: boxes scaled back to the input
(``scale_boxes``), then ``process_mask_native``'s chain (prototypes x coefficients, bilinear
upsampling, the letterbox padding cut away, resized to the input's exact ``(H, W)``, thresholded at 0,
cropped to the box), computed inside each box only (:mod:`.instance_masks`). So mask pixel ``(x, y)``
is input pixel ``(x, y)``. As Ultralytics does, instances whose mask comes out empty are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from densecnn.errors import UsageError
from densecnn.results import Frame, InstanceSegmentation
from densecnn.tasks.builders import BuildRequest, register_builder
from densecnn.tasks.detect.yolo import YoloDetector, yolo_kwargs


class YoloSegmenter(YoloDetector):
    """An Ultralytics segmentation model: ``InstanceSegmentation`` results in input pixels."""

    task = "segment"
    instances = True
    wrong_task_hint = (
        "Pass an Ultralytics segmentation checkpoint (yolov8n-seg.pt, yolo11n-seg.pt, ...); "
        "detectors go with `densecnn detect`."
    )

    def postprocess(
        self, raw: Any, batch: torch.Tensor, frames: Sequence[Frame]
    ) -> list[InstanceSegmentation]:  # type: ignore[override]
        from ultralytics.utils import ops

        from densecnn.tasks.segment.instance_masks import masks_in_boxes

        # PyTorch models return ((boxes+scores+coefficients, protos), raw head outputs); exported
        # ones (boxes..., protos). Same split as Ultralytics' SegmentationPredictor.
        protos = raw[0][1] if isinstance(raw[0], tuple) else raw[1]
        preds = self.nms(raw[0], nc=len(self.names))
        out = []
        for pred, proto, frame in zip(preds, protos, frames, strict=True):
            pred = pred.float()  # fp16 runs: process_mask_native multiplies by float prototypes
            height, width = frame.image.shape[:2]
            pred[:, :4] = ops.scale_boxes(batch.shape[2:], pred[:, :4], frame.image.shape)
            masks, windows, keep = masks_in_boxes(proto, pred[:, 6:], pred[:, :4], (height, width))
            p = pred[:, :6].cpu().numpy()[keep]
            masks = masks if keep.all() else masks[keep]
            out.append(
                InstanceSegmentation(
                    p[:, :4], p[:, 4], p[:, 5].astype("int64"), self.names, masks, windows=windows[keep]
                )
            )
        return out


@register_builder("segment", "yolo")
def build_yolo_segmenter(request: BuildRequest) -> YoloSegmenter:
    if request.cfg.backbone is not None or request.class_names:
        raise UsageError(
            f"{request.spec.name} names its own backbone and classes; leave out --backbone, "
            "--num-classes and --class-names."
        )
    return YoloSegmenter(**yolo_kwargs(request))
