"""End-to-end FPS of ``densecnn detect`` next to Ultralytics' ``yolo predict``, same video, same weights.

Both tools run as real subprocesses (their console entry points in this interpreter's environment),
alternated A B A B ... so that machine noise hits both, each with its own fresh output folder under a
temporary directory. For each tool: median wall time of the whole process (start-up, model load,
decode, inference, drawing, writing, exit), frames processed and FPS = frames / wall; then the ratio
densecnn / yolo, and densecnn's own per-stage milliseconds from its ``summary.json``.

Ultralytics is kept offline (YOLO_OFFLINE=1, YOLO_AUTOINSTALL=false, a temporary YOLO_CONFIG_DIR).
Both children also get a ``sitecustomize`` audit hook (through PYTHONPATH) that records and refuses any
Python-level network call, so a download attempt shows up in the report instead of as a DNS timeout
inside the timing.

    .venv/bin/python bench/detect_fps.py                      # full video, repeats 2, saving on
    .venv/bin/python bench/detect_fps.py --frames-limit 120 --repeats 1 --json /tmp/fps.json
    .venv/bin/python bench/detect_fps.py --no-save            # densecnn --no-save vs yolo save=False
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    BASE_ENV,
    ROOT,
    child_env,
    find_exe,
    machine_info,
    run_timed,
    seeded_weights,
    wait_idle,
)

_YOLO_SPEED = re.compile(r"Speed: ([\d.]+)ms preprocess, ([\d.]+)ms inference, ([\d.]+)ms postprocess")
DEFAULT_SOURCE = ROOT / ".." / "shared" / "data" / "video" / "slow_traffic_small.mp4"
TOOLS = ("densecnn", "yolo")
STAGES = ("decode", "preprocess", "inference", "postprocess", "draw", "encode")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov"}


@dataclass
class Run:
    """One timed subprocess."""

    tool: str
    repeat: int
    cmd: list[str]
    rc: int = -1
    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    max_rss_mb: float = 0.0
    frames: int | None = None
    frames_from: str = ""
    run_dir: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=dict)
    pipeline_wall_s: float | None = None
    torch_threads: int | None = None
    other_cores: float = 0.0  # mean CPU use of everything else on the machine during the run
    steal_cores: float = 0.0
    load_avg: float = 0.0
    idle_wait_s: float = 0.0
    net_events: list[str] = field(default_factory=list)
    log: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.error

    @property
    def fps(self) -> float:
        return (self.frames or 0) / self.wall_s if self.wall_s > 0 else 0.0


# --------------------------------------------------------------------------------------------- video


def count_frames(path: Path) -> int:
    """Video packets of the first video stream (one per frame; no decoding)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def probe_video(path: Path) -> dict[str, Any]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        info = {
            "container": container.format.name,
            "codec": ctx.name,
            "width": int(ctx.width),
            "height": int(ctx.height),
            "fps": round(float(stream.average_rate or 0), 3),
            "audio": any(s.type == "audio" for s in container.streams),
        }
    info["frames"] = count_frames(path)
    return info


def make_clip(source: Path, dest: Path, limit: int) -> Path:
    """The first ``limit`` frames of ``source`` re-encoded as H.264 (CRF 18) at the same frame rate."""
    import av

    with av.open(str(source)) as inp:
        stream = inp.streams.video[0]
        rate = Fraction(stream.average_rate or 30).limit_denominator(100_000)
        with av.open(str(dest), "w") as out:
            enc = out.add_stream("libx264", rate=rate)
            enc.width, enc.height = stream.codec_context.width, stream.codec_context.height
            enc.pix_fmt = "yuv420p"
            enc.options = {"crf": "18", "preset": "veryfast"}
            for n, frame in enumerate(inp.decode(stream)):
                if n >= limit:
                    break
                new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                new.pts = n
                out.mux(enc.encode(new))
            out.mux(enc.encode(None))
    return dest


def describe_outputs(run_dir: Path) -> list[dict[str, Any]]:
    """Every file a run wrote: relative name, size and, for videos, container/codec/frames."""
    files = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()) if run_dir.is_dir() else []:
        entry: dict[str, Any] = {"file": str(path.relative_to(run_dir)), "bytes": path.stat().st_size}
        if path.suffix.lower() in VIDEO_SUFFIXES:
            try:
                entry.update(probe_video(path))
            except Exception as exc:  # a broken output is a finding, not a crash of the bench
                entry["probe_error"] = f"{type(exc).__name__}: {exc}"
        files.append(entry)
    return files


# ------------------------------------------------------------------------------------------ weights


