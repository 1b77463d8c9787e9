"""Masks folders: images and single-channel label PNGs with the same stem.

Layouts (``--data ROOT``):

- ``ROOT/images/`` + ``ROOT/masks/`` (or ``labels/``): one folder; ``train`` and ``eval --split
  val`` use the seeded :func:`~densecnn.data.split.split_items` split (``--val-fraction``, ``--seed``).
- ``ROOT/train/{images,masks}`` + ``ROOT/val/{images,masks}``: the dataset's own split.

A mask goes with the image of the same stem, or of the stem plus ``_mask`` (Penn-Fudan:
``FudanPed00001.png`` ↔ ``FudanPed00001_mask.png``). Masks are PNG label maps read as they are
stored (palette PNGs give their palette indices, as in PASCAL VOC), the same size as their image.

Mask modes (``--mask-mode``):

- ``labels``: pixel value = class id; ``ignore_index`` (255) = not scored. Class names from
  ``ROOT/classes.json`` (a list of names, or ``{"0": "background", ...}``), ``--class-names``, or
  ``--num-classes N`` (named ``class0``...).
- ``instances-to-foreground``: masks hold instance ids (0 background, 1..N one object each, as
  Penn-Fudan); every non-zero id except ``ignore_index`` becomes class 1. Classes: ``background``
  and ``foreground`` unless ``--class-names`` (e.g. ``background,person``) says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np

from densecnn.config import MaskMode
from densecnn.data.split import split_items
from densecnn.errors import UsageError
from densecnn.sources.base import IMAGE_SUFFIXES

MASK_MODES: tuple[str, ...] = get_args(MaskMode)
_MASK_DIRS = ("masks", "labels")


@dataclass(frozen=True, order=True)
class MaskPair:
    image: Path
    mask: Path

    def __str__(self) -> str:
        return str(self.image)


@dataclass(frozen=True)
class MasksFolder:
    """A masks dataset: class names, and the train / val pairs after the split."""

    root: Path
    class_names: tuple[str, ...]
    train: list[MaskPair]
    val: list[MaskPair]
    mask_mode: str = "labels"
    ignore_index: int = 255
    explicit_split: bool = False

    def split(self, which: str) -> list[MaskPair]:
        return {"train": self.train, "val": self.val, "all": sorted(self.train + self.val)}[which]


def is_masks_folder(root: Path) -> bool:
    return root.is_dir() and (_pair_dirs(root) is not None or _pair_dirs(root / "train") is not None)


def open_masks_folder(
    root: Path,
    *,
    mask_mode: str = "labels",
    num_classes: int | None = None,
    class_names: Sequence[str] = (),
    val_fraction: float = 0.2,
    seed: int = 0,
    ignore_index: int = 255,
    check: bool = True,
) -> MasksFolder:
    """Read the layout, pair images with masks, name the classes and split; with ``check``, read
    every mask and raise a UsageError listing the problems (file and what is wrong)."""
    if mask_mode not in MASK_MODES:
        raise UsageError(f"--mask-mode must be one of {', '.join(MASK_MODES)}, got {mask_mode!r}.")
    names = resolve_class_names(root, mask_mode=mask_mode, num_classes=num_classes, class_names=class_names)
    problems: list[str] = []
    if _pair_dirs(root / "train") is not None and _pair_dirs(root / "val") is not None:
        train, val = find_pairs(root / "train", problems), find_pairs(root / "val", problems)
        explicit = True
    else:
        pairs = find_pairs(root, problems)
        train, val = split_items(pairs, val_fraction=val_fraction, seed=seed)
        explicit = False
    folder = MasksFolder(root, names, train, val, mask_mode, ignore_index, explicit)
    if check:
        for pair in folder.split("all"):
            problems += check_mask(
                pair, num_classes=len(names), mask_mode=mask_mode, ignore_index=ignore_index
            )
    if problems:
        raise UsageError(_problem_text(root, problems), hint="`densecnn data check` lists every problem.")
    return folder


def resolve_class_names(
    root: Path, *, mask_mode: str, num_classes: int | None, class_names: Sequence[str]
) -> tuple[str, ...]:
    """Class names from ``--class-names``, ``classes.json``, ``--num-classes`` (in that order)."""
    if class_names:
        names = tuple(class_names)
    elif (root / "classes.json").is_file():
        names = _read_classes_json(root / "classes.json")
    elif mask_mode == "instances-to-foreground":
        names = ("background", "foreground")
    elif num_classes is not None:
        names = tuple(f"class{i}" for i in range(num_classes))
    else:
        raise UsageError(
            f"{root}: a masks folder needs its class names.",
            hint='Add classes.json (["background", "person", ...]), or pass --class-names a,b or '
            "--num-classes N; masks with instance ids (0 = background, 1..N) train with "
            "--mask-mode instances-to-foreground.",
        )
    if num_classes is not None and num_classes != len(names):
        raise UsageError(f"--num-classes {num_classes} but {len(names)} class names: {', '.join(names)}.")
    if mask_mode == "instances-to-foreground" and len(names) != 2:
        raise UsageError(f"--mask-mode instances-to-foreground makes 2 classes, got names {list(names)}.")
    if not 1 <= len(names) <= 255:
        raise UsageError(f"A masks folder needs 1 to 255 classes, got {len(names)}.")
    return names


def _read_classes_json(path: Path) -> tuple[str, ...]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}).") from None
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return tuple(data)
    if isinstance(data, dict):
        try:
            ids = sorted(int(k) for k in data)
        except ValueError:
            ids = []
        if ids == list(range(len(ids))) and ids:
            return tuple(str(data[str(i)]) for i in ids)
    raise UsageError(
        f'{path}: expected a list of class names or {{"0": name, "1": name, ...}} with ids 0..N-1.'
    )


def _pair_dirs(root: Path) -> tuple[Path, Path] | None:
    if not (root / "images").is_dir():
        return None
    for name in _MASK_DIRS:
        if (root / name).is_dir():
            return root / "images", root / name
    return None


def find_pairs(root: Path, problems: list[str]) -> list[MaskPair]:
    """Images of ``root/images`` paired with ``root/masks`` by stem; unpaired files go to ``problems``."""
    dirs = _pair_dirs(root)
    if dirs is None:
        problems.append(f"{root}: no images/ and masks/ folders")
        return []
    images_dir, masks_dir = dirs
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() == ".png"}
    used: set[str] = set()
    pairs = []
    for image in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        stem = image.stem if image.stem in masks else f"{image.stem}_mask"
        if stem not in masks:
            problems.append(f"{image}: no mask {masks_dir.name}/{image.stem}.png (or {image.stem}_mask.png)")
            continue
        used.add(stem)
        pairs.append(MaskPair(image, masks[stem]))
    for stem, mask in masks.items():
        if stem not in used:
            problems.append(f"{mask}: no image with this stem in {images_dir}")
    if not pairs and not problems:
        problems.append(f"{images_dir}: no images")
    return pairs


def read_mask(path: Path, *, mask_mode: str = "labels", ignore_index: int = 255) -> np.ndarray:
    """The label map ``(H, W)`` uint8 of a mask PNG (instance ids folded as ``mask_mode`` says)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"{im.mode} image; a mask must be single-channel (L, P or 16-bit)")
        raw = np.asarray(im)
    if raw.max(initial=0) > 255 and mask_mode == "labels":
        raise ValueError(f"label value {int(raw.max())} above 255")
    if mask_mode == "instances-to-foreground":
        out = np.where(raw == ignore_index, ignore_index, raw != 0).astype(np.uint8)
        return out
    return raw.astype(np.uint8)


