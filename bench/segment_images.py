"""Images per second of ``densecnn segment`` with a YOLO -seg model next to a plain Python loop of
Ultralytics' ``YOLO(pt).predict`` over the same images, same weights, both on CPU.

Each side runs as a subprocess timed from start to exit (interpreter start-up, model load, decode,
inference, and for densecnn its outputs: label-map PNGs, RLE JSONL, COCO json, overlays unless
``--no-save-overlay``), alternated A B A B so machine noise hits both. The Ultralytics loop calls
``predict(path, retina_masks=True)`` per image (the masks densecnn makes) and writes nothing. Both get
the same ``OMP_NUM_THREADS`` (Ultralytics sets 1 when it is unset).

    .venv/bin/python bench/segment_images.py --weights tiny-yolov8n-seg.pt
    .venv/bin/python bench/segment_images.py --weights w.pt --source ../shared/data/coco128/images/train2017
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / ".." / "shared" / "data" / "coco128" / "images" / "train2017"
_LOOP = """
import sys, pathlib
from densecnn.integrations.ultralytics import import_ultralytics
import_ultralytics()
from ultralytics import YOLO
model = YOLO(sys.argv[1])
paths = sorted(p for p in pathlib.Path(sys.argv[2]).rglob("*") if p.suffix.lower() in {".jpg", ".png"})
for p in paths:
    model.predict(str(p), retina_masks=True, verbose=False, device="cpu")
print(len(paths))
"""


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default=str(os.cpu_count() or 1))
    ap.add_argument("--no-save-overlay", action="store_true")
    args = ap.parse_args()
    images = [p for p in args.source.rglob("*") if p.suffix.lower() in {".jpg", ".png"}]
    env = {**os.environ, "OMP_NUM_THREADS": args.threads, "DENSECNN_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    times: dict[str, list[float]] = {"densecnn": [], "ultralytics": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            cmd = [sys.executable, "-m", "densecnn", "segment", str(args.source.resolve()), "--weights",
                   str(args.weights.resolve()), "--device", "cpu", "--quiet", "--name", f"r{i}"]  # fmt: skip
            if args.no_save_overlay:
                cmd.append("--no-save-overlay")
            times["densecnn"].append(_timed(cmd, env, Path(tmp)))
            loop = [sys.executable, "-c", _LOOP, str(args.weights.resolve()), str(args.source.resolve())]
            times["ultralytics"].append(_timed(loop, env, Path(tmp)))
    report = {
        tool: {
            "wall_s": round(statistics.median(t), 2),
            "images_per_s": round(len(images) / statistics.median(t), 2),
        }
        for tool, t in times.items()
    }
    speeds = [len(images) / statistics.median(times[tool]) for tool in ("densecnn", "ultralytics")]
    report["ratio_densecnn_over_ultralytics"] = round(speeds[0] / speeds[1], 3)
    report["images"], report["runs"] = len(images), times
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
