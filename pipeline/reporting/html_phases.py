"""The phases over time of ``report.html``, above ``html_timeline.TIMELINE_ROWS_MAX`` batches (a row
each would be a page of thousands of hair-thin rows, tens of MB): how many batches were in each phase
at each of ``BUCKETS`` steps (stacked), the share of batches finished (a line), a red mark where an
execution failed; and each phase's durations with its slowest batch (``phase_durations_of``).

Apart from ``html_timeline`` because it is another chart, of counts over time, bounded in size
whatever the number of batches: the phases' intervals are kept as flat arrays (``_Spans``).
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline import formats
from pipeline.reporting.html_charts import percentile
from pipeline.reporting.html_markup import axis_seconds, e, num, table, tick_step, ts
from pipeline.reporting.html_timeline import FAILED_COLOUR, PHASES, phase_legend
from pipeline.reporting.types import Report

BUCKETS = 240  # time steps of the phases-over-time chart
LAYERS = ("processing", "failed", "pending", "upload", "queued")  # bottom to top
TIMES = ("read_at", "upload_started_at", "uploaded_at", "started_at", "finished_at")


class _Spans:
    """The intervals of one phase, as flat arrays (20,000 batches: 0.5 MB, not 20,000 tuples)."""

    def __init__(self) -> None:
        self.starts, self.ends, self.batches = array("d"), array("d"), array("q")

    def add(self, start: float, end: float, batch: Any) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.batches.append(batch if isinstance(batch, int) else -1)


def _new_spans() -> dict[str, _Spans]:
    """One ``_Spans`` per phase, and one for the processing of the executions that failed."""
    return {key: _Spans() for key in (*(p[0] for p in PHASES), "failed")}


@dataclass
class _Timing:
    """What the executions' times say: each phase's spans, the starts of the processing not finished
    when the report was written, the ends of the executions, the first and last time of all."""

    spans: dict[str, _Spans]
    open_ended: array[float]
    finished: array[float]
    lo_t: float
    hi_t: float


def _timing(execs: Iterable[Any]) -> _Timing:
    spans = _new_spans()
    open_ended = array("d")  # processing not finished when the report was written
    finished = array("d")
    lo_t, hi_t = math.inf, -math.inf
    for x_ in execs:
        times = {f: ts(x_.get(f)) for f in TIMES}
        for t in times.values():
            if t is not None:
                lo_t, hi_t = min(lo_t, t), max(hi_t, t)
        failed = formats.is_failure(x_.get("status"))
        for key, _, _, a, b in PHASES:
            start, end = times[a], times[b]
            if start is None:
                continue
            if end is not None:
                spans["failed" if key == "processing" and failed else key].add(start, end, x_.get("batch"))
            elif key == "processing" and times["finished_at"] is None:
                open_ended.append(start)
        if times["finished_at"] is not None:
            finished.append(times["finished_at"])
    return _Timing(spans, open_ended, finished, lo_t, hi_t)


def _in_phase(pairs: Iterable[tuple[float, float]], t0: float, step_s: float) -> list[float]:
    """Batches in the phase, on average over each step (a batch there half the step counts half)."""
    whole = [0] * (BUCKETS + 1)  # +1 from this step on, -1 from that one: steps spent whole in it
    part = [0.0] * (BUCKETS + 1)  # the parts of the first and last steps
    for start, end in pairs:
        u = min(BUCKETS, max(0.0, (start - t0) / step_s))
        v = min(BUCKETS, max(0.0, (end - t0) / step_s))
        if v <= u:
            continue
        i, j = int(u), int(v)
        if i == j:
            part[i] += v - u
            continue
        part[i] += i + 1 - u
        part[j] += v - j
        whole[i + 1] += 1
        whole[j] -= 1
    return [w + p for w, p in zip(itertools.accumulate(whole[:BUCKETS]), part, strict=False)]


def _layer_counts(timing: _Timing, t0: float, t_end: float, step_s: float) -> dict[str, list[float]]:
    """Per layer, the batches in it at each step; the processing not finished runs to ``t_end``."""
    spans = timing.spans
    counts = {key: _in_phase(zip(spans[key].starts, spans[key].ends, strict=True), t0, step_s) for key in LAYERS}
    if timing.open_ended:
        extra = _in_phase(((start, t_end) for start in timing.open_ended), t0, step_s)
        counts["processing"] = [a + b for a, b in zip(counts["processing"], extra, strict=True)]
    return counts


@dataclass(frozen=True)
class _Plot:
    """The chart's geometry: x is a step (0 to ``BUCKETS``), y a number of batches up to ``top_n``."""

    top_n: float
    left: int = 60
    w: int = 1000
    h: int = 240
    pad: int = 24

    def x(self, i: float) -> float:
        return self.left + i / BUCKETS * self.w

    def y(self, v: float) -> float:
        return self.pad + self.h - v / self.top_n * self.h


