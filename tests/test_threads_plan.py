"""The threads plan (densecnn.pipeline.plan_threads) and the measured H.264 encoder preset
(densecnn.sinks.video.encoder_plan): what each picks, that the pick is cached, and that the video sink
writes with it."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from densecnn.pipeline import plan_threads
from densecnn.results import Frame, Prediction
from densecnn.sinks import video as video_sink
from densecnn.sinks.video import ENCODER_CACHE, PRESETS, VideoSink, encoder_plan, encoder_threads
from densecnn.sources.base import InputEnd, InputRef, InputStart, VideoInfo


@pytest.mark.parametrize(("cores", "torch_threads"), [(1, 1), (2, 2), (4, 3), (16, 15)])
def test_plan_gives_the_model_all_but_one_core_from_three_on(
    monkeypatch: pytest.MonkeyPatch, cores: int, torch_threads: int
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_threads(cores)
    assert (plan.cores, plan.torch, plan.origin) == (cores, torch_threads, "plan")
    assert plan.encoder == encoder_threads(cores) == max(1, cores // 4)


@pytest.mark.parametrize("cores", [1, 2, 8])
def test_plan_gives_torch_one_thread_when_another_runtime_runs_the_model(
    monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_threads(cores, model_on_torch=False)
    assert (plan.cores, plan.torch, plan.encoder) == (cores, 1, encoder_threads(cores))


def test_users_omp_num_threads_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    plan = plan_threads(8)
    assert (plan.torch, plan.origin) == (3, "OMP_NUM_THREADS")


def test_importing_ultralytics_leaves_omp_num_threads_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    from densecnn.integrations.ultralytics import import_ultralytics

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    import_ultralytics()
    assert "OMP_NUM_THREADS" not in __import__("os").environ


def test_encoder_preset_measured_keeps_quality_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(video_sink, "_plans", {})  # forget this process's earlier measurement
    plan = encoder_plan(tmp_path, cores=2)
    assert plan.origin == "measured" and plan.preset in PRESETS and plan.threads == 1
    measured = plan.measured
    assert measured is not None and set(measured) == set(PRESETS)
    reference = measured["veryfast"]
    assert measured[plan.preset]["psnr_db"] >= reference["psnr_db"] - 0.5  # CRF 23 quality kept
    assert measured[plan.preset]["cpu_ms"] == min(
        m["cpu_ms"] for m in measured.values() if m["psnr_db"] >= reference["psnr_db"] - 0.5
    )
    assert all(25 < m["psnr_db"] < 60 and m["kbps"] > 0 for m in measured.values())
    cache = json.loads((tmp_path / ENCODER_CACHE).read_text())
    assert list(cache.values()) == [measured]
    monkeypatch.setattr(video_sink, "_plans", {})
    again = encoder_plan(tmp_path, cores=8)
    assert (again.origin, again.preset, again.threads) == ("cached", plan.preset, 2)


def test_video_sink_encodes_with_the_plan(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path, cache_dir=tmp_path)
    assert sink.plan is not None
    ref = InputRef(path=tmp_path / "clip.mp4", source="clip.mp4", kind="video")
    sink.start_input(InputStart(ref, VideoInfo(Fraction(25), 64, 48, 5, "h264")))
    for i in range(5):
        image = np.full((48, 64, 3), 40 * i, np.uint8)
        sink.write(Prediction(Frame(image, "clip.mp4", str(ref.path), index=i, is_video=True), None), image)
    sink.end_input(InputEnd(ref, 5))
    sink.close()
    with av.open(str(tmp_path / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 5
    assert sink._options["preset"] == sink.plan.preset and sink._options["crf"] == "23"


def test_gpu_runs_pick_nvenc_at_crf_23_equivalent_when_it_works() -> None:
    assert video_sink.select_codec({"h264_nvenc", "libx264"}, gpu=True) == ("h264_nvenc", None)
    assert video_sink.select_codec({"libx264"}, gpu=True) == ("libx264", None)  # no NVENC: x264
    assert video_sink.select_codec({"h264_nvenc", "libx264"}, gpu=False)[0] == "libx264"
    options = video_sink._codec_options("h264_nvenc", crf=23, preset="ignored")
    assert options["cq"] == "23" and options["rc"] == "vbr" and options["b"] == "0"


def test_nvenc_is_only_chosen_where_it_encodes() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine: test_gpu.py checks NVENC there")
    assert not video_sink.nvenc_works()  # in the build or not, no NVIDIA encoder answers here
    assert VideoSink(Path("unused"), gpu=True).codec_name == "libx264"


def test_hardware_decode_falls_back_to_the_same_frames_without_the_device() -> None:
    import torch
    from conftest import STREET_VIDEO, need_data

    from densecnn.sources.video import open_video

    video = need_data(STREET_VIDEO)
    with open_video(video, "cuda:0") as hw, open_video(video) as sw:
        pairs = zip(range(3), hw.decode(video=0), sw.decode(video=0), strict=False)
        for _, a, b in pairs:
            assert (a.width, a.height, a.pts) == (b.width, b.height, b.pts)
            if not torch.cuda.is_available():  # software both ways: the very same pixels
                assert np.array_equal(a.to_ndarray(format="bgr24"), b.to_ndarray(format="bgr24"))
