"""End-to-end time of ``densecnn run VIDEO --detect D --segment S`` (one decode, both models) next to
``densecnn detect VIDEO`` then ``densecnn segment VIDEO`` (two processes, two decodes), on the CPU.

Each side runs as subprocesses timed from start to exit (start-up, model loads, decode, inference,
outputs: annotated video and each task's files), alternated A B A B so machine noise hits both.

    .venv/bin/python bench/run_vs_commands.py                      # street video, first 60 frames
    .venv/bin/python bench/run_vs_commands.py --max-frames 200 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT / ".." / "shared" / "data" / "video" / "slow_traffic_small.mp4"


def _timed(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "densecnn", *args, "-q"], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--detect", default="person-yolov8n")
    parser.add_argument("--segment", default="person-unet")
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    ns = parser.parse_args()
    video, limit = str(ns.video.resolve()), ["--max-frames", str(ns.max_frames), "--device", "cpu"]
    together, apart = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for i in range(ns.repeats):
            together.append(
                _timed(
                    ["run", video, "--detect", ns.detect, "--segment", ns.segment, *limit, "--name", f"r{i}"],
                    cwd,
                )
            )
            t = _timed(["detect", video, "--model", ns.detect, *limit, "--name", f"d{i}"], cwd)
            t += _timed(["segment", video, "--model", ns.segment, *limit, "--name", f"s{i}"], cwd)
            apart.append(t)
            print(f"repeat {i + 1}: run {together[-1]:.1f} s, detect + segment {apart[-1]:.1f} s", flush=True)
        summary = json.loads((cwd / "runs" / "run" / "r0" / "summary.json").read_text())
    result = {
        "video": str(ns.video),
        "frames": summary["frames"],
        "run_s": round(statistics.median(together), 2),
        "detect_then_segment_s": round(statistics.median(apart), 2),
        "ratio": round(statistics.median(together) / statistics.median(apart), 3),
        "run_stage_ms_per_frame": summary["stage_ms_per_frame"],
    }
    print(json.dumps(result, indent=2))
    if ns.json:
        ns.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
