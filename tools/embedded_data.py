"""Datasets for the embedded models, built from ../shared/data into a build folder (outside git).

Penn-Fudan (128 photos) is split once with a fixed seed into train / val / test; the test images stay
out of training for both models. COCO128 adds its person boxes (YOLO class 0) and person polygons
(rasterised) to the training side only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SEED = 0
N_TEST = 28  # Penn-Fudan images held out of training for both models (the reported figures)
N_VAL = 10  # Penn-Fudan images Ultralytics validates on while training (model selection)
PERSON = 0  # COCO class id of "person" in coco128 labels


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]


def pennfudan_split(data: Path) -> Split:
    """The fixed Penn-Fudan split (stems, sorted within each part)."""
    stems = sorted(p.stem for p in (data / "pennfudan" / "images").glob("*.png"))
    order = np.random.default_rng(SEED).permutation(len(stems))
    test = sorted(stems[i] for i in order[:N_TEST])
    val = sorted(stems[i] for i in order[N_TEST : N_TEST + N_VAL])
    train = sorted(stems[i] for i in order[N_TEST + N_VAL :])
    return Split(train=train, val=val, test=test)


def _pf_mask(data: Path, stem: str) -> np.ndarray:
    """Penn-Fudan instance mask: 0 background, 1..N one id per pedestrian (uint8 HxW)."""
    path = data / "pennfudan" / "masks" / f"{stem}_mask.png"
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise FileNotFoundError(path)
    return mask


def _boxes_from_instances(mask: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Normalised YOLO (cx, cy, w, h) of each instance id in ``mask``."""
    h, w = mask.shape
    out = []
    for ident in np.unique(mask):
        if ident == 0:
            continue
        ys, xs = np.nonzero(mask == ident)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        out.append(((x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h))
    return out


def _link(src: Path, dst: Path) -> None:
    """Symlink ``dst`` → ``src`` (the data is read in place, never copied)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    dst.symlink_to(src.resolve())


def _write_yolo_labels(path: Path, boxes: list[tuple[float, float, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"0 {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n" for cx, cy, bw, bh in boxes))


def _coco_person_boxes(label_file: Path) -> list[tuple[float, float, float, float]]:
    boxes = []
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if parts and int(parts[0]) == PERSON:
            cx, cy, bw, bh = map(float, parts[1:5])
            boxes.append((cx, cy, bw, bh))
    return boxes


def build_yolo(data: Path, out: Path, split: Split) -> Path:
    """YOLO dataset (one class: person) → ``out/data.yaml``."""
    for part, stems in (("train", split.train), ("val", split.val), ("test", split.test)):
        for stem in stems:
            _link(data / "pennfudan" / "images" / f"{stem}.png", out / "images" / part / f"{stem}.png")
            boxes = _boxes_from_instances(_pf_mask(data, stem))
            _write_yolo_labels(out / "labels" / part / f"{stem}.txt", boxes)
    coco = data / "coco128"
    for image in sorted((coco / "images" / "train2017").glob("*.jpg")):
        label = coco / "labels" / "train2017" / f"{image.stem}.txt"
        boxes = _coco_person_boxes(label) if label.exists() else []
        _link(image, out / "images" / "train" / f"coco_{image.name}")
        _write_yolo_labels(out / "labels" / "train" / f"coco_{image.stem}.txt", boxes)
    yaml = out / "data.yaml"
    parts = "train: images/train\nval: images/val\ntest: images/test\n"
    yaml.write_text(f"path: {out.resolve()}\n{parts}names:\n  0: person\n")
    # The held-out images as the "val" split, for `densecnn eval detect --split val`.
    held_out = "train: images/train\nval: images/test\n"
    (out / "test.yaml").write_text(f"path: {out.resolve()}\n{held_out}names:\n  0: person\n")
    return yaml


def _coco_person_mask(label_file: Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise the person polygons (class 0, normalised xy pairs) of one coco128 label file."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 7 or int(parts[0]) != PERSON:
            continue
        xy = np.asarray(parts[1:], np.float64).reshape(-1, 2) * (w, h)
        cv2.fillPoly(mask, [np.round(xy).astype(np.int32)], 1)
    return mask


def _write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), mask):
        raise OSError(f"could not write {path}")


def build_masks(data: Path, out: Path, split: Split) -> tuple[Path, Path]:
    """Masks folders (image + label PNG, same stem; 0 background, 1 person) → (train, test) roots.

    Train = Penn-Fudan train+val and the 100 coco128 images that have polygons; test = Penn-Fudan test.
    """
    parts = {"train": split.train + split.val, "test": split.test}
    for part, stems in parts.items():
        for stem in stems:
            _link(data / "pennfudan" / "images" / f"{stem}.png", out / part / "images" / f"{stem}.png")
            _write_mask(out / part / "labels" / f"{stem}.png", (_pf_mask(data, stem) > 0).astype(np.uint8))
    coco = data / "coco128"
    polys = coco / "instance_segmentation" / "labels_yolo_contiguous" / "train2017"
    for label in sorted(polys.glob("*.txt")):
        image = coco / "images" / "train2017" / f"{label.stem}.jpg"
        h, w = cv2.imread(str(image)).shape[:2]
        _link(image, out / "train" / "images" / f"coco_{image.name}")
        _write_mask(out / "train" / "labels" / f"coco_{label.stem}.png", _coco_person_mask(label, (h, w)))
    for part in parts:
        (out / part / "classes.json").write_text(json.dumps(["background", "person"]))
    return out / "train", out / "test"


def small_people_mosaic(
    data: Path, grid: int = 4, cell: tuple[int, int] = (320, 240)
) -> tuple[np.ndarray, np.ndarray]:
    """``grid x grid`` held-out Penn-Fudan test photos (never seen by the embedded models), each
    shrunk into a ``cell`` (width, height) of a grey canvas: many small people on one large image →
    (BGR canvas, person boxes ``(N, 4)`` xyxy from the instance masks). What the tiled-inference test
    and bench measure recall on."""
    stems = pennfudan_split(data).test[: grid * grid]
    cw, ch = cell
    canvas = np.full((ch * grid, cw * grid, 3), 114, np.uint8)
    boxes = []
    for k, stem in enumerate(stems):
        image = cv2.imread(str(data / "pennfudan" / "images" / f"{stem}.png"))
        instances = _pf_mask(data, stem)
        s = min(cw / image.shape[1], ch / image.shape[0])
        w, h = int(image.shape[1] * s), int(image.shape[0] * s)
        x0, y0 = (k % grid) * cw, (k // grid) * ch
        canvas[y0 : y0 + h, x0 : x0 + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        for ident in np.unique(instances)[1:]:
            ys, xs = np.nonzero(instances == ident)
            boxes.append(
                [x0 + xs.min() * s, y0 + ys.min() * s, x0 + (xs.max() + 1) * s, y0 + (ys.max() + 1) * s]
            )
    return canvas, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def recall_at(truth: np.ndarray, found: np.ndarray, iou: float = 0.5) -> float:
    """Share of ``truth`` boxes matched one-to-one (greedy, best overlap first) by a ``found`` box at
    IoU >= ``iou``; both ``(N, 4)`` xyxy."""
    if not len(truth):
        return 1.0
    if not len(found):
        return 0.0
    t, f = truth[:, None, :], np.asarray(found, dtype=np.float64)[None, :, :]
    w = (np.minimum(t[..., 2], f[..., 2]) - np.maximum(t[..., 0], f[..., 0])).clip(0)
    h = (np.minimum(t[..., 3], f[..., 3]) - np.maximum(t[..., 1], f[..., 1])).clip(0)
    inter = w * h
    union = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1]) + (f[..., 2] - f[..., 0]) * (
        f[..., 3] - f[..., 1]
    )
    overlap = inter / (union - inter)
    used: set[int] = set()
    for row in overlap:
        for j in np.argsort(-row):
            if row[j] < iou:
                break
            if int(j) not in used:
                used.add(int(j))
                break
    return len(used) / len(truth)
