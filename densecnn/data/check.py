"""``densecnn data check``: every problem of a dataset at once, each naming its file and what is wrong.

The format is recognised from the path: a YOLO ``data.yaml`` or COCO ``.json`` (or a folder holding
a ``data.yaml``) → :func:`densecnn.data.detection.check_dataset`; a folder with ``images/`` and
``masks/`` → :mod:`densecnn.data.masks`; a folder of class folders → :mod:`densecnn.data.imagefolder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from densecnn.errors import UsageError


@dataclass
class CheckReport:
    """What was found (``format``, ``summary`` lines) and every problem (``problems``)."""

    path: Path
    format: str
    summary: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def detect_format(path: Path) -> str:
    """``detection``, ``masks`` or ``imagefolder``; UsageError saying which layouts are known."""
    from densecnn.data.detection import is_detection_dataset
    from densecnn.data.imagefolder import is_image_folder
    from densecnn.data.masks import is_masks_folder

    if not path.exists():
        raise UsageError(f"{path}: no such file or folder.")
    if is_detection_dataset(path) or (path.is_dir() and (path / "data.yaml").is_file()):
        return "detection"
    if is_masks_folder(path):
        return "masks"
    if is_image_folder(path):
        return "imagefolder"
    raise UsageError(
        f"{path}: not a dataset densecnn knows.",
        hint="Expected a YOLO data.yaml, a COCO .json, a masks folder (images/ + masks/) or an "
        "ImageFolder (one sub-folder of images per class).",
    )


def check(
    path: Path,
    *,
    mask_mode: str = "labels",
    num_classes: int | None = None,
    class_names: Sequence[str] = (),
    ignore_index: int = 255,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> CheckReport:
    """Check the dataset at ``path`` (see the module docstring)."""
    fmt = detect_format(path)
    if fmt == "detection":
        from densecnn.data.detection import check_dataset

        target = path / "data.yaml" if path.is_dir() else path
        return CheckReport(path, "detection (YOLO data.yaml / COCO JSON)", problems=check_dataset(target))
    if fmt == "masks":
        return _check_masks(path, mask_mode, num_classes, class_names, ignore_index, val_fraction, seed)
    return _check_imagefolder(path, val_fraction, seed)


def _check_masks(
    path: Path,
    mask_mode: str,
    num_classes: int | None,
    class_names: Sequence[str],
    ignore_index: int,
    val_fraction: float,
    seed: int,
) -> CheckReport:
    from densecnn.data.masks import check_mask, find_pairs, resolve_class_names

    report = CheckReport(path, f"masks folder (mask mode {mask_mode})")
    try:
        names = resolve_class_names(
            path, mask_mode=mask_mode, num_classes=num_classes, class_names=class_names
        )
    except UsageError as exc:
        report.problems.append(exc.message + (f" {exc.hint}" if exc.hint else ""))
        return report
    roots = [path / "train", path / "val"] if (path / "train" / "images").is_dir() else [path]
    pairs = [pair for root in roots for pair in find_pairs(root, report.problems)]
    for pair in pairs:
        report.problems += check_mask(
            pair, num_classes=len(names), mask_mode=mask_mode, ignore_index=ignore_index
        )
    report.summary.append(f"{len(pairs)} image/mask pairs; {len(names)} classes: {', '.join(names)}")
    if len(roots) == 1:
        from densecnn.data.split import split_items

        train, val = split_items(pairs, val_fraction=val_fraction, seed=seed)
        report.summary.append(
            f"seeded split (val {val_fraction:g}, seed {seed}): {len(train)} train, {len(val)} val"
        )
    return report


def _check_imagefolder(path: Path, val_fraction: float, seed: int) -> CheckReport:
    from densecnn.data.imagefolder import check_image_folder

    folder, problems = check_image_folder(path, val_fraction=val_fraction, seed=seed)
    report = CheckReport(path, "ImageFolder (one folder per class)", problems=problems)
    if folder is not None:
        counts = {name: 0 for name in folder.class_names}
        for sample in folder.split("all"):
            counts[folder.class_names[sample.label]] += 1
        report.summary.append(
            f"{sum(counts.values())} images; {len(counts)} classes: "
            + ", ".join(f"{n} ({c})" for n, c in counts.items())
        )
        how = "own train/val folders" if folder.explicit_split else f"seeded split (val {val_fraction:g})"
        report.summary.append(f"{how}: {len(folder.train)} train, {len(folder.val)} val")
    return report
