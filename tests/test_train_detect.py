"""``densecnn train detect``: short real runs on ../shared/data through the CLI (YOLO by Ultralytics'
trainer, Faster R-CNN by densecnn's loop), offline, resumable, with dataset errors naming file + line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from conftest import DATA, CliRunner, need_data

from densecnn.data.detection import check_dataset, load_detection_data, read_items, train_val
from densecnn.data.detection_export import instance_masks_to_yolo, write_ultralytics_data

PENNFUDAN = DATA / "pennfudan"

# Any socket connection attempt in the subprocess is recorded and refused: training must not need one.
_NO_NETWORK = """
import os, socket
def _refuse(self, address, *args, **kwargs):
    with open(os.environ["NETWORK_LOG"], "a") as fh:
        fh.write(repr(address) + "\\n")
    raise OSError("network disabled by the test")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
"""


def coco8_yaml(tmp_path: Path) -> Path:
    root = need_data(DATA / "coco8")
    names = yaml.safe_load((DATA / "coco128" / "object_detection_config.yaml").read_text())["names"]
    doc = {"path": str(root), "train": "images/train", "val": "images/val", "names": names}
    (tmp_path / "coco8.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "coco8.yaml"


def pennfudan_yaml(out: Path, n: int) -> Path:
    """A one-class YOLO dataset of the first ``n`` Penn-Fudan photos, boxes from the instance masks."""
    root = need_data(PENNFUDAN)
    images = sorted((root / "images").glob("*.png"))[:n]
    return instance_masks_to_yolo(root / "images", root / "masks", out, class_name="person", images=images)


def rows(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def offline_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_NO_NETWORK)
    return {
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "NETWORK_LOG": str(tmp_path / "network.log"),
        "YOLO_CONFIG_DIR": str(tmp_path / "_ultralytics"),  # no cached Arial.ttf from earlier runs
    }


def test_masks_to_boxes_match_pennfudan_annotations(tmp_path: Path) -> None:
    """Boxes made from the instance masks agree with the PASCAL boxes shipped beside them."""
    import re

    data_yaml = pennfudan_yaml(tmp_path / "pf", 6)
    data = load_detection_data(data_yaml)
    for item in read_items(data, list(data.train)):
        text = (PENNFUDAN / "annotations" / f"{item.image.stem}.txt").read_text()
        ref = np.array(re.findall(r"\((\d+), (\d+)\) - \((\d+), (\d+)\)", text), dtype=np.float32)
        size = re.search(r"(\d+) x (\d+) x 3", text)
        assert size is not None
        w, h = int(size[1]), int(size[2])
        ref[:, :2] -= 1  # PASCAL pixels are 1-based and inclusive
        ours = item.pixel_boxes(w, h)
        assert len(ours) == len(ref)
        assert np.abs(np.sort(ours, 0) - np.sort(ref, 0)).max() <= 1.5


def test_yolo_train_offline_loss_falls_then_detect_and_eval(
    tmp_path: Path, run_cli: CliRunner, run_cli_process: CliRunner
) -> None:
    data = coco8_yaml(tmp_path)
    env = offline_env(tmp_path)  # a real process: the sitecustomize and YOLO_CONFIG_DIR act at startup
    args = ["--data", str(data), "--model", "yolov8n.yaml", "--epochs", "3", "--imgsz", "96"]
    # Ultralytics' warmup lasts at least 100 steps from lr 0: a 6-step run skips it to learn at all
    args += ["--batch", "2", "--lr", "0.002", "--warmup-epochs", "0", "--workers", "0", "--no-augment"]
    # --cache = Ultralytics' cache=ram (it changes mosaic sampling, so make models' recipe needs it);
    # checked on this run rather than on a training run of its own
    r = run_cli_process("train", "detect", *args, "--cache", env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    run = tmp_path / "runs" / "train" / "exp"
    assert yaml.safe_load((run / "args.yaml").read_text())["cache"] == "ram"
    table = rows(run / "results.csv")
    assert [int(t["epoch"]) for t in table] == [1, 2, 3]
    assert table[-1]["train/box_loss"] < table[0]["train/box_loss"]
    for name in ("weights/best.pt", "weights/last.pt", "results.png", "args.json", "metrics.json"):
        assert (run / name).is_file(), name
    # Ultralytics' label cache went into the run folder, never into the user's dataset
    assert (run / "data" / "train" / "labels.cache").is_file()
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()

    image = sorted((DATA / "coco8" / "images" / "val").glob("*.jpg"))[0]
    r = run_cli("detect", str(image), "--weights", str(run / "weights" / "best.pt"), "--conf", "0.001")
    assert r.returncode == 0, r.stderr
    r = run_cli("eval", "detect", "--weights", str(run / "weights" / "best.pt"), "--data", str(data))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "faster-coco-eval" in r.stdout
    metrics = json.loads((tmp_path / "runs" / "eval" / "exp" / "metrics.json").read_text())
    assert "mAP50-95" in json.dumps(metrics)


def test_yolo_resume_continues_after_interrupt(tmp_path: Path, run_cli: CliRunner) -> None:
    """Ctrl-C during epoch 2+, then --resume: every epoch appears once in results.csv, in order."""
    EPOCHS = 20
    data = pennfudan_yaml(tmp_path / "pf", 10)
    env = {**os.environ, "DENSECNN_OFFLINE": "1", "COLUMNS": "120"}
    cmd = [
        sys.executable,
        "-m",
        "densecnn",
        "train",
        "detect",
        "--data",
        str(data),
        "--model",
        "yolov8n.yaml",
    ]
    # 20 tiny epochs: on an idle machine one takes ~0.2 s, so fewer finished before the interrupt
    cmd += ["--epochs", str(EPOCHS), "--imgsz", "64", "--batch", "4", "--workers", "0"]
    cmd += ["--val-fraction", "0.2"]
    cmd += ["--lr", "0.002", "--warmup-epochs", "0"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = tmp_path / "runs" / "train" / "exp"
    deadline = time.time() + 300
    while not (run / "weights" / "last.pt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.3)  # let the write of last.pt finish
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    first = rows(run / "results.csv")
    assert 1 <= len(first) < EPOCHS, "the run finished before the interrupt: make the epochs longer"
    # the held-out split is the seeded one of densecnn.data.split, written as files for Ultralytics
    _, val = train_val(load_detection_data(data), val_fraction=0.2, seed=0)
    assert sorted(p.name for p in (run / "data" / "val" / "images").iterdir()) == sorted(p.name for p in val)

    resumed = subprocess.run(
        [sys.executable, "-m", "densecnn", "train", "detect", "--resume", str(run)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    table = rows(run / "results.csv")
    assert [int(t["epoch"]) for t in table] == list(range(1, EPOCHS + 1))
    # epoch 1 was saved before the interrupt: kept, not redone (a row written without its checkpoint
    # is dropped and that epoch redone, so no epoch appears twice)
    assert table[0] == first[0]
    again = run_cli("train", "detect", "--resume", str(run))  # no signal here: in-process
    assert again.returncode == 2 and "nothing to resume" in again.stderr


def test_yolo_fine_tunes_from_a_densecnn_safetensors_file(tmp_path: Path, run_cli: CliRunner) -> None:
    """--weights FILE.safetensors (a YOLO state file, e.g. the embedded person-yolov8n) trains through
    Ultralytics from those tensors: the architecture from its stored yaml, no pickle involved."""
    import torch

    from densecnn.integrations.ultralytics import import_ultralytics
    from densecnn.tasks.detect.yolo_state import save_yolo_state

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    torch.manual_seed(3)
    start = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    start.names = {0: "person"}
    weights = tmp_path / "start.safetensors"
    save_yolo_state(start, weights, imgsz=64, half=False)
    data = pennfudan_yaml(tmp_path / "pf", 8)
    # lr 1e-9, no warmup (its bias lr is 0.1): one epoch leaves the conv weights where they started
    args = ["--data", str(data), "--weights", str(weights), "--epochs", "1", "--imgsz", "64"]
    args += ["--batch", "4", "--workers", "0", "--lr", "1e-9", "--warmup-epochs", "0", "--no-augment"]
    r = run_cli("train", "detect", *args, "--out", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr + r.stdout
    trained, _ = load_checkpoint(str(tmp_path / "runs" / "exp" / "weights" / "last.pt"))
    assert trained.names == {0: "person"} and trained.yaml["nc"] == 1
    ours, theirs = start.state_dict(), trained.float().state_dict()
    convs = [k for k in ours if k.endswith("conv.weight")]
    assert len(convs) > 50
    for key in convs:
        torch.testing.assert_close(theirs[key], ours[key], atol=1e-5, rtol=1e-3)
    # a densecnn checkpoint that is not a YOLO model still goes to the Faster R-CNN trainer
    bad = run_cli("train", "detect", "--data", str(data), "--weights", str(tmp_path / "missing.safetensors"))
    assert bad.returncode != 0 and "missing.safetensors" in bad.stderr


def test_fasterrcnn_trains_and_checkpoint_loads_in_detect(tmp_path: Path, run_cli: CliRunner) -> None:
    data = pennfudan_yaml(tmp_path / "pf", 8)
    args = ["--data", str(data), "--model", "fasterrcnn", "--backbone", "resnet18", "--epochs", "2"]
    args += ["--imgsz", "128", "--batch", "2", "--lr", "3e-4", "--workers", "0", "--val-fraction", "0.25"]
    r = run_cli("train", "detect", *args, "--no-pretrained")
    assert r.returncode == 0, r.stderr + r.stdout
    run = tmp_path / "runs" / "train" / "exp"
    table = rows(run / "results.csv")
    assert table[-1]["train/loss"] < table[0]["train/loss"]
    best = run / "weights" / "best.safetensors"
    from densecnn.checkpoint import read_meta

    meta = read_meta(best)
    assert meta is not None and meta.class_names == ("__background__", "person")
    assert meta.backbone == "resnet18" and meta.extra["data"]["val_fraction"] == 0.25
    image = sorted((PENNFUDAN / "images").glob("*.png"))[0]
    r = run_cli("detect", str(image), "--weights", str(best), "--conf", "0.01")
    assert r.returncode == 0, r.stderr
    r = run_cli("eval", "detect", "--weights", str(best), "--data", str(data), "--split", "val")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "mAP50" in r.stdout


def test_malformed_yolo_labels_name_file_and_line(tmp_path: Path, run_cli: CliRunner) -> None:
    image = sorted((need_data(DATA / "coco8") / "images" / "train").glob("*.jpg"))[0]
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "labels").mkdir()
    (tmp_path / "ds" / "images" / image.name).symlink_to(image)
    label = tmp_path / "ds" / "labels" / f"{image.stem}.txt"
    label.write_text(
        "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n\n7 0.5 0.5 0.1 0.1\n1 0.5 abc 0.1 0.1\n0 0.5 0.5 1.5 0.1\n"
    )
    (tmp_path / "ds" / "data.yaml").write_text("path: .\ntrain: images\nnames: [a, b]\n")
    problems = check_dataset(tmp_path / "ds" / "data.yaml")
    assert [p.split(": ")[0] for p in problems] == [f"{label}:{n}" for n in (2, 4, 5, 6)]
    assert "got 4 values" in problems[0] and "class 7" in problems[1] and "'abc'" in problems[2]
    r = run_cli("train", "detect", "--data", str(tmp_path / "ds" / "data.yaml"), "--epochs", "1")
    assert r.returncode == 2
    assert f"{label}:2:" in r.stderr and f"{label}:4:" in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing started
    r = run_cli("data", "check", str(tmp_path / "ds" / "data.yaml"))
    assert r.returncode != 0 and f"{label}:6:" in r.stdout + r.stderr


def test_zoo_weights_are_never_downloaded(tmp_path: Path, run_cli: CliRunner) -> None:
    r = run_cli("train", "detect", "--data", str(coco8_yaml(tmp_path)), "--model", "yolov8n", "--epochs", "1")
    assert r.returncode == 3
    assert "never downloads" in r.stderr and "yolov8n.yaml" in r.stderr


def test_coco_json_becomes_ultralytics_layout(tmp_path: Path) -> None:
    """A COCO JSON converts to links + YOLO label rows (crowd left out) for Ultralytics."""
    images = sorted((need_data(DATA / "coco8") / "images" / "train").glob("*.jpg"))[:2]
    from PIL import Image

    doc: dict = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}],
    }
    for i, p in enumerate(images, start=1):
        w, h = Image.open(p).size
        doc["images"].append({"id": i, "file_name": str(p), "width": w, "height": h})
        doc["annotations"].append({"id": 2 * i, "image_id": i, "category_id": 9, "bbox": [10, 20, 100, 50]})
        doc["annotations"].append(
            {"id": 2 * i + 1, "image_id": i, "category_id": 5, "bbox": [0, 0, 5, 5], "iscrowd": 1}
        )
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    data = load_detection_data(tmp_path / "ann.json")
    assert data.names == ("a", "b") and data.val is None
    out = write_ultralytics_data(
        data, [Path(images[0]).resolve()], [Path(images[1]).resolve()], tmp_path / "d"
    )
    spec = yaml.safe_load(out.read_text())
    assert spec["names"] == {0: "a", 1: "b"}
    w, h = Image.open(images[0]).size
    line = (tmp_path / "d" / "train" / "labels" / f"{images[0].stem}.txt").read_text().split()
    assert line[0] == "1" and len(line) == 5
    assert np.allclose([float(v) for v in line[1:]], [60 / w, 45 / h, 100 / w, 50 / h], atol=1e-5)
    assert (tmp_path / "d" / "train" / "images" / images[0].name).resolve() == images[0].resolve()


def test_cache_is_refused_where_there_is_no_such_cache(tmp_path: Path, run_cli: CliRunner) -> None:
    """Tasks and models without Ultralytics' RAM cache refuse --cache rather than ignore it (that it
    reaches Ultralytics is checked in test_yolo_train_offline_loss_falls_then_detect_and_eval)."""
    data = coco8_yaml(tmp_path)
    r = run_cli("train", "detect", "--data", str(data), "--model", "fasterrcnn", "--cache")
    assert r.returncode == 2 and "--cache" in r.stderr
    r = run_cli("train", "segment", "--data", str(tmp_path), "--cache")
    assert r.returncode == 2 and "--cache" in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing started
