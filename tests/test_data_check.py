"""`densecnn data check` recognises each dataset format and reports what it found or what is wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _train_data import pennfudan_subset
from conftest import DATA, need_data


def test_pennfudan_as_person_background(run_cli) -> None:
    need_data(DATA / "pennfudan")
    r = run_cli(
        "data", "check", str(DATA / "pennfudan"), "--mask-mode", "instances-to-foreground",
        "--class-names", "background,person", "--val-fraction", "0.25",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "128 image/mask pairs; 2 classes: background, person" in out
    assert "96 train, 32 val" in out and "OK" in out


def test_classes_json_and_labels_out_of_range(tmp_path: Path, run_cli) -> None:
    need_data(DATA / "pennfudan")
    pf = pennfudan_subset(DATA / "pennfudan", tmp_path / "pf", 6)
    (pf / "classes.json").write_text(json.dumps({"0": "background", "1": "person"}))
    r = run_cli("data", "check", "pf")
    assert r.returncode == 1
    out = " ".join(r.stdout.split())
    # photos with 2+ pedestrians have ids above 1: each such mask is named, with its values
    assert "FudanPed00001_mask.png: label values [2] out of range for 2 classes" in out
    assert "--mask-mode instances-to-foreground" in out


def test_image_folder_summary(tmp_path: Path, run_cli) -> None:
    need_data(DATA / "coco8")
    images = sorted((DATA / "coco8/images").rglob("*.jpg"))
    for i, image in enumerate(images):
        folder = tmp_path / "if" / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image.name).symlink_to(image)
    r = run_cli("data", "check", "if", "--val-fraction", "0.25")
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "8 images; 2 classes: even (4), odd (4)" in out and "6 train, 2 val" in out


def test_unknown_layout_is_a_usage_error(tmp_path: Path, run_cli) -> None:
    (tmp_path / "empty").mkdir()
    r = run_cli("data", "check", "empty")
    assert r.returncode == 2 and "not a dataset densecnn knows" in r.stderr
    r = run_cli("data", "check", "missing")
    assert r.returncode == 2 and "no such file or folder" in r.stderr
