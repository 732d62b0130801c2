"""``report.html``: the run report as one self-contained page people can read.

``render_report_html(report, rejects_by_reason)`` is a pure function of the report dict (the same
dict as ``report.json``): inline CSS, an inline SVG timeline, no script, no external resource, every
value escaped. Up to ``TIMELINE_ROWS_MAX`` batches, the timeline has one row per batch: a dot when it
was read, then bars for waiting for an upload worker, uploading, waiting on the server (PENDING) and
processing (RUNNING to the end) so a slow server, throttling (long uploads, many attempts) or a stuck
execution shows at once. Above that (a row each would be a page of thousands of hair-thin rows, tens of
MB), it shows how many batches were in each phase over time, the share of batches finished, and each
phase's durations with its slowest batch; the executions table then lists the notable executions only
(not succeeded, retried, recovered, duplicated, with failures or errors), with a count of the rest:
every execution is in ``report.json``. Server-side times (start and end of processing) are the
server's clock.
"""

from __future__ import annotations

import html
import itertools
import math
import os
from array import array
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.reporting.html_charts import Line, cumulative_lines, fmt_seconds, histogram, percentile
from pipeline.reporting.summary import REPORT_HTML_NAME, executions_by_status, human_bytes, plan_rows
from pipeline.reporting.types import Report

PHASES = (  # (key, label, colour, start field, end field)
    ("queued", "read, waiting for an upload worker", "#c9ced6", "read_at", "upload_started_at"),
    ("upload", "uploading", "#3b82f6", "upload_started_at", "uploaded_at"),
    ("pending", "uploaded, waiting on the server", "#f59e0b", "uploaded_at", "started_at"),
    ("processing", "processed by the server", "#16a34a", "started_at", "finished_at"),
)
FAILED_COLOUR = "#dc2626"
TIMELINE_ROWS_MAX = 300  # above this many batches, the phases over time instead of a row each
TABLE_ROWS_MAX = 300  # above this many executions, the table lists the notable ones only
NOTABLE_ROWS_MAX = 200  # and at most this many of them
BUCKETS = 240  # time steps of the phases-over-time chart
OUTCOME_COLOUR = {
    "succeeded": "#16a34a",
    "completed_with_failures": "#dc2626",
    "too_many_errors": "#dc2626",
    "stopped_on_error": "#dc2626",
    "nothing_sent": "#dc2626",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2937;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600}
