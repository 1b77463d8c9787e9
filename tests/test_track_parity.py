"""Parity: the track ids `densecnn track` assigns equal Ultralytics' own `model.track` (the code behind
`yolo track`) on the same weights, tracker settings and frames of the real street video.

The weights are the embedded person detector (weights/person-yolov8n.safetensors): it finds the
pedestrians of ../shared/data/video/slow_traffic_small.mp4 with low scores (0.1-0.5), so both sides
run the same tracker file with its thresholds lowered to 0.15 (``new_track_thresh``) and 0.1. The
clip is 36 frames (frames 385-420 of the video, where several people walk): it gives several tracks,
some starting later than others, and tracks that are lost and found again.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import STREET_VIDEO, need_data

FIRST, FRAMES = 385, 36
LOWER = {"track_high_thresh": 0.15, "track_low_thresh": 0.1, "new_track_thresh": 0.15, "fuse_score": False}


def _tracker_file(path: Path, kind: str) -> Path:
    """Ultralytics' own settings file of ``kind`` with the thresholds LOWER (Ultralytics needs every
    key in the file; densecnn would take the missing ones from these defaults)."""
    import yaml
    from ultralytics.utils import ROOT

    settings = yaml.safe_load((ROOT / "cfg" / "trackers" / f"{kind}.yaml").read_text())
    path.write_text(yaml.safe_dump({**settings, **LOWER}))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frames FIRST.. of the street video as their own H.264 file (what both sides read)."""
    import av

    path = tmp_path_factory.mktemp("clip") / "street.mp4"
    with av.open(str(need_data(STREET_VIDEO))) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"crf": "18"}
        for i, frame in enumerate(src.decode(video=0)):
            if i >= FIRST + FRAMES:
                break
            if i >= FIRST:
                image = frame.to_ndarray(format="bgr24")
                dst.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        dst.mux(stream.encode())
    return path


def _decoded(path: Path) -> list[np.ndarray]:
    """The clip's frames as densecnn decodes them (PyAV, BGR), so both sides see the same pixels."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def _ultralytics_tracks(frames: list[np.ndarray], tracker: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame: (track ids, xyxy boxes) from Ultralytics' model.track on the embedded weights."""
    from ultralytics import YOLO

    from densecnn.tasks.detect.yolo_state import load_yolo_state
    from densecnn.zoo.store import embedded_weights_dir

    model = YOLO("yolov8n.yaml", task="detect")  # a shell: its network is replaced right away
    model.model = load_yolo_state(embedded_weights_dir() / "person-yolov8n.safetensors")
    out = []
    for image in frames:
        boxes = model.track(
            image, persist=True, tracker=str(tracker), imgsz=640, conf=0.1, device="cpu", verbose=False
        )[0].boxes
        if boxes.id is None:  # no confirmed track in this frame
            out.append((np.zeros(0, np.int64), np.zeros((0, 4), np.float32)))
        else:
            out.append((boxes.id.numpy().astype(np.int64), boxes.xyxy.numpy()))
    return out


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_track_ids_equal_ultralytics_track(run_cli, tmp_path: Path, clip: Path, kind: str) -> None:
    tracker = _tracker_file(tmp_path / f"{kind}-low.yaml", kind)
    r = run_cli(
        "track", str(clip), "--model", "person-yolov8n", "--imgsz", "640", "--conf", "0.1",
        "--tracker", str(tracker), "--device", "cpu", "--no-save", "--out", "runs", "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (tmp_path / run / "predictions.jsonl").read_text().splitlines()]
    assert [row["frame"] for row in rows] == list(range(FRAMES))
    reference = _ultralytics_tracks(_decoded(clip), tracker)

    mapping: dict[int, int] = {}  # our id → Ultralytics' id: one-to-one over the whole clip
    matched = 0
    for row, (ref_ids, ref_boxes) in zip(rows, reference, strict=True):
        ours = row["detections"]
        assert len(ours) == len(ref_ids), f"frame {row['frame']}: {len(ours)} tracked vs {len(ref_ids)}"
        for det in ours:
            box = np.asarray(det["box"], dtype=np.float32)
            ious = _iou(box, ref_boxes)
            j = int(ious.argmax())
            assert ious[j] >= 0.99, f"frame {row['frame']}: box {box} has no partner (IoU {ious[j]:.3f})"
            assert mapping.setdefault(det["track_id"], int(ref_ids[j])) == ref_ids[j], (
                f"frame {row['frame']}: our track {det['track_id']} is Ultralytics' {ref_ids[j]} here "
                f"but {mapping[det['track_id']]} before"
            )
            matched += 1
    assert len(set(mapping.values())) == len(mapping)  # never two of ours for one of theirs
    assert len(mapping) >= 3 and matched >= 40, f"too few tracks to compare: {mapping}, {matched} boxes"
    summary = json.loads((tmp_path / run / "summary.json").read_text())
    assert summary["tracks"]["total"] == len(mapping) and summary["tracker"]["tracker_type"] == kind


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(1)
    tl = np.maximum(box[:2], boxes[:, :2])
    br = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter + 1e-9)
