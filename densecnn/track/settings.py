"""Tracker settings: ``--tracker bytetrack|botsort|FILE.yaml``, read and checked before any model loads.

The settings are Ultralytics' own (its ``bytetrack.yaml`` / ``botsort.yaml``, the files ``yolo track
tracker=...`` reads): a user file names ``tracker_type`` and any keys it changes; the keys it leaves
out take that tracker's defaults from the installed Ultralytics. Reading them needs no Ultralytics
import (the YAML files are located, not imported), so a bad file fails fast.
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from typing import Any

from densecnn.errors import UsageError

TRACKERS = ("bytetrack", "botsort")
DEFAULT_TRACKER = "botsort"  # what `yolo track` uses when no tracker is named

_UNIT_INTERVAL = ("track_high_thresh", "track_low_thresh", "new_track_thresh", "match_thresh",
                  "proximity_thresh", "appearance_thresh")  # fmt: skip
_GMC_METHODS = ("sparseOptFlow", "orb", "sift", "ecc", "none", None)


def ultralytics_tracker_yaml(name: str) -> Path:
    """The installed Ultralytics' default settings file of tracker ``name`` (bytetrack or botsort)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "Tracking needs Ultralytics, which is not installed.", hint="pip install ultralytics"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "cfg" / "trackers" / f"{name}.yaml"


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise UsageError(f"{what}: {path} must be a YAML mapping of tracker settings (key: value).")
    return data


def load_tracker_settings(tracker: str) -> dict[str, Any]:
    """``bytetrack`` / ``botsort`` (also as ``bytetrack.yaml``...) → that tracker's default settings;
    a YAML file → its settings over the defaults of the ``tracker_type`` it names. Checked: known keys
    only, thresholds in [0, 1], ``track_buffer`` ≥ 1, no ReID (it needs an appearance model)."""
    name = tracker.strip()
    bare = name[:-5] if name.endswith(".yaml") else name
    if bare.lower() in TRACKERS and not Path(name).is_file():
        return _checked(_read_yaml(ultralytics_tracker_yaml(bare.lower()), "--tracker"), {}, name)
    path = Path(name)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        missing = f"no such file {path}" if path.suffix.lower() in (".yaml", ".yml") else f"unknown {name!r}"
        raise UsageError(
            f"--tracker: {missing}.",
            hint=f"Use {' or '.join(TRACKERS)}, or a YAML file of Ultralytics tracker settings "
            "(tracker_type: bytetrack, plus the keys to change).",
        )
    user = _read_yaml(path, "--tracker")
    kind = str(user.get("tracker_type", "")).strip().lower()
    if kind not in TRACKERS:
        raise UsageError(
            f"--tracker {path}: tracker_type must be {' or '.join(TRACKERS)}, "
            f"got {user.get('tracker_type')!r}.",
            hint="densecnn runs Ultralytics' ByteTrack and BoT-SORT.",
        )
    defaults = _read_yaml(ultralytics_tracker_yaml(kind), "--tracker")
    return _checked(defaults, user, str(path))


def _checked(defaults: dict[str, Any], user: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(defaults), n=2)
        hint = f"Did you mean: {', '.join(close)}? " if close else ""
        raise UsageError(
            f"--tracker {where}: unknown setting {unknown[0]!r} for {defaults['tracker_type']}.",
            hint=f"{hint}Its settings: {', '.join(k for k in defaults if k != 'tracker_type')}.",
        )
    settings = {**defaults, **user, "tracker_type": str(defaults["tracker_type"])}
    for key, value in settings.items():
        default = defaults[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = value is None or isinstance(value, str)
        if not ok:
            raise UsageError(f"--tracker {where}: {key} must be like {default!r}, got {value!r}.")
    for key in _UNIT_INTERVAL:
        if key in settings and not 0.0 <= float(settings[key]) <= 1.0:
            raise UsageError(f"--tracker {where}: {key} must be between 0 and 1, got {settings[key]}.")
    if int(settings["track_buffer"]) < 1 or settings["track_buffer"] != int(settings["track_buffer"]):
        raise UsageError(f"--tracker {where}: track_buffer must be a whole number of frames ≥ 1.")
    settings["track_buffer"] = int(settings["track_buffer"])
    if settings.get("with_reid"):
        raise UsageError(
            f"--tracker {where}: with_reid is not supported: BoT-SORT's ReID runs a separate appearance "
            "model that densecnn does not load.",
            hint="Set with_reid: false (the default).",
        )
    if "gmc_method" in settings and settings["gmc_method"] not in _GMC_METHODS:
        raise UsageError(
            f"--tracker {where}: gmc_method must be one of sparseOptFlow, orb, sift, ecc, none; "
            f"got {settings['gmc_method']!r}."
        )
    return settings
