"""Check that `make models`' detector step trains exactly as the call that made the shipped file.

The shipped weights/person-yolov8n.safetensors came from a direct Ultralytics call
(``YOLO("yolov8n.yaml").train(...)`` below, as tools/build_models.py had it before `densecnn train`
existed); the recipe now runs `densecnn train detect` (build_models.detect_args). Both run here for
``--epochs N`` on the prepared data (`build_models.py prepare` first) with the same seed, and their
results.csv rows (losses, validation metrics; not the time column) must be identical.

    python tools/verify_detect_recipe.py --epochs 2
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_models
from build_models import BUILD, DETECT, ROOT, SEED

OUT = BUILD / "verify"


def direct(epochs: int) -> Path:
    """The shipped file's call, verbatim but for ``epochs`` and the output folder."""
    sys.path.insert(0, str(ROOT))
    from densecnn.integrations.ultralytics import import_ultralytics

    model = import_ultralytics().YOLO(DETECT["model"])
    model.train(
        data=str(BUILD / "yolo" / "data.yaml"),
        epochs=epochs,
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
        project=str(OUT),
        name="direct",
        exist_ok=True,
    )
    return OUT / "direct" / "results.csv"


def recipe(epochs: int) -> Path:
    args = build_models.detect_args(epochs, name="recipe")
    args[args.index("--out") + 1] = str(OUT)
    build_models._densecnn(args)
    return OUT / "recipe" / "results.csv"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    return [{k.strip(): v.strip() for k, v in r.items() if k.strip() != "time"} for r in table]


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--reuse-direct", action="store_true", help="keep a finished direct run")
    opts = parser.parse_args()
    epochs, done = opts.epochs, OUT / "direct" / "results.csv"
    reuse = opts.reuse_direct and done.is_file() and len(rows(done)) == epochs
    a, b = rows(done if reuse else direct(epochs)), rows(recipe(epochs))
    for ra, rb in zip(a, b, strict=True):
        diff = {k: (ra[k], rb.get(k)) for k in ra if ra[k] != rb.get(k)}
        print(f"epoch {ra['epoch']}: " + ("identical" if not diff else f"differ {diff}"))
        for k in ("train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/mAP50(B)"):
            print(f"  {k}: direct {ra[k]}  recipe {rb.get(k)}")
    same = a == b
    print(f"verify: {'identical' if same else 'DIFFERENT'} results.csv for {epochs} epoch(s)")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
