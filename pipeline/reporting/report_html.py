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

This module is the page: its head, its notes and its tables of inputs, rejects and batches not
delivered, in order. The charts and the other tables are apart, one module each: ``html_timeline``
(a row per batch), ``html_phases`` (the phases over time), ``html_throughput`` (uploads over time),
``html_executions`` (the executions table), ``html_aggregate`` (the sections of a large run, with
the charts of ``html_charts``); ``html_markup`` is what they are all written with.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.reporting.html_aggregate import aggregate_sections
from pipeline.reporting.html_executions import NOTABLE_ROWS_MAX, TABLE_ROWS_MAX, executions_table
from pipeline.reporting.html_markup import e, num, parsed_ts, table
from pipeline.reporting.html_phases import phases_over_time
from pipeline.reporting.html_throughput import throughput_chart
from pipeline.reporting.html_timeline import TIMELINE_ROWS_MAX, timeline
from pipeline.reporting.summary import REPORT_HTML_NAME, executions_by_status, human_bytes, plan_rows
from pipeline.reporting.types import Report

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
        '<div class="cards">' + "".join(f'<div class="card"><b>{num(v)}</b>{e(k)}</div>' for k, v in items) + "</div>"
    )


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
            f'<p id="error-budget">error budget (max_errors {e(budget["max_errors"])}): {num(budget["errors"])} '
            f"records rejected or refused, {num(budget['allowed'])} allowed: {state}</p>"
        )
    return out


def _shards(report: Report) -> str:
    """A merged report's shards (``pipeline report merge``): one row each."""
    rows = [
        [
            f"<code>{e(x['run_id'])}</code>",
            f'<span class="{OUTCOME_CLASS.get(x["outcome"], "warn")}">{e(x["outcome"])}</span>',
            num(x["exit_code"]),
            num(x["records"].get("read")),
            num(x["records"].get("succeeded")),
            num(x["records"].get("failed")),
            num(x["batches"]),
            f"<code>{e(x.get('resume_command') or x.get('run_dir') or '')}</code>",
        ]
        for x in report.get("shards", [])
    ]
    headers = ["run", "outcome", "exit", "records read", "succeeded", "failed", "batches", "run directory / resume"]
    return '<div id="shards">' + table(headers, rows, {2, 3, 4, 5, 6}) + "</div>"


OUTCOME_CLASS = {
    "succeeded": "ok",
    "completed_with_failures": "bad",
    "completed_with_duplicates": "bad",
    "completed_with_unknowns": "bad",
}


def render_report_html(report: Report, rejects_by_reason: dict[str, int] | None = None) -> str:
    """The whole page for a report dict (as written to ``report.json``)."""
    try:
        return _render(report, rejects_by_reason)
    finally:
        parsed_ts.cache_clear()


def _render(report: Report, rejects_by_reason: dict[str, int] | None) -> str:
    rejects_by_reason = rejects_by_reason if rejects_by_reason is not None else report.get("rejects_by_reason") or {}
    out = _head(report) + _notes(report) + _charts(report) + _inputs(report) + _skipped(report)
    out += _rejects(report, rejects_by_reason)
    out.append(_refused(report))
    out += _not_delivered(report)
    out.append("<h2>Executions</h2>")
    out.append(executions_table(report))
    out.append('<p class="muted">written by pipeline; this page needs no network.</p></body></html>')
    return "\n".join(out) + "\n"


