"""CUDA paths: skipped where torch sees no CUDA device (run on a GPU machine with `pytest -m gpu`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _factories import loaded
from conftest import COCO8, CliRunner, need_data

from densecnn.config import PredictConfig
from densecnn.results import Frame

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def _frames() -> list[Frame]:
    return [
        Frame(image=cv2.imread(str(p)), source=p.name, path=str(p))
        for p in sorted(need_data(COCO8).rglob("*.jpg"))
    ]


@pytest.mark.parametrize("half", [False, True])
def test_yolo_cuda_matches_cpu(yolo_weights: Path, half: bool) -> None:
    cpu, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cpu", conf=0.5))
    gpu, _ = loaded("detect", PredictConfig(weights=yolo_weights, device="cuda", conf=0.5, half=half))
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).is_cuda
    for frame in _frames():
        a, b = cpu.predict([frame])[0], gpu.predict([frame])[0]
        n = min(len(a), len(b), 20)  # fp16 may flip borderline boxes: compare the top ones
        assert abs(len(a) - len(b)) <= max(2, len(a) // 10)
        assert np.allclose(a.boxes[:n], b.boxes[:n], atol=2.0 if half else 0.5)


def test_rcnn_cuda_matches_cpu(rcnn_weights: Path) -> None:
    kw = {"model": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": rcnn_weights, "conf": 0.3}
    cpu, _ = loaded("detect", PredictConfig(device="cpu", **kw))
    gpu, _ = loaded("detect", PredictConfig(device="cuda", **kw))
    for frame in _frames()[:4]:
        a, b = cpu.predict([frame])[0], gpu.predict([frame])[0]
        n = min(len(a), len(b), 10)
        assert np.allclose(a.boxes[:n], b.boxes[:n], atol=1.0)


def test_cli_detect_on_cuda(tmp_path: Path, run_cli: CliRunner, yolo_weights: Path) -> None:
    image = need_data(COCO8) / "val/000000000036.jpg"
    r = run_cli("detect", str(image), "--weights", str(yolo_weights), "--device", "cuda", "--half")
    assert r.returncode == 0, r.stderr
    assert "cuda" in (tmp_path / "runs/detect/predict/summary.json").read_text()


def test_nvenc_encodes_and_nvdec_decodes_on_the_gpu(tmp_path: Path) -> None:
    """The GPU run's codecs: h264_nvenc writes a playable H.264 file at CRF-23-equivalent quality and
    CUDA decoding gives the software decoder's frames (up to colour conversion rounding)."""
    import av

    from densecnn.sinks import video as video_sink
    from densecnn.sources.video import open_video

    assert video_sink.nvenc_works()
    assert video_sink.select_codec(gpu=True) == ("h264_nvenc", None)
    street = need_data(COCO8.parent.parent / "video" / "slow_traffic_small.mp4")
    with open_video(street, "cuda:0") as hw, open_video(street) as sw:
        for _, a, b in zip(range(5), hw.decode(video=0), sw.decode(video=0), strict=False):
            diff = np.abs(a.to_ndarray(format="bgr24").astype(int) - b.to_ndarray(format="bgr24"))
            assert diff.mean() < 1.0
    out = tmp_path / "nvenc.mp4"
    with av.open(str(out), "w") as container:
        stream = container.add_stream("h264_nvenc", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = video_sink._codec_options("h264_nvenc", crf=23, preset="")
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 20 * i, np.uint8), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_detect_on_cuda_writes_h264_with_nvenc_and_fp16(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    import json

    from conftest import write_video

    video = write_video(tmp_path / "clip.mp4", frames=20, width=320, height=240)
    r = run_cli("detect", str(video), "--weights", str(yolo_weights), "--device", "cuda", "--half",
                "--backend", "torch", "--imgsz", "320")  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    run = tmp_path / "runs/detect/predict"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["frames"] == 20 and summary["batch"] >= 1
    import av

    with av.open(str(run / "clip.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 20


def test_bench_on_cuda_reports_the_gpu_busy_share(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    import json
    import shutil

    from conftest import write_video

    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi")
    video = write_video(tmp_path / "clip.mp4", frames=60, width=640, height=480)
    r = run_cli("bench", str(video), "--weights", str(yolo_weights), "--backend", "torch",
                "--device", "cuda", "--half", "--frames", "60")  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    assert "GPU busy %" in r.stdout
    (row,) = json.loads((tmp_path / "runs/bench/exp/bench.json").read_text())["rows"]
    assert row["error"] is None and row["precision"] == "fp16" and 0 < row["gpu_busy_pct"] <= 100
