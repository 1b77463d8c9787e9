"""``--engine ray`` (densecnn/ray_engine): the local engine's outputs from a Ray actor pool, on one
local Ray instance (2 CPUs) shared by the module's tests; real COCO images mixed with bad files.

Parity with the local engine (pixel-identical masks and overlays, the same predictions.jsonl rows and
errors.jsonl), a worker killed mid-run (every input exactly once), a killed driver then ``--resume``
(no duplicates), the refusals, and the install hint when Ray is missing (that test runs without Ray).
The three cluster tests are the costly part (Ray's start-up, six actor starts, a subprocess driver).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DATA, ROOT, need_data

from densecnn.sinks.jsonl import read_jsonl

UNET = ROOT / "weights" / "person-unet.safetensors"
YOLO = ROOT / "weights" / "person-yolov8n.safetensors"
BAD = {"truncated.jpg", "corrupt.jpg", "notes.jpg", "empty.png"}


def _images(folder: Path, names: list[str]) -> Path:
    """``folder`` with these coco128 photos (symlinks) and four bad files."""
    src = need_data(DATA / "coco128" / "images" / "train2017")
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(src / name)
    data = (src / names[0]).read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    half = len(data) // 2  # damaged second half, intact end marker: found by the strict decode
    noise = np.random.default_rng(0).integers(0, 255, len(data) - half, dtype=np.uint8).tobytes()
    (folder / "corrupt.jpg").write_bytes(data[:half] + noise + b"\xff\xd9")
    (folder / "notes.jpg").write_text("not an image\n")
    (folder / "empty.png").write_bytes(b"")
    return folder


def _coco128(n: int) -> list[str]:
    src = need_data(DATA / "coco128" / "images" / "train2017")
    return sorted(p.name for p in src.glob("*.jpg"))[:n]


@pytest.fixture(scope="module")
def ray_address() -> Any:
    """One local Ray instance for the module (its start-up is the slow part); its GCS address."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'densecnn[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'densecnn[ray]'")
    if not (UNET.is_file() and YOLO.is_file()):
        pytest.skip("the embedded models are missing from weights/")
    from _browser import short_tmp

    ray.init(
        num_cpus=2,
        _temp_dir=tempfile.mkdtemp(prefix="ray-", dir=short_tmp()),  # its sockets: AF_UNIX's 107 bytes
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"DENSECNN_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _segment(run_cli: Any, src: Path, name: str, *extra: str) -> Any:
    r = run_cli(
        "segment", str(src), "--weights", str(UNET), "--imgsz", "160", "--out", "out", "--name", name, *extra
    )
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return r


@pytest.mark.slow  # Ray's actors start, import torch and load the model in each run
def test_same_outputs_as_the_local_engine(ray_address: str, run_cli: Any, tmp_path: Path) -> None:
    import cv2

    good = _coco128(3)
    src = _images(tmp_path / "imgs", good)
    _segment(run_cli, src, "local")
    r = _segment(run_cli, src, "ray", "--engine", "ray", "--workers", "2", "--batch", "2")
    assert r.returncode == 1  # some inputs failed, as locally
    local, ray_dir = tmp_path / "out" / "local", tmp_path / "out" / "ray"

    for name in good:
        a = cv2.imread(str(local / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(ray_dir / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert a is not None and b is not None and a.dtype == np.uint8
        assert np.array_equal(a, b), name
        assert (local / name).read_bytes() == (ray_dir / name).read_bytes()  # the overlay
    assert sorted(p.name for p in (ray_dir / "masks").iterdir()) == [f"{n}.png" for n in good]

    key = lambda row: row["source"]  # noqa: E731
    rows_local = sorted(read_jsonl(local / "predictions.jsonl"), key=key)
    rows_ray = sorted(read_jsonl(ray_dir / "predictions.jsonl"), key=key)
    assert [r["source"] for r in rows_ray] == good
    assert rows_ray == rows_local
    errors_local = sorted(read_jsonl(local / "errors.jsonl"), key=key)
    assert {e["source"] for e in errors_local} == BAD
    assert sorted(read_jsonl(ray_dir / "errors.jsonl"), key=key) == errors_local
    assert (ray_dir / "classes.json").read_text() == (local / "classes.json").read_text()
    assert not (ray_dir / ".ray-shards").exists()  # merged, then removed

    summary = json.loads((ray_dir / "summary.json").read_text())
    expected = json.loads((local / "summary.json").read_text())
    for field in ("inputs", "inputs_failed", "frames", "class_counts", "errors", "model", "classes"):
        assert summary[field] == expected[field], field
    engine = summary["engine"]
    assert engine["name"] == "ray" and engine["workers"] == 2
    per_worker = engine["per_worker"]
    assert sum(w["inputs"] for w in per_worker) == len(good) + len(BAD)
    assert all(w["images_per_s"] > 0 for w in per_worker if w["frames"])


def _shard_rows(run_dir: Path) -> int:
    return sum(len(read_jsonl(p)) for p in run_dir.glob(".ray-shards/*/predictions.jsonl"))


@pytest.mark.slow  # Ray's actors start, import torch and load the model in each run
def test_a_killed_worker_is_retried_every_input_once(ray_address: str, run_cli: Any, tmp_path: Path) -> None:
    good = _coco128(8)
    src = _images(tmp_path / "imgs", good)
    run_dir = tmp_path / "out" / "kill"
    killed: dict[str, Any] = {}

    def kill_first_worker_after_its_first_row() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for shard in run_dir.glob(".ray-shards/*"):
                rows = shard / "predictions.jsonl"
                if rows.is_file() and read_jsonl(rows):
                    killed["done_before"] = _shard_rows(run_dir)
                    killed["shard"] = shard.name
                    os.kill(json.loads((shard / "worker.json").read_text())["pid"], signal.SIGKILL)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_worker_after_its_first_row, daemon=True)
    killer.start()
    r = run_cli(
        "detect", str(src), "--weights", str(YOLO), "--imgsz", "320", "--out", "out", "--name", "kill",
        "--engine", "ray", "--workers", "1", "--batch", "1",
    )  # fmt: skip
    killer.join()
    assert r.returncode == 1, r.stdout + r.stderr  # the bad files, nothing else
    assert killed and killed["done_before"] < len(good), killed  # killed mid-run

    rows = read_jsonl(run_dir / "predictions.jsonl")
    assert Counter(row["source"] for row in rows) == Counter(good)
    errors = read_jsonl(run_dir / "errors.jsonl")
    assert Counter(e["source"] for e in errors) == Counter(BAD)
    ledger = read_jsonl(run_dir / ".done.jsonl")
    assert sorted(x["source"] for x in ledger) == good
    coco = json.loads((run_dir / "predictions.coco.json").read_text())
    assert sorted(img["file_name"] for img in coco["images"]) == good
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["inputs"] == len(good) + len(BAD) and summary["frames"] == len(good)
    # the rest was done by the restarted worker: a new process, a new shard
    assert {w["worker"] for w in summary["engine"]["per_worker"]} - {killed["shard"]}


@pytest.mark.slow  # Ray's actors start, import torch and load the model in each run
def test_resume_after_the_driver_is_killed(
    ray_address: str, run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _cli import cli_env

    good = _coco128(6)
    src = _images(tmp_path / "imgs", good)
    run_dir = tmp_path / "out" / "resumed"
    args = [
        "segment",
        str(src),
        "--weights",
        str(UNET),
        "--imgsz",
        "160",
        "--out",
        "out",
        "--name",
        "resumed",
    ]
    env = {**os.environ, **cli_env(tmp_path / "_weights")}
    ray_args = ["--engine", "ray", "--address", ray_address, "--batch", "1", "--workers", "1"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "densecnn", *args, *ray_args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while len(list(run_dir.glob("masks/*.png"))) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, driver.communicate()[1]
            time.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    done_when_killed = len(list(run_dir.glob("masks/*.png")))
    assert 2 <= done_when_killed < len(good)
    assert not (run_dir / "summary.json").exists()

    r = _segment(run_cli, src, "resumed", "--engine", "ray", "--resume", "--workers", "1")
    assert "inputs already done, skipped" in r.stdout
    rows = read_jsonl(run_dir / "predictions.jsonl")
    assert Counter(row["source"] for row in rows) == Counter(good)
    assert Counter(e["source"] for e in read_jsonl(run_dir / "errors.jsonl")) == Counter(BAD)
    assert sorted(p.name for p in (run_dir / "masks").iterdir()) == [f"{n}.png" for n in good]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed"] is True and summary["skipped_done"] >= 2
    assert summary["inputs"] == len(good) + len(BAD) and summary["frames"] == len(good)
    # no --batch: the worker chose its forward batch as a local run would (a short run: unmeasured)
    assert [w["batch"] for w in summary["engine"]["per_worker"]] == ["batch 4 (short run)"]


def test_videos_and_live_sources_are_refused(tmp_path: Path, run_cli: Any) -> None:
    pytest.importorskip("ray.data", reason="Ray is not installed: pip install 'densecnn[ray]'")
    from conftest import write_video

    folder = tmp_path / "mixed"
    folder.mkdir()
    write_video(folder / "clip.mp4", frames=2)
    r = run_cli("detect", str(folder), "--engine", "ray")
    assert r.returncode == 2
    assert "--engine ray runs over images only" in r.stderr and "clip.mp4" in r.stderr
    assert "without --engine ray" in r.stderr
    r = run_cli("detect", "rtsp://127.0.0.1:1/x", "--engine", "ray")
    assert r.returncode == 2 and "is a live source" in r.stderr
    r = run_cli("detect", str(folder), "--workers", "2")
    assert r.returncode == 2 and "--workers: only with --engine ray" in r.stderr


def test_uri_sources_list_as_local_folders_do(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow comes with densecnn[ray]")
    from densecnn.ray_engine.listing import list_inputs
    from densecnn.sources import open_source

    src = _images(tmp_path / "imgs", _coco128(2))
    (src / "sub").mkdir()
    (src / "sub" / "x.png").write_bytes((src / "empty.png").read_bytes())
    (src / ".hidden.jpg").write_text("skipped")
    local = [(r.source, r.path) for r in open_source(str(src)).inputs]
    listed, fs = list_inputs(src.as_uri(), exclude=[], on_corrupt="skip")
    assert fs is not None and [(r.source, Path(r.path)) for r in listed.inputs] == local
    only_jpg, _ = list_inputs(src.as_uri() + "/*.jpg", exclude=[], on_corrupt="skip")
    assert [r.source for r in only_jpg.inputs] == sorted(
        s for s, _ in local if s.endswith(".jpg") and "/" not in s
    )


def test_without_ray_the_message_names_the_install_command(
    tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs whether or not Ray is installed: its absence is simulated by blocking the import."""
    (tmp_path / "a.jpg").write_bytes(b"")
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # `import ray` raises ImportError
    r = run_cli("segment", str(tmp_path / "a.jpg"), "--engine", "ray")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pip install 'densecnn[ray]'" in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing started
