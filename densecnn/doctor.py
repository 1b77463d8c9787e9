"""``densecnn doctor``: what this machine offers densecnn, one check per item, each with a verdict and,
where something is missing, the fix. Every check is guarded: a broken library is a finding, not a crash.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

Status = Literal["ok", "warn", "missing"]


@dataclass(frozen=True)
class Check:
    """One finding: ``item`` (what), ``status``, ``detail`` (what was found), ``fix`` (what to do)."""

    item: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dist(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _python() -> list[Check]:
    ok = sys.version_info >= (3, 11)
    detail = f"{platform.python_version()} ({sys.executable})"
    return [Check("python", "ok" if ok else "missing", detail, "" if ok else "densecnn needs Python 3.11+.")]


def _torch() -> list[Check]:
    import torch

    checks = [Check("torch", "ok", f"torch {torch.__version__}, torchvision {_dist('torchvision')}")]
    if not torch.cuda.is_available():
        checks.append(
            Check(
                "cuda",
                "warn",
                "no CUDA device visible: inference runs on the CPU",
                "For a GPU: an NVIDIA driver and a CUDA build of torch (nvidia-smi should list the card).",
            )
        )
        return checks
    names = []
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        names.append(f"cuda:{i} {torch.cuda.get_device_name(i)} (sm {major}.{minor})")
    devices = ", ".join(names)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    checks.append(Check("cuda", "ok", f"CUDA {torch.version.cuda}, cuDNN {cudnn}: {devices}"))
    fp16 = torch.cuda.get_device_capability(0) >= (7, 0)
    checks.append(
        Check("fp16", "ok" if fp16 else "warn", "tensor cores: --half helps" if fp16 else "fp16 is slow here")
    )
    return checks


def _threads() -> list[Check]:
    import torch

    policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE (densecnn's default)")
    detail = (
        f"{os.cpu_count()} CPUs, torch uses {torch.get_num_threads()} threads, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, OMP_WAIT_POLICY={policy}"
    )
    return [Check("threads", "ok", detail)]


def _libraries() -> list[Check]:
    checks = []
    for dist, why in (
        ("ultralytics", "YOLO models"),
        ("segmentation-models-pytorch", "U-Net / DeepLabV3+ heads"),
        ("opencv-python", "image decoding and --show"),
        ("av", "video decoding and H.264 encoding"),
        ("safetensors", "checkpoints without pickle"),
        ("faster-coco-eval", "COCO mAP in densecnn eval"),
    ):
        found = _dist(dist) or (_dist("opencv-python-headless") if dist == "opencv-python" else None)
        checks.append(
            Check(
                dist,
                "ok" if found else "missing",
                f"{found} ({why})" if found else f"not installed ({why})",
                "" if found else f"pip install {dist}",
            )
        )
    return checks


def _video() -> list[Check]:
    import av

    def has(name: str, mode: str) -> bool:
        try:
            av.Codec(name, mode)
            return True
        except Exception:
            return False

    import torch

    gpu = torch.cuda.is_available()
    x264 = has("libx264", "w")
    nvenc = has("h264_nvenc", "w")
    checks = [
        Check(
            "libx264",
            "ok" if x264 else "warn",
            "H.264 encoder present (annotated videos are H.264)"
            if x264
            else "no libx264 in this PyAV build: videos fall back to MPEG-4 Part 2",
            "" if x264 else "pip install --force-reinstall av (the PyPI wheels include libx264)",
        ),
        Check(
            "h264_nvenc",
            "ok" if nvenc and gpu else "warn",
            ("in this PyAV build" if nvenc else "not in this PyAV build")
            + ("" if gpu else "; no NVIDIA GPU to run it"),
            "" if nvenc and gpu else "Only matters on a GPU machine: an FFmpeg/PyAV build with NVENC.",
        ),
    ]
    hw = [n for n in ("h264_cuvid", "hevc_cuvid", "h264_qsv", "h264_v4l2m2m") if has(n, "r")]
    checks.append(
        Check(
            "hardware decoders",
            "ok" if hw else "warn",
            f"in this PyAV build: {', '.join(hw)} (each needs its hardware)"
            if hw
            else "none in this PyAV build: decoding runs on the CPU",
        )
    )
    ffmpeg = shutil.which("ffmpeg")
    checks.append(
        Check(
            "ffmpeg",
            "ok" if ffmpeg else "warn",
            ffmpeg or "no ffmpeg on PATH (densecnn does not need it; the live-stream tests do)",
            "" if ffmpeg else "apt-get install ffmpeg (only for the live-stream tests)",
        )
    )
    return checks


def _display() -> list[Check]:
    import cv2

    from densecnn.sinks.display import display_problem

    problem = display_problem()
    return [
        Check(
            "display (--show)",
            "ok" if problem is None else "warn",
            f"OpenCV {cv2.__version__}: a window can open"
            if problem is None
            else f"OpenCV {cv2.__version__}: {problem}",
            "" if problem is None else "Outputs are written either way; --show needs a desktop or ssh -X.",
        )
    ]


def _backends() -> list[Check]:
    found = ["torch"]
    for dist, name in (
        ("onnxruntime", "onnxruntime"),
        ("onnxruntime-gpu", "onnxruntime"),
        ("openvino", "openvino"),
    ):
        if _dist(dist) and name not in found:
            found.append(name)
    if "openvino" in found:
        from densecnn.runtimes.engines import cpu_has_bf16

        bf16 = cpu_has_bf16()
        found[-1] += " (bf16 on this CPU: OpenVINO's default, --no-half for fp32)" if bf16 else " (fp32)"
    return [Check("inference backends", "ok", ", ".join(found))]


def _weights() -> list[Check]:
    from densecnn.zoo import MODELS
    from densecnn.zoo.store import ENV_MIRROR, ENV_OFFLINE, WeightStore

    store = WeightStore()
    checks = [
        Check(
            "network",
            "warn" if store.offline else "ok",
            f"offline mode ({ENV_OFFLINE}=1): nothing is downloaded"
            if store.offline
            else f"downloads allowed{f' from the mirror {store.mirror}' if store.mirror else ''}",
            ""
            if not store.offline
            else f"Unset {ENV_OFFLINE} to fetch official weights (or set {ENV_MIRROR}).",
        )
    ]
    cached, bad = [], []
    for name, spec in MODELS.items():
        if spec.weights is None or not store.is_cached(spec.weights):
            continue
        result = store.verify(spec.weights)
        (cached if result.ok else bad).append(name)
    detail = f"{store.root}: {len(cached)} verified file(s)" + (f" ({', '.join(cached)})" if cached else "")
    if bad:
        return [
            *checks,
            Check(
                "weight cache",
                "warn",
                f"{detail}; failing their digest: {', '.join(bad)}",
                "Delete those files and pull them again (`densecnn weights pull NAME`); embedded ones: "
                "`git checkout -- weights/`.",
            ),
        ]
    return [*checks, Check("weight cache", "ok", detail)]


SECTIONS: tuple[Callable[[], list[Check]], ...] = (
    _python,
    _torch,
    _threads,
    _libraries,
    _video,
    _display,
    _backends,
    _weights,
)


def run_checks() -> list[Check]:
    """Every check, in order; a section that raises becomes one ``missing`` finding naming the error."""
    checks: list[Check] = []
    for section in SECTIONS:
        try:
            checks += section()
        except Exception as exc:  # a broken install is what doctor is for
            name = section.__name__.lstrip("_")
            checks.append(
                Check(name, "missing", f"{type(exc).__name__}: {exc}", "Reinstall densecnn's dependencies.")
            )
    return checks
