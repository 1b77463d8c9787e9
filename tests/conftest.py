"""Shared fixtures: tiny seeded weights, generated media, the real data folder, CLI runners."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

# What densecnn.cli.main sets before torch loads (OpenMP reads it then): in-process CLI runs need it
# set here, before anything imports torch. An OMP_WAIT_POLICY already set wins, as it does there.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# `--backend auto` (the default) would export and time every test's model on ONNX Runtime and OpenVINO
# on first use: the suite runs torch unless a test says otherwise (tests/test_backends.py does).
os.environ.setdefault("DENSECNN_BACKEND", "torch")

# A suite started with SIGINT ignored (`pytest &` from a script: shells ignore it in background jobs)
# would hand that on to every child, and the Ctrl-C tests' processes would ignore their SIGINT.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _cli import cli_env, run_in_process, run_process
from _factories import make_rcnn_state_dict, make_yolo_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STREET_VIDEO = DATA / "video" / "slow_traffic_small.mp4"
COCO8 = DATA / "coco8" / "images"


def need_data(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def yolo_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_checkpoint(tmp_path_factory.mktemp("w") / "tiny-yolov8n.pt")


@pytest.fixture(scope="session")
def rcnn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rcnn_state_dict(tmp_path_factory.mktemp("w") / "tiny-frcnn-mbv3-320.pth")


def write_video(path: Path, *, frames: int, width: int = 320, height: int = 240, fps: int = 25) -> Path:
    """A real H.264 MP4 with moving coloured rectangles (PyAV), ``frames`` frames at ``fps``."""
    import av

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = np.roll(texture, i * 3, axis=1)
            x = (i * 7) % (width - 60)
            img[40:140, x : x + 60] = (0, 200, 255)
            img[150:200, width - x - 80 : width - x - 20] = (255, 80, 0)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli(tmp_path: Path) -> CliRunner:
    """Run ``densecnn ARGS`` in this process, in ``tmp_path`` (or ``cwd``), offline, with an empty
    weight cache, as a fresh ``python -m densecnn`` would (see ``_cli.py`` for what that covers);
    returns a CompletedProcess. Tests of signals, the real entry point, C libraries' own stderr or
    settings read at import use :func:`run_cli_process`."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
        return run_in_process(
            args, cwd=cwd or tmp_path, env=cli_env(tmp_path / "_weights", env), timeout=timeout
        )

    return run


@pytest.fixture
def run_cli_process(tmp_path: Path) -> CliRunner:
    """Run ``python -m densecnn ARGS`` as a real subprocess in ``tmp_path`` (or ``cwd``), offline,
    with an empty weight cache; the same call as :func:`run_cli`."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
        return run_process(
            args, cwd=cwd or tmp_path, env=cli_env(tmp_path / "_weights", env), timeout=timeout
        )

    return run


@pytest.fixture(scope="session")
def random_backbone() -> Callable[[str], Any]:
    """name → that registry backbone, seeded random init, built once per session (copy before changing)."""
    import torch

    from densecnn.backbones import build_backbone

    built: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in built:
            torch.manual_seed(0)
            built[name] = build_backbone(name).eval()
        return built[name]

    return get
