"""The end-of-run summary: one small table, plain (logs) or drawn with rich (a terminal).

Rows: outcome; records read, rejected, sent, succeeded, failed (and still processing, not sent yet); executions
by status; duration and throughput; where the reports and the rejects are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.reporting.exit_codes import EXIT_FAILURES
from pipeline.reporting.types import Report

REPORT_HTML_NAME = "report.html"


def human_bytes(n: float) -> str:
    """1.2 MB, 340.0 kB, 12 B: decimal units, like the API's 100 MB limit."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


_mb = human_bytes


def executions_by_status(report: Report) -> dict[str, int]:
    """How many executions have each status (a known one in upper case, however the server spelled
    it); an execution with no status counts as ``refused`` (upload failed for good), ``unsettled``
    (the upload may have created it: the server gave no way to know yet) or ``unknown``."""
    statuses: dict[str, int] = {}
    for e in report.get("executions", []):
        status = e.get("status")
        key = formats.normalize_status(status) if formats.is_known(status) else status
        if not key:
            refused = e.get("upload") == "upload_failed" and not e.get("ambiguous")
            key = "refused" if refused else ("unsettled" if e.get("ambiguous") else "unknown")
        key = str(key)
        statuses[key] = statuses.get(key, 0) + 1
    return dict(sorted(statuses.items()))


EMULATOR_NOTE = " on the EMBEDDED EMULATOR: nothing was imported into mediarithmics"


def summary_rows(report: Report) -> list[tuple[str, str]]:
    r = report["records"]
    total_bytes = sum(i.get("bytes") or 0 for i in report.get("inputs", []))
    seconds = report.get("duration_s") or 0.0
    rate = f"{_mb(total_bytes / seconds)}/s, {r['read'] / seconds:,.0f} records/s" if seconds > 0 else "-"
    rows = [
        (
            "outcome",
            f"{report['outcome']} (exit {report['exit_code']})" + (EMULATOR_NOTE if report.get("emulator") else ""),
        ),
        ("records read", f"{r['read']:,}"),
        ("  rejected", f"{r['rejected']:,}"),
        ("  sent", f"{r['sent']:,}"),
        ("  succeeded", f"{r['succeeded']:,}"),
        ("  failed", f"{r['failed']:,}"),
    ]
    retry_of = report.get("retry_of")
    if retry_of:  # a run made by `pipeline retry`
        rows.insert(1, ("retry of", f"{retry_of['run_id']} ({retry_of['run_dir']}): {retry_of['records']:,} records"))
    if r.get("pending"):
        rows.append(("  still processing", f"{r['pending']:,}"))
    if r.get("unsent"):
        rows.append(("  not sent yet", f"{r['unsent']:,}"))
    if r.get("unsettled"):
        rows.append(("  sent, fate unknown", f"{r['unsettled']:,}"))
    if r.get("duplicated") or r.get("possibly_duplicated"):
        rows.append(("  duplicated", f"{r.get('duplicated', 0):,} (possibly {r.get('possibly_duplicated', 0):,} more)"))
    rows += budget_rows(report)
    by_status = executions_by_status(report)
    rows.append(("executions", ", ".join(f"{k} {v}" for k, v in by_status.items()) or "none"))
    rows.append(("duration", f"{seconds:,.1f} s"))
    if total_bytes:  # the inputs' sizes are known once reading finished
        rows.append(("throughput", f"{_mb(total_bytes)} at {rate}"))
    th = report.get("throughput")
    if th:
        upload = f"{th['upload_mb_s']:,.1f} MB/s, " if th.get("upload_mb_s") else ""
        rows.append(
            (
                "uploads",
                f"{upload}up to {th['peak_in_flight']} in flight (of {th['max_concurrency']}"
                f"{', adaptive' if th['adaptive'] else ''}), {th['throttled']:,} throttled; "
                f"polls {th['poll_requests']:,} + {th['poll_listings']:,} listings",
            )
        )
    rows += plan_rows(report)
    run_dir = report.get("run_dir")
    if run_dir:
        rows.append(("report", str(Path(run_dir) / REPORT_HTML_NAME)))
        rows.append(("", str(Path(run_dir) / "report.json")))
    if report.get("rejects_path") and r["rejected"]:
        rows.append(("rejects", str(report["rejects_path"])))
    refused = report.get("refused")
    if refused and refused["count"]:
        n = refused["count"]
        rows.append(("refused", f"{n:,} record{'' if n == 1 else 's'}, in {refused['path']}"))
    return rows


def plan_rows(report: Report) -> list[tuple[str, str]]:
    """Where the batch sizes came from, and what this run saw of the platform (the next run's plan)."""
    platform = report.get("platform")
    if not platform:
        return []
    rows = []
    if plan := platform["plan"]:
        rows.append(("batch plan", f"{plan['shape']}, fitted to what run {plan['profile']['learned_from']} saw"))
    if profile := platform["profile"]:
        slots = f"{profile['slots']} slots" if profile["slots_exact"] else f"at least {profile['slots']} slots"
        rows.append(
            (
                "platform",
                f"{slots}, {profile['base_s']:.2f} s + {profile['s_per_mb'] * 1000:.1f} ms/MB per execution, "
                f"uploads {profile['link_mbps']:,.0f} MB/s",
            )
        )
    return rows


