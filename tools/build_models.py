"""Rebuild the embedded models in weights/ with fixed seeds: `make models` (`make models DATA=folder`).

The data folder (default ../shared/data beside the checkout, or $DENSECNN_DATA) holds
``pennfudan/`` (Penn-Fudan pedestrians: images/ + masks/, https://www.cis.upenn.edu/~jshi/ped_html/)
and ``coco128/`` (Ultralytics' COCO128 with labels, https://ultralytics.com/assets/coco128.zip,
plus its instance-segmentation polygons); weights/MODELS.md lists them with their licences.

Steps (each one also runs alone: `python tools/build_models.py STEP`):
  prepare  datasets under build/embedded (Penn-Fudan split + coco128 persons), see embedded_data.py
  detect   `densecnn train detect`: yolov8n from scratch (Ultralytics' trainer underneath)
  segment  `densecnn train segment`: U-Net on a registry backbone, person vs background
  export   fp16 safetensors into weights/; their sha256 + size written into densecnn/zoo/embedded.py
  eval     held-out Penn-Fudan figures: `densecnn eval detect|segment`, and the embedded files
           through densecnn's predictors (recall/precision, IoU)
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
# `densecnn train detect` with the settings of the direct Ultralytics call that made the shipped
# file (tools/verify_detect_recipe.py checks the two give identical losses). Ultralytics' own
# optimizer choice applies (no --lr typed); patience 100 = Ultralytics' default, never hit in 50 epochs.
DETECT = {"model": "yolov8n.yaml", "imgsz": 320, "epochs": 50, "batch": 16}
# U-Net on a registry backbone, from scratch (no ImageNet weights here); 6.7 M parameters, 13 MB fp16.
SEGMENT = {
    "model": "unet",
    "backbone": "mobilenet_v3_large",
    "imgsz": 224,
    "epochs": 8,
    "batch": 8,
    "lr": 3e-3,
}


def prepare() -> None:
    split = embedded_data.pennfudan_split(DATA)
    yaml = embedded_data.build_yolo(DATA, BUILD / "yolo", split)
    train, test = embedded_data.build_masks(DATA, BUILD / "masks", split)
    print(f"prepare: {yaml}; masks {train} / {test}")
    print(f"prepare: Penn-Fudan train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")


def detect_args(epochs: int = DETECT["epochs"], name: str = "person-yolov8n") -> list[str]:
    """`densecnn train detect` arguments of the recipe (``epochs``/``name`` vary for the check)."""
    args = ["train", "detect", "--model", DETECT["model"], "--data", str(BUILD / "yolo" / "data.yaml")]
    args += ["--imgsz", str(DETECT["imgsz"]), "--epochs", str(epochs), "--batch", str(DETECT["batch"])]
    args += ["--seed", str(SEED), "--deterministic", "--device", "cpu", "--workers", "2"]
    args += ["--patience", "100", "--no-amp", "--cache"]
    return [*args, "--project", str(BUILD / "runs"), "--name", name, "--exist-ok"]


def train_detect() -> Path:
    """yolov8n from scratch with `densecnn train detect` (Ultralytics' trainer underneath)."""
    start = time.monotonic()
    _densecnn(detect_args())
    best = _yolo_run_best()
    print(f"detect: trained in {(time.monotonic() - start) / 60:.1f} min -> {best}")
    return best


def train_segment() -> Path:
    """U-Net with `densecnn train segment`, person vs background; 10% of the training masks
    (seeded) validate and pick the best epoch, the Penn-Fudan test images stay out."""
    cfg = SEGMENT
    args = ["train", "segment", "--model", cfg["model"], "--backbone", cfg["backbone"], "--no-pretrained"]
    args += ["--data", str(BUILD / "masks" / "train"), "--class-names", "background,person"]
    args += ["--imgsz", str(cfg["imgsz"]), "--epochs", str(cfg["epochs"]), "--batch", str(cfg["batch"])]
    args += ["--lr", str(cfg["lr"]), "--val-fraction", "0.1", "--patience", "0", "--seed", str(SEED)]
    args += ["--deterministic", "--device", "cpu", "--workers", "1"]
    args += ["--out", str(BUILD / "runs"), "--name", "person-unet", "--exist-ok"]
    start = time.monotonic()
    _densecnn(args)
    print(f"segment: trained in {(time.monotonic() - start) / 60:.1f} min -> {_unet_run_best()}")
    return _unet_run_best()


def _densecnn(args: list[str]) -> None:
    """Run the project's own CLI (this checkout's package) and fail the step when it fails."""
    subprocess.run([sys.executable, "-m", "densecnn", *args], cwd=ROOT, check=True)


def _unet_run_best() -> Path:
    return BUILD / "runs" / "person-unet" / "weights" / "best.safetensors"


def _yolo_run_best() -> Path:
    return BUILD / "runs" / "person-yolov8n" / "weights" / "best.pt"


def export() -> None:
    """fp16 safetensors into weights/ (no pickle), then their sha256 + size into densecnn/zoo/embedded.py."""
    sys.path.insert(0, str(ROOT))
    from densecnn.checkpoint import load_checkpoint, save_checkpoint
    from densecnn.integrations.ultralytics import full_unpickling
    from densecnn.tasks.detect.yolo_state import save_yolo_state

    with full_unpickling():  # our own training run's best.pt
        from ultralytics.nn.tasks import load_checkpoint as load_pt

        model, _ = load_pt(str(_yolo_run_best()))
    save_yolo_state(model, WEIGHTS / "person-yolov8n.safetensors", imgsz=DETECT["imgsz"], half=True)
    state, meta = load_checkpoint(_unet_run_best())
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_checkpoint(WEIGHTS / "person-unet.safetensors", half, meta)
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


def evaluate() -> dict[str, float]:
    """Held-out Penn-Fudan figures: `densecnn eval detect|segment` (mAP, IoU) and the shipped fp16
    files through densecnn's predictors (recall / precision at the default confidence, IoU)."""
    sys.path.insert(0, str(ROOT))
    import eval_embedded

    figures: dict[str, float] = {}
    # The shipped fp16 files. `--split val` of test.yaml = the held-out images; `--split all` of
    # masks/test = the same images.
    yolo, unet = WEIGHTS / "person-yolov8n.safetensors", WEIGHTS / "person-unet.safetensors"
    detect = _densecnn_eval("detect", yolo, BUILD / "yolo" / "test.yaml", "val")
    segment = _densecnn_eval("segment", unet, BUILD / "masks" / "test", "all")
    figures |= {f"detect_{k}": v for k, v in detect.items() if isinstance(v, float)}
    figures |= {f"segment_{k}": v for k, v in segment.items() if isinstance(v, float)}
    test = embedded_data.pennfudan_split(DATA).test
    # The shipped files by path: this process may hold the zoo's digests from before `export`.
    recall = eval_embedded.detection_recall(DATA, test, weights=yolo)
    iou = eval_embedded.segmentation_iou(DATA, test, weights=unet)
    figures |= {f"predict_detect_{k}": v for k, v in recall.items()}
    figures |= {f"predict_segment_{k}": v for k, v in iou.items()}
    fp32 = eval_embedded.segmentation_iou(DATA, test, weights=_unet_run_best())
    figures["predict_segment_person_iou_fp32"] = fp32["person_iou"]
    for key, value in figures.items():
        print(f"eval: {key} = {value:.4f}" if isinstance(value, float) else f"eval: {key} = {value}")
    (BUILD / "figures.json").write_text(json.dumps(figures, indent=2))
    return figures


def _densecnn_eval(task: str, weights: Path, data: Path, split: str) -> dict:
    """`densecnn eval TASK` on the held-out data (prints its table); its metrics.json."""
    out = BUILD / "runs" / "eval"
    args = ["eval", task, "--weights", str(weights), "--data", str(data), "--split", split]
    _densecnn([*args, "--out", str(out), "--name", task, "--exist-ok"])
    return _flat(json.loads((out / task / "metrics.json").read_text()))


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
    for step in list(STEPS) if "all" in args.steps else args.steps:
        STEPS[step]()


if __name__ == "__main__":
    main()