# --------------------------------------------------------------------------------------- processes


def build_cmd(
    tool: str, *, exe: str, source: Path, weights: Path, args: argparse.Namespace, out: Path, name: str
) -> list[str]:
    if tool == "densecnn":
        return [
            exe, "detect", str(source), "--weights", str(weights),
            "--imgsz", str(args.imgsz), "--conf", str(args.conf), "--device", "cpu",
            "--vid-stride", str(args.vid_stride), "--out", str(out), "--name", name,
            "--no-save" if args.no_save else "--save",
        ]  # fmt: skip
    return [
        exe, "predict", f"model={weights}", f"source={source}",
        f"imgsz={args.imgsz}", f"conf={args.conf}", "device=cpu",
        f"save={not args.no_save}", f"verbose={args.yolo_verbose}", f"vid_stride={args.vid_stride}",
        f"project={out}", f"name={name}", "exist_ok=True",
    ]  # fmt: skip


def one_run(
    tool: str, repeat: int, *, exe: str, source: Path, weights: Path, args: argparse.Namespace, work: Path,
    env: dict[str, str], expected_frames: int,
) -> Run:  # fmt: skip
    out = work / "runs" / tool
    name = f"r{repeat}"
    cmd = build_cmd(tool, exe=exe, source=source, weights=weights, args=args, out=out, name=name)
    run = Run(tool, repeat, cmd)
    env = dict(env)
    if tool == "densecnn" and args.densecnn_threads:
        env["OMP_NUM_THREADS"] = str(args.densecnn_threads)
    if args.wait_idle > 0:
        t0 = time.monotonic()
        load = wait_idle(args.wait_idle)
        run.idle_wait_s = time.monotonic() - t0
        if load >= 0.25:
            log(
                f"  still busy ({load:.2f} cores used by others) after {args.wait_idle:.0f} s: running anyway"
            )
    timed = run_timed(cmd, label=tool, env=env, log_path=work / f"{tool}_{name}.log", timeout=args.timeout)
    rc = run.rc = timed.rc
    run.wall_s, run.user_s, run.sys_s = timed.wall_s, timed.user_s, timed.sys_s
    run.max_rss_mb = timed.max_rss_mb
    run.other_cores, run.steal_cores, run.load_avg = timed.other_cores, timed.steal_cores, timed.load_avg
    run.log, run.net_events, run.torch_threads = timed.log, timed.net_events, timed.torch_threads
    run_dir = out / name  # a fresh name per run: neither tool numbers it (name2, ...)
    run.run_dir = str(run_dir)
    run.outputs = describe_outputs(run_dir)
    if rc != 0:
        run.error = f"exit code {rc}: " + " | ".join(run.log.strip().splitlines()[-6:])
        return run
    if tool == "densecnn":
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            run.error = f"no {summary_path}"
            return run
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        run.frames, run.frames_from = int(summary["frames"]), "summary.json"
        run.stage_ms = {k: float(v) for k, v in summary.get("stage_ms_per_frame", {}).items()}
        run.pipeline_wall_s = float(summary["wall_s"]) if "wall_s" in summary else None
        # densecnn's thread plan while it ran (the probe at exit sees the count restored after it)
        run.torch_threads = summary.get("threads", {}).get("torch", run.torch_threads)
        return run
    videos = [o for o in run.outputs if "frames" in o]
    if videos:
        run.frames, run.frames_from = sum(int(v["frames"]) for v in videos), "frames in its saved video"
    else:  # save=False: Ultralytics' loader grabs vid_stride frames and keeps the last of each group
        run.frames, run.frames_from = expected_frames, "computed: source frames // vid_stride"
    speed = _YOLO_SPEED.search(run.log)  # only with --yolo-verbose
    if speed:
        run.stage_ms = dict(
            zip(("preprocess", "inference", "postprocess"), map(float, speed.groups()), strict=True)
        )
    return run


# ------------------------------------------------------------------------------------------- report


