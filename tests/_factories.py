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


def _spread_logits(model: torch.nn.Module, layer: torch.nn.Linear, x: torch.Tensor, std: float) -> None:
    """Re-draw the classification layer so logits on ``x`` have about ``std`` spread per image.

    Random backbones give near-uniform softmax scores (~1/1000 each), where top-k order is noise;
    with a spread of ~3 the best class gets ~0.1-0.3 and ranks are well separated, as with trained
    weights.
    """
    torch.nn.init.normal_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    model.eval()
    with torch.no_grad():
        out = model(x)
    logits = out[1] if isinstance(out, tuple | list) else out  # Ultralytics: (softmax, logits)
    layer.weight.mul_(std / float(logits.std(dim=1).mean()))


def make_classifier_weights(path: Path, *, arch: str = "resnet18", seed: int = 0) -> Path:
    """A torchvision ImageNet classifier (1000 classes) state dict, seeded, saved with torch.save;
    its scores spread like trained ones (see ``_spread_logits``)."""
    from torchvision.models import get_model

    torch.manual_seed(seed)
    model = get_model(arch, weights=None)
    layer = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    x = (torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(seed)) - 0.45) / 0.225
    with torch.no_grad():
        _spread_logits(model, layer, x, std=3.0)
    torch.save(model.state_dict(), path)
    return path


def make_yolo_cls_checkpoint(
    path: Path, *, cfg: str = "yolov8n-cls.yaml", seed: int = 0, imgsz: int = 224
) -> Path:
    """An Ultralytics classification ``.pt`` built from a bundled yaml (no download), seeded.

    Like the official checkpoints it carries ImageNet class names, its training ``imgsz`` and the
    classify transforms it was validated with. Convs get Kaiming-normal weights (the default init makes
    activations vanish) and the linear layer is scaled so the softmax scores spread.
    """
    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.data.augment import classify_transforms

    from densecnn.zoo.classification import ultralytics_imagenet_names

    torch.manual_seed(seed)
    model = YOLO(cfg)
    net = model.model
    x = torch.rand(4, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        _spread_logits(net, net.model[-1].linear, x, std=3.0)
    net.names = dict(enumerate(ultralytics_imagenet_names()))
    net.transforms = classify_transforms(imgsz)
    model.ckpt = {"train_args": {"task": "classify", "imgsz": imgsz, "data": "imagenet"}}
    model.save(str(path))
    return path


def make_torchvision_classifier(arch: str, *, seed: int = 0) -> torch.nn.Module:
    """torchvision's ImageNet classifier ``arch`` in eval mode with seeded random tensors.

    Built on the meta device and filled directly (torchvision's own init of ConvNeXt takes seconds):
    Kaiming-normal weight matrices and kernels, so activations keep their scale through every
    stage; norm weights in [0.5, 1.5], biases and BatchNorm statistics off their identity values
    (default ones would hide a skipped BatchNorm).
    """
    from torchvision.models import get_model

    with torch.device("meta"):
        model = get_model(arch, weights=None)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in (*model.named_parameters(), *model.named_buffers()):
            fan_in = t[0].numel() if t.dim() > 1 else 0
            if fan_in > 1:
                t.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif name.endswith(("bias", "running_mean")):
                t.normal_(0.0, 0.1, generator=gen)
            elif name.endswith("num_batches_tracked"):
                t.zero_()
            else:  # norm weights, running_var, layer scales
                t.uniform_(0.5, 1.5, generator=gen)
    return model.eval()


def make_fasterrcnn_checkpoint(
    path: Path,
    *,
    backbone: str = "resnet18",
    class_names: tuple[str, ...] = ("person", "car"),
    min_size: int = 320,
    seed: int = 0,
) -> Path:
    """A densecnn Faster R-CNN checkpoint on a registry backbone (seeded random init), as
    ``densecnn train detect`` will write them: safetensors + metadata naming backbone and classes."""
    from densecnn.checkpoint import save_checkpoint
    from densecnn.tasks.detect.rcnn_backbone import build_fasterrcnn, fasterrcnn_meta

    torch.manual_seed(seed)
    model = build_fasterrcnn(backbone, len(class_names) + 1, min_size=min_size, max_size=min_size * 5 // 3)
    save_checkpoint(
        path, model.state_dict(), fasterrcnn_meta(model, backbone=backbone, class_names=class_names)
    )
    return path


def make_segmentation_state_dict(
    path: Path, *, arch: str = "deeplabv3_mobilenet_v3_large", seed: int = 0, aux: bool = True
) -> Path:
    """A torchvision segmentation state dict (21 VOC classes, with the auxiliary head like the official
    DeepLabV3 files), seeded, saved with torch.save.

    Tensors are filled as in ``make_torchvision_classifier`` (Kaiming-normal, BatchNorm statistics off
    identity), so activations keep their scale and the label maps hold several classes in spatially
    coherent regions, as with trained weights: a parity test on them is not a test of one constant.
    """
    from torchvision.models import get_model

    kwargs = {"aux_loss": aux} if arch.startswith("deeplabv3") else {}
    with torch.device("meta"):
        model = get_model(arch, weights=None, weights_backbone=None, num_classes=21, **kwargs)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in (*model.named_parameters(), *model.named_buffers()):
            fan_in = t[0].numel() if t.dim() > 1 else 0
            if fan_in > 1:
                t.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif name.endswith(("bias", "running_mean")):
                t.normal_(0.0, 0.1, generator=gen)
            elif name.endswith("num_batches_tracked"):
                t.zero_()
            else:
                t.uniform_(0.5, 1.5, generator=gen)
    torch.save(model.state_dict(), path)
    return path
