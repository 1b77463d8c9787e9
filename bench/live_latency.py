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
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "video" / "slow_traffic_small.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_busy_s() -> tuple[float, float]:
    """(busy seconds of all cores, wall clock) from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK"), time.monotonic()


def _seeded_weights(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from _factories import make_yolo_checkpoint

    return make_yolo_checkpoint(folder / "seeded-yolov8n.pt")


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
    weights = args.weights or _seeded_weights(work)
    server, url = _serve(args.video, _free_port())
    cmd = [sys.executable, "-m", "densecnn", "detect", url, "-w", str(weights), "--imgsz", str(args.imgsz)]
    cmd += ["--device", "cpu", "--duration", str(args.seconds), "--out", str(work / "runs"), "--quiet"]
    if args.no_save:
        cmd.append("--no-save")
    env = {**os.environ, "DENSECNN_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if args.threads:  # torch's intra-op threads (default: one per core)
        env["OMP_NUM_THREADS"] = str(args.threads)
    busy0, t0 = _cpu_busy_s()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.seconds + 300)
        own1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # densecnn only: the server is not reaped yet
    finally:
        server.terminate()
        server.wait(timeout=10)
    busy1, t1 = _cpu_busy_s()
    if proc.returncode != 0:
        sys.exit(f"densecnn failed ({proc.returncode}):\n{proc.stderr}")
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
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
        "machine_cores_busy": round((busy1 - busy0) / (t1 - t0), 2),
        # densecnn's CPU time for its whole process (start-up and model load included)
        "densecnn_cpu_s": round(own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime, 2),
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
        f"{result['reconnects']} reconnects | whole machine {result['machine_cores_busy']} of "
        f"{result['cores']} cores busy, densecnn's process {result['densecnn_cpu_s']} CPU s"
    )
    print("ms per frame:", result["stage_ms_per_frame"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
