"""Rebuild the embedded models in weights/ from ../shared/data with fixed seeds: `make models`.

Steps (each one also runs alone: `python tools/build_models.py STEP`):
  prepare  datasets under build/embedded (Penn-Fudan split + coco128 persons), see embedded_data.py
  detect   yolov8n from scratch through Ultralytics' own trainer
  segment  U-Net (smp) on a registry backbone, person vs background
  export   fp16 safetensors into weights/; their sha256 + size written into densecnn/zoo/embedded.py
  eval     held-out Penn-Fudan figures with `densecnn eval` / the embedded predictors
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import embedded_data

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BUILD = ROOT / "build" / "embedded"
WEIGHTS = ROOT / "weights"
SEED = 0
DETECT = {"model": "yolov8n.yaml", "imgsz": 320, "epochs": 50, "batch": 16}
SEGMENT = {
    "backbone": "mobilenet_v3_small",
    "decoder_channels": (128, 64, 32, 16, 8),
    "imgsz": 224,
    "crop": 160,
    "epochs": 30,
    "batch": 8,
    "lr": 2e-3,
}


def prepare() -> None:
    split = embedded_data.pennfudan_split(DATA)
    yaml = embedded_data.build_yolo(DATA, BUILD / "yolo", split)
    train, test = embedded_data.build_masks(DATA, BUILD / "masks", split)
    print(f"prepare: {yaml}; masks {train} / {test}")
    print(f"prepare: Penn-Fudan train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")


def train_detect() -> Path:
    """yolov8n from scratch, Ultralytics' trainer (the same settings `densecnn train detect` passes on)."""
    sys.path.insert(0, str(ROOT))
    from densecnn.tasks.detect._ultralytics import import_ultralytics

    ultralytics = import_ultralytics()
    start = time.monotonic()
    model = ultralytics.YOLO(DETECT["model"])
    model.train(
        data=str(BUILD / "yolo" / "data.yaml"),
        epochs=DETECT["epochs"],
        imgsz=DETECT["imgsz"],
        batch=DETECT["batch"],
        seed=SEED,
        deterministic=True,
        device="cpu",
        workers=2,
        cache="ram",
        pretrained=False,
        amp=False,
        plots=False,
        project=str(BUILD / "runs"),
        name="person-yolov8n",
        exist_ok=True,
    )
    best = BUILD / "runs" / "person-yolov8n" / "weights" / "best.pt"
    print(f"detect: trained in {(time.monotonic() - start) / 60:.1f} min -> {best}")
    return best


def train_segment() -> Path:
    """U-Net on mobilenet_v3_small from scratch (tools/train_unet.py), person vs background."""
    sys.path.insert(0, str(ROOT))
    from train_unet import train_unet

    out = BUILD / "runs" / "person-unet" / "weights" / "best.safetensors"
    return train_unet(data=BUILD / "masks" / "train", out=out, seed=SEED, **SEGMENT)  # type: ignore[arg-type]


def _yolo_run_best() -> Path:
    return BUILD / "runs" / "person-yolov8n" / "weights" / "best.pt"


def export() -> None:
    """fp16 safetensors into weights/ (no pickle), then their sha256 + size into densecnn/zoo/embedded.py."""
    sys.path.insert(0, str(ROOT))
    from densecnn.checkpoint import load_checkpoint, save_checkpoint
    from densecnn.tasks.detect._ultralytics import full_unpickling
    from densecnn.tasks.detect.yolo_state import save_yolo_state

    with full_unpickling():  # our own training run's best.pt
        from ultralytics.nn.tasks import load_checkpoint as load_pt

        model, _ = load_pt(str(_yolo_run_best()))
    save_yolo_state(model, WEIGHTS / "person-yolov8n.safetensors", imgsz=DETECT["imgsz"], half=True)
    state, meta = load_checkpoint(BUILD / "runs" / "person-unet" / "weights" / "best.safetensors")
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
    """Held-out Penn-Fudan figures: Ultralytics' val (mAP) and densecnn's predictors (recall, IoU)."""
    sys.path.insert(0, str(ROOT))
    import eval_embedded

    from densecnn.tasks.detect._ultralytics import full_unpickling, import_ultralytics

    test = embedded_data.pennfudan_split(DATA).test
    with full_unpickling():  # our own training run's best.pt
        yolo = import_ultralytics().YOLO(str(_yolo_run_best()))
    val = yolo.val(
        data=str(BUILD / "yolo" / "data.yaml"),
        split="test",
        imgsz=DETECT["imgsz"],
        batch=16,
        device="cpu",
        plots=False,
        project=str(BUILD / "runs"),
        name="val-test",
        exist_ok=True,
    )
    figures = {"detect_map50": float(val.box.map50), "detect_map50_95": float(val.box.map)}
    # The shipped files by path: this process may hold the zoo's digests from before `export`.
    recall = eval_embedded.detection_recall(DATA, test, weights=WEIGHTS / "person-yolov8n.safetensors")
    iou = eval_embedded.segmentation_iou(DATA, test, weights=WEIGHTS / "person-unet.safetensors")
    figures |= {f"detect_{k}": v for k, v in recall.items()}
    figures |= {f"segment_{k}": v for k, v in iou.items()}
    fp32 = BUILD / "runs" / "person-unet" / "weights" / "best.safetensors"
    figures["segment_person_iou_fp32"] = eval_embedded.segmentation_iou(DATA, test, weights=fp32)[
        "person_iou"
    ]
    _densecnn_eval("detect", _yolo_run_best(), BUILD / "yolo" / "test.yaml", "val")
    _densecnn_eval("segment", WEIGHTS / "person-unet.safetensors", BUILD / "masks" / "test", "all")
    for key, value in figures.items():
        print(f"eval: {key} = {value:.4f}" if isinstance(value, float) else f"eval: {key} = {value}")
    (BUILD / "figures.json").write_text(json.dumps(figures, indent=2))
    return figures


def _densecnn_eval(task: str, weights: Path, data: Path, split: str) -> None:
    """`densecnn eval TASK` on the held-out data (prints its table), where this checkout has it."""
    if importlib.util.find_spec("densecnn.cli.eval") is None:
        print(f"eval: `densecnn eval` is not in this checkout; {task} figures above only")
        return
    args = ["eval", task, "--weights", str(weights), "--data", str(data), "--split", split]
    args += ["--project", str(BUILD / "runs" / "eval"), "--name", task, "--exist-ok"]
    subprocess.run([sys.executable, "-m", "densecnn", *args], cwd=ROOT, check=True)


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
