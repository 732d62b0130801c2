"""The aggregate sections of ``report.html``, above ``html_timeline.TIMELINE_ROWS_MAX`` batches:
bytes uploaded and records finished over time, each phase's durations (a table and a histogram
each), the ``SLOWEST_ROWS`` slowest batches and the failed ones.

Apart from ``report_html`` because only a large run has them, each bounded in size whatever the
number of executions (the charts are ``html_charts``'); the executions table of every page lists
the notable executions only, with a count of the rest (``html_executions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.reporting.html_charts import Line, cumulative_lines, fmt_seconds, histogram
from pipeline.reporting.html_executions import (
    EXECUTION_HEADERS,
    EXECUTION_NUMERIC,
    NOTABLE_ROWS_MAX,
    execution_row,
    status_class,
)
from pipeline.reporting.html_markup import e, num, table, ts
from pipeline.reporting.html_phases import phase_durations_of
from pipeline.reporting.summary import human_bytes
from pipeline.reporting.types import Report

SLOWEST_ROWS = 20
DISTRIBUTIONS = (  # (id, label, colour, start field, end field)
    ("dist-upload", "upload time", "#3b82f6", "upload_started_at", "uploaded_at"),
    ("dist-queue", "queue time on the server (PENDING)", "#f59e0b", "uploaded_at", "started_at"),
    ("dist-processing", "processing time on the server", "#16a34a", "started_at", "finished_at"),
)


def _took(x: Mapping[str, Any], a: str, b: str) -> float | None:
    start, end = ts(x.get(a)), ts(x.get(b))
    return None if start is None or end is None else max(0.0, end - start)


def _records_of(x: Mapping[str, Any]) -> float:
    src: Mapping[str, Any] = x.get("source", {})  # always there; a hand-made report may lack it
    return float(src.get("line_count") or 0)


def _progress(report: Report, t0: float) -> str:
    """Bytes uploaded and records finished, cumulated over time (each on its own scale)."""
    execs = report.get("executions", [])
    uploaded = sorted((t - t0, float(x.get("bytes") or 0)) for x in execs if (t := ts(x.get("uploaded_at"))))
    finished = sorted((t - t0, _records_of(x)) for x in execs if (t := ts(x.get("finished_at"))))

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
    span = max([*ends, (ts(report.get("finished_at")) or t0) - t0])
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
                num(x.get("batch")),
                f"<code>{e(x.get('filename'))}</code>",
                f"{e(Path(src.get('path') or '').name)} {num(src.get('first_line'))}–{num(src.get('last_line'))}",
                *(e(fmt_seconds(p)) if p is not None else "-" for p in phases),
                e(fmt_seconds(total)),
                num(x.get("attempts")),
                f'<span class="{status_class(x.get("status"))}">{e(x.get("status"))}</span>',
            ]
        )
    if not rows:
        return '<p class="muted">no execution has both an upload start and an end</p>'
    headers = ["batch", "file name", "source lines", "upload", "queue", "processing", "total", "attempts", "status"]
    return '<div id="slowest">' + table(headers, rows, {0, 3, 4, 5, 6, 7}) + "</div>"


def _failed(x: Mapping[str, Any]) -> bool:
    refused = x.get("upload") == "upload_failed" and not x.get("ambiguous")
    return refused or formats.is_failure(x.get("status")) or bool(x.get("total_failure"))


def _failed_batches(report: Report) -> str:
    failed = [x for x in report.get("executions", []) if _failed(x)]
    if not failed:
        return '<p class="muted" id="failed-batches">none: no execution failed, none has failed records</p>'
    shown = failed[:NOTABLE_ROWS_MAX]
    note = f"{len(failed):,} batches failed whole or have failed records"
    if len(shown) < len(failed):
        note += f"; the first {len(shown):,} here, every one in <code>report.json</code>"
    rows = table(EXECUTION_HEADERS, [execution_row(x) for x in shown], EXECUTION_NUMERIC)
    return f'<div id="failed-batches"><p class="muted">{note}</p>{rows}</div>'


def aggregate_sections(report: Report) -> list[str]:
    """Above ``html_timeline.TIMELINE_ROWS_MAX`` executions: progress, durations, the slowest and the
    failed batches."""
    times = [t for x in report.get("executions", []) for f in ("read_at", "upload_started_at") if (t := ts(x.get(f)))]
    started = ts(report.get("started_at"))
    t0 = min([*times, started] if started is not None else times) if times or started is not None else 0.0
    return [
        "<h2>Bytes uploaded and records finished over time</h2>",
        _progress(report, t0),
        "<h2>Durations</h2>",
        '<p class="muted">upload: from its first byte to the server\'s answer; queue: from the answer to the start '
        "of processing (the server's clock); processing: to its end. Percentiles by nearest rank.</p>",
        phase_durations_of(report),
        _distributions(report),
        f"<h2>The slowest {SLOWEST_ROWS} batches</h2>",
        _slowest(report),
        "<h2>Failed batches</h2>",
        _failed_batches(report),
    ]
