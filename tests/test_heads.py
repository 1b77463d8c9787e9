"""Heads on registry backbones: every backbone x every head builds and runs (or fails at build time
saying why), parity with torchvision, measured sizes, checkpoint round trips, and a LeNet trained
here on real pedestrian crops."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA, need_data

from densecnn.backbones import BACKBONES
from densecnn.checkpoint import CheckpointMeta, save_checkpoint
from densecnn.errors import UsageError
from densecnn.tasks.classify.head import (
    build_classifier,
    build_imagenet_classifier,
    load_classifier_checkpoint,
)
from densecnn.tasks.detect.rcnn_backbone import build_fasterrcnn
from densecnn.tasks.segment.smp_heads import (
    build_deeplabv3,
    build_deeplabv3plus,
    build_unet,
    load_segmentation_checkpoint,
)
from densecnn.zoo.heads import HEADS

HEAVY = {"resnet34", "resnet50", "convnext_tiny"}  # big backbones: their dense heads are marked slow
CANNOT = {  # (backbone, head) → the reason it must give
    ("lenet", "fasterrcnn"): r"strides \[8, 16, 32\].*lenet.*missing \[16, 32\]",
    ("lenet", "unet"): r"strides \[4, 8, 16, 32\].*lenet.*missing \[16, 32\]",
    ("lenet", "deeplabv3plus"): r"strides \[4, 32\].*lenet.*missing \[32\]",
    ("lenet", "deeplabv3"): r"strides \[32\].*lenet.*missing \[32\]",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small tensors: one intra-op thread. Two threads spin-wait on each other whenever another
    process holds a core, which made these tests several times slower on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _combos() -> list:
    out = []
    for b in BACKBONES.names():
        for h in HEADS.names():
            slow = b in HEAVY and h != "classifier"
            out.append(pytest.param(b, h, id=f"{b}-{h}", marks=[pytest.mark.slow] if slow else []))
    return out


# Faster R-CNN settings that keep a random-init forward cheap (1000 proposals x the box head's 12.8M
# MACs each would dominate every test)
FAST_RCNN = {"rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50}


@pytest.mark.parametrize(("backbone", "head"), _combos())
def test_every_head_on_every_backbone(backbone: str, head: str, random_backbone: Callable) -> None:
    spec = HEADS.get(head)
    if (backbone, head) in CANNOT:
        with pytest.raises(UsageError, match=CANNOT[backbone, head]) as info:
            spec.build(backbone, 3)  # by name: fails before building anything
        assert "--backbone" in (info.value.hint or "")
        with pytest.raises(UsageError, match=CANNOT[backbone, head]):  # a built one fails the same way
            spec.build(random_backbone(backbone), 3)
        return
    spec.check(BACKBONES.get(backbone))
    torch.manual_seed(0)
    kwargs = {"min_size": 96, "max_size": 128, **FAST_RCNN} if head == "fasterrcnn" else {}
    model = spec.build(copy.deepcopy(random_backbone(backbone)), 3, **kwargs).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        if head == "fasterrcnn":
            (det,) = model(list(x))
            n = len(det["boxes"])
            assert det["boxes"].shape == (n, 4) and det["scores"].shape == det["labels"].shape == (n,)
            assert bool(((det["labels"] >= 1) & (det["labels"] < 3)).all())
        elif head == "classifier":
            assert model(x).shape == (1, 3)
        else:
            y = model(x)
            assert y.shape == (1, 3, 64, 96)
            assert torch.isfinite(y).all()
    if head == "unet":  # one decoder block per stride halving down to 1: ConvNeXt has no stride-2 stage
        assert len(model.decoder.blocks) == len(BACKBONES.get(backbone).strides)


def test_heads_by_name_build_their_backbone() -> None:
    """The by-name path (what checkpoints use), gray input included."""
    torch.manual_seed(0)
    model = build_unet("mobilenet_v3_small", 2, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    assert model.backbone.name == "mobilenet_v3_small" and model.backbone.in_channels == 1
    with pytest.raises(ValueError, match="already built"):
        build_classifier(model.backbone, 2, pretrained_backbone=True)


@pytest.mark.parametrize(
    "build", [build_unet, build_deeplabv3plus, build_deeplabv3], ids=["unet", "deeplabv3plus", "deeplabv3"]
)
def test_segmentation_any_size_is_padded_to_32(build) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build("resnet18", 4).eval()
    x = torch.rand(1, 3, 70, 100)  # not a multiple of 32
    with torch.no_grad():
        y = model(x)
        padded = model(F.pad(x, (0, 28, 0, 26)))  # the same zero padding, done by hand
    assert y.shape == (1, 4, 70, 100)
    torch.testing.assert_close(y, padded[..., :70, :100])


def test_fasterrcnn_trains_one_step() -> None:
    torch.manual_seed(0)
    model = build_fasterrcnn(
        "mobilenet_v3_small",
        3,
        min_size=128,
        max_size=128,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=50,
        box_batch_size_per_image=32,
    ).train()
    images = [torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 100.0]]), "labels": torch.tensor([1])}]
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert model.backbone.body.features[0][0].weight.grad is not None


@pytest.mark.slow
def test_fasterrcnn_on_resnet50_is_torchvisions_fasterrcnn_resnet50_fpn() -> None:
    """Same module tree and state dict keys, same detections: FPN levels and anchors are right."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    kw = {"min_size": 224, "max_size": 224, "box_score_thresh": 0.0, **FAST_RCNN}
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5, **kw).eval()
    ours = build_fasterrcnn("resnet50", 5, **kw).eval()
    ours.load_state_dict(tv.state_dict())  # strict: every key matches
    images = [torch.rand(3, 200, 240)]
    with torch.no_grad():
        want, got = tv(images)[0], ours(images)[0]
    assert len(want["boxes"]) > 0
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(got[key], want[key])


