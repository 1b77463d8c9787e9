"""Datasets for the embedded models, built from ../shared/data into a build folder (outside git).

Every source is split once with a fixed seed and its test part stays out of training for both models:
Penn-Fudan (128 photos: train / val / test), coco-person (900 COCO val2017 photos with people:
train / val / test; person polygons for 250 of them) and COCO128's photos without people (negatives:
train / test). COCO128's photos with people train both models (boxes; polygons where it has them).
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
N_COCO_PERSON_TEST = 150  # coco-person photos held out (the reported coco-person figures)
N_COCO_PERSON_VAL = 50  # coco-person photos the detector validates on while training
N_NEGATIVE_TEST = 22  # COCO128 photos without people held out (false person pixels / boxes)


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


@dataclass(frozen=True)
class CocoSplit:
    """coco-person stems (train / val / test) and COCO128 photos without people (train / test)."""

    train: list[str]
    val: list[str]
    test: list[str]
    negatives_train: list[str]
    negatives_test: list[str]


def _seeded_parts(stems: list[str], *sizes: int) -> list[list[str]]:
    """``stems`` in a seeded order cut into parts of ``sizes``, then the rest (each part sorted)."""
    order = np.random.default_rng(SEED).permutation(len(stems))
    parts, start = [], 0
    for size in (*sizes, len(stems)):
        parts.append(sorted(stems[i] for i in order[start : start + size]))
        start += size
    return parts


def coco_split(data: Path) -> CocoSplit:
    """The fixed coco-person and COCO128-negatives splits (stems)."""
    stems = sorted(p.stem for p in (data / "coco-person" / "images").glob("*.jpg"))
    test, val, train = _seeded_parts(stems, N_COCO_PERSON_TEST, N_COCO_PERSON_VAL)
    neg_test, neg_train = _seeded_parts(negative_stems(data), N_NEGATIVE_TEST)
    return CocoSplit(train, val, test, neg_train, neg_test)


def negative_stems(data: Path) -> list[str]:
    """COCO128 photos whose labels hold no person (sorted stems)."""
    coco = data / "coco128"
    out = []
    for image in sorted((coco / "images" / "train2017").glob("*.jpg")):
        label = coco / "labels" / "train2017" / f"{image.stem}.txt"
        if not (label.exists() and coco_person_boxes(label)):
            out.append(image.stem)
    return out


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


def coco_person_boxes(label_file: Path) -> list[tuple[float, float, float, float]]:
    boxes = []
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if parts and int(parts[0]) == PERSON:
            cx, cy, bw, bh = map(float, parts[1:5])
            boxes.append((cx, cy, bw, bh))
    return boxes


def build_yolo(data: Path, out: Path, split: Split, coco: CocoSplit) -> Path:
    """YOLO dataset (one class: person) → ``out/data.yaml``; ``test.yaml`` (held-out Penn-Fudan),
    ``coco_test.yaml`` (held-out coco-person) and ``negatives.yaml`` (held-out photos without people)
    name their images as the val split, for `densecnn eval detect --split val`."""
    for part, stems in (("train", split.train), ("val", split.val), ("test", split.test)):
        for stem in stems:
            _link(data / "pennfudan" / "images" / f"{stem}.png", out / "images" / part / f"{stem}.png")
            boxes = _boxes_from_instances(_pf_mask(data, stem))
            _write_yolo_labels(out / "labels" / part / f"{stem}.txt", boxes)
    people = data / "coco-person"
    for part, stems in (("train", coco.train), ("val", coco.val), ("coco_test", coco.test)):
        for stem in stems:
            _link(people / "images" / f"{stem}.jpg", out / "images" / part / f"cp_{stem}.jpg")
            _write_yolo_labels(
                out / "labels" / part / f"cp_{stem}.txt", coco_person_boxes(people / "labels" / f"{stem}.txt")
            )
    coco128 = data / "coco128"
    held_out = set(coco.negatives_test)
    for image in sorted((coco128 / "images" / "train2017").glob("*.jpg")):
        label = coco128 / "labels" / "train2017" / f"{image.stem}.txt"
        boxes = coco_person_boxes(label) if label.exists() else []
        part = "negatives" if image.stem in held_out else "train"
        _link(image, out / "images" / part / f"coco_{image.name}")
        _write_yolo_labels(out / "labels" / part / f"coco_{image.stem}.txt", boxes)
    yaml = out / "data.yaml"
    yaml.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: person\n")
    for name, part in (("test", "test"), ("coco_test", "coco_test"), ("negatives", "negatives")):
        text = f"path: {out.resolve()}\ntrain: images/train\nval: images/{part}\nnames:\n  0: person\n"
        (out / f"{name}.yaml").write_text(text)
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


def coco_json_masks(data: Path) -> dict[str, np.ndarray]:
    """coco-person's person polygons (instances_person.json, 250 photos) → ``{stem: 0/1 mask}``."""
    doc = json.loads((data / "coco-person" / "instances_person.json").read_text())
    images = {im["id"]: im for im in doc["images"]}
    masks: dict[str, np.ndarray] = {}
    for ann in doc["annotations"]:
        im = images[ann["image_id"]]
        stem = Path(im["file_name"]).stem
        mask = masks.setdefault(stem, np.zeros((im["height"], im["width"]), np.uint8))
        for poly in ann["segmentation"]:  # polygons only: the file holds no crowd (RLE) regions
            xy = np.asarray(poly, np.float64).reshape(-1, 2)
            cv2.fillPoly(mask, [np.round(xy).astype(np.int32)], 1)
    return masks


