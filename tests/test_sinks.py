"""Output sinks: real frames in, real files out, reopened with PyAV / OpenCV / pycocotools."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from densecnn.draw import draw_detections
from densecnn.results import Detections, Frame, Prediction
from densecnn.sinks import CocoSink, CropsSink, ImageSink, JsonlSink, LabelsSink, Sink, VideoSink, read_jsonl
from densecnn.sinks import video as video_module
from densecnn.sources.base import InputEnd, InputFailure, InputRef, InputStart, VideoInfo

NAMES = {0: "person", 1: "N/A", 2: "car", 3: "traffic/light"}
FPS = Fraction(30000, 1001)


# ---------------------------------------------------------------- helpers


def scene(height: int = 120, width: int = 160, t: int = 0) -> np.ndarray:
    """A BGR uint8 frame with a square that moves with ``t``."""
    image = np.full((height, width, 3), 60, dtype=np.uint8)
    x = (t * 4) % max(width - 20, 1)
    cv2.rectangle(image, (x, height // 3), (x + 20, height // 3 + 20), (0, 200, 255), -1)
    cv2.line(image, (0, height - 1), (width - 1, 0), (255, 255, 255), 1)
    return image


def dets(boxes: Iterable[Iterable[float]] = (), class_ids: Iterable[int] = (), scores=None) -> Detections:
    boxes = np.array(list(boxes), dtype=np.float32).reshape(-1, 4)
    class_ids = list(class_ids)
    scores = scores if scores is not None else [0.9] * len(class_ids)
    return Detections(boxes, np.array(scores, dtype=np.float32), np.array(class_ids), NAMES)


def image_input(source: str) -> InputRef:
    return InputRef(Path("/data") / source, source, "image")


def video_start(source: str, fps: Fraction = FPS, width: int = 160, height: int = 120) -> InputStart:
    ref = InputRef(Path("/data") / source, source, "video")
    return InputStart(ref, VideoInfo(fps=fps, width=width, height=height, frame_count=0, codec="h264"))


def image_pred(image: np.ndarray, source: str, detections: Detections | None = None) -> Prediction:
    frame = Frame(image=image, source=source, path=f"/data/{source}")
    return Prediction(frame, detections if detections is not None else dets())


def video_pred(
    image: np.ndarray, source: str, index: int, detections: Detections | None = None
) -> Prediction:
    frame = Frame(
        image=image,
        source=source,
        path=f"/data/{source}",
        index=index,
        timestamp=float(index / FPS),
        is_video=True,
    )
    return Prediction(frame, detections if detections is not None else dets())


def run_image(sink: Sink, prediction: Prediction, annotated: np.ndarray | None = None) -> None:
    ref = image_input(prediction.frame.source)
    sink.start_input(InputStart(ref))
    sink.write(prediction, annotated)
    sink.end_input(InputEnd(ref, 1))


def decode_video(path: Path) -> tuple[dict, int]:
    """(stream facts, number of frames decoded); any decoding error fails the test."""
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {
            "codec": stream.codec_context.name,
            "rate": stream.average_rate or stream.guessed_rate,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
        }
        for _ in container.decode(stream):
            count += 1
    return info, count


def write_video(sink: VideoSink, source: str, frames: list[np.ndarray], *, stride: int = 1) -> None:
    start = video_start(source, width=frames[0].shape[1], height=frames[0].shape[0])
    sink.start_input(start)
    for i, image in enumerate(frames):
        sink.write(video_pred(image, source, i * stride), image)
    sink.end_input(InputEnd(start.ref, len(frames)))


# ---------------------------------------------------------------- VideoSink


def test_video_h264_frame_count_rate_and_size(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path, vid_stride=2)
    assert sink.codec_name == "libx264" and sink.note is None
    write_video(sink, "clips/walk.avi", [scene(t=i) for i in range(37)], stride=2)
    sink.close()
    out = tmp_path / "clips" / "walk.mp4"
    assert sink.outputs() == [out]
    info, count = decode_video(out)
    assert info["codec"] == "h264"
    assert count == 37
    assert info["rate"] == pytest.approx(FPS / 2, rel=1e-5)  # pts are whole microseconds
    assert (info["width"], info["height"]) == (160, 120)


def test_video_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path)
    write_video(sink, "odd.mp4", [scene(121, 161, t=i) for i in range(10)])
    sink.close()
    info, count = decode_video(tmp_path / "odd.mp4")
    assert (info["width"], info["height"]) == (162, 122)
    assert count == 10
    assert info["rate"] == pytest.approx(FPS, rel=1e-5)  # pts are whole microseconds


def test_video_frames_of_another_size_are_resized(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path)
    frames = [scene(120, 160, t=0), scene(240, 320, t=1), scene(60, 90, t=2), scene(120, 160, t=3)]
    write_video(sink, "mixed.mp4", frames)
    sink.close()
    info, count = decode_video(tmp_path / "mixed.mp4")
    assert (info["width"], info["height"], count) == (160, 120, 4)


def test_video_sink_ignores_images_and_writes_one_file_per_video(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path)
    run_image(sink, image_pred(scene(), "a.jpg"), scene())
    write_video(sink, "one.mp4", [scene(t=i) for i in range(5)])
    write_video(sink, "sub/two.mkv", [scene(t=i) for i in range(3)])
    # A video that failed before its first frame leaves no file.
    start = video_start("broken.mp4")
    sink.start_input(start)
    sink.fail_input(InputFailure(start.ref, "cannot decode", frame=0))
    sink.end_input(InputEnd(start.ref, 0))
    sink.close()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "one.mp4",
        "sub/two.mp4",
    ]
    assert decode_video(tmp_path / "one.mp4")[1] == 5
    assert decode_video(tmp_path / "sub" / "two.mp4")[1] == 3


def test_video_close_without_end_input_finalizes(tmp_path: Path) -> None:
    """Ctrl-C path: the pipeline calls close() while an input is still open."""
    sink = VideoSink(tmp_path)
    start = video_start("cut.mp4")
    sink.start_input(start)
    for i in range(12):
        sink.write(video_pred(scene(t=i), "cut.mp4", i), scene(t=i))
    sink.close()
    sink.close()  # idempotent
    assert decode_video(tmp_path / "cut.mp4")[1] == 12


def test_video_frames_play_at_their_jsonl_timestamps_with_a_streaming_index(tmp_path: Path) -> None:
    """Output frame k starts at the timestamp predictions.jsonl gives frame k, truncated to whole
    microseconds as a browser truncates a seek to it (so the seek shows frame k), even for uneven
    timestamps; no B-frames (pts == dts, no
    composition offsets), and the file is fragmented with a global sidx after the moov."""
    sink = VideoSink(tmp_path, keyframe_interval=4)
    start = video_start("vfr.mp4")
    sink.start_input(start)
    stamps = [0.0, 0.04, 0.1001, 0.1335, 0.3, 0.300001, 0.5005, 0.9, 1.0, 1.033367]
    for i, t in enumerate(stamps):
        frame = Frame(
            image=scene(t=i), source="vfr.mp4", path="/data/vfr.mp4", index=i, timestamp=t, is_video=True
        )
        sink.write(Prediction(frame, dets()), scene(t=i))
    sink.end_input(InputEnd(start.ref, len(stamps)))
    sink.close()
    out = tmp_path / "vfr.mp4"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.dts is not None]
        assert all(p.pts == p.dts for p in packets)
        times = sorted(float(p.pts * p.time_base) for p in packets)
    assert times == pytest.approx([int(t * 1e6) / 1e6 for t in stamps], abs=1e-9)  # truncated to µs
    assert times[2] == 0.1001 and times[6] == 0.500499  # the double nearest 0.5005 is 0.50049999...
    data = out.read_bytes()
    top = []  # top-level boxes: ftyp moov sidx moof mdat ... mfra
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        top.append(data[pos + 4 : pos + 8].decode())
        pos += size
    assert top[:4] == ["ftyp", "moov", "sidx", "moof"], top
    assert top.count("moof") >= 3 and not list(tmp_path.glob(".*.tmp"))


def test_video_killed_writer_leaves_a_playable_file(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from fractions import Fraction
        from pathlib import Path
        import numpy as np
        from densecnn.results import Detections, Frame, Prediction
        from densecnn.sinks.video import VideoSink
        from densecnn.sources.base import InputRef, InputStart, VideoInfo

        root = Path(sys.argv[1])
        sink = VideoSink(root, keyframe_interval=10)
        ref = InputRef(root / "in.mp4", "in.mp4", "video")
        sink.start_input(InputStart(ref, VideoInfo(Fraction(25), 160, 120, 0, "h264")))
        rng = np.random.default_rng(0)
        for i in range(60):
            image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            frame = Frame(image=image, source="in.mp4", path="in.mp4", index=i, is_video=True)
            sink.write(Prediction(frame, Detections()), image)
        os._exit(1)  # no end_input, no close: like SIGKILL
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, timeout=120)
    assert proc.returncode == 1, proc.stderr.decode()
    info, count = decode_video(tmp_path / "in.mp4")
    assert info["codec"] == "h264"
    # Every completed fragment (one per keyframe: at least every 10 frames) survives and decodes
    # without error; the frames still inside the encoder and the open fragment are lost.
    assert 10 <= count < 60


def test_codec_fallback_is_stated_and_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert video_module.select_codec({"libx264", "mpeg4"}) == ("libx264", None)
    name, note = video_module.select_codec({"mpeg4"})
    assert name == "mpeg4" and note and "libx264" in note

    monkeypatch.setattr(video_module, "_has_encoder", lambda codec: codec != "libx264")
    with pytest.warns(RuntimeWarning, match="libx264"):
        sink = VideoSink(tmp_path)
    assert sink.codec_name == "mpeg4"
    write_video(sink, "fallback.mp4", [scene(t=i) for i in range(8)])
    sink.close()
    info, count = decode_video(tmp_path / "fallback.mp4")
    assert (info["codec"], count) == ("mpeg4", 8)


def test_video_sink_validates_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vid_stride"):
        VideoSink(tmp_path, vid_stride=0)
    with pytest.raises(ValueError, match="crf"):
        VideoSink(tmp_path, crf=99)


# ---------------------------------------------------------------- ImageSink


def test_image_sink_same_path_and_size_with_boxes(tmp_path: Path) -> None:
    original = scene(90, 130)
    detections = dets([[10, 10, 70, 60]], [2])
    annotated = draw_detections(original, detections)
    sink = ImageSink(tmp_path)
    run_image(sink, image_pred(original, "sub/dir/pic.png", detections), annotated)
    run_image(sink, image_pred(original, "photo.jpg", detections), annotated)
    sink.write(video_pred(original, "movie.mp4", 0, detections), annotated)  # ignored
    sink.close()
    png, jpg = tmp_path / "sub" / "dir" / "pic.png", tmp_path / "photo.jpg"
    assert sink.outputs() == [png, jpg]
    written = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert written.shape == original.shape
    assert np.array_equal(written, annotated)
    assert not np.array_equal(written[10:60, 10:70], original[10:60, 10:70])
    assert cv2.imread(str(jpg)).shape == original.shape
    assert not list(tmp_path.rglob("movie*"))
    assert not list(tmp_path.rglob("*.tmp"))


def test_image_sink_unwritable_extension_becomes_png(tmp_path: Path) -> None:
    sink = ImageSink(tmp_path)
    image = scene()
    run_image(sink, image_pred(image, "scan.pgm"), image)
    assert sink.outputs() == [tmp_path / "scan.png"]
    assert np.array_equal(cv2.imread(str(tmp_path / "scan.png")), image)


# ---------------------------------------------------------------- JsonlSink


def test_jsonl_one_line_per_frame_flushed(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    sink = JsonlSink(path)
    run_image(sink, image_pred(scene(), "a.jpg", dets([[1, 2, 30, 40.5]], [0], [0.876543])))
    for i in (0, 3):
        sink.write(video_pred(scene(), "v.mp4", i), None)
    # Flushed as it goes: a reader sees every line before close().
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    sink.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {
        "source": "a.jpg",
        "frame": 0,
        "timestamp": 0.0,
        "width": 160,
        "height": 120,
        "detections": [{"class_id": 0, "class_name": "person", "score": 0.87654, "box": [1, 2, 30, 40.5]}],
    }
    assert [(r["source"], r["frame"], r["detections"]) for r in rows[1:]] == [
        ("v.mp4", 0, []),
        ("v.mp4", 3, []),
    ]
    assert rows[2]["timestamp"] == pytest.approx(3 / float(FPS), abs=1e-6)
    assert read_jsonl(path) == rows
    assert sink.outputs() == [path]


def test_read_jsonl_drops_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"source": "a", "frame": 0}\n{"source": "b", "frame": 1}\n{"source": "c", "fr')
    assert read_jsonl(path) == [{"source": "a", "frame": 0}, {"source": "b", "frame": 1}]
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(ValueError, match=":2:"):
        read_jsonl(path)
    path.write_text("")
    assert read_jsonl(path) == []


# ---------------------------------------------------------------- CocoSink


def test_coco_loads_with_pycocotools(tmp_path: Path) -> None:
    path = tmp_path / "predictions.coco.json"
    sink = CocoSink(path, class_names=NAMES)
    run_image(sink, image_pred(scene(100, 200), "x/a.jpg", dets([[10, 20, 50, 80], [0, 0, 5, 5]], [0, 2])))
    run_image(sink, image_pred(scene(), "b.png", dets([[1.5, 2.25, 11.5, 4.25]], [3], [0.5])))
    run_image(sink, image_pred(scene(), "empty.png"))
    sink.write(video_pred(scene(), "v.mp4", 0, dets([[1, 1, 9, 9]], [0])), None)  # videos excluded
    assert not path.exists(), "written only on close()"
    sink.close()
    assert sink.outputs() == [path]

    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert coco.loadImgs(1)[0] == {"id": 1, "file_name": "x/a.jpg", "width": 200, "height": 100}
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {
        0: "person",
        2: "car",
        3: "traffic/light",
    }
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1], catIds=[0]))[0]
    assert first["bbox"] == [10, 20, 40, 60] and first["area"] == 2400
    assert first["score"] == pytest.approx(0.9) and first["iscrowd"] == 0
    third = coco.loadAnns(coco.getAnnIds(imgIds=[2]))[0]
    assert third["bbox"] == [1.5, 2.25, 10, 2] and third["category_id"] == 3

    with path.open() as fh:
        annotations = json.load(fh)["annotations"]
    assert [a["id"] for a in annotations] == [1, 2, 3]
    results = coco.loadRes(annotations)
    assert len(results.getAnnIds()) == 3


def test_coco_not_written_for_videos_only(tmp_path: Path) -> None:
    path = tmp_path / "predictions.coco.json"
    sink = CocoSink(path, class_names=NAMES)
    sink.write(video_pred(scene(), "v.mp4", 0, dets([[1, 1, 9, 9]], [0])), None)
    sink.close()
    assert not path.exists() and sink.outputs() == []


# ---------------------------------------------------------------- LabelsSink


def test_labels_values_for_a_known_box(tmp_path: Path) -> None:
    sink = LabelsSink(tmp_path, save_conf=True)
    image = scene(100, 200)
    detections = dets([[20, 10, 60, 50], [190, 90, 230, 130]], [3, 0], [0.9, 0.25])
    run_image(sink, image_pred(image, "sub/pic.jpg", detections))
    text = (tmp_path / "labels" / "sub" / "pic.txt").read_text()
    # xc = 40/200, yc = 30/100, w = 40/200, h = 40/100; the second box is clipped to [190, 90, 200, 100].
    assert (
        text
        == "3 0.200000 0.300000 0.200000 0.400000 0.900000\n0 0.975000 0.950000 0.050000 0.100000 0.250000\n"
    )
    assert sink.outputs() == [tmp_path / "labels"]


def test_labels_empty_images_and_video_frames(tmp_path: Path) -> None:
    sink = LabelsSink(tmp_path)
    run_image(sink, image_pred(scene(), "nothing.png"))
    sink.write(video_pred(scene(), "clip.mp4", 4), None)
    sink.write(video_pred(scene(), "clip.mp4", 5, dets([[0, 0, 80, 60]], [2])), None)
    labels = tmp_path / "labels"
    assert (labels / "nothing.txt").read_text() == ""
    assert not (labels / "clip_4.txt").exists()
    assert (labels / "clip_5.txt").read_text() == "2 0.250000 0.250000 0.500000 0.500000\n"


# ---------------------------------------------------------------- CropsSink


def test_crops_are_box_sized_from_the_original(tmp_path: Path) -> None:
    sink = CropsSink(tmp_path)
    image = scene(120, 160)
    detections = dets(
        [[10, 20, 40, 70], [150, 100, 200, 200], [30, 30, 30, 50], [5, 5, 25, 15]], [0, 2, 0, 3]
    )
    annotated = np.zeros_like(image)  # crops must not come from this
    run_image(sink, image_pred(image, "sub/a.jpg", detections), annotated)
    sink.write(video_pred(image, "v.mp4", 7, dets([[0, 0, 16, 8]], [2])), annotated)
    crops = tmp_path / "crops"
    assert sink.outputs() == [crops]
    files = sorted(p.relative_to(crops).as_posix() for p in crops.rglob("*.jpg"))
    assert files == ["car/sub/a_1.jpg", "car/v_7_0.jpg", "person/sub/a_0.jpg", "traffic_light/sub/a_3.jpg"]

    first = cv2.imread(str(crops / "person" / "sub" / "a_0.jpg"))
    assert first.shape == (50, 30, 3)
    assert np.abs(first.astype(int) - image[20:70, 10:40].astype(int)).mean() < 4
    assert cv2.imread(str(crops / "car" / "sub" / "a_1.jpg")).shape == (20, 10, 3)  # clipped
    assert cv2.imread(str(crops / "traffic_light" / "sub" / "a_3.jpg")).shape == (10, 20, 3)
    assert cv2.imread(str(crops / "car" / "v_7_0.jpg")).shape == (8, 16, 3)
