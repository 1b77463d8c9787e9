"""Recall of small people with and without ``--tile``: the embedded person detector on large images
made of held-out Penn-Fudan photos shrunk into a mosaic (``tools/embedded_data.small_people_mosaic``).

For each setting: persons found at IoU >= 0.5 (one-to-one) out of all persons, detections kept,
seconds per image (CPU, this machine).

    .venv/bin/python bench/tile_recall.py                        # 4x4 mosaic (1280x960), 320-px cells
    .venv/bin/python bench/tile_recall.py --grid 6 --cell 240 180
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import embedded_data  # noqa: E402 - tools/ is not a package

import densecnn  # noqa: E402
from densecnn.config import TileConfig  # noqa: E402
from densecnn.results import Frame  # noqa: E402

SETTINGS: list[tuple[str, TileConfig | None]] = [
    ("whole frame", None),
    ("--tile 320", TileConfig(320)),
    ("--tile 320 --tile-full", TileConfig(320, full=True)),
    ("--tile 256", TileConfig(256)),
    ("--tile 320 --tile-merge nms", TileConfig(320, merge="nms")),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--cell", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    ns = parser.parse_args()
    image, truth = embedded_data.small_people_mosaic(ns.data, grid=ns.grid, cell=tuple(ns.cell))
    median = sorted(truth[:, 3] - truth[:, 1])[len(truth) // 2]
    print(f"mosaic {image.shape[1]}x{image.shape[0]}, {len(truth)} persons, median height {median:.0f} px")
    print(f"{'setting':<30} {'recall@0.5':>10} {'detections':>10} {'s/image':>8}")
    frame = Frame(image, "mosaic.png", "mosaic.png")
    for label, tile in SETTINGS:
        predictor = densecnn.load("person-yolov8n", device="cpu", tile=tile)
        predictor.warmup(frame)
        t0 = time.perf_counter()
        result = predictor.predict([frame])[0]
        seconds = time.perf_counter() - t0
        recall = embedded_data.recall_at(truth, result.boxes)
        print(f"{label:<30} {recall:>10.3f} {len(result):>10} {seconds:>8.2f}")


if __name__ == "__main__":
    main()
