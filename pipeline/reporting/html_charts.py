"""Small inline SVG charts for ``report.html`` at scale: pure functions of numbers, no script.

``percentile`` (nearest rank), ``cumulative_lines`` (up to two rising lines over time, each on its
own scale: bytes uploaded and records finished) and ``histogram`` (a distribution of durations on
log-spaced bins, with its p50/p90/p99 marked). Each chart's size is bounded by its bins or
points, never by the number of executions.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

POINTS_MAX = 400  # points of a line
HIST_BINS = 40
AXIS = "#6b7280"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``ordered`` (sorted, not empty)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def fmt_seconds(s: float) -> str:
    if s >= 100:
        return f"{s:,.0f} s"
    if s >= 1:
        return f"{s:.1f} s"
    return f"{s * 1000:.0f} ms"


@dataclass(frozen=True)
class Line:
    """A rising series: ``(seconds since the start, cumulative value)`` points, sorted by time."""

    css_class: str
    label: str
    colour: str
    points: Sequence[tuple[float, float]]
    unit: Callable[[float], str]  # how the scale's top is written, e.g. "1.2 GB", "5,000 records"


def _thinned(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= POINTS_MAX:
        return list(points)
    every = math.ceil(len(points) / POINTS_MAX)
    return [*points[::every], points[-1]]


def cumulative_lines(chart_id: str, title: str, lines: Sequence[Line], span_s: float) -> str:
    """Up to two lines over ``span_s`` seconds: the first (wide) scaled on the left axis, the second
    (dashed, drawn over it: the two often coincide) on the right."""
    left, w, h, pad = 80, 1000, 180, 20
    span = max(span_s, 1e-3)
    parts = [
        f'<svg id="{esc(chart_id)}" xmlns="http://www.w3.org/2000/svg" width="{left + w + 110}" '
        f'height="{h + 2 * pad + 20}" role="img" aria-label="{esc(title)}" font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#e5e7eb"/>',
    ]
    for n, line in enumerate(lines[:2]):
        pts = _thinned(line.points)
        top = max([v for _, v in pts] + [1e-9])
        coords = " ".join(f"{left + t / span * w:.1f},{pad + h - v / top * h:.1f}" for t, v in [(0.0, 0.0), *pts])
        x_label, anchor = (left - 6, "end") if n == 0 else (left + w + 6, "start")
        dash = ' stroke-dasharray="5,3"' if n else ""
        parts += [
            f'<polyline class="{esc(line.css_class)}" points="{coords}" fill="none" stroke="{line.colour}" '
            f'stroke-width="{3 if n == 0 else 1.5}"{dash}>'
            f"<title>{esc(line.label)}</title></polyline>",
            f'<text x="{x_label}" y="{pad + 4}" text-anchor="{anchor}" fill="{line.colour}">'
            f"{esc(line.unit(top))}</text>",
            f'<text x="{x_label}" y="{pad + h}" text-anchor="{anchor}" fill="{line.colour}">0</text>',
        ]
    parts += [
        f'<text x="{left}" y="{h + 2 * pad + 12}" fill="{AXIS}">0 s</text>',
        f'<text x="{left + w}" y="{h + 2 * pad + 12}" text-anchor="end" fill="{AXIS}">{esc(fmt_seconds(span))}</text>',
        "</svg>",
    ]
    legend = "".join(
        f'<span><span class="sw" style="background:{ln.colour}"></span>{esc(ln.label)}</span>' for ln in lines[:2]
    )
    return f'<p class="legend">{legend}</p>' + "".join(parts)


def histogram(chart_id: str, label: str, colour: str, ordered: Sequence[float]) -> str:
    """How ``ordered`` (sorted durations, seconds) spread over log-spaced bins, p50/p90/p99 marked."""
    if not ordered:
        return ""
    w, h, pad, left = 320, 90, 16, 6
    lo = max(min(v for v in ordered if v > 0) if any(v > 0 for v in ordered) else 1e-3, 1e-3)
    hi = max(ordered[-1], lo * 1.001)
    ratio = math.log(hi / lo)

    def pos(v: float) -> float:  # 0..1 along the axis
        return 0.0 if v <= lo else min(1.0, math.log(v / lo) / ratio)

    counts = [0] * HIST_BINS
    for v in ordered:
        counts[min(HIST_BINS - 1, int(pos(v) * HIST_BINS))] += 1
    top = max(counts)
    bar_w = w / HIST_BINS
    parts = [
        f'<svg id="{esc(chart_id)}" class="histogram" xmlns="http://www.w3.org/2000/svg" width="{w + 2 * left}" '
        f'height="{h + 2 * pad + 14}" role="img" aria-label="{esc(label)}: distribution" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{left}" y="11" fill="#374151">{esc(label)} ({len(ordered):,})</text>',
    ]
    for i, c in enumerate(counts):
        if c:
            bh = max(1.0, c / top * h)
            parts.append(
                f'<rect class="bin" x="{left + i * bar_w:.1f}" y="{pad + h - bh:.1f}" width="{bar_w - 0.5:.1f}" '
                f'height="{bh:.1f}" fill="{colour}"><title>{c:,}</title></rect>'
            )
    for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        v = percentile(ordered, q)
        x = left + pos(v) * w
        parts.append(
            f'<line class="{name}" x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{pad + h}" stroke="#111" '
            f'stroke-dasharray="2,2"><title>{name} {esc(fmt_seconds(v))}</title></line>'
        )
    parts += [
        f'<text x="{left}" y="{h + 2 * pad + 8}" fill="{AXIS}">{esc(fmt_seconds(lo))}</text>',
        f'<text x="{left + w}" y="{h + 2 * pad + 8}" text-anchor="end" fill="{AXIS}">{esc(fmt_seconds(hi))}</text>',
        "</svg>",
    ]
    return "".join(parts)
