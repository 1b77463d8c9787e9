"""The counting rules, the --line / --zone / --tracker parsing, and `densecnn track` on each kind of
box model (YOLO, Faster R-CNN, YOLO -seg) and on models it cannot track."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_video

from densecnn.errors import UsageError
from densecnn.track.counting import CrossingCounter
from densecnn.track.geometry import Line, Zone, parse_geometry, parse_line
from densecnn.track.settings import load_tracker_settings

DOOR = Line("door", (100.0, 0.0), (100.0, 200.0))  # top to bottom: left → right is "in"


def _count(steps: list[list[tuple[int, str, tuple[float, float]]]], *, zones=()) -> dict:
    counter = CrossingCounter([DOOR], list(zones), forget_after=30)
    for objects in steps:
        counter.update(objects)
    return counter.counts()


def test_line_direction_and_one_count_per_crossing() -> None:
    path = [(80.0, 50.0), (95.0, 50.0), (100.0, 50.0), (110.0, 50.0), (90.0, 50.0)]
    counts = _count([[(1, "person", p)] for p in path])
    # right across (via a point exactly on the line: it keeps the side it came from), then back
    assert counts["lines"]["door"] == {"in": {"person": 1}, "out": {"person": 1}}


def test_crossing_across_a_gap_counts_once_and_a_return_within_it_not_at_all() -> None:
    # frames between are unseen (dropped): only the sides before and after count
    assert _count([[(1, "car", (60.0, 20.0))], [(1, "car", (140.0, 30.0))]])["lines"]["door"]["in"] == {
        "car": 1
    }
    there_and_back = _count([[(1, "car", (60.0, 20.0))], [(1, "car", (70.0, 25.0))]])
    assert there_and_back["lines"]["door"] == {"in": {}, "out": {}}


def test_passing_beside_the_segment_is_no_crossing() -> None:
    below = _count([[(1, "person", (80.0, 250.0))], [(1, "person", (120.0, 250.0))]])
    assert below["lines"]["door"] == {"in": {}, "out": {}}
    # a diagonal move whose straight path cuts the segment near its end does count
    diagonal = _count([[(1, "person", (80.0, 250.0))], [(1, "person", (120.0, 150.0))]])
    assert diagonal["lines"]["door"]["in"] == {"person": 1}


def test_zone_inside_entered_exited_per_class() -> None:
    zone = Zone("shop", ((100.0, 0.0), (200.0, 0.0), (200.0, 100.0), (100.0, 100.0)))
    steps = [
        [(1, "person", (150.0, 50.0)), (2, "car", (50.0, 50.0))],  # 1 starts inside: not "entered"
        [(1, "person", (250.0, 50.0)), (2, "car", (120.0, 50.0))],
        [(2, "car", (100.0, 50.0))],  # on the edge: inside
    ]
    zones = _count(steps, zones=[zone])["zones"]["shop"]
    assert zones == {"inside": {"car": 1}, "entered": {"car": 1}, "exited": {"person": 1}}


def test_separate_tracks_and_classes_are_counted_apart() -> None:
    counts = _count(
        [
            [(1, "person", (90.0, 10.0)), (2, "car", (110.0, 10.0)), (3, "person", (95.0, 10.0))],
            [(1, "person", (105.0, 10.0)), (2, "car", (90.0, 10.0)), (3, "person", (104.0, 10.0))],
        ]
    )
    assert counts["lines"]["door"] == {"in": {"person": 2}, "out": {"car": 1}}


def test_line_and_zone_parsing(tmp_path: Path) -> None:
    assert parse_line("door=100,0,100,480", 1) == Line("door", (100.0, 0.0), (100.0, 480.0))
    assert parse_line("0, 10, 640, 10", 2).name == "line2"
    zones_file = tmp_path / "zones.json"
    zones_file.write_text(
        json.dumps({"lobby": [[0, 0], [50, 0], [50, 50]], "yard": [[0, 0], [9, 0], [0, 9]]})
    )
    lines, zones = parse_geometry(["a=0,0,1,1", "2,2,3,3"], [str(zones_file), "10,10,20,10,20,20"])
    assert [x.name for x in lines] == ["a", "line2"]
    assert [z.name for z in zones] == ["lobby", "yard", "zone3"] and zones[0].contains((10, 5))
    for bad, message in [
        (["1,2,3"], "expected 4 numbers"),
        (["door=1,1,1,1"], "same point"),
        (["x=1,2,3,y"], "must be numbers"),
        (["a=0,0,1,1", "a=0,0,2,2"], "used twice"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_geometry(bad, [])
    for bad_zone, message in [
        ("0,0,1,1", "at least 3 points"),
        ("0,0,1,1,2,2", "no area"),
        ("1,2,3", "x,y pairs"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_geometry([], [bad_zone])
    with pytest.raises(UsageError, match="no such file"):
        parse_geometry([], [str(tmp_path / "missing.json")])


def test_tracker_settings(tmp_path: Path) -> None:
    byte = load_tracker_settings("bytetrack")
    assert byte["tracker_type"] == "bytetrack" and byte["track_buffer"] == 30
    assert load_tracker_settings("botsort.yaml")["gmc_method"] == "sparseOptFlow"
    partial = tmp_path / "mine.yaml"
    partial.write_text("tracker_type: botsort\ntrack_buffer: 60\ngmc_method: none\n")
    mine = load_tracker_settings(str(partial))
    assert (
        mine["track_buffer"] == 60
        and mine["new_track_thresh"] == load_tracker_settings("botsort")["new_track_thresh"]
    )  # the keys left out: Ultralytics' botsort.yaml defaults
    for text, message in [
        ("tracker_type: deepsort\n", "tracker_type must be bytetrack or botsort"),
        ("tracker_type: bytetrack\ntrack_bufer: 3\n", "unknown setting 'track_bufer'.*"),
        ("tracker_type: bytetrack\nmatch_thresh: 2\n", "between 0 and 1"),
        ("tracker_type: botsort\nwith_reid: true\n", "with_reid is not supported"),
        ("tracker_type: bytetrack\ntrack_buffer: many\n", "track_buffer must be like 30"),
    ]:
        partial.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_tracker_settings(str(partial))
    with pytest.raises(UsageError, match="unknown 'sort'"):
        load_tracker_settings("sort")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "moving.mp4", frames=6, width=160, height=128)


def _tracked_rows(run: Path, key: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("counts" in row for row in rows)
    return [det for row in rows for det in row[key]]


def test_track_runs_yolo_rcnn_and_instance_models(
    run_cli, tmp_path: Path, video: Path, yolo_weights: Path, rcnn_weights: Path
) -> None:
    """Every box model tracks: each written detection has an int track_id, the CSV repeats it."""
    from _factories import make_yolo_seg_checkpoint

    from densecnn.zoo.store import embedded_weights_dir

    seg = make_yolo_seg_checkpoint(
        tmp_path / "seg.pt", images=[embedded_weights_dir().parent / "samples" / "astronaut.jpg"]
    )
    cases = [
        ("yolo", ["--weights", str(yolo_weights), "--conf", "0.05"], "detections"),
        (
            "rcnn",
            ["--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--weights", str(rcnn_weights)],
            "detections",
        ),
        ("seg", ["--weights", str(seg), "--conf", "0.05"], "instances"),
    ]
    for name, args, key in cases:
        r = run_cli(
            "track", str(video), *args, "--tracker", "bytetrack", "--imgsz", "160", "--name", name, "-q"
        )
        assert r.returncode == 0, f"{name}: {r.stderr}"
        run = tmp_path / "runs" / "track" / name
        tracked = _tracked_rows(run, key)
        assert tracked, f"{name}: nothing tracked, so this proves nothing"
        assert all(isinstance(d["track_id"], int) and d["track_id"] >= 1 for d in tracked), name
        csv_rows = (run / "predictions.csv").read_text().splitlines()
        assert len(csv_rows) == 1 + len(tracked), name
        if key == "instances":
            assert all("mask" in d for d in tracked)


def test_track_refuses_what_it_cannot_track(run_cli, video: Path) -> None:
    r = run_cli("track", str(video), "--model", "person-unet")
    assert r.returncode == 2 and "tracking needs boxes" in r.stderr
    r = run_cli("track", str(video), "--line", "door=1,2,3")
    assert r.returncode == 2 and "expected 4 numbers" in r.stderr
    r = run_cli("track", str(video), "--tracker", "nope.yaml")
    assert r.returncode == 2 and "no such file" in r.stderr


def test_detections_keep_track_ids_through_filter() -> None:
    from densecnn.results import Detections

    dets = Detections(np.zeros((3, 4)), np.ones(3), np.zeros(3), {0: "a"}, track_ids=[4, 5, 6])
    assert dets.filter(np.array([True, False, True])).track_ids.tolist() == [4, 6]
    assert [d["track_id"] for d in dets.to_dicts()] == [4, 5, 6]
    assert "track_id" not in Detections(np.zeros((1, 4)), [1.0], [0]).to_dicts()[0]
    from densecnn.sinks.labels import yolo_lines

    boxes = Detections([[0, 0, 10, 20]], [0.5], [2], track_ids=[7])
    assert yolo_lines(boxes, width=20, height=20, save_conf=True) == [
        "2 0.250000 0.500000 0.500000 1.000000 0.500000 7"
    ]


def test_python_api_tracks(video: Path, yolo_weights: Path) -> None:
    import densecnn

    predictions = list(
        densecnn.predict(
            video, weights=yolo_weights, tracker="bytetrack", lines=["gate=80,0,80,128"], conf=0.05, imgsz=160
        )
    )
    assert len(predictions) == 6
    assert all(p.tracking is not None and "gate" in p.tracking.counts["lines"] for p in predictions)
    assert all(p.result.track_ids is not None for p in predictions)
    assert sum(len(p.result) for p in predictions) > 0
