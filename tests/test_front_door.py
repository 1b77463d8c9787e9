"""The front door as a newcomer meets it: the README's runnable commands, `densecnn doctor`, help
text and the messages of a first run."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from conftest import ROOT, CliRunner, write_video

from densecnn.sinks.jsonl import read_jsonl


def _runnable_blocks() -> list[list[str]]:
    """The README's ```bash blocks marked ``<!-- runnable ... -->``: one command per line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- runnable[^>]*-->\s*```bash\n(.*?)```", readme, re.S)
    return [[line.split("  #")[0].strip() for line in b.splitlines() if line.strip()] for b in blocks]


def test_readme_runnable_commands_run_offline(tmp_path: Path, run_cli: CliRunner) -> None:
    blocks = _runnable_blocks()
    assert blocks and all(blocks), "the README marks its first-screen commands as runnable"
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    for block in blocks:
        for line in block:
            args = shlex.split(line)
            assert args[0] == "densecnn", line
            r = run_cli(*args[1:])
            assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
    rows = read_jsonl(tmp_path / "runs/detect/predict/predictions.jsonl")
    assert len(rows) > 10 and all(row["source"] == "clip.mp4" for row in rows)
    assert (tmp_path / "runs/seg/predict/masks/astronaut.jpg.png").is_file()


def test_doctor_reports_this_machine(run_cli: CliRunner) -> None:
    r = run_cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    checks = {c["item"]: c for c in json.loads(r.stdout)}
    assert checks["libx264"]["status"] == "ok"
    assert checks["torch"]["status"] == "ok" and checks["python"]["status"] == "ok"
    assert checks["network"]["status"] == "warn" and "DENSECNN_OFFLINE" in checks["network"]["detail"]
    assert "person-yolov8n" in checks["weight cache"]["detail"]  # the embedded files, verified
    assert all(set(c) == {"item", "status", "detail", "fix"} for c in checks.values())
    assert all(c["fix"] for c in checks.values() if c["status"] != "ok")
    table = run_cli("doctor")
    assert table.returncode == 0 and "libx264" in table.stdout and "weight cache" in table.stdout


def test_unknown_model_suggests_within_its_task(run_cli: CliRunner) -> None:
    r = run_cli("detect", "samples", "--model", "yolov9")
    assert r.returncode == 2
    assert "Unknown detect model 'yolov9'" in r.stderr and "yolov8n" in r.stderr
    assert "convnext" not in r.stderr and "Traceback" not in r.stderr
    r = run_cli("segment", "samples", "--model", "unett")
    assert r.returncode == 2 and "Did you mean: unet" in r.stderr


def test_models_name_lists_classes_and_classes_hint_names_them(run_cli: CliRunner, tmp_path: Path) -> None:
    r = run_cli("models", "person-unet")
    assert r.returncode == 0 and "background" in r.stdout and "person" in r.stdout
    write_video(tmp_path / "clip.mp4", frames=3)
    r = run_cli("detect", "clip.mp4", "--classes", "persn")
    assert r.returncode == 2 and "Did you mean: person?" in r.stderr and "Its classes: person." in r.stderr


def test_first_run_messages(tmp_path: Path, run_cli: CliRunner) -> None:
    """One video under --max-frames: the header counts what will run; a file run shows no stream line."""
    write_video(tmp_path / "clip.mp4", frames=30)
    r = run_cli("detect", "clip.mp4", "--max-frames", "10")
    assert r.returncode == 0, r.stderr
    header = " ".join(r.stdout.split())
    assert "1 video (first 10 frames of ~30: --max-frames)" in header
    assert "videos" not in header.split("Summary")[0] and "Stream mode" not in r.stdout
    summary = json.loads((tmp_path / "runs/detect/predict/summary.json").read_text())
    assert summary["frames"] == 10 and summary["stopped_by"] == "max-frames"
