"""ImageFolder datasets (torchvision's layout): one sub-folder of images per class.

Layouts (``--data ROOT``):

- ``ROOT/<class>/*.jpg``: one folder; ``train`` and ``eval --split val`` use the seeded
  :func:`~densecnn.data.split.split_items` split of every image (``--val-fraction``, ``--seed``).
- ``ROOT/train/<class>/`` + ``ROOT/val/<class>/`` (``valid/`` and ``test/`` are not read): the
  dataset's own split.

Class ids follow the sorted class folder names, as torchvision's ``ImageFolder`` numbers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from densecnn.data.split import split_items
from densecnn.errors import UsageError
from densecnn.sources.base import IMAGE_SUFFIXES


@dataclass(frozen=True, order=True)
class Sample:
    image: Path
    label: int

    def __str__(self) -> str:
        return str(self.image)


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    class_names: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    explicit_split: bool = False

    def split(self, which: str) -> list[Sample]:
        return {"train": self.train, "val": self.val, "all": sorted(self.train + self.val)}[which]


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image_folder(root: Path) -> bool:
    if not root.is_dir():
        return False
    base = root / "train" if (root / "train").is_dir() else root
    return any(any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()) for d in _class_dirs(base))


def open_image_folder(root: Path, *, val_fraction: float = 0.2, seed: int = 0) -> ImageFolder:
    """Classes and train / val samples of ``root``; UsageError naming what is wrong with the layout."""
    if not root.is_dir():
        raise UsageError(f"{root}: an ImageFolder dataset is a folder with one sub-folder per class.")
    if (root / "train").is_dir() and (root / "val").is_dir():
        names = tuple(d.name for d in _class_dirs(root / "train"))
        train = _samples(root / "train", names)
        val = _samples(root / "val", names, extra_ok=False)
        folder = ImageFolder(root, names, train, val, explicit_split=True)
    else:
        names = tuple(d.name for d in _class_dirs(root))
        train, val = split_items(_samples(root, names), val_fraction=val_fraction, seed=seed)
        folder = ImageFolder(root, names, train, val)
    if len(names) < 2:
        raise UsageError(
            f"{root}: found {len(names)} class folder(s) ({', '.join(names) or 'none'}); "
            "a classifier needs at least 2.",
            hint="Layout: ROOT/<class>/*.jpg, or ROOT/train/<class>/ and ROOT/val/<class>/.",
        )
    return folder


def _samples(base: Path, names: tuple[str, ...], *, extra_ok: bool = True) -> list[Sample]:
    out: list[Sample] = []
    for label, name in enumerate(names):
        folder = base / name
        if not folder.is_dir():
            continue  # a val split may lack a class
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images and base.name != "val":
            raise UsageError(f"{folder}: class folder {name!r} holds no images.")
        out += [Sample(p, label) for p in images]
    if not extra_ok:
        unknown = [d.name for d in _class_dirs(base) if d.name not in names]
        if unknown:
            raise UsageError(
                f"{base}: class folder(s) {', '.join(unknown)} are not in {base.parent / 'train'}.",
                hint="train/ and val/ must have the same class folders (val may lack some).",
            )
    return out


def check_image_folder(
    root: Path, *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageFolder | None, list[str]]:
    """The dataset and every problem found (layout errors, images that do not decode)."""
    from densecnn.errors import InputError
    from densecnn.sources.images import read_image

    try:
        folder = open_image_folder(root, val_fraction=val_fraction, seed=seed)
    except UsageError as exc:
        return None, [exc.message]
    problems = []
    for sample in folder.split("all"):
        try:
            read_image(sample.image)
        except InputError as exc:
            problems.append(f"{sample.image}: {exc.message}")
    return folder, problems
