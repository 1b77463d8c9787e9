"""Faults around a run (issue 13): an output folder that cannot be written, a full disk, kill -9
then --resume, SIGTERM, two runs into one folder.

Policy: an unwritable --out is one line naming the folder and the reason, exit 2, before any model
loads; what a run wrote before it died stays valid, and --resume finishes with every input done
once (no duplicate, no missing row).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, CliRunner

IMAGE = ROOT / "samples" / "coffee.jpg"


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (skips where this user cannot mount)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join(("size=1m", *options))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("where", ["proc", "through-file", "read-only"])
def test_unwritable_out(run_cli: CliRunner, tmp_path: Path, where: str) -> None:
    with contextlib.ExitStack() as stack:
        if where == "proc":
            out, folder = "/proc/nope", "/proc"
        elif where == "through-file":
            (tmp_path / "a-file").write_text("x")
            out, folder = str(tmp_path / "a-file" / "runs"), str(tmp_path / "a-file")
        else:
            ro = stack.enter_context(tmpfs(tmp_path / "ro", "ro"))
            out, folder = str(ro / "runs"), str(ro)
        proc = run_cli("detect", str(IMAGE), "--out", out)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and folder in lines[0] and out in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "embedded model" not in proc.stderr  # no model loaded
    assert not proc.stdout.strip()


def test_unwritable_project_train_eval(run_cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    bad = str(tmp_path / "a-file" / "runs")
    weights = ROOT / "weights" / "person-yolov8n.safetensors"
    for args in (
        ["train", "classify", "--data", str(tmp_path), "--project", bad],
        ["eval", "detect", "--weights", str(weights), "--data", str(tmp_path), "--project", bad],
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert "a-file is not a folder" in proc.stderr and "Traceback" not in proc.stderr


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
