"""``densecnn export MODEL|--weights W --format onnx|openvino``: a self-describing exported model in
the weight store, which ``--weights`` runs on ONNX Runtime or OpenVINO."""

from __future__ import annotations

from pathlib import Path

from densecnn.cli import options as opt
from densecnn.cli.common import console, user_errors
from densecnn.config import PredictConfig

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def export(
    model: opt.ExportModel = None,
    weights: opt.Weights = None,
    trust_weights: opt.TrustWeights = PredictConfig.trust_weights,
    fmt: opt.ExportFormat = "onnx",  # type: ignore[assignment]
    imgsz: opt.ExportImgsz = None,
    half: opt.ExportHalf = False,
    dynamic: opt.Dynamic = False,
    int8: opt.Int8 = False,
    data: opt.CalibrationData = None,
    backbone: opt.Backbone = PredictConfig.backbone,
    device: opt.Device = "cpu",
    verbose: opt.Verbose = False,
) -> None:
    """Export a model to ONNX or OpenVINO for `--weights FILE` (`--backend` picks the runtime).

    The file carries its classes, input size, preprocessing (letterbox or resize/crop and
    normalisation) and the SHA-256 of the checkpoint it came from; densecnn refuses to run it with
    other settings than it was exported for. Written into the weight store's exports/ folder
    (`densecnn weights path` shows where); the path is printed. YOLO detect and -seg, torchvision
    DeepLabV3 / LR-ASPP and classifiers, densecnn's U-Net / DeepLabV3+ and classifier heads export;
    Faster R-CNN runs on torch only.
    """
    from densecnn.cli.run import configure_logging
    from densecnn.errors import UsageError
    from densecnn.runtimes.export import export as export_model
    from densecnn.tasks.loading import load_predictor
    from densecnn.zoo.store import WeightStore

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        if model is None and weights is None:
            raise UsageError("Name a model (densecnn export yolov8n) or pass --weights FILE.")
        if int8 and data is None:
            raise UsageError("--int8 needs calibration images: --data FOLDER.")
        fmt = str(fmt)
        cfg = PredictConfig(
            model=model,
            weights=weights,
            trust_weights=trust_weights,
            backbone=backbone,
            imgsz=imgsz,
            device=device,
            backend="torch",
        )
        store = WeightStore()
        predictor = load_predictor(cfg, store=store)
        if predictor.runtime is not None:
            raise UsageError(f"{weights} is already an exported model.")
        images = calibration_images(data) if data is not None else []
        console.print(f"Exporting {predictor.spec.name if predictor.spec else model} to {fmt}...")
        path, meta = export_model(
            predictor,
            fmt=fmt,
            out_dir=store.root / "exports",
            dynamic=dynamic,
            half=half,
            int8=int8,
            calibration=images,
        )
        console.print(f"{meta.describe()}, {len(meta.names)} classes", soft_wrap=True)
        console.print(str(path), soft_wrap=True, highlight=False)


def calibration_images(data: Path) -> list[Path]:
    """Image files of a folder (recursive, sorted) or of a .txt list."""
    from densecnn.errors import UsageError

    if data.is_dir():
        found = sorted(p for p in data.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    elif data.suffix == ".txt" and data.is_file():
        lines = [line.strip() for line in data.read_text(encoding="utf-8").splitlines()]
        found = [(data.parent / line) for line in lines if line and not line.startswith("#")]
    else:
        raise UsageError(f"--data {data}: give a folder of images or a .txt list of image paths.")
    if not found:
        raise UsageError(f"--data {data}: no images found.")
    return found
