"""`densecnn train classify` on real crops (Penn-Fudan pedestrians vs background windows of the same
photos): it learns, its checkpoint works in `densecnn classify` and `densecnn eval classify`, and an
interrupted run resumes from its last epoch (exactly, in-process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _train_data import densecnn, person_crops, read_csv
from conftest import DATA, need_data

PENNFUDAN = DATA / "pennfudan"


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_data(PENNFUDAN)
    return person_crops(PENNFUDAN, tmp_path_factory.mktemp("cls") / "crops", n_images=30)


@pytest.fixture(scope="module")
def trained(crops: Path) -> Path:
    r = densecnn(
        "train", "classify", "--data", "crops", "--backbone", "resnet18", "--imgsz", "64", "--epochs", "6",
        "--batch", "8", "--lr", "2e-3", "--workers", "0", cwd=crops.parent,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return crops.parent / "runs/train/exp"


def test_learns_person_vs_background(trained: Path, crops: Path) -> None:
    rows = read_csv(trained / "results.csv")
    assert len(rows) == 6
    assert np.mean([r["train/loss"] for r in rows[-2:]]) < 0.8 * rows[0]["train/loss"]
    best = max(r["top1"] for r in rows)
    n_person, n_bg = len(list((crops / "person").iterdir())), len(list((crops / "background").iterdir()))
    majority = max(n_person, n_bg) / (n_person + n_bg)
    assert best >= 0.7 and best > majority + 0.15, (best, majority)


def test_checkpoint_classifies_and_evaluates(trained: Path, crops: Path) -> None:
    """`densecnn classify --weights best.safetensors` needs nothing else; the accuracy of its
    predictions on the held-out crops equals `eval classify`'s top-1 and training's best."""
    from densecnn.data.imagefolder import open_image_folder

    work = crops.parent
    held = work / "held"
    held.mkdir()
    val = open_image_folder(crops).val
    names = ("background", "person")
    for s in val:
        (held / f"{names[s.label]}__{s.image.name}").symlink_to(s.image)
    best = trained / "weights/best.safetensors"
    r = densecnn("classify", "held", "--weights", str(best), "--no-save", "--name", "held", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [json.loads(x) for x in (work / "runs/classify/held/predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(val)
    correct = sum(rec["classes"][0]["class_name"] == Path(rec["source"]).name.split("__")[0] for rec in lines)

    r = densecnn("eval", "classify", "--weights", str(best), "--data", "crops", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((work / "runs/eval/exp/metrics.json").read_text())
    assert report["metrics"]["top1"] == pytest.approx(correct / len(val))
    assert report["metrics"]["top1"] == pytest.approx(
        json.loads((trained / "metrics.json").read_text())["best"]["top1"]
    )
    assert (work / "runs/eval/exp/confusion_matrix.png").is_file()
    assert set(report["per_class"]) == set(names) and "top1" in r.stdout


def test_ctrl_c_then_resume_continues_from_the_saved_epoch(crops: Path) -> None:
    work = crops.parent
    args = ["train", "classify", "--data", "crops", "--backbone", "lenet", "--imgsz", "32", "--batch", "16"]
    env_cmd = [sys.executable, "-m", "densecnn", *args, "--epochs", "200", "--workers", "0", "--name", "int"]
    env = {**os.environ, "DENSECNN_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        env_cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    state = work / "runs/train/int/weights/last.state.json"
    deadline = time.monotonic() + 300
    while not state.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "--resume" in err
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 200 and len(read_csv(work / "runs/train/int/results.csv")) == done

    r = densecnn("train", "classify", "--resume", "runs/train/int", "--epochs", str(done + 2), cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Resuming runs/train/int from epoch {done + 1}/{done + 2}" in " ".join(r.stdout.split())
    rows = read_csv(work / "runs/train/int/results.csv")
    assert [row["epoch"] for row in rows] == list(range(1, done + 3))
    args_json = json.loads((work / "runs/train/int/args.json").read_text())
    assert args_json["backbone"] == "lenet" and args_json["imgsz"] == 32  # the run's own settings
    r = densecnn("train", "classify", "--resume", "runs/train/int/weights/last.safetensors", cwd=work)
    assert r.returncode == 2 and f"already ran {done + 2} of {done + 2} epochs" in r.stderr


def test_resume_reproduces_an_uninterrupted_run(crops: Path, tmp_path: Path) -> None:
    """Interrupted after epoch 1 of 3 and resumed: the final weights equal an uninterrupted run's."""
    from densecnn.checkpoint import load_checkpoint
    from densecnn.train.classify import build_task
    from densecnn.train.config import TrainConfig
    from densecnn.train.loop import fit, resolve_resume

    def cfg(name: str, **kw: object) -> TrainConfig:
        return TrainConfig(
            task="classify", data=crops, backbone="lenet", imgsz=32, epochs=3, batch=16, workers=0,
            project=tmp_path, name=name, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    fit(cfg("a"), build_task(cfg("a")))
    task = build_task(cfg("b"))
    validate, calls = task.validate, []

    def interrupt_in_epoch_2(*args: object) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return validate(*args)

    task.validate = interrupt_in_epoch_2
    with pytest.raises(KeyboardInterrupt):
        fit(cfg("b"), task)
    resumed = resolve_resume(cfg("b", resume=tmp_path / "b"))
    fit(resumed, build_task(resumed))
    a, _ = load_checkpoint(tmp_path / "a/weights/last.safetensors")
    b, _ = load_checkpoint(tmp_path / "b/weights/last.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert (
        read_csv(tmp_path / "a/results.csv")[-1]["train/loss"]
        == read_csv(tmp_path / "b/results.csv")[-1]["train/loss"]
    )


def test_malformed_image_folder(tmp_path: Path, run_cli) -> None:
    need_data(PENNFUDAN)
    root = tmp_path / "folder"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
    good = next((DATA / "coco8/images").rglob("*.jpg"))
    (root / "cat" / "a.jpg").write_bytes(good.read_bytes())
    (root / "dog" / "b.jpg").write_bytes(good.read_bytes()[:5000])  # truncated
    r = run_cli("data", "check", "folder")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "b.jpg: truncated JPEG" in " ".join(r.stdout.split())
    (root / "dog" / "b.jpg").unlink()
    (root / "dog").rmdir()
    r = run_cli("train", "classify", "--data", "folder", "--epochs", "1")
    assert r.returncode == 2 and "found 1 class folder(s) (cat)" in " ".join(r.stderr.split())
