"""samples/: public-domain / CC0 photos from scikit-image's wheel, and a short clip made from them.

  python tools/make_samples.py photos SKIMAGE_DATA_DIR   # re-extract the photos (JPEG, quality 90)
  python tools/make_samples.py clip                      # samples/clip.mp4 from the photos

The photos are committed (see samples/LICENSES.md); scikit-image is needed only to re-extract them:
`pip download --no-deps scikit-image==0.26.0`, unzip, and pass its ``skimage/data`` folder.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
# file in skimage/data -> sample name; the first two show a person
PHOTOS = {
    "astronaut.png": "astronaut.jpg",
    "camera.png": "camera.jpg",
    "coffee.png": "coffee.jpg",
    "chelsea.png": "chelsea.jpg",
    "rocket.jpg": "rocket.jpg",
}
CLIP_PHOTOS = ("astronaut.jpg", "camera.jpg", "coffee.jpg")
CLIP_SIZE = 384
FRAMES_PER_PHOTO = 20
FPS = 10


def photos(data_dir: Path) -> None:
    SAMPLES.mkdir(exist_ok=True)
    for src, dst in PHOTOS.items():
        image = cv2.imread(str(data_dir / src), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {data_dir / src}")
        cv2.imwrite(str(SAMPLES / dst), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        print(f"samples/{dst}: {image.shape[1]}x{image.shape[0]} from skimage/data/{src}")


def _zoom(image: np.ndarray, t: float) -> np.ndarray:
    """A centred crop shrinking from the whole (square) image to 70% of it as ``t`` goes 0 → 1."""
    side = min(image.shape[:2])
    crop = round(side * (1.0 - 0.3 * t))
    y, x = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
    return cv2.resize(image[y : y + crop, x : x + crop], (CLIP_SIZE, CLIP_SIZE), interpolation=cv2.INTER_AREA)


def clip() -> Path:
    """samples/clip.mp4: a slow zoom into each clip photo, H.264 through the project's own writer."""
    sys.path.insert(0, str(ROOT))
    from densecnn.sinks.video import _codec_options, _Writer, select_codec

    codec, note = select_codec()
    if note:
        print(note)
    out = SAMPLES / "clip.mp4"
    tmp = out.with_name(".clip.tmp.mp4")
    writer = _Writer(
        tmp,
        codec=codec,
        rate=Fraction(FPS),
        width=CLIP_SIZE,
        height=CLIP_SIZE,
        options=_codec_options(codec, crf=28, preset="medium"),
        keyframe_interval=FRAMES_PER_PHOTO,
    )
    try:
        for name in CLIP_PHOTOS:
            image = cv2.imread(str(SAMPLES / name), cv2.IMREAD_COLOR)
            for i in range(FRAMES_PER_PHOTO):
                writer.write(_zoom(image, i / (FRAMES_PER_PHOTO - 1)))
    finally:
        writer.close()
    os.replace(tmp, out)  # the finished file appears at once
    print(f"{out.relative_to(ROOT)}: {len(CLIP_PHOTOS) * FRAMES_PER_PHOTO} frames, {FPS} fps, {codec}")
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "photos" and len(sys.argv) == 3:
        photos(Path(sys.argv[2]))
    elif sys.argv[1:] == ["clip"]:
        clip()
    else:
        raise SystemExit(__doc__)
