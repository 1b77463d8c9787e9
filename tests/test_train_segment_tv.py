"""`densecnn train segment --model <torchvision builder>` on real Penn-Fudan photos: LR-ASPP from
scratch (loss falls; its checkpoint runs in `densecnn segment` and `eval segment` with nothing else),
and DeepLabV3 transfer from a VOC-shaped (21-class) state dict: a new 2-class classifier and aux head,
frozen backbone stages kept bit for bit, from `--weights` or from the zoo file in the weight store.
Also the `deeplabv3` head on a registry backbone: torchvision's DeepLabHead, output for output, and
trained through the same CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _factories import make_segmentation_state_dict
from _train_data import PENNFUDAN_NAMES, densecnn, pennfudan_subset, read_csv
from conftest import DATA, need_data

PENNFUDAN = DATA / "pennfudan"
EPOCHS = 6
COMMON = (
    "--mask-mode", "instances-to-foreground", "--class-names", PENNFUDAN_NAMES, "--batch", "4",
    "--val-fraction", "0.25", "--workers", "0",
)  # fmt: skip
DEEPLAB = "deeplabv3_mobilenet_v3_large"
VOC_FILE = "deeplabv3_mobilenet_v3_large-fc3c493d.pth"  # the zoo's file name for DEEPLAB


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_data(PENNFUDAN)
    work = tmp_path_factory.mktemp("segtv")
    pennfudan_subset(PENNFUDAN, work / "pf", 16)
    return work


@pytest.fixture(scope="module")
def lraspp(work: Path) -> Path:
    """LR-ASPP MobileNetV3 from scratch: 12 train / 4 held-out photos, 96 px, 6 epochs (~20 s)."""
    r = densecnn(
        "train", "segment", "--data", "pf", "--model", "lraspp_mobilenet_v3_large", "--imgsz", "96",
        "--epochs", str(EPOCHS), "--lr", "3e-3", "--name", "lraspp", *COMMON, cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "training from scratch" in r.stdout  # no VOC file in the (empty) store: said so
    return work / "runs/train/lraspp"


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _held_out(work: Path) -> list[str]:
    from densecnn.data.masks import open_masks_folder

    folder = open_masks_folder(
        work / "pf", mask_mode="instances-to-foreground", val_fraction=0.25, check=False
    )
    return [p.image.name for p in folder.val]


def test_loss_falls_and_checkpoint_describes_itself(lraspp: Path) -> None:
    from densecnn.checkpoint import read_meta

    rows = read_csv(lraspp / "results.csv")
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    first, last = rows[0]["train/loss"], np.mean([r["train/loss"] for r in rows[-2:]])
    assert last < 0.8 * first, (first, last)
    assert "train/aux" not in rows[0]  # LR-ASPP has no auxiliary head
    meta = read_meta(lraspp / "weights/best.safetensors")
    assert meta is not None
    assert (meta.task, meta.arch, meta.backbone, meta.input_size) == (
        "segment",
        "lraspp_mobilenet_v3_large",
        None,
        96,
    )
    assert meta.class_names == ("background", "person")
    assert meta.mean == pytest.approx((0.485, 0.456, 0.406))
    state = _state(lraspp / "weights/best.safetensors")
    assert state["classifier.low_classifier.weight"].shape[0] == 2


def test_checkpoint_segments_and_evaluates(lraspp: Path, work: Path) -> None:
    """`densecnn segment held/ --weights best.safetensors` (nothing else): one mask PNG per photo at
    the photo's size; `eval segment` on the same held-out split reports the IoU those PNGs give."""
    held = work / "held"
    held.mkdir()
    names = _held_out(work)
    for name in names:
        (held / name).symlink_to(PENNFUDAN / "images" / name)
    best = lraspp / "weights/best.safetensors"
    r = densecnn("segment", "held", "--weights", str(best), "--no-save-overlay", "--name", "tv", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    inter = union = 0
    for name in names:
        mask = Image.open(work / "runs/segment/tv/masks" / f"{name}.png")  # whole name + .png
        assert mask.size == Image.open(PENNFUDAN / "images" / name).size
        pred = np.asarray(mask)
        assert set(np.unique(pred)) <= {0, 1}
        gt = np.asarray(Image.open(PENNFUDAN / "masks" / name.replace(".png", "_mask.png"))) == 0
        inter, union = inter + (gt & (pred == 0)).sum(), union + (gt | (pred == 0)).sum()

    r = densecnn("eval", "segment", "--weights", str(best), "--data", "pf", "--name", "tv", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((work / "runs/eval/tv/metrics.json").read_text())
    assert report["num_images"] == len(names)
    assert report["per_class"]["background"]["IoU"] == pytest.approx(inter / union, abs=1e-9)


def test_transfer_from_voc_state_dict_keeps_frozen_backbone(work: Path) -> None:
    """--weights a seeded 21-class torchvision file, --freeze 5 (the whole MobileNetV3): the 2-class
    checkpoint has new classifier/aux convs, every backbone tensor (BatchNorm statistics too) equals
    the start, and the ASPP head did train."""
    voc = make_segmentation_state_dict(work / "voc21.pth", arch=DEEPLAB, seed=3, aux=True)
    r = densecnn(
        "train", "segment", "--data", "pf", "--model", DEEPLAB, "--weights", "voc21.pth", "--freeze", "5",
        "--imgsz", "64", "--epochs", "2", "--name", "ft", *COMMON, cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Re-initialised 4 tensor(s)" in r.stdout  # the two last convs, w + b (piped: never wrapped)
    start = torch.load(voc, weights_only=True)
    end = _state(work / "runs/train/ft/weights/last.safetensors")
    assert end["classifier.4.weight"].shape[0] == 2 and end["aux_classifier.4.weight"].shape[0] == 2
    backbone = [k for k in start if k.startswith("backbone.")]
    assert len(backbone) > 100
    for key in backbone:
        assert torch.equal(end[key], start[key]), key
    assert not torch.equal(end["classifier.0.convs.0.0.weight"], start["classifier.0.convs.0.0.weight"])
    rows = read_csv(work / "runs/train/ft/results.csv")
    assert "train/aux" in rows[0]  # DeepLabV3 trains its auxiliary head too


def test_transfer_from_zoo_file_in_store_freezes_first_stages(work: Path) -> None:
    """No --weights: the zoo's VOC file, found in the weight store, is the start; --freeze 2 keeps the
    first two MobileNetV3 stages (blocks 0-3) and trains the rest."""
    store = work / "_weights"
    store.mkdir(exist_ok=True)
    voc = make_segmentation_state_dict(store / VOC_FILE, arch=DEEPLAB, seed=4, aux=True)
    r = densecnn(
        "train", "segment", "--data", "pf", "--model", DEEPLAB, "--freeze", "2", "--imgsz", "64",
        "--epochs", "1", "--name", "zoo", *COMMON, cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (line,) = [x for x in r.stdout.splitlines() if "Started from" in x]  # one line, whatever the path length
    assert VOC_FILE in line and "training from scratch" not in r.stdout
    start = torch.load(voc, weights_only=True)
    end = _state(work / "runs/train/zoo/weights/last.safetensors")
    for key in start:
        if key.startswith(("backbone.0.", "backbone.1.", "backbone.2.", "backbone.3.")):
            assert torch.equal(end[key], start[key]), key
    assert not torch.equal(end["backbone.4.block.0.0.weight"], start["backbone.4.block.0.0.weight"])


def test_torchvision_model_refuses_a_backbone(work: Path) -> None:
    r = densecnn(
        "train", "segment", "--data", "pf", "--model", "deeplabv3_resnet50", "--backbone", "resnet18",
        "--epochs", "1", *COMMON, cwd=work,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "has its own backbone" in r.stdout + r.stderr


def test_deeplabv3_head_is_torchvisions_deeplabhead() -> None:
    """`deeplabv3` on a registry backbone = torchvision's DeepLabHead (same weights) on the stride-32
    stage, logits upsampled bilinearly to the input."""
    import torch.nn.functional as F
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    from densecnn.tasks.segment.smp_heads import build_deeplabv3

    torch.manual_seed(0)
    model = build_deeplabv3("resnet18", 3).eval()
    ref = DeepLabHead(512, 3, atrous_rates=(3, 6, 9)).eval()
    rename = {
        "0.": "decoder.aspp.",
        "1.": "decoder.block.0.",
        "2.": "decoder.block.1.",
        "4.": "segmentation_head.",
    }
    ours = {rename[k[:2]] + k[2:]: v for k, v in ref.state_dict().items()}
    model.load_state_dict({**model.state_dict(), **ours})
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        logits = ref(model.backbone(x)[-1])
        expected = F.interpolate(logits, size=(96, 128), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected)


def test_deeplabv3_head_trains_on_a_registry_backbone(work: Path) -> None:
    r = densecnn(
        "train", "segment", "--data", "pf", "--model", "deeplabv3", "--backbone", "mobilenet_v3_small",
        "--imgsz", "64", "--epochs", "2", "--name", "dl3", *COMMON, cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    best = work / "runs/train/dl3/weights/best.safetensors"
    from densecnn.checkpoint import read_meta

    meta = read_meta(best)
    assert meta is not None
    assert (meta.arch, meta.backbone, meta.input_size) == ("deeplabv3", "mobilenet_v3_small", 64)
    name = sorted((work / "pf/images").iterdir())[0].name
    r = densecnn(
        "segment", f"pf/images/{name}", "--weights", str(best), "--no-save-overlay", "--name", "dl3", cwd=work
    )
    assert r.returncode == 0, r.stdout + r.stderr
    mask = Image.open(work / "runs/segment/dl3/masks" / f"{name}.png")
    assert mask.size == Image.open(PENNFUDAN / "images" / name).size
