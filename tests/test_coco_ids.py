"""predictions.coco.json uses COCO's official category ids for COCO-trained models of every family
(YOLO numbers COCO 0-79, torchvision 1-90), so both score against COCO-format ground truth with
pycocotools; other models keep their own ids."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from conftest import COCO8, CliRunner, need_data
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densecnn.sinks.coco import CocoSink
from densecnn.zoo.coco import COCO80, COCO91, coco_category_ids


def test_coco_ids_of_both_numberings_and_none_for_other_models() -> None:
    yolo = coco_category_ids(dict(enumerate(COCO80)))
    assert yolo is not None and len(yolo) == 80
    assert (yolo[0], yolo[2], yolo[11], yolo[79]) == (1, 3, 13, 90)  # person, car, stop sign, toothbrush
    assert all(COCO91[official] == COCO80[c] for c, official in yolo.items())
    tv = coco_category_ids(dict(enumerate(COCO91)))
    assert tv is not None and set(tv.values()) == set(yolo.values()) and all(k == v for k, v in tv.items())
    assert coco_category_ids({0: "person", 1: "car"}) is None
    assert coco_category_ids(dict(enumerate(COCO80[:79]))) is None


def test_custom_model_keeps_its_ids(tmp_path: Path) -> None:
    sink = CocoSink(tmp_path / "p.json", class_names={0: "cat", 1: "dog"})
    sink.add_record({"source": "a.jpg", "width": 50, "height": 40, "detections": [
        {"class_id": 1, "class_name": "dog", "score": 0.9, "box": [1, 2, 11, 12]}]})  # fmt: skip
    sink.close()
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["annotations"][0]["category_id"] == 1
    assert data["categories"] == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
    assert data["info"]["category_ids"] == "the model's class ids"


def _ground_truth_from_jsonl(run: Path, path: Path) -> Path:
    """COCO ground truth built from the run's predictions.jsonl, with the official id found by class
    *name* in COCO's own table: the file scores high against it only if its ids are official."""
    official = {name: i for i, name in enumerate(COCO91) if name not in ("N/A", "__background__")}
    coco = json.loads((run / "predictions.coco.json").read_text())
    ids = {img["file_name"]: img["id"] for img in coco["images"]}
    images, anns = coco["images"], []
    for line in (run / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        for det in row["detections"]:
            x1, y1, x2, y2 = det["box"]
            anns.append({"id": len(anns) + 1, "image_id": ids[row["source"]], "iscrowd": 0,
                         "category_id": official[det["class_name"]], "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1)})  # fmt: skip
    cats = [{"id": i, "name": n} for n, i in official.items()]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _coco8_ground_truth(images: list[Path], path: Path) -> Path:
    """coco8's YOLO labels as a COCO file with the official ids (as COCO's own annotation files)."""
    from PIL import Image

    official = coco_category_ids(dict(enumerate(COCO80)))
    assert official is not None
    imgs, anns = [], []
    for i, image in enumerate(images, start=1):
        w, h = Image.open(image).size
        imgs.append({"id": i, "file_name": image.name, "width": w, "height": h})
        label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
        for line in label.read_text().split("\n") if label.is_file() else []:
            if not line.strip():
                continue
            c, cx, cy, bw, bh = (float(v) for v in line.split())
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": official[int(c)], "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    cats = [{"id": official[c], "name": n} for c, n in enumerate(COCO80)]
    path.write_text(json.dumps({"images": imgs, "annotations": anns, "categories": cats}))
    return path


def _evaluate(gt_path: Path, dt_path: Path) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(json.loads(dt_path.read_text())["annotations"])
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_yolo_and_torchvision_coco_models_write_the_same_official_ids(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path, rcnn_weights: Path
) -> None:
    folder = need_data(COCO8) / "val"
    runs = {}
    for name, args in {
        "yolo": ["--weights", str(yolo_weights), "--imgsz", "320", "--conf", "0.3", "--max-det", "60"],
        "tv": ["--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--weights", str(rcnn_weights),
               "--conf", "0.3", "--max-det", "60"],
    }.items():  # fmt: skip
        r = run_cli("detect", str(folder), *args, "--no-save", "--name", name)
        assert r.returncode == 0, r.stderr + r.stdout
        runs[name] = tmp_path / "runs/detect" / name

    files = {k: json.loads((run / "predictions.coco.json").read_text()) for k, run in runs.items()}
    cats = {k: {c["name"]: c["id"] for c in f["categories"]} for k, f in files.items()}
    assert cats["yolo"] == cats["tv"]  # the same 80 categories, the same ids
    assert (cats["yolo"]["person"], cats["yolo"]["car"], cats["yolo"]["toothbrush"]) == (1, 3, 90)
    assert files["yolo"]["info"]["category_id_of_class"]["0"] == 1  # stated in the file
    for k, f in files.items():
        assert f["annotations"], k  # the random models do detect things
        used = {a["category_id"] for a in f["annotations"]}
        assert used <= set(cats[k].values()) and 0 not in used

    for k, run in runs.items():
        # Each file against ground truth that names its own detections by COCO's official ids: the
        # detections match (AP near 1; COCOeval's greedy matching can pair near-identical boxes
        # crosswise), which they would not with the model's own 0-79 ids (AP near 0).
        gt = _ground_truth_from_jsonl(run, tmp_path / f"gt_{k}.json")
        assert _evaluate(gt, run / "predictions.coco.json").stats[0] > 0.9, k
        # And against coco8's real labels in COCO's numbering: pycocotools scores it (random weights,
        # so the AP itself is low; -1 would mean no category in common).
        real = _coco8_ground_truth(sorted(folder.iterdir()), tmp_path / "gt_coco8.json")
        ev = _evaluate(real, run / "predictions.coco.json")
        assert 0.0 <= ev.stats[0] <= 1.0 and ev.stats[8] >= 0.0, k
