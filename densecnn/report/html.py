"""report.html: the run's settings, timing and errors, then its videos (annotated video, per-class
plot over time that seeks on click, the current frame's items in sync) and its images (paged, lazy,
filterable thumbnail grid). Tracks and line/zone counts appear when the run has them.

One self-contained file: the CSS and the script are inlined from ``assets/``, the data is a JSON
block, the plots are inline SVG (:mod:`densecnn.report.svg`); media are linked relatively (the
annotated videos and images beside it in the run folder). Nothing is fetched from the network.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from html import escape
from importlib import resources
from typing import Any

from densecnn.report.data import RunData, VideoPart, class_totals
from densecnn.report.svg import color, time_plot

MAX_PLOTTED_CLASSES = 10
MAX_TRACK_ROWS = 300
_VALUE_LABEL = {
    "detections": "detections per frame",
    "instances": "instances per frame",
    "segments": "fraction of pixels",
    "classes": "probability",
}
_HEADLINE = ("command", "source", "model", "backbone", "weights", "device")
_SHOWN_ELSEWHERE = {
    *_HEADLINE,
    "classes",
    "class_counts",
    "stage_ms_per_frame",
    "counts",
    "errors",
    "display",
    "latency_ms",
}


def _asset(name: str) -> str:
    return resources.files("densecnn.report").joinpath("assets", name).read_text(encoding="utf-8")


def _json_for_script(obj: Any) -> str:
    """JSON safe inside a <script> block (no '</' can end it early)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def _table(rows: list[tuple[str, str]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _value(v: Any) -> str:
    if isinstance(v, dict | list):
        return f"<code>{escape(json.dumps(v, ensure_ascii=False))}</code>"
    return escape("—" if v is None else str(v))


def _header(data: RunData) -> str:
    s = data.summary
    title = f"densecnn {s.get('command', 'run')} — {data.run_dir.name}"
    rows = [(k, _value(s.get(k))) for k in _HEADLINE if k in s]
    if not s:
        rows.append(("summary.json", "missing (the run did not finish); showing predictions.jsonl as it is"))
    return f"<header><h1>{escape(title)}</h1>{_table(rows)}</header>"


def _overview(data: RunData) -> str:
    s = data.summary
    rows = []
    if s:
        failed = s.get("inputs_failed", 0)
        rows.append(("inputs", escape(f"{s.get('inputs', 0)} ({failed} failed)")))
        rows.append(("frames", escape(str(s.get("frames", 0)))))
        rows.append(
            ("speed", escape(f"{s.get('fps', 0):.1f} frames/s end to end, {s.get('wall_s', 0):.1f} s"))
        )
        stop = [k for k in ("interrupted", "stopped_on_error") if s.get(k)]
        if stop or s.get("stopped_by"):
            rows.append(
                ("stopped", escape(", ".join(stop + ([str(s["stopped_by"])] if s.get("stopped_by") else []))))
            )
        if s.get("latency_ms"):
            rows.append(("latency ms", _value(s["latency_ms"])))
    totals = class_totals(data).most_common()
    counts = ", ".join(f"{escape(name)} {n}" for name, n in totals[:30]) or "none"
    rows.append((data.kind, counts + (f", +{len(totals) - 30} classes" if len(totals) > 30 else "")))
    return f'<section id="overview"><h2>Run</h2>{_table(rows)}{_timing(s)}{_settings(s)}</section>'


def _timing(summary: dict[str, Any]) -> str:
    stages = summary.get("stage_ms_per_frame") or {}
    if not stages:
        return ""
    top = max(stages.values()) or 1.0
    rows = "".join(
        f'<tr><th>{escape(name)}</th><td class="num">{ms:.2f}</td>'
        f'<td><span class="bar" style="width:{100 * ms / top:.1f}%"></span></td></tr>'
        for name, ms in stages.items()
    )
    return f'<h3>Time per stage (ms per frame)</h3><table class="timing">{rows}</table>'


def _settings(summary: dict[str, Any]) -> str:
    rows = [(k, _value(v)) for k, v in summary.items() if k not in _SHOWN_ELSEWHERE]
    return f"<details><summary>All settings</summary>{_table(rows)}</details>" if rows else ""


def _errors(data: RunData) -> str:
    if not data.errors:
        return '<section id="errors"><h2>Errors</h2><p class="ok">None.</p></section>'
    rows = "".join(
        f"<tr><td>{escape(str(e.get('source', '')))}</td><td>{escape(str(e.get('frame', '')))}</td>"
        f"<td>{escape(str(e.get('error', '')))}</td></tr>"
        for e in data.errors
    )
    return (
        f'<section id="errors"><h2>Errors ({len(data.errors)})</h2><table class="list">'
        f"<tr><th>input</th><th>frame</th><th>error</th></tr>{rows}</table></section>"
    )


def _class_series(data: RunData, part: VideoPart, plotted: list[int]) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {data.classes[c]: [] for c in plotted}
    count = data.kind in ("detections", "instances")
    for frame in part.frames:
        values: Counter[int] = Counter()
        for item in frame["d"]:
            values[item[0]] += 1 if count else item[1]
        for c in plotted:
            series[data.classes[c]].append((frame["t"], float(values.get(c, 0))))
    return series


def _count_series(part: VideoPart) -> dict[str, list[tuple[float, float]]]:
    """Cumulative line crossings (in, out) and zone occupancy (inside) over time, summed over classes."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for frame in part.frames:
        counts = frame.get("counts")
        if not isinstance(counts, dict):
            continue
        for name, line in (counts.get("lines") or {}).items():
            for way in ("in", "out"):
                series[f"line {name} {way}"].append((frame["t"], float(sum((line.get(way) or {}).values()))))
        for name, zone in (counts.get("zones") or {}).items():
            for what in ("inside", "entered"):
                series[f"zone {name} {what}"].append(
                    (frame["t"], float(sum((zone.get(what) or {}).values())))
                )
    return dict(series)


def _tracks(data: RunData, part: VideoPart) -> str:
    tracks: dict[int, dict[str, Any]] = {}
    for frame in part.frames:
        for item in frame["d"]:
            if len(item) < 7 or item[6] < 0:
                continue
            track = tracks.setdefault(item[6], {"classes": Counter(), "first": frame["t"], "n": 0})
            track["classes"][item[0]] += 1
            track["last"] = frame["t"]
            track["n"] += 1
    if not tracks:
        return ""
    rows = []
    for tid, t in sorted(tracks.items())[:MAX_TRACK_ROWS]:
        cls = data.classes[t["classes"].most_common(1)[0][0]]
        rows.append(
            f'<tr data-t="{t["first"]:.6f}"><td>{tid}</td><td>{escape(cls)}</td>'
            f'<td class="num">{t["first"]:.2f}</td>'
            f'<td class="num">{t["last"]:.2f}</td><td class="num">{t["n"]}</td></tr>'
        )
    more = f"<p>+{len(tracks) - MAX_TRACK_ROWS} more tracks</p>" if len(tracks) > MAX_TRACK_ROWS else ""
    return (
        f'<h3>Tracks ({len(tracks)})</h3><table class="list tracks"><tr><th>track</th><th>class</th>'
        f"<th>first s</th><th>last s</th><th>frames</th></tr>{''.join(rows)}</table>{more}"
    )


def _video(data: RunData, index: int, part: VideoPart) -> str:
    totals: Counter[int] = Counter(item[0] for frame in part.frames for item in frame["d"])
    plotted = [c for c, _ in totals.most_common(MAX_PLOTTED_CLASSES)]
    colors = {data.classes[c]: color(c) for c in plotted}
    t_end = part.frames[-1]["t"] if part.frames else 0.0
    if len(part.frames) > 1:  # the last frame lasts one frame period too
        t_end += part.frames[-1]["t"] - part.frames[-2]["t"]
    plot = time_plot(
        _class_series(data, part, plotted),
        colors=colors,
        t_end=t_end,
        y_label=_VALUE_LABEL[data.kind],
        plot_id=f"plot-{index}",
    )
    counts = _count_series(part)
    count_plot = ""
    if counts:
        count_colors = {name: color(i) for i, name in enumerate(counts)}
        count_plot = "<h3>Line and zone counts over time</h3>" + time_plot(
            counts, colors=count_colors, t_end=t_end, y_label="count", plot_id=f"counts-{index}", step=True
        )
    media = (
        f'<video id="video-{index}" controls muted playsinline preload="auto" '
        f'src="{escape(part.video)}"></video>'
        if part.video
        else '<p class="note">No annotated video in this run folder (run with --save to get one).</p>'
    )
    return (
        f'<section class="video-part" data-part="{index}"><h2>{escape(part.source)}</h2>'
        f'<div class="player">{media}<div class="now"><div class="frame-info">frame '
        f'<b class="frame-index">-</b> at <span class="frame-time">-</span> s</div>'
        f'<table class="list items"></table></div></div>{plot}{count_plot}{_tracks(data, part)}</section>'
    )


def _final_counts(data: RunData) -> str:
    counts = data.summary.get("counts")
    if not isinstance(counts, dict):
        last = [f["counts"] for p in data.videos for f in p.frames if isinstance(f.get("counts"), dict)]
        counts = last[-1] if last else None
    if not counts:
        return ""
    rows = []
    for name, line in (counts.get("lines") or {}).items():
        for way in ("in", "out"):
            per = line.get(way) or {}
            rows.append(("line", name, way, sum(per.values()), per))
    for name, zone in (counts.get("zones") or {}).items():
        for what in ("inside", "entered", "exited"):
            per = zone.get(what) or {}
            rows.append(("zone", name, what, sum(per.values()), per))
    body = "".join(
        f"<tr><td>{kind}</td><td>{escape(str(name))}</td><td>{what}</td><td class='num'>{total}</td>"
        f"<td>{escape(', '.join(f'{k} {v}' for k, v in per.items()))}</td></tr>"
        for kind, name, what, total, per in rows
    )
    return (
        '<section id="counts"><h2>Line and zone counts (final)</h2><table class="list">'
        f"<tr><th></th><th>name</th><th></th><th>total</th><th>per class</th></tr>{body}</table></section>"
    )


def _images(data: RunData) -> str:
    if not data.images:
        return ""
    options = "".join(
        f'<option value="{data.classes.index(name)}">{escape(name)} ({n})</option>'
        for name, n in class_totals(data).most_common()
    )
    return (
        f'<section id="images"><h2>Images ({len(data.images)})</h2>'
        '<div class="filters"><label>class <select id="f-class"><option value="-1">any</option>'
        f"{options}</select></label> <label>score ≥ "
        '<input id="f-score" type="range" min="0" max="1" step="0.05" value="0"> '
        '<output id="f-score-v">0.00</output></label>'
        ' <span id="f-count"></span></div><div id="grid" class="grid"></div>'
        '<nav class="pager"><button id="prev">◀ previous</button> <span id="page"></span> '
        '<button id="next">next ▶</button></nav></section>'
        '<dialog id="viewer"><form method="dialog"><button class="close">close ✕</button></form>'
        '<h3 id="viewer-title"></h3><div class="viewer-body"><div id="viewer-stage"></div>'
        '<table class="list items" id="viewer-items"></table></div></dialog>'
    )


def render(data: RunData) -> str:
    """The complete report.html text for ``data``."""
    page_data = {
        "kind": data.kind,
        "classes": data.classes,
        "colors": [color(i) for i in range(len(data.classes))],
        "videos": [{"source": p.source, "frames": p.frames} for p in data.videos],
        "images": data.images,
    }
    body = "".join(
        [
            _header(data),
            _overview(data),
            _errors(data),
            _final_counts(data) if data.has_counts else "",
            *(_video(data, i, part) for i, part in enumerate(data.videos)),
            _images(data),
        ]
    )
    title = f"densecnn report — {data.run_dir.name}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{escape(title)}</title>'
        f"<style>{_asset('report.css')}</style></head><body>{body}"
        f'<script id="run-data" type="application/json">{_json_for_script(page_data)}</script>'
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )
