"""Counting: real pedestrians (Penn-Fudan crops) walk across a line and through a zone of a generated
video a known number of times; `densecnn track` counts them exactly, in and out, also when frames
around a crossing are dropped (as ``--stream-mode latest`` drops them on a live stream)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, need_data

PENNFUDAN = DATA / "pennfudan"
WIDTH, HEIGHT, TOP, PERSON_H = 320, 240, 45, 150
DOOR = "door=160,0,160,240"  # drawn top to bottom: left → right is "in"
SHOP = "shop=200,0,320,0,320,240,200,240"  # the right part of the frame
# (crop, first frame, centre x at the first frame, pixels per frame): A walks right across the door into
# the shop and back out; then B, who starts inside the shop, walks out of it and across the door.
SCRIPT = [("FudanPed00047", 0, 60, 6), ("FudanPed00047", 33, 252, -6), ("FudanPed00051", 65, 252, -6)]
FRAMES = 98


def _person(stem: str) -> np.ndarray:
    """The first pedestrian of a Penn-Fudan photo: the box of its mask, PERSON_H pixels tall."""
    import cv2

    image = cv2.imread(str(need_data(PENNFUDAN) / "images" / f"{stem}.png"))
    mask = cv2.imread(str(PENNFUDAN / "masks" / f"{stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
    ys, xs = np.nonzero(mask == 1)
    crop = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = PERSON_H / crop.shape[0]
    return cv2.resize(crop, (round(crop.shape[1] * scale), PERSON_H), interpolation=cv2.INTER_AREA)


def walk_centres() -> list[float | None]:
    """The centre x of the walking person in each frame (None: nobody)."""
    centres: list[float | None] = [None] * FRAMES
    for i, (_, start, x0, step) in enumerate(SCRIPT):
        end = SCRIPT[i + 1][1] if i + 1 < len(SCRIPT) else FRAMES
        for t in range(start, end):
            centres[t] = x0 + step * (t - start)
    return centres


def make_walk_video(path: Path) -> Path:
    """The SCRIPT as an H.264 video on a static textured background (texture: BoT-SORT's camera
    motion compensation finds the background still)."""
    import av
    import cv2

    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(70, 190, (HEIGHT, WIDTH, 3), dtype=np.uint8), (5, 5), 0)
    people = {stem: _person(stem) for stem, *_ in SCRIPT}
    owners = [next(s for s, start, *_ in reversed(SCRIPT) if start <= t) for t in range(FRAMES)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "16"}
        for t, cx in enumerate(walk_centres()):
            image = background.copy()
            if cx is not None:
                person = people[owners[t]]
                x = round(cx - person.shape[1] / 2)
                image[TOP : TOP + PERSON_H, x : x + person.shape[1]] = person
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return path
