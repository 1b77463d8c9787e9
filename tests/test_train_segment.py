"""`densecnn train segment` on real Penn-Fudan photos: a U-Net (resnet18, from scratch) learns
pedestrians, its checkpoint works in `densecnn segment` and `densecnn eval segment` with nothing
else, fine-tuning changes the class count, and broken masks folders are reported file by file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _train_data import PENNFUDAN_NAMES, densecnn, pennfudan_subset, read_csv
from conftest import DATA, need_data

PENNFUDAN = DATA / "pennfudan"
EPOCHS = 12


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 photos (18 train / 6 held out), 96 px, 12 epochs of U-Net resnet18 from scratch (~1-2 min)."""
    need_data(PENNFUDAN)
    work = tmp_path_factory.mktemp("seg")
    pennfudan_subset(PENNFUDAN, work / "pf", 24)
    r = densecnn(
        "train", "segment", "--data", "pf", "--model", "unet", "--backbone", "resnet18",
        "--mask-mode", "instances-to-foreground", "--class-names", PENNFUDAN_NAMES,
        "--epochs", str(EPOCHS), "--imgsz", "96", "--batch", "4", "--lr", "3e-3", "--val-fraction", "0.25",
        "--workers", "0", cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "training from scratch" in r.stdout  # no ImageNet weights in the (empty) store: said so
    return work


def _held_out(work: Path) -> list[str]:
    from densecnn.data.masks import open_masks_folder

    folder = open_masks_folder(
        work / "pf", mask_mode="instances-to-foreground", val_fraction=0.25, check=False
    )
    return [p.image.name for p in folder.val]


def test_loss_falls_and_run_folder_is_complete(trained: Path) -> None:
    run = trained / "runs" / "train" / "exp"
    rows = read_csv(run / "results.csv")
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    first, last = rows[0]["train/loss"], np.mean([r["train/loss"] for r in rows[-3:]])
    assert last < 0.75 * first, (first, last)
    for name in (
        "args.json",
        "results.png",
        "metrics.json",
        "weights/best.safetensors",
        "weights/last.safetensors",
    ):
        assert (run / name).is_file(), name
    assert Image.open(run / "results.png").size[0] > 500
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["epochs_run"] == EPOCHS
    assert summary["best"]["fitness"] == pytest.approx(max(r["fitness"] for r in rows), abs=1e-5)


def test_checkpoint_describes_itself(trained: Path) -> None:
    from densecnn.checkpoint import read_meta

    meta = read_meta(trained / "runs/train/exp/weights/best.safetensors")
    assert meta is not None
    assert (meta.task, meta.arch, meta.backbone, meta.input_size) == ("segment", "unet", "resnet18", 96)
    assert meta.class_names == ("background", "person")
    assert meta.extra["data"]["mask_mode"] == "instances-to-foreground"
    assert meta.metrics["fitness"] > 0 and meta.densecnn_version


def test_predicts_people_on_held_out_photos(trained: Path) -> None:
    """`densecnn segment held/ --weights best.safetensors` (nothing else): person IoU computed here
    from its mask PNGs beats the all-person baseline clearly, and equals what `eval segment` says."""
    held = trained / "held"
    held.mkdir()
    names = _held_out(trained)
    for name in names:
        (held / name).symlink_to(PENNFUDAN / "images" / name)
    best = trained / "runs/train/exp/weights/best.safetensors"
    r = densecnn(
        "segment", "held", "--weights", str(best), "--no-save-overlay", "--name", "held", cwd=trained
    )
    assert r.returncode == 0, r.stdout + r.stderr
    tp = fp = fn = fg = total = 0
    for name in names:
        # masks keep the whole input name: FudanPed00001.png -> masks/FudanPed00001.png.png
        pred = np.asarray(Image.open(trained / "runs/segment/held/masks" / f"{name}.png")) == 1
        gt = np.asarray(Image.open(PENNFUDAN / "masks" / name.replace(".png", "_mask.png"))) > 0
        tp, fp, fn = tp + (pred & gt).sum(), fp + (pred & ~gt).sum(), fn + (~pred & gt).sum()
        fg, total = fg + gt.sum(), total + gt.size
    iou = tp / (tp + fp + fn)
    chance = fg / total  # IoU of calling every pixel "person"
    assert iou > 0.3 and iou > 2 * chance, (iou, chance)

    r = densecnn("eval", "segment", "--weights", str(best), "--data", "pf", cwd=trained)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((trained / "runs/eval/exp/metrics.json").read_text())
    assert report["num_images"] == len(names)
    assert report["per_class"]["person"]["IoU"] == pytest.approx(iou, abs=1e-9)
    assert report["settings"]["val_fraction"] == 0.25  # the split the checkpoint was trained with
    assert "mIoU" in r.stdout and "person" in r.stdout


def test_eval_is_deterministic(trained: Path) -> None:
    best = str(trained / "runs/train/exp/weights/best.safetensors")
    reports = []
    for name in ("d1", "d2"):
        r = densecnn("eval", "segment", "-w", best, "-d", "pf", "--name", name, "--split", "all", cwd=trained)
        assert r.returncode == 0, r.stdout + r.stderr
        reports.append(json.loads((trained / "runs/eval" / name / "metrics.json").read_text()))
        assert (trained / "runs/eval" / name / "confusion_matrix.png").is_file()
    assert reports[0]["metrics"] == reports[1]["metrics"] and reports[0]["num_images"] == 24
    assert reports[0]["per_class"] == reports[1]["per_class"]


def test_finetune_to_more_classes_with_frozen_backbone(trained: Path) -> None:
    """Start from the 2-class checkpoint on a 3-class labels folder: the head is re-initialised (and
    said so), and with every backbone stage frozen the backbone comes out bit for bit unchanged."""
    from densecnn.checkpoint import load_checkpoint

    three = trained / "three"
    (three / "images").mkdir(parents=True)
    (three / "masks").mkdir()
    for image in sorted((trained / "pf" / "images").iterdir())[:8]:
        (three / "images" / image.name).symlink_to(image.resolve())
        ids = np.asarray(Image.open(PENNFUDAN / "masks" / f"{image.stem}_mask.png"))
        Image.fromarray(np.minimum(ids, 2).astype(np.uint8)).save(three / "masks" / f"{image.stem}.png")
    (three / "classes.json").write_text(json.dumps(["background", "first person", "other people"]))
    start = trained / "runs/train/exp/weights/best.safetensors"
    r = densecnn(
        "train", "segment", "--data", "three", "--weights", str(start), "--epochs", "1", "--imgsz", "64",
        "--batch", "4", "--freeze", "5", "--workers", "0", "--name", "three", cwd=trained,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Re-initialised 2 tensor(s)" in r.stdout and "segmentation_head.0.weight" in r.stdout
    before, _ = load_checkpoint(start)
    after, meta = load_checkpoint(trained / "runs/train/three/weights/last.safetensors")
    assert meta.class_names == ("background", "first person", "other people") and meta.backbone == "resnet18"
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in backbone)
    assert not np.array_equal(
        before["decoder.blocks.0.conv1.0.weight"], after["decoder.blocks.0.conv1.0.weight"]
    )


def test_narrower_decoder_keeps_the_encoder_and_loads_in_segment(trained: Path) -> None:
    """--decoder-channels from a checkpoint: the backbone's tensors carry over, the decoder starts
    fresh at the new widths (said so), the widths are stored, and `densecnn segment` rebuilds them."""
    from densecnn.checkpoint import load_checkpoint

    start = trained / "runs/train/exp/weights/best.safetensors"
    r = densecnn(
        "train", "segment", "--data", "pf", "--mask-mode", "instances-to-foreground", "--weights", str(start),
        "--decoder-channels", "64,32,16,8,8", "--epochs", "1", "--imgsz", "64", "--batch", "4",
        "--val-fraction", "0.25", "--workers", "0", "--name", "narrow", cwd=trained,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "whose shape differs" in r.stdout and "decoder.blocks.0.conv1.0.weight" in r.stdout
    narrow = trained / "runs/train/narrow/weights/best.safetensors"
    before, _ = load_checkpoint(start)
    after, meta = load_checkpoint(narrow)
    assert meta.extra["builder_kwargs"] == {"decoder_channels": [64, 32, 16, 8, 8]}
    assert after["decoder.blocks.0.conv1.0.weight"].shape[0] == 64
    assert after["segmentation_head.0.weight"].shape[1] == 8
    assert sum(v.numel() for v in after.values()) < sum(v.numel() for v in before.values())
    image = trained / "pf" / "images" / _held_out(trained)[0]
    r = densecnn("segment", str(image), "--weights", str(narrow), "--name", "narrow", cwd=trained)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = densecnn("train", "segment", "--data", "pf", "--decoder-channels", "64,x", cwd=trained)
    assert bad.returncode == 2 and "--decoder-channels" in bad.stderr


def test_malformed_masks_folder_names_each_file(tmp_path: Path, run_cli) -> None:
    need_data(PENNFUDAN)
    pf = pennfudan_subset(PENNFUDAN, tmp_path / "bad", 4)
    masks = sorted((pf / "masks").iterdir())
    masks[0].unlink()  # an image without its mask
    masks[1].unlink()
    Image.new("L", (50, 40)).save(masks[1])  # wrong size
    (pf / "masks" / "stray_mask.png").write_bytes(masks[2].read_bytes())  # a mask without an image
    r = run_cli("data", "check", "bad", "--mask-mode", "instances-to-foreground")
    assert r.returncode == 1, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert f"{masks[0].stem.removesuffix('_mask')}.png: no mask" in out
    assert f"{masks[1].name}: mask is 50x40 but image" in out
    assert "stray_mask.png: no image with this stem" in out
    r = run_cli(
        "train", "segment", "--data", "bad", "--mask-mode", "instances-to-foreground", "--epochs", "1"
    )
    assert r.returncode == 2 and "3 problem(s)" in r.stderr and "Traceback" not in r.stderr


def test_instance_ids_without_mask_mode_say_what_to_do(tmp_path: Path, run_cli) -> None:
    need_data(PENNFUDAN)
    pennfudan_subset(PENNFUDAN, tmp_path / "pf", 3)
    r = run_cli("train", "segment", "--data", "pf", "--num-classes", "2", "--epochs", "1")
    assert r.returncode == 2, r.stdout + r.stderr
    err = " ".join(r.stderr.split())
    assert "out of range for 2 classes" in err and "--mask-mode instances-to-foreground" in err
    r = run_cli("train", "segment", "--data", "pf", "--epochs", "1")
    assert r.returncode == 2 and "needs its class names" in r.stderr


def test_scratch_batchnorm_speeds_up_slow_running_stats() -> None:
    """torchvision's MobileNetV3 BatchNorm momentum 0.01 left a from-scratch U-Net predicting only
    background in eval mode for the first epochs; from scratch, densecnn raises it to 0.1."""
    import torch

    from densecnn.tasks.segment.smp_heads import build_unet
    from densecnn.train.start import scratch_batchnorm

    model = build_unet("mobilenet_v3_small", 2)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert min(m.momentum for m in bns) == 0.01  # torchvision's choice, in the encoder
    notes: list[str] = []
    scratch_batchnorm(model, notes)
    assert {m.momentum for m in bns} == {0.1} and "BatchNorm momentum 0.1" in notes[0]
