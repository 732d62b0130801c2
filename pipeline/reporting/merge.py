"""One report for a whole import from its shards' reports (``pipeline report merge``): a pure
function of the reports.

Counts are summed; lists (inputs, executions, not delivered, duplicates, unsettled) are put end to
end, shard after shard; the exit code is the worst of the shards' (``WORST_FIRST``: duplicates,
then not known yet, then nothing sent, then failures), with that shard's outcome. The shards'
upload timelines, each counted from its own start, are laid on one clock (each ending when its run
finished) and summed: the uploads in flight of the whole import. Reports of different document imports are
refused: they are not one import.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline.errors import UsageError
from pipeline.reporting.exit_codes import EXIT_DUPLICATES, EXIT_FAILURES, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE
from pipeline.reporting.report import iso
from pipeline.reporting.types import ErrorBudgetEntry, RecordCounts, Report, ShardEntry, Throughput

#: exit codes from the worst: a merged report exits with the first of these any shard has
WORST_FIRST = (EXIT_DUPLICATES, EXIT_UNKNOWN, EXIT_USAGE, EXIT_FAILURES, EXIT_OK)
TIMELINE_POINTS_MAX = 2_000  # samples of the merged upload timeline
REJECTS_SAMPLE_MAX = 20


def worst_exit_code(codes: Sequence[int]) -> int:
    """The exit code of the whole: the worst of ``codes`` in ``WORST_FIRST`` order (an unknown
    code counts as not known yet)."""
    known = [c if c in WORST_FIRST else EXIT_UNKNOWN for c in codes]
    return min(known, key=WORST_FIRST.index) if known else EXIT_OK


def _seconds(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _check_one_import(reports: Sequence[Report]) -> dict[str, Any]:
    """The one import of ``reports``; a run stopped before it knew its import (it sent nothing)
    does not count against it."""
    known = [r for r in reports if (r.get("document_import") or {}).get("id") is not None]
    ids = {str(r["document_import"]["id"]) for r in known}
    if len(ids) != 1:
        raise UsageError(
            f"these runs are not of one document import (imports: {', '.join(sorted(ids)) or 'none'}): "
            "merge only the shards of one plan, or of one import"
        )
    runs = [r["run_id"] for r in reports]
    twice = sorted({r for r in runs if runs.count(r) > 1})
    if twice:
        raise UsageError(f"a run is given twice: {', '.join(twice)}")
    return dict(known[0]["document_import"])


def _summed_records(reports: Sequence[Report]) -> RecordCounts:
    records: list[dict[str, int]] = [dict(r["records"]) for r in reports]  # type: ignore[arg-type]
    total = {k: sum(int(c.get(k) or 0) for c in records) for k in RecordCounts.__annotations__}
    return total  # type: ignore[return-value]  # every key of RecordCounts, each an int


def _shift(report: Report, throughput: Throughput, t0: float) -> float:
    """Where a shard's timeline starts on the merged clock: it ends when the run finished (a
    resumed run's timeline is its last session's, which started long after the run did)."""
    finished, timeline = _seconds(report.get("finished_at")), throughput["timeline"]
    if finished is not None and timeline:
        return max(0.0, finished - t0 - timeline[-1][0])
    return (_seconds(report.get("started_at")) or t0) - t0


def _merged_throughput(reports: Sequence[Report], t0: float) -> Throughput | None:
    """The shards' timelines on one clock (each shifted by its start after ``t0``), summed: at each
    sample, every shard's last limit, uploads in flight and bytes sent added up."""
    shards = [(th, _shift(r, th, t0)) for r in reports if (th := r.get("throughput"))]
    if not shards:
        return None
    events = sorted((t + shift, i, row) for i, (th, shift) in enumerate(shards) if th for t, *row in th["timeline"])
    current = [[0.0, 0.0, 0.0] for _ in shards]
    timeline: list[list[float]] = []
    for t, i, row in events:
        current[i] = [float(v) for v in row]
        timeline.append([round(t, 3), *(sum(c[k] for c in current) for k in range(3))])
    if len(timeline) > TIMELINE_POINTS_MAX:
        every = -(-len(timeline) // TIMELINE_POINTS_MAX)
        timeline = timeline[::every] + ([timeline[-1]] if (len(timeline) - 1) % every else [])
    ths = [th for th, _ in shards if th]
    sent = timeline[-1][3] if timeline else 0.0
    first = next((t for t, _, flying, _ in timeline if flying > 0), None)
    rate = round(sent / (timeline[-1][0] - first) / 1e6, 3) if first is not None and timeline[-1][0] > first else None
    return {
        "max_concurrency": sum(th["max_concurrency"] for th in ths),
        "adaptive": any(th["adaptive"] for th in ths),
        "timeline": timeline,
        # the samples may miss a peak: at least the busiest shard's own
        "peak_in_flight": int(max([row[2] for row in timeline] + [th["peak_in_flight"] for th in ths])),
        "throttled": sum(th["throttled"] for th in ths),
        "pauses": sum(th["pauses"] for th in ths),
        "upload_mb_s": rate if sent else None,
        "poll_requests": sum(th["poll_requests"] for th in ths),
        "poll_listings": sum(th["poll_listings"] for th in ths),
    }


def _merged_budget(reports: Sequence[Report]) -> ErrorBudgetEntry:
    """Each shard's budget is its own (a percentage: of its records): the whole is within it when
    every shard is; the counts are summed."""
    budgets = [b for r in reports if (b := r.get("error_budget"))]
    return {
        "max_errors": budgets[0]["max_errors"] if budgets else "0",
        "allowed": sum(b["allowed"] for b in budgets),
        "errors": sum(b["errors"] for b in budgets),
        "within": all(b["within"] for b in budgets),
    }


def _shard_entry(report: Report) -> ShardEntry:
    return {
        "run_id": report["run_id"],
        "run_dir": report.get("run_dir"),
        "outcome": report["outcome"],
        "exit_code": report["exit_code"],
        "records": report["records"],
        "batches": report["batches"],
        "rejects_path": report.get("rejects_path"),
        "resume_command": report.get("resume_command"),
    }


def merged_run_id(reports: Sequence[Report]) -> str:
    """The plan's id when every run is a shard of one plan (``<plan id>-shard<K>``), else a name."""
    plans = {r["run_id"].rpartition("-shard")[0] for r in reports}
    if len(plans) == 1 and (plan := plans.pop()):
        return f"{plan}-merged"
    return f"merge-of-{len(reports)}-runs"


def merge_reports(reports: Sequence[Report], *, run_id: str, run_dir: str | None) -> Report:
    """One report of ``reports`` (the shards of one import); ``UsageError`` if they are not."""
    if not reports:
        raise UsageError("nothing to merge: give the run directories of the shards")
    document_import = _check_one_import(reports)
    exit_code = worst_exit_code([r["exit_code"] for r in reports])
    worst = next((r for r in reports if r["exit_code"] == exit_code), None)
    outcome = worst["outcome"] if worst is not None else "incomplete"  # a code of no known outcome
    starts = [t for r in reports if (t := _seconds(r.get("started_at"))) is not None]
    ends = [_seconds(r.get("finished_at")) for r in reports]
    t0 = min(starts) if starts else None
    t_end = max(e for e in ends if e is not None) if all(e is not None for e in ends) and ends else None
    rejects: dict[str, int] = {}
    for r in reports:
        for reason, n in (r.get("rejects_by_reason") or {}).items():
            rejects[reason] = rejects.get(reason, 0) + n
    merged: Report = {
        "run_id": run_id,
        "outcome": outcome,
        "exit_code": exit_code,
        "started_at": iso(t0),
        "finished_at": iso(t_end),
        "duration_s": round(t_end - t0, 3) if t0 is not None and t_end is not None else None,
        "target": next((r["target"] for r in reports if r.get("target")), ""),
        "emulator": any(r.get("emulator") for r in reports),
        "run_dir": run_dir,
        "document_import": document_import,
        "inputs": [i for r in reports for i in r["inputs"]],
        "records": _summed_records(reports),
        "batches": sum(r["batches"] for r in reports),
        "executions": [x for r in reports for x in r["executions"]],
        "not_delivered": [x for r in reports for x in r["not_delivered"]],
        "duplicates": [x for r in reports for x in r["duplicates"]],
        "unsettled": [x for r in reports for x in r["unsettled"]],
        "rejects_path": None,  # one per shard: ``shards[].rejects_path``
        "rejects_by_reason": rejects,
        "rejects_sample": [s for r in reports for s in r.get("rejects_sample") or []][:REJECTS_SAMPLE_MAX],
        "warnings": [f"{r['run_id']}: {w}" for r in reports for w in r.get("warnings") or []],
        "throughput": _merged_throughput(reports, t0) if t0 is not None else None,
        "shards": [_shard_entry(r) for r in reports],
        "config_origin": None,  # one per shard
        "skipped_inputs": [x for r in reports for x in r.get("skipped_inputs") or []],
        "skipped_files": [x for r in reports for x in r.get("skipped_files") or []],
        "error_budget": _merged_budget(reports),
        "final_error": next((r["final_error"] for r in reports if r.get("final_error")), None),
    }
    resumes = [r["resume_command"] for r in reports if r.get("resume_command")]
    if resumes:
        merged["resume_command"] = " && ".join(resumes)
    return merged
