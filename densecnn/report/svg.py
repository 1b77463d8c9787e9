"""Time plots for report.html as inline SVG, generated here.

Why SVG written by hand rather than a chart library: the plots are lines over time with a click that
seeks, nothing a library would add; inline SVG needs no script to draw (the page paints before any
JavaScript runs), no vendored minified file with its own licence and updates, no network, and it
scales and prints cleanly. The page's script only maps a click to a time and moves the playhead,
using the ``data-*`` attributes written on the ``<svg>``.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 900, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 8, 22
MAX_POINTS = 1200  # per series; longer series keep each bucket's maximum (peaks stay visible)

PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
    "#469990", "#808000", "#000075", "#e6beff", "#800000", "#aaffc3", "#ffd8b1", "#bfef45",
)  # fmt: skip


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _downsample(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    out = []
    for b in range(MAX_POINTS):
        bucket = points[int(b * step) : max(int((b + 1) * step), int(b * step) + 1)]
        out.append(max(bucket, key=lambda p: p[1]))
    return out


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above ``value`` (the plot's top)."""
    if value <= 0:
        return 1.0
    return min(m * 10.0**e for e in range(-4, 10) for m in (1, 2, 5) if m * 10.0**e >= value)


def _fmt(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value:.0f}"


def time_plot(
    series: dict[str, list[tuple[float, float]]],
    *,
    colors: dict[str, str],
    t_end: float,
    y_label: str,
    plot_id: str,
    step: bool = False,
) -> str:
    """An SVG line per named series of ``(time s, value)`` points, time on x from 0 to ``t_end``.

    The ``<svg>`` carries ``data-t0``/``data-t1`` (the time range) and ``data-x0``/``data-x1`` (where
    it lies in viewBox units), which the page uses to turn a click into a time. ``step`` draws
    cumulative counts as steps.
    """
    t_end = max(t_end, 1e-6)
    y_max = _nice_max(max((v for pts in series.values() for _, v in pts), default=0.0))
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def x(t: float) -> float:
        return x0 + (x1 - x0) * t / t_end

    def y(v: float) -> float:
        return y0 - (y0 - y1) * v / y_max

    parts = [
        f'<svg class="plot" id="{escape(plot_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'data-t0="0" data-t1="{t_end:.6f}" data-x0="{x0}" data-x1="{x1}" role="img" '
        f'aria-label="{escape(y_label)} over time; click to seek">',
        f'<rect class="plot-bg" x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}"/>',
    ]
    for frac in (0.0, 0.5, 1.0):  # y grid and labels
        yy = y(frac * y_max)
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{x0 - 4}" y="{yy + 4:.1f}" text-anchor="end">{_fmt(frac * y_max)}</text>'
        )
    for i in range(6):  # x ticks in seconds
        t = t_end * i / 5
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        parts.append(
            f'<text class="tick" x="{x(t):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">{t:.1f} s</text>'
        )
    for name, points in series.items():
        pts = _downsample(points)
        if not pts:
            continue
        coords = []
        for i, (t, v) in enumerate(pts):
            if step and i:
                coords.append(f"{x(t):.1f},{y(pts[i - 1][1]):.1f}")
            coords.append(f"{x(t):.1f},{y(v):.1f}")
        parts.append(
            f'<polyline class="series" stroke="{colors.get(name, "#333")}" points="{" ".join(coords)}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    parts.append(f'<line class="playhead" x1="{x0}" x2="{x0}" y1="{y1}" y2="{y0}"/>')
    parts.append(f'<text class="axis-label" x="{x0 + 4}" y="{y1 + 12}">{escape(y_label)}</text>')
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{colors.get(name, "#333")}"></i>{escape(name)}</span>'
        for name in series
    )
    return (
        f'<figure class="plot-wrap">{"".join(parts)}<figcaption class="legend">{legend}</figcaption></figure>'
    )