def build_masks(data: Path, out: Path, split: Split, coco: CocoSplit) -> dict[str, Path]:
    """Masks folders (image + label PNG, same stem; 0 background, 1 person) → ``{part: root}``.

    train: Penn-Fudan train+val, coco-person train+val photos with polygons, the 100 coco128 images
    with polygons and coco128's training negatives; test (held-out Penn-Fudan), coco_test (held-out
    coco-person photos with polygons) and negatives (held-out photos without people).
    """
    parts: dict[str, list[str]] = {"train": [], "test": [], "coco_test": [], "negatives": []}

    def add(part: str, image: Path, stem: str, mask: np.ndarray) -> None:
        _link(image, out / part / "images" / f"{stem}{image.suffix}")
        _write_mask(out / part / "labels" / f"{stem}.png", mask)
        parts[part].append(stem)

    for part, stems in (("train", split.train + split.val), ("test", split.test)):
        for stem in stems:
            add(
                part,
                data / "pennfudan" / "images" / f"{stem}.png",
                stem,
                (_pf_mask(data, stem) > 0).astype(np.uint8),
            )
    held_out = set(coco.test)
    for stem, mask in sorted(coco_json_masks(data).items()):
        part = "coco_test" if stem in held_out else "train"
        add(part, data / "coco-person" / "images" / f"{stem}.jpg", f"cp_{stem}", mask)
    coco128 = data / "coco128"
    polys = coco128 / "instance_segmentation" / "labels_yolo_contiguous" / "train2017"
    negatives_test = set(coco.negatives_test)
    for image in sorted((coco128 / "images" / "train2017").glob("*.jpg")):
        label = polys / f"{image.stem}.txt"
        if image.stem in negatives_test:
            part = "negatives"
        elif label.exists() or image.stem in coco.negatives_train:
            part = "train"
        else:
            continue  # people without polygons: no mask to learn from
        h, w = cv2.imread(str(image)).shape[:2]
        mask = _coco_person_mask(label, (h, w)) if label.exists() else np.zeros((h, w), np.uint8)
        add(part, image, f"coco_{image.stem}", mask)
    for part in parts:
        (out / part / "classes.json").write_text(json.dumps(["background", "person"]))
    return {part: out / part for part in parts}


IGNORE = 255  # label value `densecnn train segment` does not score
BOX_MARGIN = 0.05  # share of a box's width / height added on each side of an unscored person box


def box_mask(shape: tuple[int, int], boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Background everywhere but inside the (slightly widened) person boxes, which are not scored:
    a photo with person boxes and no outlines still teaches what is *not* a person."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    for cx, cy, bw, bh in boxes:
        mx, my = bw * BOX_MARGIN * w + 2, bh * BOX_MARGIN * h + 2
        x0, x1 = int((cx - bw / 2) * w - mx), int(np.ceil((cx + bw / 2) * w + mx))
        y0, y1 = int((cy - bh / 2) * h - my), int(np.ceil((cy + bh / 2) * h + my))
        mask[max(y0, 0) : y1, max(x0, 0) : x1] = IGNORE
    return mask


def build_box_masks(
    data: Path, out: Path, masks_train: Path, coco: CocoSplit, val_fraction: float, seed: int
) -> Path:
    """Masks folder with its own split for the segmenter's second run → ``out``.

    val: the same seeded share of ``masks_train`` the first run validated on (outlined people only);
    train: the rest of ``masks_train`` plus every training photo with person boxes but no outlines
    (coco-person train/val, COCO128), labelled by :func:`box_mask`.
    """
    from densecnn.data.masks import open_masks_folder

    folder = open_masks_folder(masks_train, val_fraction=val_fraction, seed=seed, check=False)
    for part, pairs in (("train", folder.train), ("val", folder.val)):
        for pair in pairs:
            _link(pair.image, out / part / "images" / pair.image.name)
            _link(pair.mask, out / part / "labels" / pair.mask.name)
    outlined = {pair.image.stem for pair in folder.split("all")}
    photos = [
        (
            data / "coco-person" / "images" / f"{stem}.jpg",
            data / "coco-person" / "labels" / f"{stem}.txt",
            f"cp_{stem}",
        )
        for stem in coco.train + coco.val
    ]
    coco128 = data / "coco128"
    for image in sorted((coco128 / "images" / "train2017").glob("*.jpg")):
        photos.append((image, coco128 / "labels" / "train2017" / f"{image.stem}.txt", f"coco_{image.stem}"))
    for image, label, stem in photos:
        if stem in outlined or not label.exists() or not (boxes := coco_person_boxes(label)):
            continue
        h, w = cv2.imread(str(image)).shape[:2]
        _link(image, out / "train" / "images" / f"{stem}{image.suffix}")
        _write_mask(out / "train" / "labels" / f"{stem}.png", box_mask((h, w), boxes))
    (out / "classes.json").write_text(json.dumps(["background", "person"]))
    return out


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
