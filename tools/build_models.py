"""Rebuild the embedded models in weights/ with fixed seeds: `make models` (`make models DATA=folder`).

The data folder (default ../shared/data beside the checkout, or $DENSECNN_DATA) holds
``pennfudan/`` (Penn-Fudan pedestrians: images/ + masks/, https://www.cis.upenn.edu/~jshi/ped_html/),
``coco128/`` (Ultralytics' COCO128 with labels, https://ultralytics.com/assets/coco128.zip, plus its
instance-segmentation polygons) and ``coco-person/`` (COCO val2017 photos of people: YOLO person boxes,
instances_person.json polygons); weights/MODELS.md lists them with their licences.

Steps (each one also runs alone: `python tools/build_models.py STEP`; `all` trains the detector and
the segmenter side by side):
  prepare  datasets under build/embedded (seeded held-out splits, see embedded_data.py) and the
           starting weights from git history (START)
  detect   `densecnn train detect`: version 1 fine-tuned, two runs (Ultralytics' trainer underneath)
  segment  `densecnn train segment`: version 2 fine-tuned with box-only photos as extra background
  export   fp16 safetensors into weights/; their sha256 + size written into densecnn/zoo/embedded.py
  eval     held-out figures: `densecnn eval detect|segment`, the embedded files through densecnn's
           predictors (recall/precision, IoU, person pixels on photos without people), the street video
A training step continues an interrupted run (`--resume`) and keeps a finished one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import embedded_data

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DENSECNN_DATA") or ROOT.parent / "shared" / "data")
BUILD = ROOT / "build" / "embedded"
WEIGHTS = ROOT / "weights"
SEED = 0
# Where each model's training starts: an earlier version of its file, read from git history and
# checked against its digest, so a rerun starts from the same weights whatever weights/ holds now.
# The detector (version 2) starts from version 1, trained from scratch on Penn-Fudan + COCO128 by this
# script at commit 2abe6c3 (~72 min); the segmenter (version 3) from version 2, version 1 fine-tuned on
# the outlined people by this script at commit 4d455a0 (66 min). weights/MODELS.md has both histories.
START = {
    "person-yolov8n": (
        "2abe6c3e55d0a633384f96c0f0355a87b4fb1f93",
        "0efeb8c7f1bbdb7088904165a495f49b71e52a463f50d1f85e80aba86d79f806",
    ),
    "person-unet": (
        "4d455a060786aa24d2bc0cf05dae0560b506ceab",
        "ef1d17bc2726f363858e6dd20e3990af8f093eb07892dc02552180328c26c695",
    ),
}
# `densecnn train detect`, two runs. 1: from version 1 with Ultralytics' own optimizer choice (no --lr
# typed: AdamW at lr 0.002 for one class) and augmentation (mosaic closed for the last 10 epochs).
# 2: from run 1's best epoch at a quarter of that learning rate (validation mAP50 was still rising).
DETECT = {"imgsz": 320, "batch": 16}
DETECT_RUNS = (
    {"name": "person-yolov8n", "epochs": 40, "lr": None},
    {"name": "person-yolov8n-stage2", "epochs": 25, "lr": 5e-4},
)
# `densecnn train segment` from version 2 (a U-Net decoder of widths 128-64-32-16-16 on densecnn's
# mobilenet_v3_large: the checkpoint names both): the outlined people of version 2's training set plus
# every training photo with person boxes but no outlines, scored only outside the boxes (masks/boxes,
# see embedded_data.build_box_masks); version 2's seeded validation share of the outlined people
# validates (``val_fraction``, SEED).
SEGMENT = {"data": "boxes", "imgsz": 320, "epochs": 10, "batch": 8, "lr": 1e-3, "val_fraction": 0.1}


def prepare() -> None:
    split = embedded_data.pennfudan_split(DATA)
    coco = embedded_data.coco_split(DATA)
    yaml = embedded_data.build_yolo(DATA, BUILD / "yolo", split, coco)
    masks = embedded_data.build_masks(DATA, BUILD / "masks", split, coco)
    masks["boxes"] = embedded_data.build_box_masks(
        DATA, BUILD / "masks" / "boxes", masks["train"], coco, SEGMENT["val_fraction"], SEED
    )
    for name in START:
        _start_file(name)
    print(f"prepare: {yaml}; masks {', '.join(str(p) for p in masks.values())}")
    print(f"prepare: Penn-Fudan train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")
    print(f"prepare: coco-person train {len(coco.train)}, val {len(coco.val)}, test {len(coco.test)}")
    print(f"prepare: no-person photos train {len(coco.negatives_train)}, test {len(coco.negatives_test)}")


def _start_file(name: str) -> Path:
    """The earlier version of an embedded file that training starts from, from git history (see START)."""
    from densecnn.zoo.store import sha256_file

    commit, digest = START[name]
    path = BUILD / "start" / f"{name}.safetensors"
    if not (path.is_file() and sha256_file(path) == digest):
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(
            ["git", "show", f"{commit}:weights/{name}.safetensors"], cwd=ROOT, capture_output=True
        )
        if blob.returncode:
            raise SystemExit(
                f"prepare: cannot read weights/{name}.safetensors of commit {commit[:10]} "
                f"({blob.stderr.decode().strip()}). Run in a full git clone of densecnn, or rebuild "
                f"that version with `make models` at that commit and put it at {path}."
            )
        path.write_bytes(blob.stdout)
        if sha256_file(path) != digest:
            raise SystemExit(f"prepare: {path} does not have the sha256 {digest} of commit {commit[:10]}")
    return path


def detect_args(stage: int) -> list[str]:
    """`densecnn train detect` arguments of run ``stage`` (0 or 1) of the recipe."""
    cfg = DETECT_RUNS[stage]
    start = _start_file("person-yolov8n") if stage == 0 else _yolo_run_best(stage - 1)
    args = ["train", "detect", "--weights", str(start), "--data", str(BUILD / "yolo" / "data.yaml")]
    args += ["--imgsz", str(DETECT["imgsz"]), "--epochs", str(cfg["epochs"]), "--batch", str(DETECT["batch"])]
    args += ["--lr", str(cfg["lr"])] if cfg["lr"] else []
    args += ["--seed", str(SEED), "--deterministic", "--device", "cpu", "--workers", "2"]
    args += ["--patience", "100", "--no-amp", "--cache"]
    return [*args, "--out", str(BUILD / "runs"), "--name", str(cfg["name"]), "--exist-ok"]


def train_detect() -> Path:
    """Version 1 fine-tuned with `densecnn train detect` (Ultralytics' trainer underneath), twice."""
    for stage, cfg in enumerate(DETECT_RUNS):
        run = BUILD / "runs" / str(cfg["name"])
        _train("detect", detect_args(stage), run, run / "weights" / "last.pt", int(cfg["epochs"]))
    return _yolo_run_best()


def segment_args() -> list[str]:
    """`densecnn train segment` arguments of the recipe: person vs background from version 2; the
    held-out images stay out."""
    cfg = SEGMENT
    args = ["train", "segment", "--weights", str(_start_file("person-unet"))]
    args += ["--data", str(BUILD / "masks" / str(cfg["data"])), "--class-names", "background,person"]
    args += ["--imgsz", str(cfg["imgsz"]), "--epochs", str(cfg["epochs"]), "--batch", str(cfg["batch"])]
    args += ["--lr", str(cfg["lr"]), "--val-fraction", str(cfg["val_fraction"]), "--patience", "0"]
    args += ["--seed", str(SEED), "--deterministic", "--device", "cpu", "--workers", "1"]
    return [*args, "--out", str(BUILD / "runs"), "--name", "person-unet", "--exist-ok"]


def train_segment() -> Path:
    run = BUILD / "runs" / "person-unet"
    _train("segment", segment_args(), run, run / "weights" / "last.safetensors", int(SEGMENT["epochs"]))
    return _unet_run_best()


def _train(task: str, args: list[str], run: Path, last: Path, epochs: int) -> None:
    """Train, or continue an interrupted run of the recipe with `densecnn train TASK --resume`; a
    finished run is kept (delete build/embedded/runs to train again)."""
    done = _epochs_done(run / "results.csv")
    start = time.monotonic()
    if done >= epochs:
        print(f"{task}: {run} finished its {epochs} epochs already: kept (delete it to train again)")
        return
    if last.is_file() and done:
        print(f"{task}: continuing {run} after epoch {done} of {epochs}")
        _densecnn(["train", task, "--resume", str(run)])
    else:
        _densecnn(args)
    print(f"{task}: trained in {(time.monotonic() - start) / 60:.1f} min -> {run}")


def _epochs_done(results: Path) -> int:
    """Rows of a run's results.csv (one per finished epoch)."""
    if not results.is_file():
        return 0
    return max(0, len([ln for ln in results.read_text().splitlines() if ln.strip()]) - 1)


def _densecnn(args: list[str]) -> None:
    """Run the project's own CLI (this checkout's package) and fail the step when it fails."""
    subprocess.run([sys.executable, "-m", "densecnn", *args], cwd=ROOT, check=True)


def _unet_run_best() -> Path:
    return BUILD / "runs" / "person-unet" / "weights" / "best.safetensors"


def _yolo_run_best(stage: int = len(DETECT_RUNS) - 1) -> Path:
    return BUILD / "runs" / str(DETECT_RUNS[stage]["name"]) / "weights" / "best.pt"


def export() -> None:
    """fp16 safetensors into weights/ (no pickle) of each model whose training run has finished (the
    other file stays as it is), then their sha256 + size into densecnn/zoo/embedded.py."""
    sys.path.insert(0, str(ROOT))
    from densecnn.checkpoint import load_checkpoint, save_checkpoint
    from densecnn.integrations.ultralytics import full_unpickling
    from densecnn.tasks.detect.yolo_state import save_yolo_state

    yolo, unet = _yolo_run_best(), _unet_run_best()
    if not (yolo.is_file() or unet.is_file()):
        raise SystemExit(f"export: neither {yolo} nor {unet} exists: run the detect or segment step first")
    if yolo.is_file():
        with full_unpickling():  # our own training run's best.pt
            from ultralytics.nn.tasks import load_checkpoint as load_pt

            model, _ = load_pt(str(yolo))
        save_yolo_state(model, WEIGHTS / "person-yolov8n.safetensors", imgsz=DETECT["imgsz"], half=True)
    else:
        print(f"export: no {yolo}: weights/person-yolov8n.safetensors kept")
    if unet.is_file():
        state, meta = load_checkpoint(unet)
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_checkpoint(WEIGHTS / "person-unet.safetensors", half, meta)
    else:
        print(f"export: no {unet}: weights/person-unet.safetensors kept")
    _register()


def _register() -> None:
    from densecnn.zoo.store import sha256_file

    path = ROOT / "densecnn" / "zoo" / "embedded.py"
    text = path.read_text()
    for const, name in (("DETECT_FILE", "person-yolov8n"), ("SEGMENT_FILE", "person-unet")):
        file = WEIGHTS / f"{name}.safetensors"
        digest, size = sha256_file(file), file.stat().st_size
        entry = f'{const} = (\n    "{file.name}",\n    "{digest}",\n    {size},\n)'  # as ruff formats it
        text, n = re.subn(rf"^{const} = \([^)]*\)", entry, text, count=1, flags=re.M)
        assert n == 1, f"{const} not found in {path}"
        print(f"export: {name} sha256 {digest}, {size} bytes")
    path.write_text(text)


# `densecnn eval` data of each held-out set: (YOLO yaml whose val split is the set, masks folder).
HELD_OUT = {
    "pennfudan": ("test.yaml", "test"),
    "coco-person": ("coco_test.yaml", "coco_test"),
    "no-person": (None, "negatives"),
}
VIDEO = DATA / "video" / "slow_traffic_small.mp4"


def evaluate() -> dict[str, float]:
    """Held-out figures of the shipped fp16 files: `densecnn eval detect|segment` (mAP, IoU) on
    held-out Penn-Fudan and coco-person, densecnn's predictors on those and on the held-out photos
    without people (recall / precision at the default confidence, IoU, share of person pixels), and
    `densecnn detect` on the street video (frames with the walkway pedestrians, boxes on the road)."""
    import eval_embedded

    figures: dict[str, float] = {}
    # The shipped files by path: this process may hold the zoo's digests from before `export`.
    yolo, unet = WEIGHTS / "person-yolov8n.safetensors", WEIGHTS / "person-unet.safetensors"
    for name, (yaml, masks) in HELD_OUT.items():
        key = name.replace("-", "_")
        if yaml is not None:
            detect = _densecnn_eval("detect", yolo, BUILD / "yolo" / yaml, "val", key)
            segment = _densecnn_eval("segment", unet, BUILD / "masks" / masks, "all", key)
            figures |= {f"{key}_detect_{k}": v for k, v in detect.items() if isinstance(v, float)}
            figures |= {f"{key}_segment_{k}": v for k, v in segment.items() if isinstance(v, float)}
        boxes = eval_embedded.detection_recall(eval_embedded.held_out_boxes(DATA, name), weights=yolo)
        pixels = eval_embedded.segmentation_iou(eval_embedded.held_out_masks(DATA, name), weights=unet)
        figures |= {f"{key}_predict_detect_{k}": v for k, v in boxes.items()}
        figures |= {f"{key}_predict_segment_{k}": v for k, v in pixels.items()}
    out = BUILD / "runs" / "eval" / "video"
    _densecnn(
        [
            "detect",
            str(VIDEO),
            "--weights",
            str(yolo),
            "--out",
            str(out.parent),
            "--name",
            out.name,
            "--exist-ok",
        ]
    )
    figures |= {f"video_{k}": v for k, v in eval_embedded.street_video(out / "predictions.jsonl").items()}
    for key, value in figures.items():
        print(f"eval: {key} = {value:.4f}" if isinstance(value, float) else f"eval: {key} = {value}")
    (BUILD / "figures.json").write_text(json.dumps(figures, indent=2))
    return figures


def _densecnn_eval(task: str, weights: Path, data: Path, split: str, name: str) -> dict:
    """`densecnn eval TASK` on held-out data (prints its table); its metrics.json."""
    out = BUILD / "runs" / "eval" / f"{task}-{name}"
    args = ["eval", task, "--weights", str(weights), "--data", str(data), "--split", split]
    _densecnn([*args, "--out", str(out.parent), "--name", out.name, "--exist-ok"])
    return _flat(json.loads((out / "metrics.json").read_text()))


def _flat(doc: dict, prefix: str = "") -> dict:
    """Nested metrics.json → ``{"a_b": value}``."""
    out: dict = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        out |= _flat(value, f"{name}_") if isinstance(value, dict) else {name: value}
    return out


STEPS = {
    "prepare": prepare,
    "detect": train_detect,
    "segment": train_segment,
    "export": export,
    "eval": evaluate,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("steps", nargs="*", choices=[*STEPS, "all"], default=["all"])
    args = parser.parse_args()
    steps = list(STEPS) if "all" in args.steps else args.steps
    for step in steps:
        if step == "detect" and "segment" in steps:
            _detect_beside_segment()
        elif not (step == "segment" and "detect" in steps):  # else trained beside the detector
            STEPS[step]()


def _detect_beside_segment() -> None:
    """Train both at once: Ultralytics' CPU trainer loads its batches in its main process and keeps
    about one core busy, so the segmenter runs beside it (about 95 instead of 140 minutes on 2 cores).
    The segmenter's log goes to build/embedded/segment.log."""
    log = BUILD / "segment.log"
    print(f"segment: training beside the detector, log in {log}")
    with log.open("w") as fh:
        seg = subprocess.Popen([sys.executable, __file__, "segment"], stdout=fh, stderr=subprocess.STDOUT)
        try:
            train_detect()
        finally:
            code = seg.wait()
    print(log.read_text().strip().splitlines()[-1] if log.stat().st_size else "")
    if code:
        raise SystemExit(f"segment: failed (exit {code}); see {log}")


if __name__ == "__main__":
    main()
