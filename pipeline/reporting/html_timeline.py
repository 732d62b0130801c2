"""The timeline of ``report.html`` up to ``TIMELINE_ROWS_MAX`` batches: an inline SVG row per batch,
a dot when it was read, then a bar for each of its ``PHASES`` (waiting for an upload worker,
uploading, waiting on the server, processing), red when the execution failed.

Apart from ``report_html`` because it is one chart with its own geometry; ``PHASES`` (what each
phase is, its colour, the fields it runs between) is shared with the phases over time
(``html_phases``), which the page shows instead above ``TIMELINE_ROWS_MAX`` batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline import formats
from pipeline.reporting.html_markup import axis_seconds, e, tick_step, ts
from pipeline.reporting.types import Report

PHASES = (  # (key, label, colour, start field, end field)
    ("queued", "read, waiting for an upload worker", "#c9ced6", "read_at", "upload_started_at"),
    ("upload", "uploading", "#3b82f6", "upload_started_at", "uploaded_at"),
    ("pending", "uploaded, waiting on the server", "#f59e0b", "uploaded_at", "started_at"),
    ("processing", "processed by the server", "#16a34a", "started_at", "finished_at"),
)
FAILED_COLOUR = "#dc2626"
TIMELINE_ROWS_MAX = 300  # above this many batches, the phases over time instead of a row each


def phase_legend(first_style: str, first_label: str) -> str:
    """The legend of a chart of the phases: its first swatch (the dots, or the line), each phase's
    colour, and the failed executions' red."""
    legend = f'<p class="legend"><span><span class="sw" style="{first_style}"></span>{first_label}</span>'
    legend += "".join(
        f'<span><span class="sw" style="background:{c}"></span>{e(lbl)}</span>' for _, lbl, c, _, _ in PHASES
    )
    legend += f'<span><span class="sw" style="background:{FAILED_COLOUR}"></span>execution failed</span></p>'
    return legend


@dataclass(frozen=True)
class _Rows:
    """The timeline's geometry: x is seconds since ``t0`` over ``span``, a row of ``row_h`` per batch."""

    t0: float
    t_end: float
    span: float
    n: int
    row_h: float
    label_w: int = 70
    plot_w: int = 1000
    top: int = 24

    @property
    def height(self) -> float:
        return self.top + self.n * self.row_h + 36

    def x(self, t: float) -> float:
        return self.label_w + (t - self.t0) / self.span * self.plot_w


def _axis(g: _Rows) -> list[str]:
    """A vertical line and a label at each round number of seconds."""
    parts = []
    step = tick_step(g.span)
    for i in range(int(g.span / step) + 1):
        tx = g.label_w + step * i / g.span * g.plot_w
        parts.append(
            f'<line x1="{tx:.1f}" y1="{g.top - 4}" x2="{tx:.1f}" y2="{g.top + g.n * g.row_h:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{g.top - 8}" text-anchor="middle" fill="#6b7280">{axis_seconds(step * i)}</text>'
        )
    return parts


def _phase_bars(g: _Rows, x_: Mapping[str, Any], y: float, bar_h: float) -> list[str]:
    """A batch's bar for each phase it went through (open-ended: processing not finished yet)."""
    parts = []
    failed = formats.is_failure(x_.get("status"))
    for key, label, colour, a, b in PHASES:
        start, end = ts(x_.get(a)), ts(x_.get(b))
        open_end = start is not None and end is None and key == "processing" and not x_.get("finished_at")
        if start is None or (end is None and not open_end):
            continue
        end = end if end is not None else g.t_end
        fill = FAILED_COLOUR if key == "processing" and failed else colour
        w = max(g.x(end) - g.x(start), 1.0)
        tip = f"batch {x_.get('batch')}: {label}, {end - start:,.2f} s"
        if key == "upload" and (x_.get("attempts") or 1) > 1:
            tip += f" ({x_.get('attempts')} attempts)"
        if open_end:
            tip += " (not finished when the report was written)"
        dash = ' stroke="#111" stroke-dasharray="3,2"' if open_end else ""
        parts.append(
            f'<rect class="{key}" x="{g.x(start):.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}" '
            f'fill="{fill}"{dash}><title>{e(tip)}</title></rect>'
        )
    return parts


def _batch_rows(g: _Rows, execs: list[Any]) -> list[str]:
    """Each batch's row: its label (every few rows when they are thin), its bars, the dot of its read."""
    parts = []
    label_every = max(1, int(14 // g.row_h) + 1)
    for i, x_ in enumerate(execs):
        y = g.top + i * g.row_h
        bar_h = max(g.row_h * 0.7, 2)
        if i % label_every == 0:
            parts.append(
                f'<text x="{g.label_w - 6}" y="{y + bar_h:.1f}" text-anchor="end">batch {e(x_.get("batch"))}</text>'
            )
        parts += _phase_bars(g, x_, y, bar_h)
        read = ts(x_.get("read_at"))
        if read is not None:
            parts.append(
                f'<circle cx="{g.x(read):.1f}" cy="{y + bar_h / 2:.1f}" r="{min(bar_h / 2, 3):.1f}" fill="#111"/>'
            )
    return parts


def timeline(report: Report) -> str:
    """The inline SVG: one row per batch, x = seconds since the run started."""
    execs = report.get("executions", [])
    t0 = ts(report.get("started_at"))
    times = [ts(x.get(p[3])) for x in execs for p in PHASES] + [ts(x.get("finished_at")) for x in execs]
    known = [t for t in times if t is not None]
    if not execs or not known:
        return '<p class="muted">no batch timing was recorded</p>'
    t0 = min([t0] + known) if t0 is not None else min(known)
    t_end = max(known + [ts(report.get("finished_at")) or 0.0])
    n = len(execs)
    g = _Rows(t0=t0, t_end=t_end, span=max(t_end - t0, 1e-3), n=n, row_h=max(3.0, min(18.0, 900.0 / n)))
    width, height = g.label_w + g.plot_w + 20, g.height
    parts = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" role="img" '
        f'aria-label="timeline of {n} batches" font-family="sans-serif" font-size="11">',
        *_axis(g),
        *_batch_rows(g, execs),
        f'<text x="{g.label_w}" y="{height - 10:.0f}" fill="#6b7280">seconds since the run started</text>',
        "</svg>",
    ]
    return phase_legend("background:#111;border-radius:6px", "read") + "".join(parts)