.muted{color:#6b7280} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px} table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f9fafb} td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#dc2626;font-weight:600} .ok{color:#16a34a} .warn{color:#b45309}
.legend span{display:inline-block;margin-right:14px} .sw{display:inline-block;width:12px;height:12px;
border-radius:2px;margin-right:4px;vertical-align:-1px} code{font-size:12px;word-break:break-all}
"""


def e(value: Any) -> str:
    """Escape any value for HTML text or an attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else e(value if value is not None else "-")


def _ts(value: object) -> float | None:
    if not value or not isinstance(value, str):
        return None
    return _parsed_ts(value)


@cache
def _parsed_ts(value: str) -> float | None:
    """An ISO time as epoch seconds. Each execution's times are read by several sections of the
    page (500,000 reads for 20,000 executions, a third of the page's time): parsed once per page,
    the cache cleared when the page is done (``render_report_html``)."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _table(headers: list[str], rows: list[list[str]], numeric: AbstractSet[int] = frozenset()) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(report: Report) -> str:
    r = report["records"]
    items: list[tuple[str, int | str]] = [("records read", r["read"]), ("rejected", r["rejected"]), ("sent", r["sent"])]
    items += [("succeeded", r["succeeded"]), ("failed", r["failed"])]
    if r.get("pending"):
        items.append(("still processing", r["pending"]))
    if r.get("unsent"):
        items.append(("not sent yet", r["unsent"]))
    if r.get("unsettled"):
        items.append(("sent, fate unknown", r["unsettled"]))
    if r.get("duplicated") or r.get("possibly_duplicated"):
        items.append(("duplicated (or possibly)", r.get("duplicated", 0) + r.get("possibly_duplicated", 0)))
    items += [("batches", report.get("batches", 0))]
    seconds = report.get("duration_s") or 0
    total_bytes = sum(i.get("bytes") or 0 for i in report.get("inputs", []))
    items.append(("duration", f"{seconds:,.1f} s"))
    if seconds:
        items.append(("throughput", f"{human_bytes(total_bytes / seconds)}/s"))
    return (
        '<div class="cards">' + "".join(f'<div class="card"><b>{_num(v)}</b>{e(k)}</div>' for k, v in items) + "</div>"
    )


def status_class(status: object) -> str:
    """The CSS class of an execution status, from ``formats``: ``ok`` (green) for a success, ``bad``
    (red) for a failure, ``""`` (neutral) for anything else: waiting, running, unknown."""
    if formats.is_success(status):
        return "ok"
    if formats.is_failure(status):
        return "bad"
    return ""


def _error_file_cell(x: Mapping[str, Any], mapped: bool) -> str:
    """Where the execution's refused records are: ``failed.ndjson`` once mapped (a ``mics://`` URI
    opens nowhere; ``pipeline executions errors ID`` downloads it)."""
    if not x.get("error_file_uri"):
        return ""
    if mapped and x.get("total_failure"):
        return "<code>failed.ndjson</code>"
    return f"<code>{e(x.get('error_file_uri'))}</code>"


def _execution_row(x: Mapping[str, Any], mapped: bool = False) -> list[str]:
    src: Mapping[str, Any] = x.get("source", {})  # always there; a hand-made report may lack it
    status = x.get("status") or ("refused" if x.get("upload") == "upload_failed" else x.get("upload"))
    cls = "bad" if status == "refused" else status_class(status)  # refused: the upload, for good
    failures = x.get("total_failure")
    return [
        _num(x.get("batch")),
        f"<code>{e(x.get('id') or '-')}</code>",
        f'<span class="{cls}">{e(status)}</span>',
        f"{e(Path(src.get('path') or '').name)} {_num(src.get('first_line'))}–{_num(src.get('last_line'))}",
        _num(src.get("line_count")),
        _num(x.get("total_success")),
        f'<span class="bad">{_num(failures)}</span>' if failures else _num(failures),
        _num(x.get("attempts")),
        _error_file_cell(x, mapped),
        e(x.get("error") or ""),
    ]


def notable(x: Mapping[str, Any]) -> bool:
    """An execution a person may want to look at: anything but a success at the first attempt, with
    no failure, error, retry, recovery or copy."""
    return not (
        formats.is_success(x.get("status"))
        and (x.get("attempts") or 0) <= 1
        and not x.get("total_failure")
        and not x.get("error")
        and not x.get("error_file_uri")
        and not x.get("recovered")
        and not x.get("ambiguous")
        and not x.get("possible_duplicate")
        and not x.get("resent")
        and not x.get("duplicates")
        and not x.get("canceled_duplicates")
    )


def _executions(report: Report) -> str:
    execs = report.get("executions", [])
    if not execs:
        return '<p class="muted">no execution</p>'
    headers = ["batch", "execution", "status", "source lines", "records", "succeeded", "failed", "attempts"]
    headers += ["error file", "error"]
    numeric = {0, 4, 5, 6, 7}
    mapped = bool(report.get("refused"))
    if len(execs) <= TABLE_ROWS_MAX:
        return _table(headers, [_execution_row(x, mapped) for x in execs], numeric)
    picked = [x for x in execs if notable(x)]
    rest: dict[str, int] = {}
    if len(picked) < len(execs):
        for x in execs:
            if not notable(x):
                key = formats.normalize_status(x.get("status")) or "?"
                rest[key] = rest.get(key, 0) + 1
    others = sum(rest.values())
    shown = picked[:NOTABLE_ROWS_MAX]
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(rest.items()))
    if not picked:
        note = f"{len(execs):,} executions, none notable: all ({statuses}) succeeded at the first attempt"
        note += " with no failure, error, retry or copy"
    else:
        what = "not succeeded, retried, recovered, duplicated, or with failures or errors"
        note = f"{len(execs):,} executions: the {len(picked):,} notable ones ({what}) are listed"
        if len(shown) < len(picked):
            note += f", the first {len(shown):,} of them here"
        if others:
            note += f"; the other {others:,} ({statuses}) succeeded at the first attempt with no failure"
    out = f'<p class="muted" id="executions-note">{e(note)}. Every execution is in <code>report.json</code>.</p>'
    if shown:
        out += _table(headers, [_execution_row(x, mapped) for x in shown], numeric)
    return out


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving 4 to 10 ticks over ``span`` seconds."""
    step = 10.0 ** math.floor(math.log10(span / 5))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 10:
            return step * factor
    return step * 10


