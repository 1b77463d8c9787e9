"""Drawing results: pure functions, array in → new array out.

Images are ``HxWx3`` uint8 BGR (OpenCV convention); boxes are xyxy float pixels of that image.
Text is drawn with OpenCV's built-in Hershey font, so nothing is ever downloaded.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from densecnn.results import (
    IGNORE_ID,
    Classification,
    Detections,
    FrameTracking,
    InstanceSegmentation,
    Result,
    Segmentation,
)

_GOLDEN = 0.618033988749895
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def color_for(class_id: int) -> tuple[int, int, int]:
    """A deterministic BGR colour for ``class_id``.

    Hues advance by the golden ratio, so neighbouring ids get far-apart hues; saturation and value
    cycle slowly so that ids with similar hues still differ.
    """
    cid = abs(int(class_id))
    hue = (0.05 + cid * _GOLDEN) % 1.0
    sat = (0.85, 0.65, 1.0)[(cid // 7) % 3]
    val = (1.0, 0.8, 0.9)[(cid // 21) % 3]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return round(b * 255), round(g * 255), round(r * 255)


def _text_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``bgr``."""
    b, g, r = bgr
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0) if luma > 150 else (255, 255, 255)


def default_line_width(height: int, width: int) -> int:
    """Box line width in pixels for an image of this size (about 0.3 % of its mean side, ≥ 1)."""
    return max(1, round((height + width) / 2 * 0.003))


def _box_pixels(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """xyxy float edges → inclusive integer pixel corners inside the image, or None if empty/invalid."""
    if not np.all(np.isfinite(box)):
        return None
    x1, y1 = math.floor(float(box[0])), math.floor(float(box[1]))
    x2, y2 = math.ceil(float(box[2])) - 1, math.ceil(float(box[3])) - 1
    if x2 < x1 or y2 < y1 or x2 < 0 or y2 < 0 or x1 >= width or y1 >= height:
        return None  # empty, or wholly outside the image
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, width - 1), min(y2, height - 1)
    return x1, y1, x2, y2


def _draw_label(
    image: np.ndarray,
    text: str,
    anchor: tuple[int, int],
    color: tuple[int, int, int],
    line_width: int,
) -> None:
    """Filled label box with ``text``, above the box corner ``anchor`` (inside it if no room), in place."""
    height, width = image.shape[:2]
    scale = max(line_width / 3.0, 0.3)
    thickness = max(line_width - 1, 1)
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(line_width, 1)
    box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
    x, y = anchor
    top = y - box_h if y - box_h >= 0 else y  # above the box, else just inside its top edge
    left = min(max(x, 0), max(width - box_w, 0))
    top = min(max(top, 0), max(height - box_h, 0))
    cv2.rectangle(image, (left, top), (left + box_w - 1, top + box_h - 1), color, -1, cv2.LINE_8)
    origin = (left + pad, top + pad + th)
    cv2.putText(image, text, origin, _FONT, scale, _text_color(color), thickness, cv2.LINE_AA)


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    *,
    line_width: int | None = None,
    show_scores: bool = True,
) -> np.ndarray:
    """Draw boxes and ``name 0.87`` labels on a copy of ``image``.

    image: ``HxWx3`` uint8 BGR (left untouched). Boxes are xyxy in its pixels; the edge pixels of a box
    get ``color_for(class_id)``, or for tracked detections ``color_for(track_id)`` with the label
    ``#id name 0.87``. ``line_width=None`` scales the width to the image size. Returns a new
    ``HxWx3`` uint8 array; labels are kept inside the image.
    """
    out = np.array(image, dtype=np.uint8, copy=True, order="C")
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"draw_detections expects an HxWx3 BGR image, got shape {image.shape}")
    height, width = out.shape[:2]
    if len(detections) == 0 or height == 0 or width == 0:
        return out
    lw = max(1, int(line_width)) if line_width is not None else default_line_width(height, width)
    corners = [_box_pixels(b, width, height) for b in detections.boxes]
    tracked = detections.track_ids is not None
    colors = [color_for(int(i)) for i in (detections.track_ids if tracked else detections.class_ids)]  # type: ignore[union-attr]
    # Boxes first, labels after, so no box line crosses a label.
    for pix, color in zip(corners, colors, strict=True):
        if pix is not None:
            x1, y1, x2, y2 = pix
            cv2.rectangle(out, (x1, y1), (x2, y2), color, lw, cv2.LINE_8)
    for i, (pix, cid, score) in enumerate(zip(corners, detections.class_ids, detections.scores, strict=True)):
        if pix is None:
            continue
        text = detections.class_name(int(cid))
        if tracked:
            text = f"#{int(detections.track_ids[i])} {text}"  # type: ignore[index]
        if show_scores:
            text = f"{text} {float(score):.2f}"
        _draw_label(out, text, (pix[0], pix[1]), colors[i], lw)
    return out


