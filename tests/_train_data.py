"""Small training sets made from ../shared/data/pennfudan in a temp folder (links, or crops and
derived masks written there; nothing is copied into the repo)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
from _cli import run_in_process
from PIL import Image

PENNFUDAN_NAMES = "background,person"


def pennfudan_subset(src: Path, dst: Path, n: int) -> Path:
    """``dst/images`` + ``dst/masks`` linking the first ``n`` Penn-Fudan photos and their masks."""
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir()
    for image in sorted((src / "images").glob("*.png"))[:n]:
        (dst / "images" / image.name).symlink_to(image)
        mask = src / "masks" / f"{image.stem}_mask.png"
        (dst / "masks" / mask.name).symlink_to(mask)
    return dst


def person_crops(src: Path, dst: Path, *, n_images: int, size: int = 96, seed: int = 0) -> Path:
    """An ImageFolder ``dst/person`` / ``dst/background``: one crop per pedestrian (its mask's
    bounding box) and, for each, a same-sized window of the same photo holding no pedestrian pixel."""
    rng = np.random.default_rng(seed)
    for cls in ("person", "background"):
        (dst / cls).mkdir(parents=True)
    for image_path in sorted((src / "images").glob("*.png"))[:n_images]:
        image = Image.open(image_path).convert("RGB")
        mask = np.asarray(Image.open(src / "masks" / f"{image_path.stem}_mask.png"))
        for pid in (int(v) for v in np.unique(mask) if v != 0):
            ys, xs = np.nonzero(mask == pid)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            name = f"{image_path.stem}_{pid}.jpg"
            image.crop(box).resize((size, size * 2)).save(dst / "person" / name, quality=92)
            bg = _empty_window(mask, box[2] - box[0], box[3] - box[1], rng)
            if bg is not None:
                image.crop(bg).resize((size, size * 2)).save(dst / "background" / name, quality=92)
    return dst


def _empty_window(mask: np.ndarray, w: int, h: int, rng: np.random.Generator) -> tuple[int, ...] | None:
    """A ``w x h`` window (shrunk up to 2x if needed) with no pedestrian pixel, or None."""
    height, width = mask.shape
    for scale in (1.0, 0.75, 0.5):
        ww, hh = max(16, int(w * scale)), max(16, int(h * scale))
        if ww >= width or hh >= height:
            continue
        for _ in range(60):
            x, y = int(rng.integers(0, width - ww)), int(rng.integers(0, height - hh))
            if not mask[y : y + hh, x : x + ww].any():
                return (x, y, x + ww, y + hh)
    return None


def densecnn(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``densecnn ARGS`` in ``cwd`` for module-scoped training runs (``run_cli`` is per test), in this
    process as ``run_cli`` runs it: offline, empty weight cache, one torch thread (what
    ``OMP_NUM_THREADS=1`` gave the child process this used to start: the CI machines are shared, and
    two threads spin-waiting on a busy machine train several times slower than one)."""
    env = {"DENSECNN_WEIGHTS_DIR": str(cwd / "_weights"), "DENSECNN_OFFLINE": "1", "COLUMNS": "160"}
    return run_in_process(args, cwd=cwd, env=env, timeout=timeout, threads=1)


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
