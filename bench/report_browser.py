"""What people see of a run in a browser: how soon the annotated MP4 starts playing over a slow link
in headless Chromium, for each way of finishing the file, and how fast a big folder's report.html
paints.

Streaming: the first ``--frames`` frames of the street video go through densecnn's ``VideoSink``;
the file is then finished three ways (packets copied, nothing re-encoded): ``fragmented`` (moov +
moof/mdat fragments + mfra, what the writer streams to disk while a run goes), ``sidx`` (the same
fragments with a global sidx after the moov: what densecnn writes at close), ``faststart`` (one
unfragmented moov first). Each is served from a loopback HTTP server throttled to ``--rate`` bytes/s
and opened as ``<video autoplay muted>``; the time from navigation to the ``playing`` event and to
the end of the download is measured, variants alternated, ``--repeats`` times (medians reported).
The cost of finishing (the remux at close) is timed on the whole video.

Report: a run folder with ``--images`` tiny images and their predictions.jsonl is built directly
(no model), report.html written, and Chromium's first contentful paint and the time until the
first page of the grid is in the DOM are read from the page.

    .venv/bin/python bench/report_browser.py
    .venv/bin/python bench/report_browser.py --rate 150000 --frames 300 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
VIDEO = ROOT / ".." / "shared" / "data" / "video" / "slow_traffic_small.mp4"
VARIANTS = {
    "fragmented": "frag_keyframe+empty_moov+default_base_moof",
    "sidx": "frag_keyframe+empty_moov+default_base_moof+global_sidx",
    "faststart": "faststart",
}


def annotated_video(out: Path, frames: int | None) -> Path:
    """The street video (its first ``frames`` frames) written by densecnn's VideoSink."""
    import av

    from densecnn.results import Detections, Frame, Prediction
    from densecnn.sinks.video import VideoSink
    from densecnn.sources.base import InputEnd, InputRef, InputStart, VideoInfo

    sink = VideoSink(out)
    with av.open(str(VIDEO)) as container:
        stream = container.streams.video[0]
        ref = InputRef(VIDEO, "street.mp4", "video")
        info = VideoInfo(stream.average_rate, stream.width, stream.height, 0, "h264")
        sink.start_input(InputStart(ref, info))
        n = 0
        first = None
        for frame in container.decode(stream):
            first = frame.pts if first is None else first
            image = frame.to_ndarray(format="bgr24")
            t = float((frame.pts - first) * stream.time_base)
            f = Frame(image=image, source="street.mp4", path=str(VIDEO), index=n, timestamp=t, is_video=True)
            sink.write(Prediction(f, Detections()), image)
            n += 1
            if frames and n >= frames:
                break
        sink.end_input(InputEnd(ref, n))
    sink.close()
    return out / "street.mp4"


def streaming(args: argparse.Namespace, work: Path) -> dict:
    from _browser import launch_chromium, serve, time_to_playing

    from densecnn.sinks.video import add_streaming_index

    base = annotated_video(work / "out", args.frames)
    files = {}
    for name, flags in VARIANTS.items():
        files[name] = work / "site" / f"{name}.mp4"
        files[name].parent.mkdir(exist_ok=True)
        shutil.copy(base, files[name])
        add_streaming_index(files[name], movflags=flags)
    results: dict[str, dict] = {
        n: {"bytes": p.stat().st_size, "playing_s": [], "download_s": []} for n, p in files.items()
    }
    with launch_chromium() as browser:
        for _ in range(args.repeats):
            for name in VARIANTS:
                with serve(work / "site", rate=args.rate) as server:
                    r = time_to_playing(browser, server, f"{name}.mp4")
                results[name]["playing_s"].append(round(r["playing_s"], 3))
                results[name]["download_s"].append(round(results[name]["bytes"] / args.rate, 3))
    full = annotated_video(work / "full", None)
    for name in ("sidx", "faststart"):
        copy = work / f"remux-{name}.mp4"
        times = []
        for _ in range(args.repeats):
            shutil.copy(full, copy)
            t0 = time.perf_counter()
            add_streaming_index(copy, movflags=VARIANTS[name])
            times.append(time.perf_counter() - t0)
        results[name]["remux_full_video_s"] = round(statistics.median(times), 3)
        results[name]["full_video_bytes"] = copy.stat().st_size
    for r in results.values():
        r["playing_median_s"] = statistics.median(r["playing_s"])
    return results


def report_paint(args: argparse.Namespace, work: Path) -> dict:
    from _browser import launch_chromium
    from test_report import make_image_run  # the same run folder the test builds

    from densecnn.report import write_report

    run = make_image_run(work / "images-run", args.images)
    t0 = time.perf_counter()
    page_path = write_report(run)
    build_s = time.perf_counter() - t0
    with launch_chromium() as browser:
        fcp, grid = [], []
        for _ in range(args.repeats):
            page = browser.new_page()
            page.goto(page_path.as_uri())
            page.wait_for_selector("#grid figure")
            fcp.append(page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
            ))  # fmt: skip
            grid.append(page.evaluate("performance.now()"))
            page.close()
    return {
        "images": args.images,
        "report_bytes": page_path.stat().st_size,
        "build_s": round(build_s, 3),
        "first_contentful_paint_ms": statistics.median(fcp),
        "grid_ready_ms_upper_bound": statistics.median(grid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=150_000, help="bytes/s of the throttled server")
    parser.add_argument("--frames", type=int, default=300, help="frames of the street video streamed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000, help="images in the report's run folder")
    parser.add_argument("--skip-streaming", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = {"report": report_paint(args, work)}
        if not args.skip_streaming:
            out["streaming"] = streaming(args, work)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
