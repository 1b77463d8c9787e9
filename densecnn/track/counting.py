"""Line crossings and zone occupancy of tracked objects, per source.

The counts have one structure everywhere (each frame's predictions.jsonl line, summary.json, the
summary table)::

    {"lines": {NAME: {"in": {CLASS: n}, "out": {CLASS: n}}},
     "zones": {NAME: {"inside": {CLASS: n}, "entered": {CLASS: n}, "exited": {CLASS: n}}}}

``in`` / ``out`` / ``entered`` / ``exited`` are cumulative; ``inside`` is the number of tracked objects
in the zone in that frame (summary.json: in each source's last frame). Classes with no count are
left out.

How a crossing is decided (also across frames the model never saw: ``--stream-mode latest`` drops,
``--vid-stride``, a track lost for a while). Each confirmed track has one **anchor point** per frame
it is seen in: the centre (or with ``--anchor bottom`` the bottom centre) of the detection box the
track matched in that frame (the box as the model saw it: the tracker's Kalman-smoothed box, the one
written out, lags behind after a gap). For each line the
counter remembers the side of the line of the track's last anchor that was off the line. When the
track is next seen on the other side, and the straight move between those two anchors passes through
the line segment (not beside its ends), that is **one** crossing, counted for the class the track
has now. Only the sides before and after matter, so a crossing during dropped frames counts once,
and an object that crossed and came back while unseen counts nothing. A track whose anchor lands
exactly on the line keeps its previous side until it leaves the line. Zones work the same way:
``entered`` when a track seen outside is next seen inside (edge counts as inside), ``exited`` the
reverse; a track first seen inside adds to ``inside`` but not to ``entered``. Tracks the tracker has
not confirmed have no id and are never counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from densecnn.track.geometry import Line, Point, Zone

_LINE_KEYS = ("in", "out")
_ZONE_KEYS = ("inside", "entered", "exited")


def empty_counts(lines: Sequence[Line], zones: Sequence[Zone]) -> dict[str, Any]:
    """The counts structure with nothing counted yet."""
    return {
        "lines": {line.name: {k: {} for k in _LINE_KEYS} for line in lines},
        "zones": {zone.name: {k: {} for k in _ZONE_KEYS} for zone in zones},
    }


def add_counts(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add ``part``'s counts into ``total`` (same structure), class by class, in place."""
    for kind in ("lines", "zones"):
        for name, groups in part.get(kind, {}).items():
            into = total.setdefault(kind, {}).setdefault(name, {})
            for key, per_class in groups.items():
                merged = Counter(into.get(key, {}))
                merged.update(per_class)
                into[key] = dict(sorted(merged.items()))


@dataclass
class _TrackState:
    last_seen: int
    sides: dict[str, tuple[int, Point]] = field(default_factory=dict)  # line → (side, anchor off the line)
    inside: dict[str, bool] = field(default_factory=dict)  # zone → inside at the last sighting


class CrossingCounter:
    """Counts of one source: :meth:`update` once per processed frame with its tracked objects."""

    def __init__(self, lines: Sequence[Line], zones: Sequence[Zone], *, forget_after: int) -> None:
        self.lines, self.zones = tuple(lines), tuple(zones)
        self.forget_after = forget_after  # steps after which an unseen track cannot come back
        self._step = 0
        self._tracks: dict[int, _TrackState] = {}
        self._line_counts = {line.name: {k: Counter[str]() for k in _LINE_KEYS} for line in self.lines}
        self._zone_counts = {
            zone.name: {k: Counter[str]() for k in ("entered", "exited")} for zone in self.zones
        }
        self._inside = {zone.name: Counter[str]() for zone in self.zones}

    def update(self, objects: Iterable[tuple[int, str, Point]]) -> None:
        """One frame's tracked objects as ``(track_id, class_name, anchor)``."""
        self._step += 1
        for zone in self.zones:
            self._inside[zone.name] = Counter()
        for track_id, cls, point in objects:
            state = self._tracks.get(track_id)
            if state is None:
                state = self._tracks[track_id] = _TrackState(self._step)
            state.last_seen = self._step
            for line in self.lines:
                self._update_line(line, state, cls, point)
            for zone in self.zones:
                inside = zone.contains(point)
                before = state.inside.get(zone.name)
                if before is not None and before != inside:
                    self._zone_counts[zone.name]["entered" if inside else "exited"][cls] += 1
                state.inside[zone.name] = inside
                if inside:
                    self._inside[zone.name][cls] += 1
        stale = [t for t, s in self._tracks.items() if self._step - s.last_seen > self.forget_after]
        for track_id in stale:
            del self._tracks[track_id]

    def _update_line(self, line: Line, state: _TrackState, cls: str, point: Point) -> None:
        side = line.side(point)
        if side == 0:
            return  # on the line: the side it came from still holds
        before = state.sides.get(line.name)
        if before is not None and before[0] != side and line.crossed_by(before[1], point):
            self._line_counts[line.name]["in" if side > 0 else "out"][cls] += 1
        state.sides[line.name] = (side, point)

    def counts(self) -> dict[str, Any]:
        """The counts after the last update, as the module docstring describes them."""
        return {
            "lines": {
                name: {k: dict(sorted(c.items())) for k, c in groups.items()}
                for name, groups in self._line_counts.items()
            },
            "zones": {
                name: {
                    "inside": dict(sorted(self._inside[name].items())),
                    **{k: dict(sorted(c.items())) for k, c in groups.items()},
                }
                for name, groups in self._zone_counts.items()
            },
        }
