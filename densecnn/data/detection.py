"""Detection datasets as users have them: a YOLO ``data.yaml`` (images + ``labels/*.txt``) or a COCO JSON.

Both load into a :class:`DetectionData` (class names, train images, val images when the data has a
val split) and per-image :class:`DetItem` labels. Boxes are kept *normalised* ``xyxy`` in [0, 1]
(YOLO's own unit) so nothing here decodes an image; callers scale by the decoded image size.

Paths in a ``data.yaml`` resolve as the user means them: a relative ``path:`` is relative to the
yaml's folder (Ultralytics resolves it against the current directory), and a ``download:`` entry is
never run. Malformed labels are reported as ``FILE:LINE: problem`` by :func:`check_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from densecnn.data.split import split_items
from densecnn.errors import UsageError
from densecnn.sources.base import IMAGE_SUFFIXES

Split = Literal["train", "val", "all"]
_MAX_SHOWN = 10


@dataclass(frozen=True)
class DetItem:
    """Ground truth of one image. ``boxes``: ``(N, 4)`` float32 normalised xyxy; ``classes``: ``(N,)``
    int64 in ``0..nc-1``; ``polygons``: per object a list of ``(K, 2)`` normalised xy arrays (its
    parts), or None when the labels are boxes only; ``crowd``: ``(N,)`` bool (COCO ``iscrowd``; never
    set for YOLO labels)."""

    image: Path
    boxes: np.ndarray
    classes: np.ndarray
    polygons: tuple[list[np.ndarray], ...] | None = None
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=bool))

    def __post_init__(self) -> None:
        if len(self.crowd) != len(self.boxes):
            object.__setattr__(self, "crowd", np.zeros(len(self.boxes), dtype=bool))

    def pixel_boxes(self, width: int, height: int) -> np.ndarray:
        """``(N, 4)`` float32 xyxy in pixels of a ``width`` x ``height`` image."""
        return (self.boxes * np.array([width, height, width, height], dtype=np.float32)).astype(np.float32)


@dataclass(frozen=True)
class DetectionData:
    """A detection dataset: ``val`` is None when it has no val split of its own (then
    :func:`images_for` makes the seeded one of :func:`densecnn.data.split.split_items`)."""

    source: Path
    kind: Literal["yolo", "coco"]
    names: tuple[str, ...]
    train: tuple[Path, ...]
    val: tuple[Path, ...] | None
    coco_items: dict[Path, DetItem] = field(default_factory=dict, repr=False)

    @property
    def nc(self) -> int:
        return len(self.names)


def is_detection_dataset(path: Path) -> bool:
    """True for a YOLO ``data.yaml`` (or a folder holding one) or a COCO JSON."""
    path = Path(path)
    return path.suffix.lower() in (".yaml", ".yml", ".json") or (path / "data.yaml").is_file()


def load_detection_data(path: Path) -> DetectionData:
    """Read a YOLO data.yaml or a COCO JSON; UsageError naming the file and problem otherwise."""
    path = Path(path)
    if path.is_dir() and (path / "data.yaml").is_file():
        path = path / "data.yaml"
    if not path.is_file():
        raise UsageError(f"--data {path}: no such file.", hint="Give a YOLO data.yaml or a COCO JSON.")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yolo_yaml(path)
    if path.suffix.lower() == ".json":
        from densecnn.data.detection_coco import load_coco_json

        return load_coco_json(path)
    raise UsageError(
        f"--data {path}: detection data must be a YOLO data.yaml or a COCO .json file.",
        hint="`densecnn data check PATH` explains what it finds.",
    )


def images_for(data: DetectionData, split: Split, *, val_fraction: float, seed: int) -> list[Path]:
    """The images of ``split``: the dataset's own split, else the seeded ``val_fraction`` split of
    the train images (the same one ``densecnn train`` held out)."""
    train, val = train_val(data, val_fraction=val_fraction, seed=seed)
    return {"train": train, "val": val, "all": sorted({*train, *val}, key=str)}[split]


def train_val(data: DetectionData, *, val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    if data.val is not None:
        return list(data.train), list(data.val)
    return split_items(list(data.train), val_fraction=val_fraction, seed=seed)


def read_items(data: DetectionData, images: list[Path]) -> list[DetItem]:
    """Labels of ``images``; UsageError listing the malformed label files (file, line, problem)."""
    if data.kind == "coco":
        return [data.coco_items[p] for p in images]
    items, problems = [], []
    for image in images:
        item, errs = _yolo_item(image, data.nc)
        items.append(item)
        problems += errs
    if problems:
        shown = "\n".join(problems[:_MAX_SHOWN])
        more = f"\n... and {len(problems) - _MAX_SHOWN} more" if len(problems) > _MAX_SHOWN else ""
        raise UsageError(
            f"{len(problems)} problem(s) in the labels of {data.source}:\n{shown}{more}",
            hint=f"Fix those lines, or run `densecnn data check {data.source}` for the full list.",
        )
    return items


def check_dataset(path: Path) -> list[str]:
    """Every problem found in a YOLO data.yaml / COCO JSON and its labels, as ``FILE:LINE: problem``
    (or ``FILE: problem``); an empty list means the dataset is usable."""
    if Path(path).is_dir() and (Path(path) / "data.yaml").is_file():
        path = Path(path) / "data.yaml"
    if Path(path).suffix.lower() == ".json":
        from densecnn.data.detection_coco import parse_coco_json

        return parse_coco_json(Path(path))[1]
    try:
        data = load_detection_data(Path(path))
    except UsageError as exc:
        return [exc.message]
    problems: list[str] = []
    if not data.train:
        problems.append(f"{data.source}: no training images found")
    if data.kind == "yolo":
        for image in sorted({*data.train, *(data.val or ())}, key=str):
            problems += _yolo_item(image, data.nc)[1]
    return problems


# -- YOLO ---------------------------------------------------------------------------------------------


def yolo_label_path(image: Path) -> Path:
    """Ultralytics' convention: the last ``/images/`` folder of the path becomes ``/labels/``, ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_yolo_label(text: str, *, nc: int, where: str) -> tuple[list[tuple[int, list[float]]], list[str]]:
    """Rows ``(class, coords)`` of a YOLO label file and the problems found (``where:LINE: ...``).

    A row is ``class cx cy w h`` (normalised box) or ``class x1 y1 x2 y2 x3 y3 ...`` (a polygon of
    three or more normalised points, YOLO-seg).
    """
    rows, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        problem = _row_problem(fields, nc)
        if problem:
            problems.append(f"{where}:{n}: {problem} (line: {line.strip()[:60]!r})")
            continue
        rows.append((int(float(fields[0])), [float(v) for v in fields[1:]]))
    return rows, problems


