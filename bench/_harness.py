"""The one timing harness of the bench/ scripts: offline child environments, whole-process timed runs
(wall, CPU seconds and peak RSS from ``wait4``, the load the rest of the machine put on it), machine
facts, seeded weights, and the A B A B alternation that lets machine noise hit every tool alike.

Every script here compares densecnn with a peer by running both as real subprocesses, so start-up,
imports, model load, every frame, writing and exit all count.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
NET_LOG_ENV = "DENSECNN_BENCH_NET_LOG"
PROBE_ENV = "DENSECNN_BENCH_PROBE"
# The environment children inherit, taken before this process imports anything heavy: importing
# ultralytics sets OMP_NUM_THREADS=1 when it is unset, which children would otherwise inherit.
BASE_ENV = dict(os.environ)

# Installed in every child through PYTHONPATH. Any Python-level attempt to reach the network is
# written to $DENSECNN_BENCH_NET_LOG and refused at once (an offline machine could otherwise spend
# seconds in a DNS timeout inside the timed run). At exit it writes the torch thread count the process
# ended with to $DENSECNN_BENCH_PROBE.
_SITECUSTOMIZE = """\
import atexit
import os
import sys

_LOG = os.environ.get("DENSECNN_BENCH_NET_LOG")
_NET = {
    "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
    "socket.sendto", "socket.sendmsg", "http.client.connect", "urllib.Request",
}


def _hook(event, args):
    if event not in _NET or not _LOG:
        return
    if event.startswith("socket.") and int(getattr(args[0], "family", -1)) == 1:  # AF_UNIX: local
        return
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()} {event} {args!r:.300}\\n")
    raise OSError(f"network access refused by the bench harness ({event})")


def _probe():
    path, torch = os.environ.get("DENSECNN_BENCH_PROBE"), sys.modules.get("torch")
    if path and torch is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(str(torch.get_num_threads()))


sys.addaudithook(_hook)
atexit.register(_probe)
"""


@dataclass
class Timed:
    """One whole-process run: exit code, wall, its own CPU seconds and peak RSS, and what the rest of
    the machine used meanwhile (cores busy with other processes, hypervisor steal)."""

    label: str
    cmd: list[str]
    rc: int = -1
    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    max_rss_mb: float = 0.0
    other_cores: float = 0.0
    steal_cores: float = 0.0
    load_avg: float = 0.0  # 1-minute load average at the end of the run
    torch_threads: int | None = None
    net_events: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "cmd": self.cmd,
            "rc": self.rc,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 2),
            "max_rss_mb": round(self.max_rss_mb, 1),
            "other_cores": round(self.other_cores, 2),
            "steal_cores": round(self.steal_cores, 2),
            "load_avg": round(self.load_avg, 2),
            "torch_threads": self.torch_threads,
            "net_events": self.net_events,
        }


def child_env(work: Path, **extra: str) -> dict[str, str]:
    """The environment of every child: offline Ultralytics and densecnn, the network hook, ``extra``."""
    hook_dir = work / "hook"
    hook_dir.mkdir(parents=True, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    env = dict(BASE_ENV)
    env.update(
        YOLO_OFFLINE="1",
        YOLO_AUTOINSTALL="false",
        YOLO_CONFIG_DIR=str(work / "yolo_config"),
        DENSECNN_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(hook_dir), str(ROOT), env.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def machine_cpu_s() -> tuple[float, float]:
    """CPU-seconds the whole machine has spent busy, and stolen by the hypervisor, since boot."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan, math.nan
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal ...; guest time is already counted in user
    return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / hz, (
        ticks[7] if len(ticks) > 7 else 0
    ) / hz


def wait_idle(max_wait: float, threshold: float = 0.25, window: float = 2.0) -> float:
    """Wait (at most ``max_wait`` s) for a ``window`` with under ``threshold`` cores busy machine-wide;
    returns the cores busy in the last window."""
    deadline = time.monotonic() + max_wait
    while True:
        b0 = machine_cpu_s()[0]
        time.sleep(window)
        load = (machine_cpu_s()[0] - b0) / window
        if load < threshold or time.monotonic() >= deadline or math.isnan(load):
            return load


