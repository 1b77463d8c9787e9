"""Detection data written in the layouts trainers read: Ultralytics' (a data.yaml with image lists,
labels found by the ``/images/`` → ``/labels/`` rule), and YOLO datasets made from instance-id masks.

Images are never copied: lists name the originals, and where a label file has to be written next to
a new ``images/`` folder (COCO JSON, masks), the image there is a symbolic link to the original.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from densecnn.data.detection import DetectionData, DetItem, read_items, yolo_label_path
from densecnn.errors import UsageError
from densecnn.fsutil import atomic_open
from densecnn.sources.base import IMAGE_SUFFIXES


def write_ultralytics_data(data: DetectionData, train: list[Path], val: list[Path], out_dir: Path) -> Path:
    """``out_dir/data.yaml`` for exactly these train/val images, in a layout of our own:
    ``out_dir/{train,val}/images/NAME`` (links to the originals) and ``labels/NAME.txt`` (rewritten
    from the parsed labels). So Ultralytics neither resolves ``path:`` against the working directory,
    nor runs a ``download:``, nor writes its ``labels.cache`` into the user's dataset. An empty ``val``
    validates on ``train`` (Ultralytics needs a val set)."""
    import yaml

    dirs = {}
    for split, images in (("train", train), ("val", val or train)):
        dirs[split] = out_dir / split / "images"
        _write_split(read_items(data, images), out_dir / split, verbatim=data.kind == "yolo")
    doc = {
        "path": str(out_dir.absolute()),
        "train": str(dirs["train"].absolute()),
        "val": str(dirs["val"].absolute()),
        "nc": data.nc,
        "names": dict(enumerate(data.names)),
    }
    yaml_path = out_dir / "data.yaml"
    with atomic_open(yaml_path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False, allow_unicode=True)
    return yaml_path


def _write_split(items: list[DetItem], root: Path, *, verbatim: bool = False) -> None:
    """``root/images/NAME`` (a link to the image) and ``root/labels/STEM.txt`` per item; names made
    unique by a counter when two source folders hold the same file name. ``verbatim`` (YOLO data,
    already checked): the user's label text as it is, so Ultralytics trains on exactly what `yolo
    train` would read (a float32 round trip can move the 6th decimal)."""
    used: set[str] = set()
    for item in items:
        name, n = item.image.name, 1
        while name.lower() in used:
            n += 1
            name = f"{item.image.stem}_{n}{item.image.suffix}"
        used.add(name.lower())
        _link(root / "images" / name, item.image)
        label = root / "labels" / f"{Path(name).stem}.txt"
        source = yolo_label_path(item.image)
        if verbatim and source.is_file():
            label.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(label, "w") as fh:
                fh.write(source.read_text(encoding="utf-8"))
        else:
            _write_yolo_label(label, item)


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        link.unlink()
    link.symlink_to(target.resolve())


def _write_yolo_label(path: Path, item: DetItem) -> None:
    """YOLO rows ``class cx cy w h``, or ``class x1 y1 ...`` for a one-part polygon (crowd regions
    left out, as Ultralytics' COCO converter does)."""
    rows = []
    polys = item.polygons or [None] * len(item.boxes)
    for box, cls, crowd, poly in zip(item.boxes, item.classes, item.crowd, polys, strict=True):
        if crowd:
            continue
        if poly is not None and len(poly) == 1:
            rows.append(f"{int(cls)} " + " ".join(f"{v:.6f}" for v in poly[0].ravel()) + "\n")
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        rows.append(f"{int(cls)} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as fh:
        fh.write("".join(rows))


def boxes_from_instance_mask(mask: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float32 pixel xyxy boxes of the instances of an ``(H, W)`` id map (0 = background,
    1..N = one id per object), in ascending id order; a box covers its pixels (x2 = last column + 1)."""
    boxes = []
    for i in np.unique(mask):
        if i == 0:
            continue
        ys, xs = np.nonzero(mask == i)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def instance_masks_to_yolo(
    images_dir: Path,
    masks_dir: Path,
    out_dir: Path,
    *,
    class_name: str = "object",
    mask_suffix: str = "_mask",
    images: list[Path] | None = None,
) -> Path:
    """A one-class YOLO dataset (``out_dir/data.yaml``, ``images/``, ``labels/``) from instance-id masks
    (``masks_dir/STEM{mask_suffix}.png``, 0 = background, 1..N = objects; Penn-Fudan's layout).
    ``images`` picks a subset; default: every image in ``images_dir``. No val split is written."""
    import cv2
    import yaml

    chosen = images or sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for image in chosen:
        mask_path = masks_dir / f"{image.stem}{mask_suffix}.png"
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise UsageError(f"{mask_path}: mask for {image.name} not found or unreadable.")
        h, w = mask.shape[:2]
        boxes = boxes_from_instance_mask(mask if mask.ndim == 2 else mask[..., 0])
        item = DetItem(
            image=image,
            boxes=boxes / np.array([w, h, w, h], dtype=np.float32),
            classes=np.zeros(len(boxes), dtype=np.int64),
        )
        _link(out_dir / "images" / image.name, image)
        _write_yolo_label(out_dir / "labels" / f"{image.stem}.txt", item)
    yaml_path = out_dir / "data.yaml"
    with atomic_open(yaml_path, "w") as fh:
        yaml.safe_dump({"path": ".", "train": "images", "names": {0: class_name}}, fh, sort_keys=False)
    return yaml_path