def test_measured_sizes_match_torchvisions_tables() -> None:
    """The matrix's counting (meta device, FlopCounterMode, MACs) reproduces torchvision's published
    parameter counts and GFLOPs for its ImageNet classifiers and for fasterrcnn_resnet50_fpn."""
    from torchvision.models import get_model_weights
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn

    from densecnn.backbones.matrix import count, measure

    for arch in [n for n in BACKBONES.names() if BACKBONES.get(n).weights is not None]:
        meta = get_model_weights(arch).DEFAULT.meta
        with torch.device("meta"):
            model = build_imagenet_classifier(arch, weights=False)
        params, macs = count(model, 224)
        assert params == meta["num_params"], arch
        assert macs / 1e9 == pytest.approx(meta["_ops"], abs=0.006), arch
    cell = measure("resnet50", "fasterrcnn")
    assert cell.input_size == 800 and cell.reason is None
    assert cell.gflops == pytest.approx(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["_ops"], rel=1e-3)
    with torch.device("meta"):  # torchvision's published count has frozen BatchNorms: count ours
        tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    assert cell.params_m == pytest.approx(sum(p.numel() for p in tv.parameters()) / 1e6, abs=1e-3)
    lenet = measure("lenet", "unet")
    assert lenet.gflops is None and lenet.reason and "missing [16, 32]" in lenet.reason


def test_classifier_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_classifier("lenet", 2, in_channels=1, dropout=0.1).eval()
    meta = CheckpointMeta(
        task="classify",
        arch="classifier",
        backbone="lenet",
        class_names=("background", "pedestrian"),
        input_size=32,
        mean=(0.5,),
        std=(0.5,),
        in_channels=1,
        extra={"dropout": 0.1},
    )
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), meta)
    loaded, got_meta = load_classifier_checkpoint(tmp_path / "c.safetensors")
    assert got_meta == meta
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(UsageError, match="not a classifier"):
        save_checkpoint(tmp_path / "u.safetensors", {}, meta.__class__(**{**vars(meta), "arch": "unet"}))
        load_classifier_checkpoint(tmp_path / "u.safetensors")


