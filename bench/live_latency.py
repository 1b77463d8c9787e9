"""Live latency: densecnn detect on a real-time stream served on loopback.

ffmpeg serves the street video as MPEG-TS over HTTP at real time (looping); ``densecnn detect URL``
runs on it for ``--seconds`` in its default ``latest`` stream mode, as a real subprocess. The script
reports what densecnn's summary.json measured: capture-to-written latency p50 / p95 / max, processed
FPS, dropped frames, reconnects, ms per stage, plus the CPU others used meanwhile (shared machine).

    .venv/bin/python bench/live_latency.py                       # seeded yolov8n, imgsz 320, 20 s
    .venv/bin/python bench/live_latency.py --weights yolov8n.pt --seconds 60 --json live.json
    .venv/bin/python bench/live_latency.py --no-save             # without the H.264 recording
    .venv/bin/python bench/live_latency.py --threads 1           # one torch thread (busy machines)

Without ``--weights`` a seeded random yolov8n is made (tests/_factories.py): the same network and
cost as the trained one, offline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DATA, child_env, find_exe, run_timed, seeded_weights

VIDEO = DATA / "video" / "slow_traffic_small.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(video: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    url = f"http://127.0.0.1:{port}/live.ts"
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("ffmpeg not found: make sysdeps installs it")
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video)]
    proc = subprocess.Popen([*cmd, "-an", "-c:v", "copy", "-f", "mpegts", "-listen", "1", url])
    time.sleep(0.5)
    return proc, url


def run(args: argparse.Namespace, work: Path) -> dict:
    weights = args.weights or seeded_weights("yolov8n", work / "seeded-yolov8n.pt")
    server, url = _serve(args.video, _free_port())
    cmd = [find_exe("densecnn"), "detect", url, "-w", str(weights), "--imgsz", str(args.imgsz)]
    cmd += ["--device", "cpu", "--duration", str(args.seconds), "--out", str(work / "runs"), "--quiet"]
    if args.no_save:
        cmd.append("--no-save")
    env = child_env(work, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    try:
        timed = run_timed(
            cmd, label="densecnn", env=env, log_path=work / "densecnn.log", timeout=args.seconds + 300
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    if not timed.ok:
        sys.exit(f"densecnn failed ({timed.rc}):\n{timed.log}")
    run_dir = Path(timed.log.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "video": str(args.video),
        "weights": str(weights),
        "imgsz": args.imgsz,
        "seconds": args.seconds,
        "save": not args.no_save,
        "threads": args.threads or "default",
        "stream_mode": summary["stream_mode"],
        "frames": summary["frames"],
        "fps": summary["fps"],
        "dropped_frames": summary["dropped_frames"],
        "reconnects": summary["reconnects"],
        "latency_ms": summary["latency_ms"],
        "stage_ms_per_frame": summary["stage_ms_per_frame"],
        # cores the rest of the machine (ffmpeg's server included) kept busy meanwhile
        "other_cores": round(timed.other_cores, 2),
        "load_avg": round(timed.load_avg, 2),
        # densecnn's CPU time and peak RSS for its whole process (start-up and model load included)
        "densecnn_cpu_s": round(timed.cpu_s, 2),
        "densecnn_max_rss_mb": round(timed.max_rss_mb, 1),
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--weights", type=Path, default=None, help="default: a seeded yolov8n")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for densecnn")
    parser.add_argument("--no-save", action="store_true", help="no H.264 recording (JSONL only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="densecnn-live-bench-") as tmp:
        result = run(args, Path(tmp))
    lat = result["latency_ms"] or {}
    print(
        f"latency p50 {lat.get('p50')} ms  p95 {lat.get('p95')} ms  max {lat.get('max')} ms | "
        f"{result['fps']:.1f} FPS processed, {result['frames']} frames, {result['dropped_frames']} dropped, "
        f"{result['reconnects']} reconnects | others kept {result['other_cores']} of {result['cores']} "
        f"cores busy, densecnn's process {result['densecnn_cpu_s']} CPU s, {result['densecnn_max_rss_mb']} MB"
    )
    print("ms per frame:", result["stage_ms_per_frame"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
