"""Tiny, reproducible weights for tests: seeded random init, biased so the models do detect things."""

from __future__ import annotations

from pathlib import Path

import torch

from densecnn.tasks.detect._ultralytics import import_ultralytics
from densecnn.zoo.coco import COCO80


def make_yolo_checkpoint(path: Path, *, cfg: str = "yolov8n.yaml", seed: int = 0) -> Path:
    """An Ultralytics ``.pt`` built from a bundled model yaml (no download), seeded.

    PyTorch's default conv init makes activations vanish through 20 layers, so every conv (except
    the fixed DFL projection) gets Kaiming-normal weights, and the head's last convs are scaled so
    that class scores spread over (0, 1) and boxes have real sizes: NMS, --conf and --classes all
    have work to do, as with trained weights.
    """
    import_ultralytics()
    from ultralytics import YOLO

    torch.manual_seed(seed)
    model = YOLO(cfg)
    head = model.model.model[-1]
    fixed = {id(m) for m in head.dfl.modules()} if getattr(head, "dfl", None) is not None else set()
    with torch.no_grad():
        for module in model.model.modules():
            if isinstance(module, torch.nn.Conv2d) and id(module) not in fixed:
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        for branch, scale in (("cv3", 50.0), ("one2one_cv3", 50.0), ("cv2", 30.0), ("one2one_cv2", 30.0)):
            for seq in getattr(head, branch, None) or []:
                seq[-1].weight.mul_(scale)
                if "cv3" in branch:
                    seq[-1].bias.fill_(-4.0)
    model.model.names = dict(enumerate(COCO80))
    model.save(str(path))
    return path


def make_rcnn_state_dict(
    path: Path, *, arch: str = "fasterrcnn_mobilenet_v3_large_320_fpn", seed: int = 0
) -> Path:
    """A torchvision Faster R-CNN state dict (91 COCO labels), seeded, saved with torch.save.

    As for YOLO, default init makes backbone activations vanish: backbone convs get Kaiming-normal
    weights (the RPN keeps torchvision's own small init, or proposals degenerate) and the box
    predictor is scaled so scores spread over (0, 1).
    """
    from torchvision.models import get_model_builder

    torch.manual_seed(seed)
    model = get_model_builder(arch)(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        for layer in (model.roi_heads.box_head.fc6, model.roi_heads.box_head.fc7):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        model.roi_heads.box_predictor.cls_score.weight.mul_(0.03)
        model.roi_heads.box_predictor.bbox_pred.weight.mul_(0.03)
    torch.save(model.state_dict(), path)
    return path
