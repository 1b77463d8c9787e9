"""RSS of ``densecnn detect`` over a long video: does memory stay flat?

Runs ``densecnn detect VIDEO`` (its defaults: batching, H.264 and JSONL writing) as a subprocess and
samples its resident set size (``VmRSS`` in /proc) every half second. Reports the RSS once the run
is warm (after ``--settle`` of the frames), at the end, the peak, and the growth between the two
(the target: under 50 MB over 10,000 frames). A long input: loop the street video with ffmpeg,

    ffmpeg -stream_loop 10 -i ../shared/data/video/slow_traffic_small.mp4 -an -c copy /tmp/looped.mp4
    .venv/bin/python bench/memory_growth.py /tmp/looped.mp4 --imgsz 320 --json mem.json

Progress is read from the run's predictions.jsonl (one line per frame) as it grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_env, find_exe, machine_info, seeded_weights


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--weights", type=Path, help="default: a seeded yolov8n")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--settle", type=float, default=0.1, help="fraction of frames before the baseline")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="densecnn-mem-") as tmp:
        work = Path(tmp)
        weights = args.weights or seeded_weights("yolov8n", work / "seeded-yolov8n.pt")
        cmd = [find_exe("densecnn"), "detect", str(args.video.resolve()), "-w", str(weights)]
        cmd += ["--imgsz", str(args.imgsz), "--device", "cpu", "--quiet", "--out", str(work), "--name", "run"]
        env = child_env(work)
        samples: list[tuple[float, int, float]] = []  # (seconds, frames written, RSS MB)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        jsonl = work / "run" / "predictions.jsonl"
        while proc.poll() is None:
            rss = _rss_mb(proc.pid)
            if rss is not None:
                samples.append((time.monotonic() - t0, _lines(jsonl), rss))
            time.sleep(args.interval)
        output = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0:
            sys.exit(f"densecnn failed ({proc.returncode}):\n{output[-3000:]}")
        summary = json.loads((work / "run" / "summary.json").read_text())
    frames = summary["frames"]
    settled = [s for s in samples if s[1] >= args.settle * frames] or samples
    baseline, end = settled[0], settled[-1]
    result = {
        "video": str(args.video),
        "frames": frames,
        "imgsz": args.imgsz,
        "batch": summary.get("batch"),
        "fps": summary["fps"],
        "rss_mb_at_settle": round(baseline[2], 1),
        "frames_at_settle": baseline[1],
        "rss_mb_at_end": round(end[2], 1),
        "frames_at_end": end[1],
        "rss_mb_peak": round(max(s[2] for s in samples), 1),
        "growth_mb": round(end[2] - baseline[2], 1),
        "growth_mb_max_after_settle": round(max(s[2] for s in settled) - baseline[2], 1),
        "samples": [[round(t, 1), n, round(r, 1)] for t, n, r in samples[:: max(1, len(samples) // 200)]],
        "machine": machine_info(),
        "pid_cpu_count": os.cpu_count(),
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "machine")}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
