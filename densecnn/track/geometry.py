"""Counting lines and zones: parsing ``--line`` / ``--zone`` and the plane geometry the counter needs.

Coordinates are pixels of the source frames (x to the right, y down, origin at the top-left corner).

A line ``x1,y1,x2,y2`` is directed from its first point to its second; **in** is the direction of
that line turned 90° counter-clockwise as seen on the screen: for a line drawn top to bottom
(``door=100,0,100,480``) moving left → right is *in*; for a line drawn left to right, moving
bottom → top is *in*. Swap the two points to swap in and out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from densecnn.errors import UsageError

Point = tuple[float, float]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$")


@dataclass(frozen=True)
class Line:
    """A counting line segment from ``a`` to ``b``."""

    name: str
    a: Point
    b: Point

    def side(self, p: Point) -> int:
        """+1 on the *in* side of the (infinite) line, -1 on the *out* side, 0 on it."""
        (x1, y1), (x2, y2) = self.a, self.b
        cross = (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1)
        return 0 if cross == 0 else (-1 if cross > 0 else 1)  # screen y points down: cross < 0 is "in"

    def crossed_by(self, p: Point, q: Point) -> bool:
        """Whether the move ``p`` → ``q`` (on opposite sides of the line) passes through the segment
        itself, not beside one of its ends (end points count as on the segment)."""
        (x1, y1), (x2, y2) = self.a, self.b
        dx, dy = q[0] - p[0], q[1] - p[1]
        ex, ey = x2 - x1, y2 - y1
        denom = dx * ey - dy * ex
        if denom == 0:
            return False  # parallel: cannot change sides
        # p + s * (q - p) = a + t * (b - a): t is where on the segment the move passes
        t = ((x1 - p[0]) * dy - (y1 - p[1]) * dx) / denom
        return 0.0 <= t <= 1.0


@dataclass(frozen=True)
class Zone:
    """A counting zone: a simple polygon (3 or more points)."""

    name: str
    points: tuple[Point, ...]

    def contains(self, p: Point) -> bool:
        """Whether ``p`` is inside the polygon or on its edge."""
        import cv2
        import numpy as np

        contour = np.asarray(self.points, dtype=np.float32).reshape(-1, 1, 2)
        return bool(cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), False) >= 0)


ANCHORS = ("center", "bottom")


def anchor_point(box: Sequence[float], anchor: str) -> Point:
    """The point of an xyxy box that is counted and trailed: its centre, or its bottom centre
    (``bottom``: where a person's feet touch the ground)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return ((x1 + x2) / 2, y2 if anchor == "bottom" else (y1 + y2) / 2)


def _numbers(text: str, flag: str, spec: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise UsageError(
            f"{flag} {spec!r}: coordinates must be numbers separated by commas.",
            hint=f"Example: {flag} door=100,0,100,480" if flag == "--line" else None,
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{flag} {spec!r}: coordinates must be finite numbers.")
    return values


def _split_name(spec: str, flag: str) -> tuple[str | None, str]:
    if "=" not in spec:
        return None, spec
    name, _, rest = spec.partition("=")
    name = name.strip()
    if not _NAME.match(name):
        raise UsageError(
            f"{flag} {spec!r}: the name {name!r} must be letters, digits, '_', '-', '.' or spaces.",
        )
    return name, rest


def parse_line(spec: str, index: int) -> Line:
    """``x1,y1,x2,y2`` or ``NAME=x1,y1,x2,y2`` → a :class:`Line` (unnamed: ``line<index>``)."""
    name, coords = _split_name(spec, "--line")
    values = _numbers(coords, "--line", spec)
    if len(values) != 4:
        raise UsageError(
            f"--line {spec!r}: expected 4 numbers x1,y1,x2,y2, got {len(values)}.",
            hint="Example: --line door=100,0,100,480 (a vertical line at x=100).",
        )
    a, b = (values[0], values[1]), (values[2], values[3])
    if a == b:
        raise UsageError(f"--line {spec!r}: both ends are the same point.")
    return Line(name or f"line{index}", a, b)


def _zone(name: str, points: Sequence[Sequence[float]], where: str) -> Zone:
    pts = tuple((float(p[0]), float(p[1])) for p in points)
    if len(pts) < 3:
        raise UsageError(f"--zone {where}: a zone needs at least 3 points, got {len(pts)}.")
    area = 0.5 * abs(
        sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True))
    )
    if area == 0:
        raise UsageError(f"--zone {where}: the polygon has no area (its points are on one line).")
    return Zone(name, pts)


def parse_zone_spec(spec: str, first_index: int) -> list[Zone]:
    """One ``--zone`` value: ``x1,y1,x2,y2,x3,y3,...``, ``NAME=x1,y1,...``, or a JSON file of zones,
    ``{"NAME": [[x, y], ...], ...}`` or ``[{"name": NAME, "points": [[x, y], ...]}, ...]``. Unnamed
    zones are ``zone<first_index>``, ``zone<first_index + 1>``..."""
    if spec.lower().endswith(".json") and "=" not in spec:
        return _zones_file(Path(spec), first_index)
    name, coords = _split_name(spec, "--zone")
    values = _numbers(coords, "--zone", spec)
    if len(values) % 2:
        raise UsageError(f"--zone {spec!r}: expected x,y pairs, got {len(values)} numbers.")
    return [
        _zone(name or f"zone{first_index}", list(zip(values[::2], values[1::2], strict=True)), repr(spec))
    ]


def _zones_file(path: Path, first_index: int) -> list[Zone]:
    if not path.is_file():
        raise UsageError(f"--zone {path}: no such file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--zone {path}: not valid JSON ({exc}).") from None
    items: list[tuple[str | None, object]]
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = [(z.get("name"), z.get("points")) if isinstance(z, dict) else (None, z) for z in data]
    else:
        items = []
    if not items:
        raise UsageError(
            f'--zone {path}: expected zones, as {{"NAME": [[x, y], ...]}} or '
            '[{"name": NAME, "points": [[x, y], ...]}].'
        )
    zones = []
    for i, (name, points) in enumerate(items):
        ok = isinstance(points, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
            for p in points
        )
        label = f"{path} ({name or f'zone #{i + 1}'})"
        if not ok:
            raise UsageError(f"--zone {label}: points must be a list of [x, y] number pairs.")
        zones.append(_zone(str(name) if name else f"zone{first_index + i}", points, label))  # type: ignore[arg-type]
    return zones


def parse_geometry(lines: Sequence[str], zones: Sequence[str]) -> tuple[tuple[Line, ...], tuple[Zone, ...]]:
    """Every ``--line`` and ``--zone`` value, parsed; names must be unique within lines and within zones."""
    parsed_lines = tuple(parse_line(spec, i) for i, spec in enumerate(lines, start=1))
    parsed_zones: list[Zone] = []
    for spec in zones:
        parsed_zones += parse_zone_spec(spec, len(parsed_zones) + 1)
    for kind, names in (
        ("--line", [x.name for x in parsed_lines]),
        ("--zone", [z.name for z in parsed_zones]),
    ):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UsageError(f"{kind}: the name {dupes[0]!r} is used twice; give each one its own name.")
    return parsed_lines, tuple(parsed_zones)