def draw_classification(image: np.ndarray, result: Classification, *, top: int = 3) -> np.ndarray:
    """The ``top`` classes as ``name 0.87`` labels stacked at the top-left of a copy of ``image``."""
    out = np.array(image, dtype=np.uint8, copy=True, order="C")
    height, width = out.shape[:2]
    if len(result) == 0 or height == 0 or width == 0:
        return out
    lw = default_line_width(height, width)
    y = 0
    for cid, score in list(zip(result.class_ids, result.scores, strict=True))[:top]:
        text = f"{result.class_name(int(cid))} {float(score):.2f}"
        (_, th), baseline = cv2.getTextSize(text, _FONT, max(lw / 3.0, 0.3), max(lw - 1, 1))
        _draw_label(out, text, (0, y), color_for(int(cid)), lw)
        y += th + baseline + 2 * max(lw, 1)
    return out


def is_background(name: str) -> bool:
    """Whether a segmentation class is the background (left undrawn, black in ``classes.json``)."""
    return name.strip("_").lower() == "background"


def segmentation_palette(names: dict[int, str]) -> dict[int, tuple[int, int, int]]:
    """Class id → BGR colour of a segmentation overlay: ``color_for(id)``, black for the background."""
    return {i: (0, 0, 0) if is_background(n) else color_for(i) for i, n in names.items()}


