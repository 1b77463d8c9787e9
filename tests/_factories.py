"""Tiny, reproducible weights for tests: seeded random init, biased so the models do detect things."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from densecnn.integrations.ultralytics import import_ultralytics
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
    with torch.no_grad():
        _kaiming_convs(model.model, head)
        for branch, scale in (("cv3", 50.0), ("one2one_cv3", 50.0), ("cv2", 30.0), ("one2one_cv2", 30.0)):
            for seq in getattr(head, branch, None) or []:
                seq[-1].weight.mul_(scale)
                if "cv3" in branch:
                    seq[-1].bias.fill_(-4.0)
    model.model.names = dict(enumerate(COCO80))
    model.save(str(path))
    return path


def _kaiming_convs(net: torch.nn.Module, head: torch.nn.Module) -> None:
    """Kaiming-normal weights for every conv of an Ultralytics net except the fixed DFL projection."""
    fixed = {id(m) for m in head.dfl.modules()} if getattr(head, "dfl", None) is not None else set()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d) and id(module) not in fixed:
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")


def make_yolo_seg_checkpoint(
    path: Path, *, images: list[Path], cfg: str = "yolov8n-seg.yaml", seed: int = 0, imgsz: int = 320
) -> Path:
    """An Ultralytics instance segmentation ``.pt`` from a bundled yaml (no download), seeded, and
    calibrated on ``images`` so that it behaves like a trained one: a few dozen instances per photo
    with scores spread over (0, 1), and masks with edges inside their boxes.

    After Kaiming init (see ``make_yolo_checkpoint``): the class convs are rescaled so that the best
    class score of an anchor is 0.5 at the 99th percentile over anchors and 0.9 at the 99.9th; the
    mask coefficients get a bias that makes ``coefficients . prototypes`` change sign across the
    image (without it every mask fills its box or is empty), plus a small per-anchor part.
    """
    import cv2

    import_ultralytics()
    from ultralytics import YOLO

    torch.manual_seed(seed)
    model = YOLO(cfg)
    net, head = model.model, model.model.model[-1]
    gen = torch.Generator().manual_seed(seed)
    batch = [cv2.resize(cv2.imread(str(p)), (imgsz, imgsz))[..., ::-1].copy() for p in images]
    x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        _kaiming_convs(net, head)
        for seq in head.cv2:
            seq[-1].weight.mul_(30.0)  # real box sizes, as in make_yolo_checkpoint
        outs: dict[object, torch.Tensor] = {}
        hooks = [
            seq[-1].register_forward_hook(lambda m, i, o, k=(b, j): outs.__setitem__(k, o))
            for b in ("cv3", "cv4")
            for j, seq in enumerate(getattr(head, b))
        ]
        hooks.append(head.proto.register_forward_hook(lambda m, i, o: outs.__setitem__("proto", o)))
        net.eval()(x)
        for hook in hooks:
            hook.remove()
        cls = torch.cat([outs["cv3", j].flatten(2) for j in range(len(head.cv3))], 2)  # (B, nc, A)
        coef = torch.cat([outs["cv4", j].flatten(2) for j in range(len(head.cv4))], 2)  # (B, nm, A)
        best = cls.amax(1).flatten()
        q99, q999 = best.quantile(0.99), best.quantile(0.999)
        a = float(torch.log(torch.tensor(9.0))) / (q999 - q99)
        for seq in head.cv3:
            seq[-1].weight.mul_(a)
            seq[-1].bias.mul_(a).sub_(a * q99)
        proto = outs["proto"]  # (B, nm, h, w)
        pbar = proto.mean((0, 2, 3))
        v = torch.randn(len(pbar), generator=gen)
        t = torch.einsum("k,bkhw->bhw", v, proto).median()
        b0 = v - t / pbar.dot(pbar) * pbar
        spatial = torch.einsum("k,bkhw->bhw", b0, proto).std()
        k = 0.2 * spatial / torch.einsum("bka,k->ba", coef - coef.mean((0, 2), keepdim=True), pbar).std()
        mean = coef.mean((0, 2))
        for seq in head.cv4:
            seq[-1].weight.mul_(k)
            seq[-1].bias.copy_(k * (seq[-1].bias - mean) + b0)
    net.names = dict(enumerate(COCO80))
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


def loaded(task: str, cfg: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``densecnn``'s one loader for ``task`` on a PredictConfig → (predictor, the spec it resolved)."""
    from densecnn.tasks.loading import load_predictor

    predictor = load_predictor(cfg, task=task, **kwargs)
    return predictor, predictor.spec