def _axis(p: _Plot, span: float) -> list[str]:
    parts = []
    tick = tick_step(span)
    for i in range(int(span / tick) + 1):
        tx = p.left + tick * i / span * p.w
        parts.append(f'<line x1="{tx:.1f}" y1="{p.pad}" x2="{tx:.1f}" y2="{p.pad + p.h}" stroke="#eee"/>')
        parts.append(
            f'<text x="{tx:.1f}" y="{p.pad + p.h + 18}" text-anchor="middle" fill="#6b7280">'
            f"{axis_seconds(tick * i)}</text>"
        )
    return parts


def _layers(p: _Plot, counts: dict[str, list[float]]) -> list[str]:
    """Each layer's polygon, stacked on the ones below it, as steps."""
    colour = {key: c for key, _, c, _, _ in PHASES} | {"failed": FAILED_COLOUR}
    labels = {key: label for key, label, *_ in PHASES} | {"failed": "processing failed"}
    parts = []
    base = [0.0] * BUCKETS
    for key in LAYERS:
        row = counts[key]
        if not any(row):
            continue
        upper = [b + c for b, c in zip(base, row, strict=True)]
        pts = []
        for i in range(BUCKETS):  # the upper edge, left to right, as steps
            pts += [f"{p.x(i):.1f},{p.y(upper[i]):.1f}", f"{p.x(i + 1):.1f},{p.y(upper[i]):.1f}"]
        for i in reversed(range(BUCKETS)):  # the lower edge back
            pts += [f"{p.x(i + 1):.1f},{p.y(base[i]):.1f}", f"{p.x(i):.1f},{p.y(base[i]):.1f}"]
        parts.append(
            f'<polygon class="{key}" points="{" ".join(pts)}" fill="{colour[key]}" fill-opacity="0.85">'
            f"<title>{e(labels[key])}: up to {max(row):,.1f} batches at once (on average over a step)</title></polygon>"
        )
        base = upper
    return parts


def _failed_marks(p: _Plot, failed: _Spans, t0: float, step_s: float) -> list[str]:
    """A failure is shown however short: a red mark under the axis when it ended (one per pixel)."""
    failed_at = sorted({round(p.x((t - t0) / step_s), 1) for t in failed.ends})
    if not failed_at:
        return []
    marks = " ".join(f"M{fx:.1f},{p.pad + p.h + 1}v6" for fx in failed_at)
    return [
        f'<path class="failed-marks" d="{marks}" stroke="{FAILED_COLOUR}" stroke-width="1.5">'
        f"<title>{len(failed.ends):,} execution(s) failed</title></path>"
    ]


def _finished_line(p: _Plot, finished: array[float], t0: float, step_s: float, n: int) -> str:
    """The share of the ``n`` batches finished by the end of each step."""
    done_by_step = [0] * (BUCKETS + 1)
    for t in finished:
        done_by_step[min(BUCKETS, max(0, math.floor((t - t0) / step_s)) + 1)] += 1
    done, line = 0, []
    for i in range(BUCKETS + 1):
        done += done_by_step[i]
        line.append(f"{p.x(i):.1f},{p.pad + p.h - done / n * p.h:.1f}")
    return f'<polyline class="finished" points="{" ".join(line)}" fill="none" stroke="#111" stroke-width="1.5"/>'


