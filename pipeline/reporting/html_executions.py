"""The executions of ``report.html`` as table rows: an execution's row, its status' colour, which
executions are notable, and the executions table (every one up to ``TABLE_ROWS_MAX``, else the
notable ones, with a count of the rest).

Apart from ``report_html`` because the page lists executions in two places: the executions table
and, above ``html_timeline.TIMELINE_ROWS_MAX`` batches, the failed batches (``html_aggregate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.reporting.html_markup import e, num, table
from pipeline.reporting.types import Report

TABLE_ROWS_MAX = 300  # above this many executions, the table lists the notable ones only
NOTABLE_ROWS_MAX = 200  # and at most this many of them
EXECUTION_HEADERS = [
    "batch",
    "execution",
    "status",
    "source lines",
    "records",
    "succeeded",
    "failed",
    "attempts",
    "error file",
    "error",
]
EXECUTION_NUMERIC = {0, 4, 5, 6, 7}


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


def execution_row(x: Mapping[str, Any], mapped: bool = False) -> list[str]:
    """The cells of ``EXECUTION_HEADERS`` for one execution."""
    src: Mapping[str, Any] = x.get("source", {})  # always there; a hand-made report may lack it
    status = x.get("status") or ("refused" if x.get("upload") == "upload_failed" else x.get("upload"))
    cls = "bad" if status == "refused" else status_class(status)  # refused: the upload, for good
    failures = x.get("total_failure")
    return [
        num(x.get("batch")),
        f"<code>{e(x.get('id') or '-')}</code>",
        f'<span class="{cls}">{e(status)}</span>',
        f"{e(Path(src.get('path') or '').name)} {num(src.get('first_line'))}–{num(src.get('last_line'))}",
        num(src.get("line_count")),
        num(x.get("total_success")),
        f'<span class="bad">{num(failures)}</span>' if failures else num(failures),
        num(x.get("attempts")),
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


def executions_table(report: Report) -> str:
    """Every execution up to ``TABLE_ROWS_MAX``; above, the first ``NOTABLE_ROWS_MAX`` notable ones
    and a note counting the rest by status."""
    execs = report.get("executions", [])
    if not execs:
        return '<p class="muted">no execution</p>'
    mapped = bool(report.get("refused"))
    if len(execs) <= TABLE_ROWS_MAX:
        return table(EXECUTION_HEADERS, [execution_row(x, mapped) for x in execs], EXECUTION_NUMERIC)
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
        out += table(EXECUTION_HEADERS, [execution_row(x, mapped) for x in shown], EXECUTION_NUMERIC)
    return out
