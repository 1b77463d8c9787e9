"""The person U-Net's training loop (used until `densecnn train segment` lands; same checkpoint format).

Masks folder in (``images/NAME.*`` + ``labels/NAME.png``, 0 background, 1 person); a densecnn
checkpoint out (safetensors + metadata: ``densecnn segment --weights`` loads it as is).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from densecnn.checkpoint import CheckpointMeta, save_checkpoint
from densecnn.tasks.segment.smp_heads import build_unet

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _load(root: Path, short: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every (RGB uint8, label uint8) pair, resized so the shorter side is ``short``."""
    pairs = []
    for label_path in sorted((root / "labels").glob("*.png")):
        image_path = next((root / "images").glob(f"{label_path.stem}.*"))
        image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        scale = short / min(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        pairs.append(
            (
                cv2.resize(image, size, interpolation=cv2.INTER_AREA),
                cv2.resize(label, size, interpolation=cv2.INTER_NEAREST),
            )
        )
    return pairs


def _augment(
    image: np.ndarray, label: np.ndarray, crop: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random scale (0.75-1.25), ``crop`` x ``crop`` patch (a shorter side is stretched), h-flip, gain."""
    scale = rng.uniform(0.75, 1.25)
    size = (max(crop, round(image.shape[1] * scale)), max(crop, round(image.shape[0] * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    y = rng.integers(0, image.shape[0] - crop + 1)
    x = rng.integers(0, image.shape[1] - crop + 1)
    image, label = image[y : y + crop, x : x + crop], label[y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    gain = rng.uniform(0.7, 1.3)
    image = np.clip(image.astype(np.float32) * gain, 0, 255)
    return image, label


def _batch(pairs: list, rng: np.random.Generator, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(_augment(i, lab, crop, rng) for i, lab in pairs), strict=True)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x, torch.from_numpy(np.stack(labels).astype(np.int64))


def train_unet(
    *,
    data: Path,
    out: Path,
    backbone: str,
    decoder_channels: tuple[int, ...],
    epochs: int,
    batch: int,
    imgsz: int,
    crop: int,
    lr: float,
    seed: int,
) -> Path:
    """Train, write ``out`` (fp32 densecnn checkpoint), return it. Prints one line per epoch.

    Images are resized so the shorter side is ``imgsz`` (as the predictor does), then trained on
    random ``crop`` x ``crop`` patches (fully convolutional: smaller patches, same scale, less CPU).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pairs = _load(data, short=imgsz)
    model = build_unet(backbone, 2, decoder_channels=decoder_channels)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(pairs) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    start = time.monotonic()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(pairs))
        losses = []
        for i in range(len(pairs) // batch):
            x, y = _batch([pairs[j] for j in order[i * batch : (i + 1) * batch]], rng, crop)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        print(
            f"segment: epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} "
            f"({time.monotonic() - start:.0f} s)",
            flush=True,
        )
    meta = CheckpointMeta(
        task="segment",
        arch="unet",
        class_names=("background", "person"),
        input_size=imgsz,
        mean=MEAN,
        std=STD,
        backbone=backbone,
        extra={
            "builder_kwargs": {"decoder_channels": list(decoder_channels)},
            "epochs": epochs,
            "seed": seed,
        },
    )
    save_checkpoint(out, model.state_dict(), meta)
    print(f"segment: trained in {(time.monotonic() - start) / 60:.1f} min -> {out}")
    return out
