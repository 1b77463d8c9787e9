"""Backends: the same weights through torch, ONNX Runtime and OpenVINO give the same results.

Every family that exports is run on real photos through the torch predictor and through its export
on both runtimes in fp32 (``half=False``): boxes IoU >= 0.99 and scores within 1e-3, masks and label
maps >= 0.99 pixel agreement, classes equal; OpenVINO's bf16 default is compared on its own.
Exported files keep their metadata; a file asked to run with settings it was not exported for is
refused with a message that says what to do.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _factories import make_classifier_weights, make_segmentation_state_dict, make_yolo_seg_checkpoint
from conftest import COCO8, DATA, ROOT, need_data

import densecnn
from densecnn.errors import UsageError
from densecnn.results import Frame
from densecnn.runtimes import available_backends, import_openvino
from densecnn.runtimes.engines import cpu_has_bf16
from densecnn.runtimes.export import export
from densecnn.runtimes.meta import read_meta
from densecnn.zoo.store import sha256_file

pytest.importorskip("onnxruntime")
if importlib.util.find_spec("openvino") is not None:
    import_openvino()  # as densecnn imports it: with OpenVINO's telemetry off
pytest.importorskip("openvino")

RUNTIMES = ("onnxruntime", "openvino")
PERSON_YOLO = ROOT / "weights" / "person-yolov8n.safetensors"
PERSON_UNET = ROOT / "weights" / "person-unet.safetensors"


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    """Penn-Fudan photos: the embedded person detector finds people in them."""
    return sorted((need_data(DATA / "pennfudan") / "images").glob("*.png"))[:3]


@pytest.fixture(scope="module")
def frames(photos: list[Path]) -> list[Frame]:
    """Three real photos shrunk to one size (cheap, and OpenVINO compiles one shape per model)."""
    out = []
    for path in photos:
        image = cv2.resize(cv2.imread(str(path)), (288, 224), interpolation=cv2.INTER_AREA)
        out.append(Frame(image, source=path.name, path=str(path)))
    return out


@pytest.fixture(scope="module")
def person_torch() -> object:
    return densecnn.load(weights=PERSON_YOLO, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def person_static_onnx(person_torch: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded detector exported with static shapes: batch 1 at 320x320."""
    path, _ = export(person_torch, fmt="onnx", out_dir=tmp_path_factory.mktemp("static"))  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def auto_store(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One weight store for the tests of checkpoints on other backends: each exports once."""
    from densecnn.zoo.store import WeightStore

    return WeightStore(root=tmp_path_factory.mktemp("store"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 1.0


def assert_detections_match(ref: list, out: list) -> None:
    """Same boxes (IoU >= 0.99), scores (within 1e-3) and classes, image by image."""
    total = 0
    for r, o in zip(ref, out, strict=True):
        assert len(r.boxes) == len(o.boxes), (len(r.boxes), len(o.boxes))
        for i in range(len(r.boxes)):
            # its counterpart: same class, IoU >= 0.99, the closest score (random weights make
            # near-duplicate boxes of one object)
            same = [
                k
                for k in range(len(o.boxes))
                if o.class_ids[k] == r.class_ids[i] and _iou(r.boxes[i], o.boxes[k]) >= 0.99
            ]
            assert same, f"no box of class {r.class_ids[i]} with IoU >= 0.99 for {r.boxes[i]}"
            j = min(same, key=lambda k, i=i: abs(float(r.scores[i]) - float(o.scores[k])))
            assert abs(float(r.scores[i]) - float(o.scores[j])) <= 1e-3
            if hasattr(r, "masks"):
                assert (r.masks[i] == o.masks[j]).mean() >= 0.99
        total += len(r.boxes)
    assert total > 0, "nothing detected: the comparison would prove nothing"


def _exported(predictor: object, tmp: Path, fmt: str = "onnx", **kwargs: object) -> Path:
    path, _ = export(predictor, fmt=fmt, out_dir=tmp, **kwargs)  # type: ignore[arg-type]
    return path


def test_available_backends_lists_the_installed_runtimes() -> None:
    assert available_backends() == ["torch", "onnxruntime", "openvino"]


def test_yolo_detect_parity_and_metadata(person_torch: Any, frames: list[Frame], tmp_path: Path) -> None:
    torch_model = person_torch
    assert torch_model.backend == "torch"
    ref = torch_model.predict(frames)
    onnx = _exported(torch_model, tmp_path, dynamic=True)
    ir = _exported(torch_model, tmp_path, fmt="openvino", dynamic=True)
    for weights, backend in ((onnx, "onnxruntime"), (onnx, "openvino"), (ir, "openvino")):
        model = densecnn.load(weights=weights, backend=backend, half=False)
        assert model.backend == backend and model.names == torch_model.names
        assert_detections_match(ref, model.predict(frames))
    # the metadata survives the round trip through both formats
    for path in (onnx, ir):
        meta = read_meta(path)
        assert meta.model == torch_model.spec.name and meta.task == "detect" and meta.kind == "yolo-detect"
        assert meta.names == {0: "person"} and meta.imgsz == (320, 320) and meta.dynamic
        assert meta.preprocess == {"letterbox": "ultralytics", "stride": 32, "scale": "rgb/255"}
        assert meta.source == {"file": PERSON_YOLO.name, "sha256": sha256_file(PERSON_YOLO)}


def test_static_export_runs_square_letterbox_and_refuses_other_sizes(
    person_static_onnx: Path, frames: list[Frame], tmp_path: Path
) -> None:
    torch_model = densecnn.load(weights=PERSON_YOLO, device="cpu", backend="torch")
    onnx = person_static_onnx
    assert not read_meta(onnx).dynamic and read_meta(onnx).batch == 1
    torch_model.static_input = True  # torch on the same square letterbox the static graph takes
    ref = torch_model.predict(frames)
    model = densecnn.load(weights=onnx)
    assert model.backend == "onnxruntime" and model.static_input
    assert_detections_match(ref, model.predict(frames))  # 3 frames: run one at a time
    with pytest.raises(UsageError, match=r"exported for 320x320 inputs with static shapes.*--imgsz 640"):
        densecnn.load(weights=onnx, imgsz=640)
    with pytest.raises(UsageError, match=r"ONNX Runtime runs \.onnx files"):
        densecnn.load(weights=_exported(torch_model, tmp_path, fmt="openvino"), backend="onnxruntime")
    with pytest.raises(UsageError, match="exported onnx graph; torch runs checkpoints"):
        densecnn.load(weights=onnx, backend="torch")
    with pytest.raises(UsageError, match="exported detect model; `densecnn segment` needs"):
        densecnn.load(weights=onnx, task="segment")


def test_onnx_without_metadata_is_refused(person_static_onnx: Path, tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(person_static_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(UsageError, match="has no densecnn metadata"):
        densecnn.load(weights=bare)


def test_yolo_instance_segmentation_parity(photos: list[Path], frames: list[Frame], tmp_path: Path) -> None:
    weights = make_yolo_seg_checkpoint(tmp_path / "seg.pt", images=photos, imgsz=320)
    torch_model = densecnn.load(weights=weights, imgsz=320, device="cpu", backend="torch")
    ref = torch_model.predict(frames)
    onnx = _exported(torch_model, tmp_path, dynamic=True)
    assert read_meta(onnx).outputs == ("output0", "output1")
    for backend in RUNTIMES:
        model = densecnn.load(weights=onnx, backend=backend, half=False)
        assert model.instances
        assert_detections_match(ref, model.predict(frames))


@pytest.mark.parametrize(
    "weights",
    [PERSON_UNET, "lraspp"],
    ids=["unet-densecnn-head", "lraspp-torchvision"],
)
def test_semantic_parity(weights: Path | str, frames: list[Frame], tmp_path: Path) -> None:
    if weights == "lraspp":
        path = make_segmentation_state_dict(tmp_path / "lraspp.pth", arch="lraspp_mobilenet_v3_large")
        torch_model = densecnn.load("lraspp_mobilenet_v3_large", weights=path, device="cpu", backend="torch")
    else:
        torch_model = densecnn.load(weights=weights, task="segment", device="cpu", backend="torch")
    ref = torch_model.predict(frames)
    onnx = _exported(torch_model, tmp_path)
    assert read_meta(onnx).dynamic  # semantic models see any aspect ratio: always dynamic
    for backend in RUNTIMES:
        model = densecnn.load(weights=onnx, task="segment", backend=backend, half=False)
        assert model.backbone == torch_model.backbone
        for r, o in zip(ref, model.predict(frames), strict=True):
            assert r.label_map.shape == o.label_map.shape
            assert (r.label_map == o.label_map).mean() >= 0.99
    assert len(np.unique(np.concatenate([r.label_map.ravel() for r in ref]))) > 1


def test_classifier_parity(frames: list[Frame], tmp_path: Path) -> None:
    path = make_classifier_weights(tmp_path / "mbv3.pth", arch="mobilenet_v3_small")
    torch_model = densecnn.load("mobilenet_v3_small", weights=path, device="cpu", backend="torch")
    ref = torch_model.predict(frames)
    onnx = _exported(torch_model, tmp_path, dynamic=True)
    for backend in RUNTIMES:
        model = densecnn.load(weights=onnx, task="classify", backend=backend, half=False)
        for r, o in zip(ref, model.predict(frames), strict=True):
            assert list(r.class_ids) == list(o.class_ids)
            np.testing.assert_allclose(r.scores, o.scores, atol=1e-3)


def test_torch_weights_on_each_backend_via_load(
    person_torch: Any, auto_store: Any, frames: list[Frame]
) -> None:
    """``--backend onnxruntime|openvino`` with a checkpoint: exported once into the store, reused."""
    from densecnn.config import PredictConfig
    from densecnn.tasks.loading import load_predictor

    ref = person_torch.predict(frames)
    store = auto_store

    for backend in RUNTIMES:
        model = load_predictor(PredictConfig(weights=PERSON_YOLO, backend=backend, half=False), store=store)
        assert model.backend == backend and model.runtime is not None and not model.static_input
        assert_detections_match(ref, model.predict(frames))
    made = sorted(p.name for p in (store.root / "exports" / "auto").iterdir())
    assert len(made) == 2 and made[0].endswith("-dynamic-openvino") and made[1].endswith("-dynamic.onnx")


def test_auto_measures_once_and_caches_the_choice(auto_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from densecnn.config import PredictConfig
    from densecnn.runtimes import select
    from densecnn.tasks.loading import load_predictor

    monkeypatch.delenv("DENSECNN_BACKEND", raising=False)
    store = auto_store
    model = load_predictor(PredictConfig(weights=PERSON_YOLO, backend="auto", device="cpu"), store=store)
    cache = json.loads((store.root / select.CACHE_NAME).read_text())
    entry = cache["choices"]["yolov8n@320/cpu"]
    assert set(entry["ms"]) == {"torch", "onnxruntime", "openvino"}
    assert all(ms > 0 for ms in entry["ms"].values())
    assert model.backend == entry["backend"]

    def no_measuring(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured again")

    monkeypatch.setattr(select, "measure", no_measuring)
    again = load_predictor(PredictConfig(weights=PERSON_YOLO, backend="auto", device="cpu"), store=store)
    assert again.backend == entry["backend"]
    monkeypatch.setenv("DENSECNN_BACKEND", "openvino")
    assert load_predictor(PredictConfig(weights=PERSON_YOLO), store=store).backend == "openvino"


def test_missing_runtime_says_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import densecnn.runtimes as runtimes

    monkeypatch.setattr(runtimes, "installed", lambda backend: backend == "torch")
    with pytest.raises(UsageError, match=r'pip install "densecnn\[openvino\]"'):
        densecnn.load(weights=PERSON_YOLO, backend="openvino")


def test_faster_rcnn_is_refused_on_other_backends(rcnn_weights: Path) -> None:
    with pytest.raises(UsageError, match="runs on torch only"):
        densecnn.load("fasterrcnn_mobilenet_v3_large_320_fpn", weights=rcnn_weights, backend="onnxruntime")


def test_cli_export_then_detect_with_the_file(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    images = need_data(COCO8) / "val"
    r = run_cli("export", "--weights", str(PERSON_YOLO), "--format", "openvino", "--imgsz", "256")
    assert r.returncode == 0, r.stderr
    exported = Path(r.stdout.strip().splitlines()[-1])
    assert exported.parent == tmp_path / "_weights" / "exports" and (exported / "model.xml").is_file()
    assert read_meta(exported).imgsz == (256, 256)
    r = run_cli("detect", str(images), "--weights", str(exported), "--max-frames", "2", "--name", "ov")
    assert r.returncode == 0, r.stderr
    assert "openvino" in r.stdout
    summary = json.loads((tmp_path / "runs" / "detect" / "ov" / "summary.json").read_text())
    assert summary["backend"] == "openvino"
    r = run_cli("detect", str(images), "--weights", str(exported), "--imgsz", "320")
    assert r.returncode == 2 and "exported for 256x256" in r.stdout + r.stderr


def test_openvino_shapes_static_copies_padding_and_many_sizes(person_torch: Any, tmp_path: Path) -> None:
    """Inputs of one or two sizes (a video) get a static copy per batch shape at once, and a shorter
    batch runs padded on the longer copy; once inputs come in more sizes (or the run says they will)
    the dynamic graph runs them and a new batch shape's frames run one at a time. Every path gives
    the same outputs."""
    import torch

    from densecnn.runtimes.engines import open_runtime

    folder = _exported(person_torch, tmp_path, fmt="openvino", dynamic=True)
    xml = next(folder.glob("*.xml"))
    runtime = open_runtime("openvino", xml, read_meta(xml), device=torch.device("cpu"), half=False)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 192, 320, generator=generator)
    video = runtime(x)
    assert list(runtime._static) == [(4, 3, 192, 320)] and runtime._request is None
    tail = runtime(x[:3])  # a video's last, shorter batch: padded onto the copy for 4
    assert list(runtime._static) == [(4, 3, 192, 320)]
    torch.testing.assert_close(tail, video[:3], atol=1e-4, rtol=1e-4)

    runtime.forget_shapes()
    assert not runtime._static
    for size in ((320, 320), (256, 320), (224, 320)):  # a third size: inputs of many sizes
        runtime(torch.rand(1, 3, *size, generator=generator))
    # the first two sizes had static copies; the third made the sizes many: copies dropped, dynamic graph
    assert runtime.many_sizes and not runtime._static and runtime._request is not None
    many = runtime(x)  # a batch shape new among many sizes: frame by frame on the dynamic graph
    assert runtime._seen[(4, 3, 192, 320)] == 1 and (4, 3, 192, 320) not in runtime._static
    torch.testing.assert_close(many, video, atol=1e-4, rtol=1e-4)
    runtime.forget_shapes()
    runtime.many_sizes = True  # what a run over a folder of photos of many sizes sets first
    runtime(x[:1])
    assert not runtime._static and runtime._request is not None


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU does not compute bf16 natively")
def test_openvino_runs_bf16_by_default_where_the_cpu_has_it(frames: list[Frame]) -> None:
    """Not asked: bf16 (OpenVINO's own default on such CPUs); the trained person detector finds the
    same people as in fp32 torch. --no-half (half=False): fp32."""
    ref = densecnn.load(weights=PERSON_YOLO, backend="torch", device="cpu")
    bf16 = densecnn.load(weights=PERSON_YOLO, backend="openvino")
    assert (bf16.precision, ref.precision) == ("bf16", "fp32")
    assert densecnn.load(weights=PERSON_YOLO, backend="openvino", half=False).precision == "fp32"
    found = 0
    for r, o in zip(ref.predict(frames), bf16.predict(frames), strict=True):
        for box, score in zip(r.boxes, r.scores, strict=True):
            if score < 0.4:  # near the threshold a score may cross it either way
                continue
            ious = [_iou(box, b) for b in o.boxes]
            k = int(np.argmax(ious))
            assert ious[k] >= 0.9 and abs(float(o.scores[k]) - float(score)) <= 0.05
            found += 1
    assert found >= 3, "too few people found: the comparison proves little"


def test_half_on_a_cpu_without_bf16_is_fp32_and_said(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Only the CPU's capability is faked: the run, its header and its summary are real."""
    from densecnn.runtimes import engines

    monkeypatch.setattr(engines, "cpu_has_bf16", lambda core=None: False)
    photo = sorted(need_data(COCO8).rglob("*.jpg"))[0]
    args = ["detect", str(photo), "--weights", str(PERSON_YOLO), "--backend", "openvino", "--half"]
    r = run_cli(*args, "--out", str(tmp_path), "--name", "run")
    assert r.returncode == 0, r.stderr
    assert "--half is ignored here" in r.stdout and "openvino fp32" in r.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["backend"], summary["precision"]) == ("openvino", "fp32")


_NO_TELEMETRY = """
import sys

def refuse(event, args):  # logged at once (senders run in threads, some after main returns), refused
    if event in ("urllib.Request", "socket.connect", "socket.getaddrinfo", "http.client.connect"):
        with open(sys.argv[3], "a") as log:
            log.write(f"{event} {str(args)[:120]}\\n")
        raise OSError("network refused by the test")

sys.addaudithook(refuse)
import onnx
from onnx import TensorProto, helper

from densecnn.runtimes import import_openvino

ov = import_openvino()
io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("x", "y")]
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", io[:1], io[1:])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
ov.save_model(ov.convert_model(sys.argv[1]), sys.argv[2])
ov.Core().compile_model(sys.argv[2], "CPU")
import nncf  # noqa: F401  (NNCF's own telemetry goes through the same package)
"""


def test_openvino_sends_no_telemetry(tmp_path: Path) -> None:
    """Importing OpenVINO and converting a model sends usage events to Google Analytics unless the
    user opted out; densecnn's import of it must not reach for the network at all."""
    import os
    import subprocess
    import sys

    pytest.importorskip("nncf")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI")}  # both turn it off
    log = tmp_path / "network.log"
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TELEMETRY, str(tmp_path / "m.onnx"), str(tmp_path / "m.xml"), str(log)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not log.exists(), log.read_text()


def test_folder_of_many_sizes_runs_at_few_input_sizes_on_openvino(
    person_torch: Any, tmp_path: Path, run_cli: Any
) -> None:
    """Photos of many sizes on OpenVINO: the detector runs at the folder's two commonest letterbox
    sizes and its imgsz, each on a static copy of the graph (no dynamic graph, no kernels per size).
    A photo whose own size is one of them gets the torch backend's result; the others are scaled as
    on their own and padded, centred, to a larger size: the same people, boxes IoU >= 0.9."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, path in enumerate(sorted((need_data(DATA / "pennfudan") / "images").glob("*.png"))[:4]):
        image = cv2.imread(str(path))
        shutil.copy(path, folder / f"{i}a.png")
        cv2.imwrite(str(folder / f"{i}b.png"), cv2.flip(image, 1))  # the same size
        cv2.imwrite(str(folder / f"{i}c.png"), cv2.resize(image, (400, 300)))  # 4:3
        cv2.imwrite(str(folder / f"{i}d.png"), cv2.resize(image, (180, 320)))  # 9:16
        cv2.imwrite(str(folder / f"{i}e.png"), cv2.resize(image, (320, 200)))  # 16:10
    model = densecnn.load(weights=PERSON_YOLO, backend="openvino", half=False)
    predictions = list(densecnn.predict(folder, model=model))
    runtime = model.runtime
    assert runtime._compiled is None  # the dynamic graph never compiled
    sizes = {shape[2:] for shape in runtime._static}
    assert len(sizes) <= 3 and (320, 320) in sizes and model.input_sizes == ()  # restored after the run
    own = {p.frame.path: person_torch.own_size(p.frame.image.shape) for p in predictions}
    assert len(set(own.values())) >= 4  # the folder has many sizes
    moved = same = 0
    for p in predictions:
        (ref,) = person_torch.predict([p.frame])
        if own[p.frame.path] in sizes:
            same += 1
            assert_detections_match([ref], [p.result])
        else:
            moved += 1
            assert len(p.result.boxes) > 0
            # the confident boxes of each are found in the other (a larger letterbox moves scores a
            # little: 0.38 -> 0.39, 0.89 -> 0.90 on these photos; a 0.41 box appeared on one)
            for a, b in ((ref, p.result), (p.result, ref)):
                for box, score in zip(a.boxes, a.scores, strict=True):
                    if score >= 0.5:
                        k = max(range(len(b.boxes)), key=lambda k, box=box: _iou(box, b.boxes[k]))
                        assert _iou(box, b.boxes[k]) >= 0.9 and abs(score - b.scores[k]) < 0.1
    assert same >= 2 and moved >= 2

    r = run_cli("detect", str(folder), "--weights", str(PERSON_YOLO), "--backend", "openvino")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((tmp_path / "runs" / "detect" / "predict" / "summary.json").read_text())
    assert (summary["batch"], summary["batch_from"]) == (1, "images of many sizes")
    assert {tuple(s) for s in summary["input_sizes"]} == sizes
    assert "input sizes " + ", ".join(f"{h}x{w}" for h, w in summary["input_sizes"]) in r.stdout