def phases_over_time(report: Report) -> str:
    """Many batches: how many were in each phase over time (stacked, sampled at the middle of each of
    ``BUCKETS`` steps), the share of batches finished (a line), and each phase's durations."""
    execs = report.get("executions", [])
    timing = _timing(execs)
    if timing.lo_t > timing.hi_t:
        return '<p class="muted">no batch timing was recorded</p>'
    started = ts(report.get("started_at"))
    t0 = min(timing.lo_t, started) if started is not None else timing.lo_t
    t_end = max(timing.hi_t, ts(report.get("finished_at")) or 0.0)
    span = max(t_end - t0, 1e-3)
    step_s = span / BUCKETS
    counts = _layer_counts(timing, t0, t_end, step_s)
    p = _Plot(top_n=max([sum(row[i] for row in counts.values()) for i in range(BUCKETS)] + [1.0]))
    left, w, h, pad = p.left, p.w, p.h, p.pad
    parts = [
        f'<svg id="timeline" class="phases" xmlns="http://www.w3.org/2000/svg" width="{left + w + 60}" '
        f'height="{h + 2 * pad + 30}" role="img" aria-label="phases of {len(execs)} batches over time" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#e5e7eb"/>',
        *_axis(p, span),
        *_layers(p, counts),
        *_failed_marks(p, timing.spans["failed"], t0, step_s),
        _finished_line(p, timing.finished, t0, step_s, len(execs)),
        f'<text x="{left - 6}" y="{pad + 4}" text-anchor="end" fill="#374151">{p.top_n:,.0f}</text>',
        f'<text x="{left - 6}" y="{pad + h}" text-anchor="end" fill="#374151">0</text>',
        f'<text x="{left + w + 6}" y="{pad + 4}" fill="#111">100 %</text>',
        f'<text x="{left + w + 6}" y="{pad + h}" fill="#111">0 %</text>',
        f'<text x="{left}" y="{h + 2 * pad + 22}" fill="#6b7280">seconds since the run started; left: batches in '
        f"each phase, on average over steps of {axis_seconds(step_s)}; right: batches finished; red marks: "
        "executions that failed</text>",
        "</svg>",
    ]
    note = (
        f'<p class="muted">{len(execs):,} batches: too many for a row each. The chart counts the batches in each '
        "phase over time (stacked); the durations, the slowest and the failed batches follow below.</p>"
    )
    return note + phase_legend("background:#111", "batches finished") + "".join(parts)


def phase_durations_of(report: Report) -> str:
    """The durations table of ``phases_over_time``'s phases, for the aggregate sections."""
    spans = _new_spans()
    open_ended = 0
    for x_ in report.get("executions", []):
        failed = formats.is_failure(x_.get("status"))
        for key, _, _, a, b in PHASES:
            start, end = ts(x_.get(a)), ts(x_.get(b))
            if start is None:
                continue
            if end is not None:
                spans["failed" if key == "processing" and failed else key].add(start, end, x_.get("batch"))
            elif key == "processing" and not x_.get("finished_at"):
                open_ended += 1
    return _phase_durations(spans, open_ended)


def _phase_durations(spans: dict[str, _Spans], open_ended: int) -> str:
    """Per phase: how many batches went through it, the median, 90th percentile and slowest duration."""
    rows = []
    for key, label, _, _, _ in PHASES:
        parts = [spans[key], spans["failed"]] if key == "processing" else [spans[key]]
        took = sorted(  # the server's clock may be a little behind ours: no phase takes less than nothing
            (max(0.0, end - start), batch)
            for sp in parts
            for start, end, batch in zip(sp.starts, sp.ends, sp.batches, strict=True)
        )
        if not took:
            continue
        slowest, batch = took[-1]
        values = [t for t, _ in took]
        rows.append(
            [
                e(label),
                num(len(took)),
                *(e(f"{percentile(values, q):,.2f} s") for q in (0.5, 0.9, 0.99)),
                e(f"{slowest:,.2f} s"),
                num(batch) if batch >= 0 else "-",
            ]
        )
    if open_ended:
        rows.append([e("processing, not finished when the report was written"), num(open_ended), "", "", "", "", ""])
    headers = ["phase", "batches", "p50", "p90", "p99", "max", "slowest batch"]
    return '<div id="phase-durations">' + table(headers, rows, {1, 2, 3, 4, 5, 6}) + "</div>"
