"""report.html in a real browser (Debian's headless Chromium through Playwright; one launch for the
module): no console errors; the annotated video plays and seeks, and the frame it shows at a
predictions.jsonl timestamp is that JSONL frame (frame numbers are drawn into the source's pixels);
clicking the plot seeks; a 2,000-image folder's report pages and lazy-loads its thumbnails; tracks
and line/zone counts; the MP4 streams progressively from a throttled loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from _browser import chromium_missing, launch_chromium, serve, time_to_playing
from conftest import CliRunner

from densecnn.report import write_report

BITS, BLOCK = 8, 32  # frame number: 8 blocks of 32x32 px along the bottom, white = 1
SIZE = (144, 256)  # h, w


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    with launch_chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page whose console errors and uncaught exceptions are collected in ``page.errors``."""
    p = browser.new_page(viewport={"width": 1200, "height": 900})
    p.set_default_timeout(20_000)
    errors: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.errors = errors
    yield p
    p.close()


# ---------------------------------------------------------------- inputs and run folders


def numbered_video(path: Path, frames: int, fps: Fraction = Fraction(30000, 1001)) -> Path:
    """An H.264 MP4 with B-frames (so the muxer writes an edit list: the stream's first pts is not 0
    but it plays from 0) whose frame i has i written in binary in blocks along the bottom."""
    h, w = SIZE
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"bf": "3", "crf": "18"}
        for i in range(frames):
            img = np.full((h, w, 3), 90, np.uint8)
            cv2.putText(img, str(i), (90, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
            for b in range(BITS):
                img[h - BLOCK :, b * BLOCK : (b + 1) * BLOCK] = 255 if (i >> b) & 1 else 0
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        container.mux(stream.encode(None))
    return path


def make_image_run(run: Path, n: int, *, seed: int = 0) -> Path:
    """A detect-like instance segmentation run folder over ``n`` tiny images, built directly (no model):
    the inputs in ``run/../inputs``, predictions.jsonl with 0-3 instances (box + RLE mask) each,
    summary.json naming the input folder (so the page draws the boxes and masks over the inputs)."""
    from densecnn.results import encode_rle

    rng = np.random.default_rng(seed)
    inputs = run.parent / "inputs"
    inputs.mkdir(parents=True)
    run.mkdir()
    names = ["person", "car", "dog"]
    lines = []
    for i in range(n):
        h, w = 48, 64
        cv2.imwrite(str(inputs / f"img{i:04d}.png"), np.full((h, w, 3), rng.integers(40, 220, 3), np.uint8))
        instances = []
        for _ in range(int(rng.integers(0, 4))):
            x1, y1 = int(rng.integers(0, 40)), int(rng.integers(0, 30))
            x2, y2 = x1 + int(rng.integers(8, 24)), y1 + int(rng.integers(8, 18))
            mask = np.zeros((h, w), bool)
            mask[y1:y2, x1:x2] = True
            c = int(rng.integers(0, 3))
            instances.append({"class_id": c, "class_name": names[c], "score": round(float(rng.random()), 5),
                              "box": [x1, y1, x2, y2], "mask": encode_rle(mask)})  # fmt: skip
        lines.append(json.dumps({"source": f"img{i:04d}.png", "frame": 0, "timestamp": 0.0, "width": w,
                                 "height": h, "segments": [], "instances": instances}))  # fmt: skip
    (run / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"command": "segment", "source": str(inputs), "model": "test-seg", "device": "cpu",
               "inputs": n, "inputs_failed": 0, "frames": n, "fps": 100.0, "wall_s": n / 100,
               "stage_ms_per_frame": {"decode": 1.0, "inference": 5.0}}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def make_track_run(run: Path) -> Path:
    """A hand-written track run over a 2 s video (no annotated video saved): two tracks, a line and a
    zone whose cumulative counts grow, the final totals in summary.json (the tracking schema)."""
    run.mkdir(parents=True)
    lines = []
    for f in range(20):
        t = round(f * 0.1, 6)
        dets = [
            {"class_id": 0, "class_name": "person", "score": 0.9, "box": [f, 10, f + 20, 50], "track_id": 7}
        ]
        if f >= 10:
            dets.append(
                {"class_id": 2, "class_name": "car", "score": 0.8, "box": [50, 5, 90, 30], "track_id": 12}
            )
        counts = {
            "lines": {"gate": {"in": {"person": int(f >= 5)}, "out": {"car": int(f >= 15)}}},
            "zones": {
                "lot": {"inside": {"car": int(f >= 10)}, "entered": {"car": int(f >= 10)}, "exited": {}}
            },
        }
        lines.append(json.dumps({"source": "cam.mp4", "frame": f, "timestamp": t, "width": 100, "height": 60,
                                 "detections": dets, "counts": counts}))  # fmt: skip
    (run / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    (run / "errors.jsonl").write_text(
        json.dumps({"source": "other.mp4", "error": "cannot open video"}) + "\n"
    )
    summary = {"command": "detect", "source": "cam.mp4", "model": "yolov8n", "device": "cpu", "frames": 20,
               "inputs": 2, "inputs_failed": 1, "counts": json.loads(lines[-1])["counts"]}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return run


# ---------------------------------------------------------------- page helpers

_READ_CODE = """(v) => {
  const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d', {willReadFrequently: true}); g.drawImage(v, 0, 0);
  let code = 0;
  for (let b = 0; b < BITS; b++) {
    const px = g.getImageData(b * BLOCK + 12, c.height - 20, 8, 8).data;
    let sum = 0; for (let i = 0; i < px.length; i += 4) sum += px[i];
    if (sum / (px.length / 4) > 128) code |= 1 << b;
  }
  return code;
}""".replace("BITS", str(BITS)).replace("BLOCK", str(BLOCK))

_SETTLED = "(() => { const v = document.querySelector('video'); return !v.seeking && v.readyState >= 2; })()"


def seek(page: Any, t: float) -> None:
    page.eval_on_selector("video", "(v, t) => { v.currentTime = t; }", t)
    page.wait_for_function(_SETTLED, timeout=10_000)


def shown_code(page: Any) -> int:
    return page.eval_on_selector("video", _READ_CODE)


def listed_frame(page: Any) -> int:
    return int(page.inner_text(".video-part .frame-index"))


# ---------------------------------------------------------------- tests


def test_video_report_frames_match_jsonl_play_seek_and_plot_click(
    tmp_path: Path, run_cli: CliRunner, yolo_weights: Path, page: Any
) -> None:
    source = numbered_video(tmp_path / "numbers.mp4", 24)
    r = run_cli("detect", str(source), "--weights", str(yolo_weights), "--imgsz", "160", "--conf", "0.999")
    assert r.returncode == 0, r.stderr + r.stdout
    run = tmp_path / "runs/detect/predict"
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [row["frame"] for row in rows] == list(range(24)) and rows[0]["timestamp"] == 0.0
    assert (run / "report.html").is_file()  # every run writes it

    with serve(run) as server:  # over HTTP: a file:// video taints the canvas the pixels are read from
        page.goto(server.url + "report.html")
        page.wait_for_function("document.querySelector('video').readyState >= 2", timeout=20_000)
        _check_video_page(page, rows)
    assert page.errors == []


def _check_video_page(page: Any, rows: list[dict[str, Any]]) -> None:
    video = page.query_selector("video")
    # Seek to each JSONL timestamp, and to 40% of the way to the next: the frame shown is that row's
    # frame (read from the pixels), and the page lists that frame.
    for row, nxt in zip(rows, [*rows[1:], None], strict=True):
        for t in (row["timestamp"], row["timestamp"] + 0.4 * ((nxt or row)["timestamp"] - row["timestamp"])):
            seek(page, t)
            assert shown_code(page) == row["frame"], (t, row)
            assert listed_frame(page) == row["frame"]

    # Play: the list follows the video. Paused, Chromium's currentTime can trail the frame on screen
    # by one (and a seek to that same time may not repaint), so the video is then seeked away and
    # back to the listed frame's timestamp before the list and the pixels are compared.
    seek(page, 0.0)
    page.evaluate("(v) => v.play()", video)
    page.wait_for_function("document.querySelector('video').currentTime > 0.35", timeout=20_000)
    page.evaluate("(v) => v.pause()", video)
    listed = listed_frame(page)
    assert listed >= 8  # about 0.35 s in at 29.97 fps: frame 10 or 11
    seek(page, 0.0)
    seek(page, next(row["timestamp"] for row in rows if row["frame"] == listed))
    assert shown_code(page) == listed_frame(page) == listed

    # Click the plot 30% of the way into frame 13: the video seeks to frame 13's JSONL timestamp.
    svg = page.query_selector(".video-part svg.plot")
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    x0, x1, t1 = (float(svg.get_attribute(a)) for a in ("data-x0", "data-x1", "data-t1"))
    t = rows[13]["timestamp"] + 0.3 * (rows[14]["timestamp"] - rows[13]["timestamp"])
    scale = box["width"] / 900
    page.mouse.click(box["x"] + (x0 + (x1 - x0) * t / t1) * scale, box["y"] + box["height"] / 2)
    page.wait_for_function(_SETTLED, timeout=10_000)
    assert page.evaluate("(v) => v.currentTime", video) == pytest.approx(rows[13]["timestamp"], abs=1e-6)
    assert shown_code(page) == 13 and listed_frame(page) == 13


def test_video_streams_before_the_download_ends(tmp_path: Path, browser: Any) -> None:
    """The MP4 densecnn writes starts playing in Chromium over a slow link well before its last byte
    arrives (a fragmented MP4 without a sidx is downloaded whole first)."""
    from densecnn.results import Detections, Frame, Prediction
    from densecnn.sinks.video import VideoSink
    from densecnn.sources.base import InputEnd, InputRef, InputStart, VideoInfo

    rng = np.random.default_rng(0)
    sink = VideoSink(tmp_path, crf=30, keyframe_interval=10)
    ref = InputRef(tmp_path / "noise.avi", "noise.avi", "video")
    sink.start_input(InputStart(ref, VideoInfo(Fraction(25), 192, 144, 0, "h264")))
    for i in range(60):
        image = rng.integers(0, 255, (144, 192, 3), dtype=np.uint8)
        sink.write(
            Prediction(
                Frame(image, "noise.avi", "x", index=i, timestamp=i / 25, is_video=True), Detections()
            ),
            image,
        )
    sink.end_input(InputEnd(ref, 60))
    sink.close()
    size = (tmp_path / "noise.mp4").stat().st_size
    rate = size / 4  # the download takes 4 s
    with serve(tmp_path, rate=rate) as server:
        timing = time_to_playing(browser, server, "noise.mp4")
    assert timing["playing_s"] < min(2.5, timing["download_done_s"]), (size, timing)


def test_image_folder_report_pages_filters_and_lazy_loads(tmp_path: Path, page: Any) -> None:
    run = make_image_run(tmp_path / "run", 2000)
    path = write_report(run)
    page.goto(path.as_uri())
    page.wait_for_selector("#grid figure")
    fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
    print(f"2000-image report: {path.stat().st_size} bytes, first contentful paint {fcp:.0f} ms")
    assert fcp > 0
    assert page.locator("#grid figure").count() == 60
    assert page.locator("#grid img[loading=lazy]").count() == 60
    loaded = "[...document.querySelectorAll('img')].filter((i) => i.complete && i.naturalWidth > 0).length"
    page.wait_for_function(f"{loaded} > 0")
    assert page.evaluate(f"{loaded}") <= 60  # the first page's thumbnails at most, never the 2,000

    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    dogs = [
        i
        for i, row in enumerate(rows)
        if any(d["class_name"] == "dog" and d["score"] >= 0.5 for d in row["instances"])
    ]
    page.select_option("#f-class", label=page.locator("#f-class option", has_text="dog").inner_text())
    page.eval_on_selector("#f-score", "(e) => { e.value = '0.5'; e.dispatchEvent(new Event('input')); }")
    assert page.inner_text("#f-count") == f"{len(dogs)} of 2000 images"
    page.click("#next")
    assert page.get_attribute("#grid figure", "data-index") == str(dogs[60])

    # The full view: the input image, one box per instance at or above the score, masks drawn.
    index = dogs[60]
    page.click("#grid figure")
    page.wait_for_selector("#viewer[open]")
    kept = [d for d in rows[index]["instances"] if d["score"] >= 0.5]
    assert page.locator("#viewer-stage svg rect").count() == len(kept)
    assert page.get_attribute("#viewer-stage img", "src").endswith(rows[index]["source"])
    x1, y1, x2, y2 = kept[0]["box"]
    alpha = page.eval_on_selector(
        "#viewer-stage canvas",
        f"(c) => c.getContext('2d').getImageData({(x1 + x2) // 2}, {(y1 + y2) // 2}, 1, 1).data[3]",
    )
    outside = page.eval_on_selector(
        "#viewer-stage canvas", "(c) => c.getContext('2d').getImageData(63, 47, 1, 1).data[3]"
    )
    assert alpha > 0
    assert outside == 0 or any(d["box"][2] >= 63 and d["box"][3] >= 47 for d in kept)
    assert page.errors == []


def test_track_run_report_tracks_counts_and_errors(tmp_path: Path, page: Any) -> None:
    run = make_track_run(tmp_path / "run")
    page.goto(write_report(run).as_uri())
    assert page.locator("table.tracks tr[data-t]").count() == 2
    assert "cannot open video" in page.inner_text("#errors")
    counts = page.inner_text("#counts")
    assert "gate" in counts and "lot" in counts and "person 1" in counts
    assert page.locator("#counts-0 polyline").count() == 4  # gate in/out, lot inside/entered
    page.click("table.tracks tr[data-t] >> nth=1")  # track 12 starts at frame 10
    assert listed_frame(page) == 10
    assert page.locator(".video-part table.items tr").count() == 3  # header + 2 detections
    assert page.errors == []


def test_report_command_rebuilds_and_refuses_other_folders(tmp_path: Path, run_cli: CliRunner) -> None:
    run = make_track_run(tmp_path / "run")
    r = run_cli("report", str(run))
    assert r.returncode == 0, r.stderr
    text = (run / "report.html").read_text()
    assert (
        "Wrote" in r.stdout
        and "gate" in text
        and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    )
    (tmp_path / "empty").mkdir()
    r = run_cli("report", str(tmp_path / "empty"))
    assert r.returncode == 2 and "not a prediction run folder" in r.stderr + r.stdout