def check_mask(pair: MaskPair, *, num_classes: int, mask_mode: str, ignore_index: int) -> list[str]:
    """Problems of one pair: unreadable mask, size mismatch with the image, labels out of range."""
    from PIL import Image

    try:
        mask = read_mask(pair.mask, mask_mode=mask_mode, ignore_index=ignore_index)
    except (OSError, ValueError) as exc:
        return [f"{pair.mask}: unreadable mask: {exc}"]
    try:
        with Image.open(pair.image) as im:
            size = im.size
    except OSError as exc:
        return [f"{pair.image}: unreadable image: {exc}"]
    problems = []
    if (mask.shape[1], mask.shape[0]) != size:
        problems.append(
            f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but image {pair.image.name} is "
            f"{size[0]}x{size[1]}"
        )
    values = np.unique(mask)
    bad = [int(v) for v in values if v >= num_classes and v != ignore_index]
    if bad:
        problems.append(
            f"{pair.mask}: label values {bad[:8]} out of range for {num_classes} classes "
            f"(0..{num_classes - 1}, {ignore_index} = ignore)"
            + (
                "; instance-id masks need --mask-mode instances-to-foreground"
                if mask_mode == "labels"
                else ""
            )
        )
    return problems


def _problem_text(root: Path, problems: list[str], shown: int = 5) -> str:
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return (
        f"{root}: {len(problems)} problem(s) in the masks folder:\n  " + "\n  ".join(problems[:shown]) + more
    )
