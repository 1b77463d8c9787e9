"""COCO JSON detection datasets (``images`` / ``annotations`` / ``categories``).

Category ids map to contiguous class ids ``0..K-1`` in ascending id order. Image files are found
relative to the JSON's folder, its ``images/`` subfolder, or a sibling ``images/`` folder. Problems
name the JSON file and the entry (``annotations[12] (id 345)``), or the line for a syntax error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from densecnn.data.detection import DetectionData, DetItem
from densecnn.errors import UsageError

_MAX_SHOWN = 10


def load_coco_json(path: Path) -> DetectionData:
    """A COCO JSON as DetectionData (no val split: train/eval make the seeded one)."""
    data, problems = parse_coco_json(path)
    if problems or data is None:
        shown = "\n".join(problems[:_MAX_SHOWN])
        more = f"\n... and {len(problems) - _MAX_SHOWN} more" if len(problems) > _MAX_SHOWN else ""
        raise UsageError(
            f"{len(problems)} problem(s) in {path}:\n{shown}{more}",
            hint=f"`densecnn data check {path}` lists them all.",
        )
    return data


def parse_coco_json(path: Path) -> tuple[DetectionData | None, list[str]]:
    """``(data, problems)``; data is None when the file cannot be used at all."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{path}: no such file"]
    except json.JSONDecodeError as exc:
        return None, [f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})"]
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) for k in ("images", "categories")):
        return None, [f"{path}: a COCO JSON needs 'images' and 'categories' lists (and 'annotations')"]
    problems: list[str] = []
    cats = _categories(raw["categories"], path, problems)
    images = _images(raw["images"], path, problems)
    by_image = _annotations(raw.get("annotations") or [], path, images, cats, problems)
    if problems:
        return None, problems
    names = tuple(name for _, name in sorted(cats.values()))
    items = {}
    for image_id, (file, w, h) in images.items():
        items[file] = _item(file, w, h, by_image.get(image_id, []), cats)
    data = DetectionData(
        source=Path(path),
        kind="coco",
        names=names,
        train=tuple(sorted(items, key=str)),
        val=None,
        coco_items=items,
    )
    return data, []


def _categories(entries: list[Any], path: Path, problems: list[str]) -> dict[int, tuple[int, str]]:
    """category id → (contiguous class id, name)."""
    found: dict[int, str] = {}
    for i, c in enumerate(entries):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            problems.append(f"{path}: categories[{i}]: needs an integer 'id' and a 'name'")
        elif c["id"] in found:
            problems.append(f"{path}: categories[{i}]: id {c['id']} appears twice")
        else:
            found[c["id"]] = str(c["name"])
    return {cid: (k, found[cid]) for k, cid in enumerate(sorted(found))}


def _images(entries: list[Any], path: Path, problems: list[str]) -> dict[int, tuple[Path, int, int]]:
    """image id → (image file, width, height)."""
    out: dict[int, tuple[Path, int, int]] = {}
    root: Path | None = None
    for i, im in enumerate(entries):
        ok = isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str)
        if not ok or not all(isinstance(im.get(k), int) and im[k] > 0 for k in ("width", "height")):
            problems.append(f"{path}: images[{i}]: needs an integer 'id', 'file_name', 'width' and 'height'")
            continue
        if im["id"] in out:
            problems.append(f"{path}: images[{i}]: id {im['id']} appears twice")
            continue
        root = root or _image_root(path, im["file_name"])
        file = (root or path.parent) / im["file_name"]
        if not file.is_file():
            problems.append(f"{path}: images[{i}] (id {im['id']}): image file {file} not found")
        out[im["id"]] = (file.resolve(), im["width"], im["height"])
    return out


def _image_root(path: Path, file_name: str) -> Path | None:
    for root in (path.parent, path.parent / "images", path.parent.parent / "images"):
        if (root / file_name).is_file():
            return root
    return None


def _annotations(
    entries: list[Any],
    path: Path,
    images: dict[int, tuple[Path, int, int]],
    cats: dict[int, tuple[int, str]],
    problems: list[str],
) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {}
    for i, a in enumerate(entries):
        where = f"{path}: annotations[{i}]" + (f" (id {a.get('id')})" if isinstance(a, dict) else "")
        problem = _annotation_problem(a, images, cats)
        if problem:
            problems.append(f"{where}: {problem}")
        else:
            by_image.setdefault(a["image_id"], []).append(a)
    return by_image


def _annotation_problem(
    a: Any, images: dict[int, tuple[Path, int, int]], cats: dict[int, tuple[int, str]]
) -> str | None:
    if not isinstance(a, dict):
        return "not an object"
    if a.get("image_id") not in images:
        return f"image_id {a.get('image_id')!r} is not in 'images'"
    if a.get("category_id") not in cats:
        return f"category_id {a.get('category_id')!r} is not in 'categories'"
    box = a.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
        return "bbox must be [x, y, width, height] in pixels"
    _, w, h = images[a["image_id"]]
    x, y, bw, bh = box
    if bw <= 0 or bh <= 0:
        return f"bbox width and height must be positive, got {bw} x {bh}"
    if x < -1 or y < -1 or x + bw > w + 1 or y + bh > h + 1:
        return f"bbox {box} lies outside the {w}x{h} image"
    return None


def _item(
    file: Path, w: int, h: int, anns: list[dict[str, Any]], cats: dict[int, tuple[int, str]]
) -> DetItem:
    scale = np.array([w, h, w, h], dtype=np.float32)
    boxes = [[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in anns)]
    polys: list[list[np.ndarray]] = []
    for a in anns:
        seg = a.get("segmentation")
        if isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 for p in seg):
            polys.append([np.asarray(p, dtype=np.float32).reshape(-1, 2) / scale[:2] for p in seg])
    return DetItem(
        image=file,
        boxes=np.clip(np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / scale, 0, 1),
        classes=np.asarray([cats[a["category_id"]][0] for a in anns], dtype=np.int64),
        polygons=tuple(polys) if anns and len(polys) == len(anns) else None,
        crowd=np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
    )