def test_segmentation_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_deeplabv3plus("mobilenet_v3_small", 3, decoder_channels=64).eval()
    meta = CheckpointMeta(
        task="segment",
        arch="deeplabv3plus",
        backbone="mobilenet_v3_small",
        class_names=("bg", "a", "b"),
        input_size=64,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        extra={"builder_kwargs": {"decoder_channels": 64}},
    )
    save_checkpoint(tmp_path / "s.safetensors", model.state_dict(), meta)
    loaded, _ = load_segmentation_checkpoint(tmp_path / "s.safetensors")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


# ------------------------------------------------------------------ LeNet trained on real images


def _pedestrian_crops(root: Path) -> tuple[tuple[list, list], tuple[list, list]]:
    """32x32 gray crops from Penn-Fudan: each pedestrian's mask box, and up to two boxes of the same
    size elsewhere in the photo covering < 2 % of any pedestrian (background). Every 4th photo is
    held out. Returns ((train pos, train neg), (test pos, test neg))."""
    rng = np.random.default_rng(0)
    train: tuple[list, list] = ([], [])
    test: tuple[list, list] = ([], [])
    for i, path in enumerate(sorted((root / "images").glob("*.png"))):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(root / "masks" / f"{path.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert img is not None and mask is not None, path
        fg = cv2.integral((mask > 0).astype(np.uint8))
        pos, neg = test if i % 4 == 0 else train
        big_h, big_w = mask.shape
        for k in np.unique(mask)[1:]:
            ys, xs = np.nonzero(mask == k)
            y0, x0 = ys.min(), xs.min()
            h, w = ys.max() + 1 - y0, xs.max() + 1 - x0
            pos.append(cv2.resize(img[y0 : y0 + h, x0 : x0 + w], (32, 32), interpolation=cv2.INTER_AREA))
            found = 0
            for _ in range(200):
                y, x = int(rng.integers(0, big_h - h + 1)), int(rng.integers(0, big_w - w + 1))
                cover = fg[y + h, x + w] - fg[y, x + w] - fg[y + h, x] + fg[y, x]
                if cover < 0.02 * h * w:
                    neg.append(cv2.resize(img[y : y + h, x : x + w], (32, 32), interpolation=cv2.INTER_AREA))
                    found += 1
                    if found == 2:
                        break
    return train, test


def _tensors(split: tuple[list, list]) -> tuple[torch.Tensor, torch.Tensor]:
    pos, neg = split
    x = torch.from_numpy(np.stack(pos + neg)).float().div(255).unsqueeze(1)
    prep = BACKBONES.get("lenet").preprocess.for_channels(1)
    x = (x - prep.mean[0]) / prep.std[0]
    return x, torch.tensor([1] * len(pos) + [0] * len(neg))


def test_lenet_learns_pedestrians_from_real_photos() -> None:
    root = need_data(DATA / "pennfudan")
    train, test = _pedestrian_crops(root)
    x_train, y_train = _tensors(train)
    x_test, y_test = _tensors(test)
    assert len(x_train) > 400 and len(x_test) > 100
    torch.manual_seed(0)
    model = build_classifier("lenet", 2, in_channels=1)
    epochs, batch = 6, 32
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(x_train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_train)).split(batch):
            xb = x_train[idx]
            flip = torch.rand(len(idx)) < 0.5  # horizontal flips
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    chance = max(y_test.float().mean().item(), 1 - y_test.float().mean().item())  # majority class
    print(f"lenet held-out accuracy {accuracy:.3f} on {len(x_test)} crops (majority class {chance:.3f})")
    sys.stdout.flush()
    assert accuracy >= 0.85
    assert accuracy > chance + 0.2