def _fmt_s(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds >= 10 or seconds == int(seconds) else f"{seconds:,.2g} s"


def _timeline(report: Report) -> str:
    """The inline SVG: one row per batch, x = seconds since the run started (the phases over time
    above ``TIMELINE_ROWS_MAX`` batches)."""
    execs = report.get("executions", [])
    if len(execs) > TIMELINE_ROWS_MAX:
        return _phases_over_time(report)
    t0 = _ts(report.get("started_at"))
    times = [_ts(x.get(p[3])) for x in execs for p in PHASES] + [_ts(x.get("finished_at")) for x in execs]
    known = [t for t in times if t is not None]
    if not execs or not known:
        return '<p class="muted">no batch timing was recorded</p>'
    t0 = min([t0] + known) if t0 is not None else min(known)
    t_end = max(known + [_ts(report.get("finished_at")) or 0.0])
    span = max(t_end - t0, 1e-3)
    n = len(execs)
    row_h = max(3.0, min(18.0, 900.0 / n))
    label_w, plot_w, top = 70, 1000, 24
    height = top + n * row_h + 36

    def x(t: float) -> float:
        return label_w + (t - t0) / span * plot_w

    parts = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 20}" '
        f'height="{height:.0f}" viewBox="0 0 {label_w + plot_w + 20} {height:.0f}" role="img" '
        f'aria-label="timeline of {n} batches" font-family="sans-serif" font-size="11">'
    ]
    step = _tick_step(span)
    for i in range(int(span / step) + 1):  # axis ticks
        tx = label_w + step * i / span * plot_w
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{top + n * row_h:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{tx:.1f}" y="{top - 8}" text-anchor="middle" fill="#6b7280">{_fmt_s(step * i)}</text>')
    label_every = max(1, int(14 // row_h) + 1)
    for i, x_ in enumerate(execs):
        y = top + i * row_h
        bar_h = max(row_h * 0.7, 2)
        if i % label_every == 0:
            parts.append(
                f'<text x="{label_w - 6}" y="{y + bar_h:.1f}" text-anchor="end">batch {e(x_.get("batch"))}</text>'
            )
        failed = formats.is_failure(x_.get("status"))
        for key, label, colour, a, b in PHASES:
            start, end = _ts(x_.get(a)), _ts(x_.get(b))
            open_end = start is not None and end is None and key == "processing" and not x_.get("finished_at")
            if start is None or (end is None and not open_end):
                continue
            end = end if end is not None else t_end
            fill = FAILED_COLOUR if key == "processing" and failed else colour
            w = max(x(end) - x(start), 1.0)
            tip = f"batch {x_.get('batch')}: {label}, {end - start:,.2f} s"
            if key == "upload" and (x_.get("attempts") or 1) > 1:
                tip += f" ({x_.get('attempts')} attempts)"
            if open_end:
                tip += " (not finished when the report was written)"
            dash = ' stroke="#111" stroke-dasharray="3,2"' if open_end else ""
            parts.append(
                f'<rect class="{key}" x="{x(start):.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}" '
                f'fill="{fill}"{dash}><title>{e(tip)}</title></rect>'
            )
        read = _ts(x_.get("read_at"))
        if read is not None:
            parts.append(
                f'<circle cx="{x(read):.1f}" cy="{y + bar_h / 2:.1f}" r="{min(bar_h / 2, 3):.1f}" fill="#111"/>'
            )
    parts.append(f'<text x="{label_w}" y="{height - 10:.0f}" fill="#6b7280">seconds since the run started</text>')
    parts.append("</svg>")
    legend = '<p class="legend"><span><span class="sw" style="background:#111;border-radius:6px"></span>read</span>'
    legend += "".join(
        f'<span><span class="sw" style="background:{c}"></span>{e(lbl)}</span>' for _, lbl, c, _, _ in PHASES
    )
    legend += f'<span><span class="sw" style="background:{FAILED_COLOUR}"></span>execution failed</span></p>'
    return legend + "".join(parts)


class _Spans:
    """The intervals of one phase, as flat arrays (20,000 batches: 0.5 MB, not 20,000 tuples)."""

    def __init__(self) -> None:
        self.starts, self.ends, self.batches = array("d"), array("d"), array("q")

    def add(self, start: float, end: float, batch: Any) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.batches.append(batch if isinstance(batch, int) else -1)


def _phases_over_time(report: Report) -> str:
    """Many batches: how many were in each phase over time (stacked, sampled at the middle of each of
    ``BUCKETS`` steps), the share of batches finished (a line), and each phase's durations."""
    execs = report.get("executions", [])
    fields = ("read_at", "upload_started_at", "uploaded_at", "started_at", "finished_at")
    spans = {key: _Spans() for key in (*(p[0] for p in PHASES), "failed")}
    open_ended = array("d")  # processing not finished when the report was written
    finished = array("d")
    lo_t, hi_t = math.inf, -math.inf
    for x_ in execs:
        times = {f: _ts(x_.get(f)) for f in fields}
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
    if lo_t > hi_t:
        return '<p class="muted">no batch timing was recorded</p>'
    started = _ts(report.get("started_at"))
    t0 = min(lo_t, started) if started is not None else lo_t
    t_end = max(hi_t, _ts(report.get("finished_at")) or 0.0)
    span = max(t_end - t0, 1e-3)
    step_s = span / BUCKETS

    def in_phase(pairs: Iterable[tuple[float, float]]) -> list[float]:
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

    layers = ("processing", "failed", "pending", "upload", "queued")  # bottom to top
    counts = {key: in_phase(zip(spans[key].starts, spans[key].ends, strict=True)) for key in layers}
    if open_ended:
        extra = in_phase((start, t_end) for start in open_ended)
        counts["processing"] = [a + b for a, b in zip(counts["processing"], extra, strict=True)]
    top_n = max([sum(row[i] for row in counts.values()) for i in range(BUCKETS)] + [1.0])
    done_by_step = [0] * (BUCKETS + 1)
    for t in finished:
        done_by_step[min(BUCKETS, max(0, math.floor((t - t0) / step_s)) + 1)] += 1
    left, w, h, pad = 60, 1000, 240, 24
    colour = {key: c for key, _, c, _, _ in PHASES} | {"failed": FAILED_COLOUR}
    labels = {key: label for key, label, *_ in PHASES} | {"failed": "processing failed"}

    def x(i: float) -> float:
        return left + i / BUCKETS * w

    def y(v: float) -> float:
        return pad + h - v / top_n * h

    failed_at = sorted({round(x((t - t0) / step_s), 1) for t in spans["failed"].ends})  # one mark per pixel

    parts = [
        f'<svg id="timeline" class="phases" xmlns="http://www.w3.org/2000/svg" width="{left + w + 60}" '
        f'height="{h + 2 * pad + 30}" role="img" aria-label="phases of {len(execs)} batches over time" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#e5e7eb"/>',
    ]
    tick = _tick_step(span)
    for i in range(int(span / tick) + 1):
        tx = left + tick * i / span * w
        parts.append(f'<line x1="{tx:.1f}" y1="{pad}" x2="{tx:.1f}" y2="{pad + h}" stroke="#eee"/>')
        parts.append(
            f'<text x="{tx:.1f}" y="{pad + h + 18}" text-anchor="middle" fill="#6b7280">{_fmt_s(tick * i)}</text>'
        )
    base = [0.0] * BUCKETS
    for key in layers:
        row = counts[key]
        if not any(row):
            continue
        upper = [b + c for b, c in zip(base, row, strict=True)]
        pts = []
        for i in range(BUCKETS):  # the upper edge, left to right, as steps
            pts += [f"{x(i):.1f},{y(upper[i]):.1f}", f"{x(i + 1):.1f},{y(upper[i]):.1f}"]
        for i in reversed(range(BUCKETS)):  # the lower edge back
            pts += [f"{x(i + 1):.1f},{y(base[i]):.1f}", f"{x(i):.1f},{y(base[i]):.1f}"]
        parts.append(
            f'<polygon class="{key}" points="{" ".join(pts)}" fill="{colour[key]}" fill-opacity="0.85">'
            f"<title>{e(labels[key])}: up to {max(row):,.1f} batches at once (on average over a step)</title></polygon>"
        )
        base = upper
    if failed_at:  # a failure is shown however short: a red mark under the axis when it ended
        marks = " ".join(f"M{fx:.1f},{pad + h + 1}v6" for fx in failed_at)
        parts.append(
            f'<path class="failed-marks" d="{marks}" stroke="{FAILED_COLOUR}" stroke-width="1.5">'
            f"<title>{len(spans['failed'].ends):,} execution(s) failed</title></path>"
        )
    done, line = 0, []
    for i in range(BUCKETS + 1):
        done += done_by_step[i]
        line.append(f"{x(i):.1f},{pad + h - done / len(execs) * h:.1f}")
    parts += [
        f'<polyline class="finished" points="{" ".join(line)}" fill="none" stroke="#111" stroke-width="1.5"/>',
        f'<text x="{left - 6}" y="{pad + 4}" text-anchor="end" fill="#374151">{top_n:,.0f}</text>',
        f'<text x="{left - 6}" y="{pad + h}" text-anchor="end" fill="#374151">0</text>',
        f'<text x="{left + w + 6}" y="{pad + 4}" fill="#111">100 %</text>',
        f'<text x="{left + w + 6}" y="{pad + h}" fill="#111">0 %</text>',
        f'<text x="{left}" y="{h + 2 * pad + 22}" fill="#6b7280">seconds since the run started; left: batches in '
        f"each phase, on average over steps of {_fmt_s(step_s)}; right: batches finished; red marks: "
        "executions that failed</text>",
        "</svg>",
    ]
    legend = '<p class="legend"><span><span class="sw" style="background:#111"></span>batches finished</span>'
    legend += "".join(
        f'<span><span class="sw" style="background:{c}"></span>{e(lbl)}</span>' for _, lbl, c, _, _ in PHASES
    )
    legend += f'<span><span class="sw" style="background:{FAILED_COLOUR}"></span>execution failed</span></p>'
    note = (
        f'<p class="muted">{len(execs):,} batches: too many for a row each. The chart counts the batches in each '
        "phase over time (stacked); the durations, the slowest and the failed batches follow below.</p>"
    )
    return note + legend + "".join(parts)


def _phase_durations_of(report: Report) -> str:
    """The durations table of ``_phases_over_time``'s phases, for the aggregate sections."""
    spans = {key: _Spans() for key in (*(p[0] for p in PHASES), "failed")}
    open_ended = 0
    for x_ in report.get("executions", []):
        failed = formats.is_failure(x_.get("status"))
        for key, _, _, a, b in PHASES:
            start, end = _ts(x_.get(a)), _ts(x_.get(b))
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
                _num(len(took)),
                *(e(f"{percentile(values, q):,.2f} s") for q in (0.5, 0.9, 0.99)),
                e(f"{slowest:,.2f} s"),
                _num(batch) if batch >= 0 else "-",
            ]
        )
    if open_ended:
        rows.append([e("processing, not finished when the report was written"), _num(open_ended), "", "", "", "", ""])
    headers = ["phase", "batches", "p50", "p90", "p99", "max", "slowest batch"]
    return '<div id="phase-durations">' + _table(headers, rows, {1, 2, 3, 4, 5, 6}) + "</div>"


def _rates(timeline: list[list[float]], bucket_s: float) -> list[tuple[float, float]]:
    """(time, MB/s) per bucket of ``bucket_s`` seconds, from the cumulative bytes of the timeline."""
    rates: list[tuple[float, float]] = []
    t_prev, b_prev = 0.0, 0.0
    for t, _, _, sent in timeline:
        if t - t_prev >= bucket_s:
            rates.append((t, (sent - b_prev) / (t - t_prev) / 1e6))
            t_prev, b_prev = t, sent
    return rates


def _throughput(report: Report) -> str:
    """The inline SVG of the uploads over time: the limit of uploads in flight, the uploads in flight
    (steps, left axis) and the upload throughput in MB/s (right axis)."""
    th = report.get("throughput")
    if not th or not th.get("timeline"):
        return '<p class="muted">no upload timing was recorded</p>'
    tl = th["timeline"]
    span = max(tl[-1][0], 1e-3)
    rates = _rates(tl, max(span / 60, 0.25))
    top_n = max(max(p[1] for p in tl), max(p[2] for p in tl), 1)
    top_r = max([r for _, r in rates] + [1e-6])
    left, w, h, pad = 50, 1000, 180, 24

    def x(t: float) -> float:
        return left + t / span * w

    def steps(values: list[tuple[float, float]], scale: float) -> str:
        pts: list[str] = []
        prev: float | None = None
        for t, v in values:
            y = pad + h - v / scale * h
            if prev is not None:
                pts.append(f"{x(t):.1f},{prev:.1f}")
            pts.append(f"{x(t):.1f},{y:.1f}")
            prev = y
        return " ".join(pts)

    limit = steps([(p[0], p[1]) for p in tl], top_n)
    flight = steps([(p[0], p[2]) for p in tl], top_n)
    rate = " ".join(f"{x(t):.1f},{pad + h - r / top_r * h:.1f}" for t, r in rates)
    parts = [
        f'<svg id="throughput" xmlns="http://www.w3.org/2000/svg" width="{left + w + 60}" height="{h + 2 * pad + 16}" '
        f'role="img" aria-label="uploads in flight and throughput over time" font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#e5e7eb"/>',
        f'<polyline class="limit" points="{limit}" fill="none" stroke="#9ca3af" stroke-dasharray="4,3"/>',
        f'<polyline class="in-flight" points="{flight}" fill="none" stroke="#3b82f6" stroke-width="1.5"/>',
        f'<polyline class="rate" points="{rate}" fill="none" stroke="#16a34a" stroke-width="1.5"/>',
        f'<text x="{left - 6}" y="{pad + 4}" text-anchor="end" fill="#3b82f6">{top_n:g}</text>',
        f'<text x="{left - 6}" y="{pad + h}" text-anchor="end" fill="#3b82f6">0</text>',
        f'<text x="{left + w + 6}" y="{pad + 4}" fill="#16a34a">{top_r:,.1f} MB/s</text>',
        f'<text x="{left + w + 6}" y="{pad + h}" fill="#16a34a">0</text>',
        f'<text x="{left}" y="{h + 2 * pad + 8}" fill="#6b7280">0 s</text>',
        f'<text x="{left + w}" y="{h + 2 * pad + 8}" text-anchor="end" fill="#6b7280">{_fmt_s(span)}</text>',
        "</svg>",
    ]
    mode = "adaptive" if th.get("adaptive") else "fixed"
    rate_text = f"{th['upload_mb_s']:,.1f} MB/s" if th.get("upload_mb_s") else "-"
    legend = (
        '<p class="legend"><span><span class="sw" style="background:#3b82f6"></span>uploads in flight</span>'
        '<span><span class="sw" style="background:#9ca3af"></span>their limit</span>'
        '<span><span class="sw" style="background:#16a34a"></span>MB/s sent</span></p>'
        f'<p class="muted">at most {th.get("max_concurrency")} uploads in flight ({mode}); uploads at {rate_text}; '
        f"{th.get('throttled', 0):,} throttled answers (429/503), {th.get('pauses', 0):,} pauses; "
        f"polls: {th.get('poll_requests', 0):,} GETs, {th.get('poll_listings', 0):,} listing pages</p>"
    )
    return legend + "".join(parts)


def _platform(report: Report) -> str:
    """The batch plan's origin and what this run saw of the platform (``summary.plan_rows``)."""
    rows = plan_rows(report)
    if not rows:
        return ""
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    note = "the next run to the same API, datamart and document type plans its batches from this"
    return f'<h2>Platform</h2><table><tbody>{body}</tbody></table><p class="muted">{e(note)}</p>'


def _stops_and_budget(report: Report) -> list[str]:
    """The error that stopped the run (its cause and fix), and the error budget when one is set."""
    out = []
    final = report.get("final_error")
    if final:
        out.append(f'<p class="warn" id="final-error"><b>{e(final["cause"])}</b><br>fix: {e(final["fix"])}</p>')
    budget = report.get("error_budget")
    if budget and budget["max_errors"] not in ("0", ""):
        state = "within the budget" if budget["within"] else "over the budget"
        out.append(
            f'<p id="error-budget">error budget (max_errors {e(budget["max_errors"])}): {_num(budget["errors"])} '
            f"records rejected or refused, {_num(budget['allowed'])} allowed: {state}</p>"
        )
    return out


SLOWEST_ROWS = 20
DISTRIBUTIONS = (  # (id, label, colour, start field, end field)
    ("dist-upload", "upload time", "#3b82f6", "upload_started_at", "uploaded_at"),
    ("dist-queue", "queue time on the server (PENDING)", "#f59e0b", "uploaded_at", "started_at"),
    ("dist-processing", "processing time on the server", "#16a34a", "started_at", "finished_at"),
)


def _took(x: Mapping[str, Any], a: str, b: str) -> float | None:
    start, end = _ts(x.get(a)), _ts(x.get(b))
    return None if start is None or end is None else max(0.0, end - start)


def _records_of(x: Mapping[str, Any]) -> float:
    src: Mapping[str, Any] = x.get("source", {})  # always there; a hand-made report may lack it
    return float(src.get("line_count") or 0)


def _progress(report: Report, t0: float) -> str:
    """Bytes uploaded and records finished, cumulated over time (each on its own scale)."""
    execs = report.get("executions", [])
    uploaded = sorted((t - t0, float(x.get("bytes") or 0)) for x in execs if (t := _ts(x.get("uploaded_at"))))
    finished = sorted((t - t0, _records_of(x)) for x in execs if (t := _ts(x.get("finished_at"))))

    def cumulated(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        total, out = 0.0, []
        for t, v in points:
            total += v
            out.append((t, total))
        return out

    ends = [p[-1][0] for p in (uploaded, finished) if p]
    if not ends:
        return '<p class="muted">no upload or execution end was recorded</p>'
    lines = [
        Line("bytes-uploaded", "bytes uploaded", "#3b82f6", cumulated(uploaded), human_bytes),
        Line(
            "records-finished", "records in finished executions", "#111", cumulated(finished), "{:,.0f} records".format
        ),
    ]
    span = max([*ends, (_ts(report.get("finished_at")) or t0) - t0])
    return cumulative_lines("progress", "bytes uploaded and records finished over time", lines, span)


def _distributions(report: Report) -> str:
    execs = report.get("executions", [])
    charts = []
    for chart_id, label, colour, a, b in DISTRIBUTIONS:
        values = sorted(t for x in execs if (t := _took(x, a, b)) is not None)
        charts.append(histogram(chart_id, label, colour, values))
    return '<div id="distributions" style="display:flex;flex-wrap:wrap;gap:12px">' + "".join(charts) + "</div>"


def _slowest(report: Report) -> str:
    """The ``SLOWEST_ROWS`` batches that took longest from their upload's start to their end."""
    execs = report.get("executions", [])
    timed = [(t, x) for x in execs if (t := _took(x, "upload_started_at", "finished_at")) is not None]
    timed.sort(key=lambda tx: -tx[0])
    rows = []
    for total, x in timed[:SLOWEST_ROWS]:
        src: Mapping[str, Any] = x.get("source", {})
        phases = [_took(x, a, b) for _, _, _, a, b in DISTRIBUTIONS]
        rows.append(
            [
                _num(x.get("batch")),
                f"<code>{e(x.get('filename'))}</code>",
                f"{e(Path(src.get('path') or '').name)} {_num(src.get('first_line'))}–{_num(src.get('last_line'))}",
                *(e(fmt_seconds(p)) if p is not None else "-" for p in phases),
                e(fmt_seconds(total)),
                _num(x.get("attempts")),
                f'<span class="{status_class(x.get("status"))}">{e(x.get("status"))}</span>',
            ]
        )
    if not rows:
        return '<p class="muted">no execution has both an upload start and an end</p>'
    headers = ["batch", "file name", "source lines", "upload", "queue", "processing", "total", "attempts", "status"]
    return '<div id="slowest">' + _table(headers, rows, {0, 3, 4, 5, 6, 7}) + "</div>"


def _failed(x: Mapping[str, Any]) -> bool:
    refused = x.get("upload") == "upload_failed" and not x.get("ambiguous")
    return refused or formats.is_failure(x.get("status")) or bool(x.get("total_failure"))


def _failed_batches(report: Report) -> str:
    failed = [x for x in report.get("executions", []) if _failed(x)]
    if not failed:
        return '<p class="muted" id="failed-batches">none: no execution failed, none has failed records</p>'
    shown = failed[:NOTABLE_ROWS_MAX]
    headers = ["batch", "execution", "status", "source lines", "records", "succeeded", "failed", "attempts"]
    headers += ["error file", "error"]
    note = f"{len(failed):,} batches failed whole or have failed records"
    if len(shown) < len(failed):
        note += f"; the first {len(shown):,} here, every one in <code>report.json</code>"
    table = _table(headers, [_execution_row(x) for x in shown], {0, 4, 5, 6, 7})
    return f'<div id="failed-batches"><p class="muted">{note}</p>{table}</div>'


def _aggregate_sections(report: Report) -> list[str]:
    """Above ``TIMELINE_ROWS_MAX`` executions: progress, durations, the slowest and the failed batches."""
    times = [t for x in report.get("executions", []) for f in ("read_at", "upload_started_at") if (t := _ts(x.get(f)))]
    started = _ts(report.get("started_at"))
    t0 = min([*times, started] if started is not None else times) if times or started is not None else 0.0
    return [
        "<h2>Bytes uploaded and records finished over time</h2>",
        _progress(report, t0),
        "<h2>Durations</h2>",
        '<p class="muted">upload: from its first byte to the server\'s answer; queue: from the answer to the start '
        "of processing (the server's clock); processing: to its end. Percentiles by nearest rank.</p>",
        _phase_durations_of(report),
        _distributions(report),
        f"<h2>The slowest {SLOWEST_ROWS} batches</h2>",
        _slowest(report),
        "<h2>Failed batches</h2>",
        _failed_batches(report),
    ]


def _shards(report: Report) -> str:
    """A merged report's shards (``pipeline report merge``): one row each."""
    rows = [
        [
            f"<code>{e(x['run_id'])}</code>",
            f'<span class="{OUTCOME_CLASS.get(x["outcome"], "warn")}">{e(x["outcome"])}</span>',
            _num(x["exit_code"]),
            _num(x["records"].get("read")),
            _num(x["records"].get("succeeded")),
            _num(x["records"].get("failed")),
            _num(x["batches"]),
            f"<code>{e(x.get('resume_command') or x.get('run_dir') or '')}</code>",
        ]
        for x in report.get("shards", [])
    ]
    headers = ["run", "outcome", "exit", "records read", "succeeded", "failed", "batches", "run directory / resume"]
    return '<div id="shards">' + _table(headers, rows, {2, 3, 4, 5, 6}) + "</div>"


OUTCOME_CLASS = {"succeeded": "ok", "completed_with_failures": "bad", "completed_with_duplicates": "bad"}


def render_report_html(report: Report, rejects_by_reason: dict[str, int] | None = None) -> str:
    """The whole page for a report dict (as written to ``report.json``)."""
    try:
        return _render(report, rejects_by_reason)
    finally:
        _parsed_ts.cache_clear()


def _render(report: Report, rejects_by_reason: dict[str, int] | None) -> str:
    rejects_by_reason = rejects_by_reason if rejects_by_reason is not None else report.get("rejects_by_reason") or {}
    outcome = report.get("outcome", "?")
    colour = OUTCOME_COLOUR.get(outcome, "#b45309")
    imp = report.get("document_import") or {}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>pipeline run {e(report.get('run_id'))}: {e(outcome)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>pipeline run <code>{e(report.get('run_id'))}</code> "
        f'<span class="badge" id="outcome" style="background:{colour}">{e(outcome)}</span></h1>',
        f'<p class="muted">exit code {e(report.get("exit_code"))} · started {e(report.get("started_at"))} · '
        f"finished {e(report.get('finished_at') or '-')} · target {e(report.get('target'))}"
        f"{' (the EMBEDDED EMULATOR: nothing was imported into mediarithmics)' if report.get('emulator') else ''}"
        " · document import "
        + (
            f"{e(imp.get('id'))} “{e(imp.get('name'))}” ({e(imp.get('document_type'))}, {e(imp.get('mime_type'))})</p>"
            if imp.get("id")
            else "none created</p>"
        ),
        _cards(report),
    ]
    retry_of = report.get("retry_of")
    if retry_of:  # a run made by `pipeline retry`
        out.append(
            f'<p id="retry-of">a retry of run <code>{e(retry_of["run_id"])}</code> (<code>{e(retry_of["run_dir"])}'
            f"</code>): {_num(retry_of['records'])} records sent again ({_num(retry_of['not_delivered'])} not "
            f"delivered, {_num(retry_of['refused'])} refused by the server, {_num(retry_of['rejected'])} fixed "
            "rejects)</p>"
        )
    by_status = executions_by_status(report)
    if by_status:
        out.append("<p>executions: " + ", ".join(f"{e(k)} <b>{v:,}</b>" for k, v in by_status.items()) + "</p>")
    if report.get("resume_command"):
        out.append(
            f'<p class="warn" id="resume">not finished: resume it with <code>{e(report["resume_command"])}</code></p>'
        )
    out.extend(_stops_and_budget(report))
    for warning in report.get("warnings") or []:
        out.append(f'<p class="warn">⚠ {e(warning)}</p>')
    if report.get("shards"):
        out.append(f"<h2>Shards ({len(report['shards']):,} runs, merged)</h2>")
        out.append(_shards(report))
    aggregate = len(report.get("executions", [])) > TIMELINE_ROWS_MAX
    out.append("<h2>Executions by state over time</h2>" if aggregate else "<h2>Timeline</h2>")
    out.append(_timeline(report))
    out.append("<h2>Uploads in flight over time</h2>" if aggregate else "<h2>Uploads over time</h2>")
    out.append(_throughput(report))
    out.append(_platform(report))
    if aggregate:
        out += _aggregate_sections(report)
    out.append("<h2>Inputs</h2>")
    inputs = [
        [
            f"<code>{e(i.get('path'))}</code>",
            _num(i.get("bytes")),
            _num(i.get("records")),
            _num(i.get("rejected")),
            _num(i.get("blank_lines")),
        ]
        for i in report.get("inputs", [])[:TABLE_ROWS_MAX]
    ]
    if len(report.get("inputs", [])) > TABLE_ROWS_MAX:
        out.append(
            f'<p class="muted">{len(report["inputs"]):,} input files: the first {TABLE_ROWS_MAX:,} here, '
            "every one in <code>report.json</code></p>"
        )
    out.append(
        _table(["file", "bytes", "records", "rejected", "blank lines"], inputs, {1, 2, 3, 4})
        if inputs
        else '<p class="muted">reading did not finish: no per-file counts</p>'
    )
    skipped = report.get("skipped_files") or []
    if skipped:
        out.append("<h2>Files skipped</h2>")
        rows = [[f"<code>{e(f['path'])}</code>", _num(f["bytes"]), e(f["reason"])] for f in skipped]
        out.append(_table(["file", "bytes", "why (nothing of it was read or sent)"], rows, {1}))
    not_taken = report.get("skipped_inputs") or []
    if not_taken:
        items = "".join(f"<li><code>{e(s['path'])}</code>: {e(s['message'])}</li>" for s in not_taken[:50])
        more = f"<li>{len(not_taken) - 50:,} more in report.json</li>" if len(not_taken) > 50 else ""
        out.append(f'<p class="muted" id="skipped">not taken from the input directories:</p><ul>{items}{more}</ul>')
    out.append("<h2>Rejected records</h2>")
    if rejects_by_reason:
        rows = [[e(reason), _num(count)] for reason, count in sorted(rejects_by_reason.items(), key=lambda kv: -kv[1])]
        out.append(_table(["reason", "records"], rows, {1}))
        out.append(
            f'<p class="muted">every rejected record, with its file and line: '
            f"<code>{e(report.get('rejects_path'))}</code></p>"
        )
    else:
        out.append('<p class="muted">none</p>')
    out.append(_refused(report))
    if report.get("not_delivered"):
        out.append("<h2>Not delivered</h2>")
        rows = [
            [
                _num(x.get("batch")),
                f"<code>{e(x.get('path'))}</code>",
                f"{_num(x.get('first_line'))}–{_num(x.get('last_line'))}",
                _num(x.get("records")),
                e(x.get("reason")),
            ]
            for x in report["not_delivered"][:NOTABLE_ROWS_MAX]
        ]
        if len(report["not_delivered"]) > NOTABLE_ROWS_MAX:
            out.append(
                f'<p class="muted">{len(report["not_delivered"]):,} batches not delivered: the first '
                f"{NOTABLE_ROWS_MAX:,} here, every one in <code>report.json</code></p>"
            )
        out.append(_table(["batch", "file", "lines", "records", "reason"], rows, {0, 3}))
    out.append("<h2>Executions</h2>")
    out.append(_executions(report))
    out.append('<p class="muted">written by pipeline; this page needs no network.</p></body></html>')
    return "\n".join(out) + "\n"


def _refused(report: Report) -> str:
    """The records the server refused: the first few as ``file:line: reason``, and where all are."""
    refused = report.get("refused")
    if not refused or not refused["count"]:
        return ""
    items = "".join(
        f"<li><code>{e(x['file'])}:{_num(x['line'])}</code>: {e(x['reason'])}</li>" for x in refused["sample"]
    )
    out = f'<h2 id="refused">Refused by the server</h2><ul>{items}</ul>'
    out += (
        f'<p class="muted">every refused record ({_num(refused["count"])}), with its file, line, reason and '
        f"execution: <code>{e(refused['path'])}</code></p>"
    )
    if refused["unmapped"]:
        out += (
            f'<p class="warn">{_num(refused["unmapped"])} entries of the error files map to no source line: '
            f"<code>{e(refused['unmapped_path'])}</code></p>"
        )
    return out


def write_report_html(report: Report, path: str | Path | None = None) -> Path:
    """Write ``report.html`` (owner-readable only: it names records' files) into the run directory,
    or at ``path``; returns where it went."""
    if path:
        target = Path(path)
    elif report["run_dir"]:
        target = Path(report["run_dir"]) / REPORT_HTML_NAME
    else:
        raise ValueError("write_report_html: no path given and the report has no run_dir")
    text = render_report_html(report, report.get("rejects_by_reason") or {})
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    return target