def _head(report: Report) -> list[str]:
    """The document's head, the title with the outcome, the run's line and the cards of counts."""
    outcome = report.get("outcome", "?")
    colour = OUTCOME_COLOUR.get(outcome, "#b45309")
    imp = report.get("document_import") or {}
    return [
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


def _notes(report: Report) -> list[str]:
    """What the run was a retry of, its executions by status, how to resume it, what stopped it,
    its warnings, and a merged report's shards."""
    out = []
    retry_of = report.get("retry_of")
    if retry_of:  # a run made by `pipeline retry`
        out.append(
            f'<p id="retry-of">a retry of run <code>{e(retry_of["run_id"])}</code> (<code>{e(retry_of["run_dir"])}'
            f"</code>): {num(retry_of['records'])} records sent again ({num(retry_of['not_delivered'])} not "
            f"delivered, {num(retry_of['refused'])} refused by the server, {num(retry_of['rejected'])} fixed "
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
    return out


def _charts(report: Report) -> list[str]:
    """The timeline (a row per batch, or the phases over time above ``TIMELINE_ROWS_MAX``), the
    uploads over time, the platform, and a large run's aggregate sections."""
    aggregate = len(report.get("executions", [])) > TIMELINE_ROWS_MAX
    out = ["<h2>Executions by state over time</h2>" if aggregate else "<h2>Timeline</h2>"]
    out.append(phases_over_time(report) if aggregate else timeline(report))
    out.append("<h2>Uploads in flight over time</h2>" if aggregate else "<h2>Uploads over time</h2>")
    out.append(throughput_chart(report))
    out.append(_platform(report))
    if aggregate:
        out += aggregate_sections(report)
    return out


def _inputs(report: Report) -> list[str]:
    """The input files with their counts (the first ``TABLE_ROWS_MAX``)."""
    out = ["<h2>Inputs</h2>"]
    inputs = [
        [
            f"<code>{e(i.get('path'))}</code>",
            num(i.get("bytes")),
            num(i.get("records")),
            num(i.get("rejected")),
            num(i.get("blank_lines")),
        ]
        for i in report.get("inputs", [])[:TABLE_ROWS_MAX]
    ]
    if len(report.get("inputs", [])) > TABLE_ROWS_MAX:
        out.append(
            f'<p class="muted">{len(report["inputs"]):,} input files: the first {TABLE_ROWS_MAX:,} here, '
            "every one in <code>report.json</code></p>"
        )
    out.append(
        table(["file", "bytes", "records", "rejected", "blank lines"], inputs, {1, 2, 3, 4})
        if inputs
        else '<p class="muted">reading did not finish: no per-file counts</p>'
    )
    return out


def _skipped(report: Report) -> list[str]:
    """The files skipped whole, and what the input directories held that was not taken."""
    out = []
    skipped = report.get("skipped_files") or []
    if skipped:
        out.append("<h2>Files skipped</h2>")
        rows = [[f"<code>{e(f['path'])}</code>", num(f["bytes"]), e(f["reason"])] for f in skipped]
        out.append(table(["file", "bytes", "why (nothing of it was read or sent)"], rows, {1}))
    not_taken = report.get("skipped_inputs") or []
    if not_taken:
        items = "".join(f"<li><code>{e(s['path'])}</code>: {e(s['message'])}</li>" for s in not_taken[:50])
        more = f"<li>{len(not_taken) - 50:,} more in report.json</li>" if len(not_taken) > 50 else ""
        out.append(f'<p class="muted" id="skipped">not taken from the input directories:</p><ul>{items}{more}</ul>')
    return out


def _rejects(report: Report, rejects_by_reason: dict[str, int]) -> list[str]:
    """The rejected records by reason, and where each one is."""
    out = ["<h2>Rejected records</h2>"]
    if rejects_by_reason:
        rows = [[e(reason), num(count)] for reason, count in sorted(rejects_by_reason.items(), key=lambda kv: -kv[1])]
        out.append(table(["reason", "records"], rows, {1}))
        out.append(
            f'<p class="muted">every rejected record, with its file and line: '
            f"<code>{e(report.get('rejects_path'))}</code></p>"
        )
    else:
        out.append('<p class="muted">none</p>')
    return out


def _not_delivered(report: Report) -> list[str]:
    """The batches not delivered (the first ``NOTABLE_ROWS_MAX``), when there are any."""
    if not report.get("not_delivered"):
        return []
    out = ["<h2>Not delivered</h2>"]
    rows = [
        [
            num(x.get("batch")),
            f"<code>{e(x.get('path'))}</code>",
            f"{num(x.get('first_line'))}–{num(x.get('last_line'))}",
            num(x.get("records")),
            e(x.get("reason")),
        ]
        for x in report["not_delivered"][:NOTABLE_ROWS_MAX]
    ]
    if len(report["not_delivered"]) > NOTABLE_ROWS_MAX:
        out.append(
            f'<p class="muted">{len(report["not_delivered"]):,} batches not delivered: the first '
            f"{NOTABLE_ROWS_MAX:,} here, every one in <code>report.json</code></p>"
        )
    out.append(table(["batch", "file", "lines", "records", "reason"], rows, {0, 3}))
    return out


def _refused(report: Report) -> str:
    """The records the server refused: the first few as ``file:line: reason``, and where all are."""
    refused = report.get("refused")
    if not refused or not refused["count"]:
        return ""
    items = "".join(
        f"<li><code>{e(x['file'])}:{num(x['line'])}</code>: {e(x['reason'])}</li>" for x in refused["sample"]
    )
    out = f'<h2 id="refused">Refused by the server</h2><ul>{items}</ul>'
    out += (
        f'<p class="muted">every refused record ({num(refused["count"])}), with its file, line, reason and '
        f"execution: <code>{e(refused['path'])}</code></p>"
    )
    if refused["unmapped"]:
        out += (
            f'<p class="warn">{num(refused["unmapped"])} entries of the error files map to no source line: '
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