def summarize(runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in TOOLS:
        ok = [r for r in runs if r.tool == tool and r.ok]
        if not ok:
            out[tool] = {"ok_runs": 0}
            continue
        wall = statistics.median(r.wall_s for r in ok)
        frames = ok[0].frames or 0
        entry: dict[str, Any] = {
            "ok_runs": len(ok),
            "wall_s_median": round(wall, 3),
            "wall_s_all": [round(r.wall_s, 3) for r in ok],
            "frames": frames,
            "frames_all": [r.frames for r in ok],
            "frames_from": ok[0].frames_from,
            "fps": round(frames / wall, 3) if wall > 0 else 0.0,
            "cpu_util": round(statistics.median((r.user_s + r.sys_s) / r.wall_s for r in ok), 3),
            "max_rss_mb": round(max(r.max_rss_mb for r in ok), 1),
            "torch_threads": sorted({r.torch_threads for r in ok if r.torch_threads is not None}),
            "other_cores_all": [round(r.other_cores, 2) for r in ok],
            "steal_cores_all": [round(r.steal_cores, 2) for r in ok],
        }
        if all(r.stage_ms for r in ok):
            entry["stage_ms_median"] = {
                s: round(statistics.median(r.stage_ms[s] for r in ok), 3)
                for s in STAGES
                if s in ok[0].stage_ms
            }
        if tool == "densecnn":
            pipe = [r.pipeline_wall_s for r in ok if r.pipeline_wall_s is not None]
            if pipe:
                entry["pipeline_wall_s_median"] = round(statistics.median(pipe), 3)
                entry["pipeline_fps"] = round(frames / statistics.median(pipe), 3)
                entry["outside_pipeline_s"] = round(wall - statistics.median(pipe), 3)
        out[tool] = entry
    d, y = out["densecnn"], out["yolo"]
    if d.get("ok_runs") and y.get("ok_runs") and y["fps"]:
        out["ratio_fps_densecnn_over_yolo"] = round(d["fps"] / y["fps"], 3)
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def describe_written(outputs: list[dict[str, Any]]) -> str:
    parts = []
    for o in outputs:
        if "frames" in o:
            parts.append(
                f"{o['file']} ({o['container'].split(',')[0]} / {o['codec']}, {o['width']}x{o['height']}, "
                f"{o['frames']} frames @ {o['fps']:g} fps, {'with' if o['audio'] else 'no'} audio, "
                f"{_mb(o['bytes'])})"
            )
        else:
            parts.append(f"{o['file']} ({_mb(o['bytes'])})")
    return "; ".join(parts) or "nothing"


def print_report(result: dict[str, Any], runs: list[Run]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    s, cfg, mach = result["summary"], result["config"], result["machine"]
    console.print()
    clipped = f", first {cfg['frames_limit']} re-encoded H.264 CRF 18" if cfg["frames_limit"] else ""
    console.print(
        f"[bold]Video[/] {cfg['source']} ({cfg['source_frames']} frames{clipped}"
        + f"), vid_stride {cfg['vid_stride']}, imgsz {cfg['imgsz']}, conf {cfg['conf']}, device cpu, "
        f"saving {'OFF' if cfg['no_save'] else 'ON'}, {cfg['repeats']} repeats alternated"
    )
    console.print(f"[bold]Weights[/] {cfg['weights']} ({cfg['weights_note']})")
    console.print(
        f"[bold]Machine[/] {mach['cpu']}, {mach['cpus_usable']} usable CPUs, "
        f"torch {mach['versions']['torch']}, ultralytics {mach['versions']['ultralytics']}, "
        f"densecnn {mach['versions']['densecnn']}"
    )
    table = Table(title="End to end (whole process: start-up, model load, all frames, writing, exit)")
    for col, justify in (
        ("tool", "left"),
        ("runs ok", "right"),
        ("wall s (median)", "right"),
        ("all runs s", "right"),
        ("frames", "right"),
        ("FPS", "right"),
        ("torch threads", "right"),
        ("CPU cores used", "right"),
        ("peak RSS", "right"),
        ("others' load", "right"),
    ):
        table.add_column(col, justify=justify)
    for tool in TOOLS:
        e = s[tool]
        if not e.get("ok_runs"):
            table.add_row(tool, "0", "[red]failed[/]", "", "", "", "", "", "", "")
            continue
        table.add_row(
            tool,
            str(e["ok_runs"]),
            f"{e['wall_s_median']:.1f}",
            " ".join(f"{w:.1f}" for w in e["wall_s_all"]),
            str(e["frames"]),
            f"{e['fps']:.2f}",
            ",".join(map(str, e["torch_threads"])) or "?",
            f"{e['cpu_util']:.2f}",
            f"{e['max_rss_mb']:.0f} MB",
            " ".join(f"{c:.2f}" for c in e["other_cores_all"]),
        )
    console.print(table)
    ratio = s.get("ratio_fps_densecnn_over_yolo")
    if ratio is not None:
        verdict = "faster" if ratio > 1 else "slower"
        console.print(f"[bold]Ratio[/] densecnn / yolo FPS = [bold]{ratio:.3f}[/] (densecnn {verdict})")
    d = s["densecnn"]
    if d.get("ok_runs"):
        stages = Table(title="Per stage, ms per frame, median of runs (densecnn: summary.json)")
        stages.add_column("tool")
        for stage in STAGES:
            stages.add_column(stage, justify="right")
        for tool in TOOLS:
            ms = s[tool].get("stage_ms_median")
            if ms:
                stages.add_row(tool, *(f"{ms[st]:.1f}" if st in ms else "-" for st in STAGES))
        console.print(stages)
        if s["yolo"].get("stage_ms_median"):
            console.print(
                "  yolo: its own 'Speed:' line (verbose=True); its postprocess is NMS and Results, "
                "drawing and video writing are not timed by it."
            )
        console.print(
            "  Stages overlap (reader, predict and writer threads), so they need not add up to wall/frame. "
            + (
                f"Pipeline alone: {d['pipeline_wall_s_median']:.1f} s = {d['pipeline_fps']:.2f} FPS; "
                f"{d['outside_pipeline_s']:.1f} s of the process wall is start-up, model load and exit."
                if "pipeline_fps" in d
                else ""
            )
        )
    for tool in TOOLS:
        last = [r for r in runs if r.tool == tool and r.ok]
        if last:
            console.print(f"[bold]{tool} wrote[/] {describe_written(last[-1].outputs)}")
    nets = [ev for r in runs for ev in r.net_events]
    console.print(
        f"[bold]Network[/] {len(nets)} Python-level network attempts (any would be logged and refused)"
        + (": " + "; ".join(nets[:5]) if nets else "")
    )
    for r in runs:
        if not r.ok:
            console.print(f"[red]{r.tool} run {r.repeat} failed[/]: {r.error}")
    for note in result["notes"]:
        style = "red" if "not comparable" in note else "dim"
        console.print(f"- {note}", style=style, markup=False)


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="video file (default: %(default)s)")
    p.add_argument("--weights", type=Path, help="Ultralytics .pt (default: a seeded random-init yolov8n)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated weights")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per tool, alternated")
    p.add_argument("--vid-stride", type=int, default=1)
    p.add_argument("--frames-limit", type=int, default=0, help="only the first N frames (re-encoded clip)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--no-save", action="store_true", help="densecnn --no-save vs yolo save=False")
    p.add_argument(
        "--densecnn-threads",
        type=int,
        default=0,
        help="run densecnn with OMP_NUM_THREADS=N (default: its own default, torch's = CPU cores); "
        "Ultralytics always sets min(8, cores - 1) torch threads on CPU",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=60,
        help="before each run, wait up to this many seconds for the machine to be idle (0: don't)",
    )
    p.add_argument(
        "--yolo-verbose",
        action="store_true",
        help="run yolo with verbose=True (a log line per frame) to read its own per-stage ms",
    )
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed 8-frame run of each tool")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed")
    p.add_argument("--json", type=Path, help="write all figures here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, logs)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.vid_stride < 1 or args.frames_limit < 0:
        p.error("--repeats and --vid-stride must be >= 1, --frames-limit >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    source = args.source.resolve()
    if not source.is_file():
        sys.exit(f"error: video not found: {source}")
    work = Path(tempfile.mkdtemp(prefix="densecnn-fps-"))
    # Set before anything imports ultralytics in this process (the weight factory does).
    os.environ["YOLO_CONFIG_DIR"] = str(work / "yolo_config")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    try:
        return _bench(args, source, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def log(msg: str) -> None:
    print(msg, flush=True)


def _bench(args: argparse.Namespace, source: Path, work: Path) -> int:
    notes = []
    if args.weights:
        weights = args.weights.resolve()
        if not weights.is_file():  # yolo would try to download it (api.github.com), even offline
            sys.exit(f"error: weights not found: {weights}")
        weights_note = "given with --weights"
    else:
        log(f"making weights: yolov8n.yaml, seeded random init (seed {args.seed}) ...")
        weights = seeded_weights("yolov8n", work / "yolov8n_seeded.pt", seed=args.seed)
        weights_note = (
            f"yolov8n.yaml with seeded random init (tests/_factories.py, seed {args.seed}): no official "
            "weights here, but the same architecture and compute as yolov8n (3.2 M params, 8.7 GFLOPs), so "
            "timings are representative; the detections are meaningless and their count (NMS and drawing "
            "work) differs from a trained model's"
        )
    video = source
    if args.frames_limit:
        log(f"cutting the first {args.frames_limit} frames ...")
        video = make_clip(source, work / source.name, args.frames_limit)
    source_frames = count_frames(video)
    expected = {
        "densecnn": math.ceil(source_frames / args.vid_stride),  # keeps frames 0, s, 2s, ...
        "yolo": source_frames // args.vid_stride,  # grabs s frames, keeps the last of each group
    }
    env = child_env(work)
    exes = {tool: find_exe(tool) for tool in TOOLS}
    common = {"weights": weights, "args": args, "work": work, "env": env}

    if not args.no_warmup:
        warm_clip = make_clip(source, work / f"warmup{source.suffix}", 8)
        for tool in TOOLS:
            log(f"warm-up (untimed, 8 frames): {tool} ...")
            warm = one_run(tool, 0, exe=exes[tool], source=warm_clip, expected_frames=8, **common)
            if not warm.ok:
                log(f"  warm-up of {tool} failed: {warm.error}")
            if warm.net_events:
                log(f"  network attempts: {warm.net_events}")

    runs: list[Run] = []
    total = len(TOOLS) * args.repeats
    for repeat in range(1, args.repeats + 1):
        for tool in TOOLS:
            log(f"[{len(runs) + 1}/{total}] {tool} run {repeat} ...")
            run = one_run(
                tool, repeat, exe=exes[tool], source=video, expected_frames=expected[tool], **common
            )
            runs.append(run)
            if run.ok:
                log(f"  {run.wall_s:.1f} s, {run.frames} frames, {run.fps:.2f} FPS")
            else:
                log(f"  FAILED: {run.error}")
    summary = summarize(runs)

    for tool in TOOLS:
        got = summary[tool].get("frames_all") or []
        if any(f != expected[tool] for f in got):
            notes.append(f"{tool} processed {got} frames, expected {expected[tool]}")
    d_frames, y_frames = summary["densecnn"].get("frames"), summary["yolo"].get("frames")
    if d_frames and y_frames and d_frames != y_frames:
        notes.append(
            "the tools processed different frame counts (vid_stride: densecnn keeps frames 0, s, 2s...; "
            "Ultralytics keeps s-1, 2s-1...): FPS compares rates, not totals"
        )
    d_thr, y_thr = summary["densecnn"].get("torch_threads"), summary["yolo"].get("torch_threads")
    if d_thr and y_thr and d_thr != y_thr:
        notes.append(
            f"torch threads differ: densecnn {d_thr} (its thread plan: one per core on 2 cores with the "
            "model on torch, 1 beside OpenVINO / ONNX Runtime, whose own threads run the model"
            + (f"; OMP_NUM_THREADS={args.densecnn_threads}" if args.densecnn_threads else "")
            + f") vs yolo {y_thr} (Ultralytics' select_device sets min(8, cores - 1) on CPU); "
            "--densecnn-threads N compares at equal threads"
        )
    busy = [f"{r.tool} #{r.repeat} ({r.other_cores:.2f})" for r in runs if r.ok and r.other_cores > 0.25]
    if busy:
        notes.append(
            "the machine was busy during " + ", ".join(busy) + " (cores used by other processes): "
            "those timings are not comparable; run again on a quiet machine"
        )
    if "OMP_NUM_THREADS" in BASE_ENV:
        notes.append(
            f"OMP_NUM_THREADS={BASE_ENV['OMP_NUM_THREADS']} was set in the environment both inherited"
        )
    if args.no_save:
        notes.append(
            "--no-save: yolo save=False writes nothing; densecnn --no-save still writes predictions.jsonl "
            "and summary.json"
        )
    else:
        notes.append(
            "saving ON: densecnn draws and encodes H.264 (libx264) into fragmented MP4 through PyAV; "
            "Ultralytics on Linux writes MJPG into AVI through cv2.VideoWriter (cheaper per frame, bigger)"
        )
    notes.append(
        "children ran with output to a file (no terminal): densecnn's progress bar does not redraw live"
    )

    result = {
        "config": {
            "source": str(source),
            "frames_limit": args.frames_limit,
            "source_frames": source_frames,
            "weights": str(weights) if args.weights else "generated",
            "weights_note": weights_note,
            "repeats": args.repeats,
            "vid_stride": args.vid_stride,
            "imgsz": args.imgsz,
            "conf": args.conf,
            "no_save": args.no_save,
            "warmup": not args.no_warmup,
            "order": [f"{r.tool}#{r.repeat}" for r in runs],
            "commands": {tool: next((r.cmd for r in runs if r.tool == tool), []) for tool in TOOLS},
            "env": {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": "<temp>"},
        },
        "machine": machine_info(),
        "summary": summary,
        "runs": [{k: v for k, v in asdict(r).items() if k != "log"} for r in runs],
        "notes": notes,
    }
    print_report(result, runs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