def refused_details(report: Report, most: int = 10) -> list[str]:
    """The first records the server refused (``file:line: reason``, from ``failed.ndjson``), and the
    message of every execution that SUCCEEDED with errors (the platform's web client shows it)."""
    lines: list[str] = []
    refused = report.get("refused")
    if refused and refused["sample"]:
        count, sample = refused["count"], refused["sample"]
        first = f" (first {len(sample)} of {count:,})" if count > len(sample) else ""
        lines.append(f"refused by the server{first}, all in {refused['path']}:")
        lines += [f"  {x['file']}:{x['line']}: {x['reason']}" for x in sample]
    noted = [x for x in report.get("executions", []) if formats.is_success(x.get("status")) and x.get("error")]
    for x in noted[:most]:
        src = x["source"]
        lines.append(
            f"execution {x['id']} (batch {x['batch']}, {src['path']} lines {src['first_line']}-{src['last_line']}) "
            f"{x['status']} with errors: {x['error']}"
        )
    if len(noted) > most:
        lines.append(f"{len(noted) - most} more executions succeeded with errors, see report.json")
    return lines


def outside_the_budget(report: Report) -> str:
    """Why a run within its budget still failed: what no budget covers."""
    records = report.get("records")
    not_delivered = records["not_delivered"] if records else 0
    parts = [f"{not_delivered:,} records of FAILED executions"] if not_delivered else []
    if report.get("skipped_files"):
        parts.append("files skipped whole")
    if not parts:
        return "; the run failed for what no budget covers"
    return f"; the run failed for what no budget covers: {' and '.join(parts)}"


def budget_rows(report: Report) -> list[tuple[str, str]]:
    """The error budget (when one is set) and the files skipped whole."""
    rows = []
    budget = report.get("error_budget")
    if budget and budget["max_errors"] not in ("0", ""):
        state = "within" if budget["within"] else "OVER"
        text = f"{budget['errors']:,} of {budget['allowed']:,} allowed ({budget['max_errors']}): {state}"
        if budget["within"] and report.get("exit_code") == EXIT_FAILURES:
            text += outside_the_budget(report)
        rows.append(("error budget", text))
    skipped = report.get("skipped_files") or []
    if skipped:
        size = sum(f["bytes"] or 0 for f in skipped)
        rows.append(("files skipped", f"{len(skipped)} ({human_bytes(size)}), not read: see below"))
    return rows


def summary_details(report: Report, most: int = 10) -> list[str]:
    """What needs a person's attention, one line each: the error that stopped the run (cause and
    fix), warnings, files skipped whole, rejected records (file:line: reason, the first few),
    batches not delivered (file and line range, for a rerun)."""
    lines = []
    final = report.get("final_error")
    if final:
        lines.append(f"error: {final['cause']}")
        lines.append(f"fix: {final['fix']}")
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    for f in report.get("skipped_files") or []:
        size = human_bytes(f["bytes"]) if f["bytes"] is not None else "size unknown"
        lines.append(f"skipped file: {f['path']} ({size}): {f['reason']}")
    lines += skipped_inputs_line(report)
    sample = report.get("rejects_sample") or []
    rejected = report["records"]["rejected"]
    if sample:
        lines.append(
            "rejected records" + (f" (first {len(sample)} of {rejected:,})" if rejected > len(sample) else "") + ":"
        )
        lines += [f"  {x['file']}:{x['line']}: {x['reason']}" for x in sample]
    lines += refused_details(report, most)
    for d in report.get("duplicates", [])[:most]:
        what = "duplicate" if d.get("certain") else "possible duplicate"
        extra = f" (also in execution(s) {', '.join(d['duplicate_execution_ids'])})" if d.get("certain") else ""
        lines.append(
            f"{what}: batch {d['batch']} ({d['path']} lines {d['first_line']}-{d['last_line']}, "
            f"{d['records']:,} records) may be imported twice{extra}"
        )
    for u in report.get("unsettled", [])[:most]:
        lines.append(
            f"unsettled: batch {u['batch']} ({u['path']} lines {u['first_line']}-{u['last_line']}, "
            f"{u['records']:,} records, file name {u['filename']}): its upload may or may not have created an "
            + (
                "execution, and no lookup of this server can tell: check it on the platform"
                if u.get("final")
                else "execution; `pipeline resume` looks it up again"
            )
        )
    for entry in report.get("not_delivered", [])[:most]:
        lines.append(
            f"not delivered: batch {entry['batch']} ({entry['path']} lines {entry['first_line']}-"
            f"{entry['last_line']}, {entry['records']:,} records): {entry['reason']}"
        )
    more = len(report.get("not_delivered", [])) - most
    if more > 0:
        lines.append(f"not delivered: {more} more batches, see report.json")
    return lines


def plain_summary(report: Report) -> str:
    rows = summary_rows(report)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def rich_summary(report: Report) -> Any:
    """The same rows as a rich ``Table`` (for a terminal)."""
    from rich import box
    from rich.table import Table

    ok = report["exit_code"] == 0
    table = Table(
        title=f"run {report.get('run_id', '')}",
        box=box.ROUNDED,
        show_header=False,
        title_style="bold",
        border_style="green" if ok else ("red" if report["exit_code"] == 1 else "yellow"),
    )
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in summary_rows(report):
        style = None
        if key == "outcome":
            style = "bold green" if ok else "bold red" if report["exit_code"] == 1 else "bold yellow"
        table.add_row(key, value, style=style)
    return table


def skipped_inputs_line(report: Report, most: int = 3) -> list[str]:
    """One line for the entries of the input directories not taken (report.json lists them all)."""
    skipped = report.get("skipped_inputs") or []
    if not skipped:
        return []
    named = "; ".join(f"{s['path']} ({s['message'].removeprefix('skipped: ')})" for s in skipped[:most])
    more = f"; {len(skipped) - most} more in report.json" if len(skipped) > most else ""
    return [f"skipped {len(skipped)} entries of the input directories: {named}{more}"]
