"""Images per second of ``densecnn segment`` over a folder next to a plain Python loop of the upstream
library over the same images, same weights, both on CPU, as whole processes (bench/_harness.py).

``--kind yolo-seg`` (default): a YOLO -seg model against a loop of Ultralytics'
``YOLO(pt).predict(path, retina_masks=True)`` (the masks densecnn makes); the loop writes nothing.
``--kind semantic``: torchvision's DeepLabV3-MobileNetV3 against a loop that reads each image,
applies the weights' own transforms (resize 520, normalise), runs the model, upsamples the logits to
the image and writes the argmax label map as a PNG (what ``densecnn segment`` writes besides its
overlays and JSONL).

Runs alternate densecnn, peer, densecnn, peer... Both get the same ``OMP_NUM_THREADS`` when
``--threads`` is given (otherwise each its own default: densecnn's thread plan, Ultralytics' 1 when
unset, torch's one per core for the torchvision loop).

    .venv/bin/python bench/segment_images.py                                  # seeded yolov8n-seg, coco128
    .venv/bin/python bench/segment_images.py --kind semantic --json seg.json
    .venv/bin/python bench/segment_images.py --weights W.pt --no-save-overlay --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DATA, alternate, child_env, compare, find_exe, machine_info, run_timed, seeded_weights

DEFAULT_SOURCE = DATA / "coco128" / "images" / "train2017"
SUFFIXES = {".jpg", ".jpeg", ".png"}

_YOLO_LOOP = """
import sys, pathlib
from ultralytics import YOLO
model = YOLO(sys.argv[1])
paths = sorted(p for p in pathlib.Path(sys.argv[2]).rglob("*") if p.suffix.lower() in {".jpg", ".png"})
for p in paths:
    model.predict(str(p), retina_masks=True, verbose=False, device="cpu")
print(len(paths))
"""

_TORCHVISION_LOOP = """
import sys, pathlib
import cv2, torch
from PIL import Image
from torchvision.models.segmentation import DeepLabV3_MobileNet_V3_Large_Weights, deeplabv3_mobilenet_v3_large
model = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
model.load_state_dict(torch.load(sys.argv[1], weights_only=True))
model.eval()
transform = DeepLabV3_MobileNet_V3_Large_Weights.DEFAULT.transforms()
out = pathlib.Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
paths = sorted(p for p in pathlib.Path(sys.argv[2]).rglob("*") if p.suffix.lower() in {".jpg", ".png"})
with torch.inference_mode():
    for p in paths:
        image = Image.open(p).convert("RGB")
        logits = model(transform(image).unsqueeze(0))["out"]
        logits = torch.nn.functional.interpolate(logits, size=image.size[::-1], mode="bilinear")
        cv2.imwrite(str(out / (p.stem + ".png")), logits[0].argmax(0).to(torch.uint8).numpy())
print(len(paths))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=("yolo-seg", "semantic"), default="yolo-seg")
    ap.add_argument("--weights", type=Path, help="default: seeded weights of the kind's model")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default="", help="OMP_NUM_THREADS for both (default: each its own)")
    ap.add_argument("--wait-idle", type=float, default=0.0, help="seconds to wait for an idle machine")
    ap.add_argument("--no-save-overlay", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    source = args.source.resolve()
    images = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not images:
        sys.exit(f"error: no images under {source}")
    with tempfile.TemporaryDirectory(prefix="densecnn-seg-bench-") as tmp:
        work = Path(tmp)
        weights = args.weights.resolve() if args.weights else _weights(args.kind, work, images)
        env = child_env(work, **({"OMP_NUM_THREADS": args.threads} if args.threads else {}))
        env["DENSECNN_WEIGHTS_DIR"] = str(work / "weights")
        peer = "ultralytics" if args.kind == "yolo-seg" else "torchvision"

        def one(tool: str, repeat: int) -> object:
            if tool == "densecnn":
                cmd = [find_exe("densecnn"), "segment", str(source), "--weights", str(weights)]
                cmd += ["--device", "cpu"]
                cmd += ["--quiet", "--out", str(work / "runs"), "--name", f"r{repeat}"]
                if args.kind == "semantic":
                    cmd += ["--model", "deeplabv3_mobilenet_v3_large"]
                if args.no_save_overlay:
                    cmd.append("--no-save-overlay")
            elif args.kind == "yolo-seg":
                cmd = [sys.executable, "-c", _YOLO_LOOP, str(weights), str(source)]
            else:
                cmd = [
                    sys.executable,
                    "-c",
                    _TORCHVISION_LOOP,
                    str(weights),
                    str(source),
                    str(work / f"tv{repeat}"),
                ]
            return run_timed(cmd, label=tool, env=env, log_path=work / f"{tool}{repeat}.log", cwd=work)

        # untimed: the weight cache's one-time measurements (batch size, backend, encoder preset)
        one("densecnn", 0)
        runs = alternate(("densecnn", peer), args.repeats, one, wait=args.wait_idle)  # type: ignore[arg-type]
        failed = [r for r in runs if not r.ok]
        for r in failed:
            print(f"{r.label} failed (exit {r.rc}):\n{r.log[-2000:]}")
    report = {
        "kind": args.kind,
        "source": str(source),
        "images": len(images),
        "weights": str(args.weights or f"seeded ({args.kind})"),
        "summary": compare(runs, ours="densecnn", theirs=peer, units=len(images)),
        "runs": [r.record() for r in runs],
        "machine": machine_info(),
    }
    print(json.dumps(report["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _weights(kind: str, work: Path, images: list[Path]) -> Path:
    if kind == "yolo-seg":
        return seeded_weights("yolov8n-seg", work / "seeded-yolov8n-seg.pt", images=images[:8])
    return seeded_weights("deeplabv3", work / "seeded-deeplabv3-mbv3.pth")


if __name__ == "__main__":
    main()