def run_timed(
    cmd: Sequence[str],
    *,
    label: str,
    env: dict[str, str],
    log_path: Path,
    timeout: float = 3600,
    cwd: Path | None = None,
) -> Timed:
    """Run ``cmd`` to completion in its own session (killed with its children at ``timeout``)."""
    run = Timed(label, list(cmd))
    net_log, probe = log_path.with_suffix(".net"), log_path.with_suffix(".threads")
    env = {**env, NET_LOG_ENV: str(net_log), PROBE_ENV: str(probe)}
    with log_path.open("wb") as log:
        busy0, steal0 = machine_cpu_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, cwd=cwd,
        )  # fmt: skip

        def kill() -> None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        run.wall_s = time.perf_counter() - t0
        busy1, steal1 = machine_cpu_s()
    run.rc = os.waitstatus_to_exitcode(status)
    run.user_s, run.sys_s = usage.ru_utime, usage.ru_stime
    run.max_rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    if run.wall_s > 0:
        run.other_cores = max(0.0, (busy1 - busy0 - run.cpu_s) / run.wall_s)
        run.steal_cores = (steal1 - steal0) / run.wall_s
    run.load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    run.log = log_path.read_text(encoding="utf-8", errors="replace")
    if net_log.exists():
        run.net_events = net_log.read_text(encoding="utf-8").splitlines()
    if probe.exists():
        run.torch_threads = int(probe.read_text(encoding="utf-8"))
    return run


def alternate(
    tools: Sequence[str], repeats: int, run_one: Callable[[str, int], Timed], *, wait: float = 0.0
) -> list[Timed]:
    """``run_one(tool, repeat)`` for repeat 1..n, the tools alternated (A B A B ...); before each run
    wait up to ``wait`` s for the machine to go idle."""
    runs = []
    for repeat in range(1, repeats + 1):
        for tool in tools:
            if wait > 0:
                wait_idle(wait)
            print(f"[{len(runs) + 1}/{len(tools) * repeats}] {tool} run {repeat} ...", flush=True)
            run = run_one(tool, repeat)
            runs.append(run)
            state = "ok" if run.ok else f"FAILED (exit {run.rc})"
            figures = f"{run.wall_s:.1f} s wall, {run.cpu_s:.1f} CPU s, {run.max_rss_mb:.0f} MB"
            print(f"  {state}: {figures}", flush=True)
    return runs


def compare(runs: Sequence[Timed], *, ours: str, theirs: str, units: int) -> dict[str, Any]:
    """Per tool: median wall, units per second, CPU s, peak RSS; then the speed ratio ours / theirs."""
    out: dict[str, Any] = {}
    for tool in (ours, theirs):
        ok = [r for r in runs if r.label == tool and r.ok]
        if not ok:
            out[tool] = {"ok_runs": 0}
            continue
        wall = statistics.median(r.wall_s for r in ok)
        out[tool] = {
            "ok_runs": len(ok),
            "wall_s_median": round(wall, 2),
            "wall_s_all": [round(r.wall_s, 2) for r in ok],
            "per_s": round(units / wall, 3) if wall else 0.0,
            "cpu_s_median": round(statistics.median(r.cpu_s for r in ok), 2),
            "max_rss_mb": round(max(r.max_rss_mb for r in ok), 1),
            "other_cores_all": [round(r.other_cores, 2) for r in ok],
            "load_avg_all": [round(r.load_avg, 2) for r in ok],
        }
    if out[ours].get("ok_runs") and out[theirs].get("ok_runs"):
        out["ratio"] = round(out[theirs]["wall_s_median"] / out[ours]["wall_s_median"], 3)
        out["rss_ratio"] = round(out[ours]["max_rss_mb"] / out[theirs]["max_rss_mb"], 3)
    return out


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("densecnn", "torch", "torchvision", "ultralytics", "av", "opencv-python", "numpy",
                 "onnxruntime", "openvino"):  # fmt: skip
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "thread_env": {k: BASE_ENV[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in BASE_ENV},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def seeded_weights(kind: str, dest: Path, *, seed: int = 0, images: Sequence[Path] = ()) -> Path:
    """Seeded random-init weights from the tests' factories (no download): ``yolov8n`` (detect),
    ``yolov8n-seg`` (``images`` calibrate its heads to give instances) or ``deeplabv3`` (torchvision
    DeepLabV3-MobileNetV3, 21 classes)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import _factories as f
    finally:
        sys.path.remove(str(ROOT / "tests"))
    if kind == "yolov8n":
        return f.make_yolo_checkpoint(dest, cfg="yolov8n.yaml", seed=seed)
    if kind == "yolov8n-seg":
        return f.make_yolo_seg_checkpoint(dest, images=list(images), seed=seed)
    if kind == "deeplabv3":
        return f.make_segmentation_state_dict(dest, arch="deeplabv3_mobilenet_v3_large", seed=seed)
    raise ValueError(f"unknown weights kind {kind!r}")


def find_exe(name: str) -> str:
    """A console script of this interpreter's environment (``densecnn``, ``yolo``), else from PATH."""
    import shutil

    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        sys.exit(f"error: `{name}` not found next to {sys.executable} or on PATH")
    return found