def _row_problem(fields: list[str], nc: int) -> str | None:
    try:
        values = [float(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not _is_number(v))
        return f"{bad!r} is not a number"
    cls, coords = values[0], values[1:]
    if cls != int(cls) or not 0 <= cls < nc:
        return f"class {fields[0]} is not an integer in 0..{nc - 1} ({nc} names in the data.yaml)"
    if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
        return (
            f"expected 5 values (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...), "
            f"got {len(values)} values"
        )
    if any(not np.isfinite(v) or v < 0 or v > 1 for v in coords):
        return "coordinates must be normalised to [0, 1] (divide pixels by the image width/height)"
    if len(coords) == 4 and (coords[2] <= 0 or coords[3] <= 0):
        return "box width and height must be positive"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _yolo_item(image: Path, nc: int) -> tuple[DetItem, list[str]]:
    """The labels of one image (no label file = no objects, as in Ultralytics) and its problems."""
    label = yolo_label_path(image)
    text = label.read_text(encoding="utf-8", errors="replace") if label.is_file() else ""
    rows, problems = parse_yolo_label(text, nc=nc, where=str(label))
    if not image.is_file():
        problems.insert(0, f"{image}: image file not found")
    boxes, polygons = [], []
    for _, coords in rows:
        if len(coords) == 4:
            cx, cy, w, h = coords
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            polygons.append(None)
        else:
            pts = np.asarray(coords, dtype=np.float32).reshape(-1, 2)
            boxes.append([*pts.min(0), *pts.max(0)])
            polygons.append([pts])
    has_polys = bool(rows) and all(p is not None for p in polygons)
    item = DetItem(
        image=image,
        boxes=np.clip(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), 0, 1),
        classes=np.asarray([c for c, _ in rows], dtype=np.int64),
        polygons=tuple(p for p in polygons if p is not None) if has_polys else None,
    )
    return item, problems


def _load_yolo_yaml(path: Path) -> DetectionData:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a data.yaml must be a mapping with train:, val: and names: keys.")
    names = _yolo_names(raw, path)
    root = Path(str(raw.get("path") or "."))
    root = root if root.is_absolute() else (path.parent / root)
    if not raw.get("train"):
        raise UsageError(f"{path}: no 'train:' entry (a folder of images, a .txt list, or a list of them).")
    train = _images_of(raw["train"], root, path, "train")
    val = _images_of(raw["val"], root, path, "val") if raw.get("val") else None
    return DetectionData(
        source=path, kind="yolo", names=names, train=tuple(train), val=tuple(val) if val else None
    )


def _yolo_names(raw: dict[str, Any], path: Path) -> tuple[str, ...]:
    names = raw.get("names")
    if isinstance(names, dict):
        ids = sorted(int(k) for k in names)
        if ids != list(range(len(ids))):
            raise UsageError(
                f"{path}: names: ids must run 0..{len(ids) - 1} without gaps, got {ids[:8]}...",
                hint="YOLO labels use contiguous class ids; renumber the names and the label files.",
            )
        return tuple(str(names[k]) for k in sorted(names, key=int))
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    if isinstance(raw.get("nc"), int) and raw["nc"] > 0:
        return tuple(f"class{i}" for i in range(raw["nc"]))
    raise UsageError(f"{path}: no 'names:' (a list, or a mapping id: name) and no 'nc:'.")


def _images_of(entry: Any, root: Path, yaml_path: Path, key: str) -> list[Path]:
    """Images named by a data.yaml ``train:``/``val:`` entry: folders, .txt lists, or a list of both."""
    out: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        p = (root / str(item)).resolve()
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif p.is_file() and p.suffix == ".txt":
            out += _image_list(p)
        else:
            raise UsageError(
                f"{yaml_path}: {key}: {item} -> {p} does not exist.",
                hint=f"Relative paths resolve against the 'path:' entry ({root}). Remove the '{key}:' "
                "line to hold out a seeded part of train instead (--val-fraction)."
                if key == "val"
                else f"Relative paths resolve against the 'path:' entry ({root}).",
            )
    return out


def _image_list(txt: Path) -> list[Path]:
    """A .txt list of image paths (relative ones are relative to the list's folder, as in Ultralytics)."""
    lines = [ln.strip() for ln in txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [(txt.parent / ln).resolve() if not Path(ln).is_absolute() else Path(ln) for ln in lines]
