"""``densecnn bench``: a real run over a few frames prints its table and writes bench.json with every
column filled (speed, stages, RSS, the eval metric), once per available backend asked for."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import DATA, CliRunner, need_data, write_video

from densecnn.pipeline import STAGES


def test_bench_table_and_json_every_column_filled(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=12, width=320, height=240)
    root = need_data(DATA / "coco8")
    names = yaml.safe_load((DATA / "coco128" / "object_detection_config.yaml").read_text())["names"]
    data = tmp_path / "coco8.yaml"
    doc = {"path": str(root), "train": "images/train", "val": "images/val", "names": names}
    data.write_text(yaml.safe_dump(doc))
    r = run_cli(
        "bench", str(video), "--weights", str(yolo_weights), "--backend", "torch",
        "--imgsz", "160", "--imgsz", "224", "--frames", "6", "--data", str(data), "--no-half",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    for header in ("model", "backend", "precision", "FPS", "peak RSS MB", "metric"):
        assert header in r.stdout
    assert "mAP50-95 0." in r.stdout and "GPU busy" not in r.stdout
    doc = json.loads((tmp_path / "runs/bench/exp/bench.json").read_text())
    assert doc["machine"]["cores"] and doc["machine"]["load_average"] is not None
    rows = doc["rows"]
    assert [(row["backend"], row["precision"], row["imgsz"]) for row in rows] == [
        ("torch", "fp32", 160),
        ("torch", "fp32", 224),
    ]
    for row in rows:
        assert row["error"] is None and row["task"] == "detect" and row["model"] == yolo_weights.name
        assert row["frames"] == 6 and row["fps"] > 0 and row["wall_s"] > 0 and row["batch"] >= 1
        assert set(row["stage_ms"]) == set(STAGES) and all(v > 0 for v in row["stage_ms"].values())
        assert row["peak_rss_mb"] > 100  # torch alone is more
        assert row["gpu_busy_pct"] is None  # on the CPU: no GPU column
        assert row["metric"] == "mAP50-95" and 0 <= row["metric_value"] <= 1


def test_bench_reports_a_failing_cell_and_goes_on(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=6, width=160, height=120)
    missing = tmp_path / "nope.mp4"
    r = run_cli("bench", str(missing), "--weights", str(yolo_weights), "--backend", "torch", "--frames", "2")
    assert r.returncode == 1
    doc = json.loads((tmp_path / "runs/bench/exp/bench.json").read_text())
    assert doc["rows"][0]["error"] and "nope.mp4" in doc["rows"][0]["error"]
    r = run_cli("bench", str(video), "--weights", str(yolo_weights), "--backend", "auto")
    assert r.returncode == 2 and "not auto" in r.stdout + r.stderr


def test_gpu_busy_share_is_the_mean_of_nvidia_smi_samples(tmp_path: Path) -> None:
    """The sampler reads nvidia-smi's stream (here a stand-in script printing what the real one does,
    with an "[N/A]" among the samples) for as long as the run goes on, then stops it."""
    import os
    import time

    from densecnn.gpu_busy import GpuBusy

    argv = tmp_path / "argv"
    stub = tmp_path / "nvidia-smi"
    stub.write_text(
        f"#!/bin/sh\necho \"$@\" > {argv}\nwhile true; do echo 37; echo '[N/A]'; echo 63; sleep 0.05; done\n"
    )
    stub.chmod(0o755)
    with GpuBusy(1, interval_ms=50, exe=str(stub)) as busy:
        time.sleep(0.5)
    assert len(busy.samples) >= 4 and set(busy.samples) == {37.0, 63.0}
    assert abs(busy.percent - 50.0) <= 13  # the stream may stop between a 37 and its 63
    assert argv.read_text().split() == [
        "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "1", "-lms", "50",
    ]  # fmt: skip
    taken = len(busy.samples)
    time.sleep(0.2)
    assert len(busy.samples) == taken  # stopped with the run
    assert busy._proc is not None and busy._proc.poll() is not None
    with GpuBusy(exe=str(tmp_path / "missing")) as none:
        pass
    assert none.percent is None and os.path.exists(argv)