def draw_segmentation(
    image: np.ndarray, result: Segmentation, *, alpha: float = 0.5, legend: bool = True
) -> np.ndarray:
    """Blend each class's colour over a copy of ``image`` and list the classes present at the top-left.

    image: ``HxWx3`` uint8 BGR of the label map's size (left untouched). Pixel ``(x, y)`` becomes
    ``(1 - alpha) * image + alpha * color`` where its class is not background or ``IGNORE_ID``.
    Returns a new ``HxWx3`` uint8 array.
    """
    if image.shape[:2] != result.label_map.shape:
        raise ValueError(f"label map {result.label_map.shape} does not match image {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = np.array(image, dtype=np.uint8, copy=True, order="C")
    present = [i for i in result.fractions() if i != IGNORE_ID and not is_background(result.class_name(i))]
    if not present or out.size == 0:
        return out
    lut = np.zeros((256, 3), dtype=np.float32)
    drawn = np.zeros(256, dtype=bool)
    for i in present:
        lut[i], drawn[i] = color_for(i), True
    mask = drawn[result.label_map]
    blended = (1.0 - alpha) * out[mask].astype(np.float32) + alpha * lut[result.label_map[mask]]
    out[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if legend:
        lw = default_line_width(*out.shape[:2])
        fractions = result.fractions()
        y = 0
        for i in sorted(present, key=lambda c: -fractions[c])[:8]:
            text = f"{result.class_name(i)} {100 * fractions[i]:.0f}%"
            (_, th), baseline = cv2.getTextSize(text, _FONT, max(lw / 3.0, 0.3), max(lw - 1, 1))
            _draw_label(out, text, (0, y), color_for(i), lw)
            y += th + baseline + 2 * max(lw, 1)
    return out


def draw_instances(image: np.ndarray, result: InstanceSegmentation, *, alpha: float = 0.5) -> np.ndarray:
    """Instance masks blended in their class colours (where masks overlap, the best-scoring instance's
    colour, blended once), a 1-2 px outline around each, then boxes and ``name 0.87`` labels
    (:func:`draw_detections`).

    image: ``HxWx3`` uint8 BGR of the masks' size (left untouched). Returns a new array.
    """
    if image.shape[:2] != result.masks.shape[1:]:
        raise ValueError(f"masks {result.masks.shape[1:]} do not match image {image.shape[:2]}")
    out = np.array(image, dtype=np.uint8, copy=True, order="C")
    if len(result) == 0:
        return out
    order = np.argsort(result.scores, kind="stable")  # worst first
    top = result.top_instance  # the best instance at each covered pixel, -1 elsewhere
    covered = top >= 0
    colors = np.array([color_for(int(c)) for c in result.class_ids] + [(0, 0, 0)], dtype=np.uint8)
    if len(result) < 255:  # the colour of each pixel's instance through a lookup table (SIMD)
        lut = np.zeros((256, 1, 3), dtype=np.uint8)
        lut[: len(colors), 0] = colors
        lut[255, 0] = colors[-1]
        index = top.astype(np.uint8)  # -1 (no instance) wraps to 255
        painted = cv2.LUT(cv2.merge([index, index, index]), lut)
    else:
        painted = colors[top]  # index -1 picks the spare row
    # whole-frame blend, kept where an instance covers the pixel
    blended = cv2.addWeighted(out, 1.0 - alpha, painted, alpha, 0.0)
    np.copyto(out, blended, where=covered[..., None])
    lw = default_line_width(*out.shape[:2])
    windows = result.mask_windows()
    for i in order:
        y0, y1, x0, x1 = windows[i]  # the outline is traced inside the mask's window only
        if y1 <= y0 or x1 <= x0:
            continue
        crop = result.masks[i, y0:y1, x0:x1].astype(np.uint8)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        color = tuple(int(v) for v in colors[i])
        cv2.drawContours(out, contours, -1, color, max(1, lw // 2), cv2.LINE_8, offset=(int(x0), int(y0)))
    return draw_detections(out, result)


_LINE_COLOR = (0, 255, 255)  # BGR yellow: counting lines
_ZONE_COLOR = (255, 128, 0)  # BGR light blue: counting zones


def _total(per_class: dict[str, int]) -> int:
    return sum(per_class.values())


def draw_tracking(image: np.ndarray, tracking: FrameTracking) -> np.ndarray:
    """Trails, counting lines and zones, and their counts, on a copy of ``image`` (``HxWx3`` uint8
    BGR, usually the frame with its tracked boxes drawn).

    Each track's trail joins its latest anchor points in ``color_for(track_id)``. Each line is drawn
    with its name at its first point and a short arrow from its middle to its *in* side; each zone's
    outline with its name at its first point. The counts (all classes together; per class in the
    JSON) are stacked at the bottom-left corner: ``door in 3 out 2``, ``shop 1 inside +4 -3``.
    """
    out = np.array(image, dtype=np.uint8, copy=True, order="C")
    height = out.shape[0]
    lw = default_line_width(*out.shape[:2])
    for track_id, points in tracking.trails.items():
        if len(points) > 1:
            pts = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], False, color_for(track_id), max(1, lw), cv2.LINE_AA)
    for zone in tracking.zones:
        pts = np.round(np.asarray(zone.points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, _ZONE_COLOR, max(1, lw), cv2.LINE_AA)
        _draw_label(out, zone.name, (int(pts[0, 0, 0]), int(pts[0, 0, 1])), _ZONE_COLOR, lw)
    for line in tracking.lines:
        a = np.asarray(line.a, dtype=np.float64)
        b = np.asarray(line.b, dtype=np.float64)
        cv2.line(out, _px(a), _px(b), _LINE_COLOR, max(1, lw + 1), cv2.LINE_AA)
        d = b - a
        normal = np.array([d[1], -d[0]]) / max(float(np.linalg.norm(d)), 1e-9)  # 90° counter-clockwise
        mid = (a + b) / 2
        tip = mid + normal * max(12, 8 * lw)
        cv2.arrowedLine(out, _px(mid), _px(tip), _LINE_COLOR, max(1, lw), cv2.LINE_AA, tipLength=0.4)
        _draw_label(out, line.name, _px(a), _LINE_COLOR, lw)
    counts = tracking.counts
    panel = [
        (f"{name} in {_total(c['in'])} out {_total(c['out'])}", _LINE_COLOR)
        for name, c in counts.get("lines", {}).items()
    ] + [
        (f"{name} {_total(c['inside'])} inside +{_total(c['entered'])} -{_total(c['exited'])}", _ZONE_COLOR)
        for name, c in counts.get("zones", {}).items()
    ]
    y = height
    for text, color in reversed(panel):  # bottom-up, so the first line ends up on top
        (_, th), baseline = cv2.getTextSize(text, _FONT, max(lw / 3.0, 0.3), max(lw - 1, 1))
        _draw_label(out, text, (0, y), color, lw)
        y -= th + baseline + 2 * max(lw, 1)
    return out


def _px(point: np.ndarray) -> tuple[int, int]:
    return round(float(point[0])), round(float(point[1]))


def draw_result(image: np.ndarray, result: Result, *, alpha: float = 0.5) -> np.ndarray:
    """Dispatch on the result type: the one drawing entry point the pipeline calls.

    ``alpha``: the opacity of segmentation overlays."""
    if isinstance(result, Segmentation):
        return draw_segmentation(image, result, alpha=alpha)
    if isinstance(result, InstanceSegmentation):  # before Detections: it is one
        return draw_instances(image, result, alpha=alpha)
    if isinstance(result, Detections):
        return draw_detections(image, result)
    if isinstance(result, Classification):
        return draw_classification(image, result)
    raise TypeError(f"no drawing for {type(result).__name__}")
