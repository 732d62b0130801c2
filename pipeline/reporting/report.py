"""The run report: built from the run state (pure functions); written by ``atomic_json``, summarised by ``summary``.

Outcomes and exit codes:

==========================  ====  ==========================================================
outcome                     exit  meaning
==========================  ====  ==========================================================
``succeeded``               0     every record read was accepted by the platform
``completed_with_failures`` 1     finished, but records were rejected (client side or by the
                                  server) or an execution ended FAILED/CANCELED/LOST
``interrupted``             3     stopped before the end (Ctrl-C, SIGTERM): resume it
``incomplete``              3     executions still running at the poll timeout, uploads
                                  whose fate is unknown, batches not sent yet (an outage that
                                  outlasted ``upload.retry_window_s``), or the run stopped on
                                  an error (a refused token, a changed input, a full disk):
                                  nothing is called failed that may still succeed; resume it
``completed_with_duplicates`` 4   finished, but some records are (or, where the server gives
                                  no way to know, may be) on the server twice: the report's
                                  ``duplicates`` lists each by file and lines
``completed_with_unknowns``   4   finished, but whether some uploads created their execution
                                  no lookup of this server can tell (no file names, a list
                                  that cannot be walked to its end): ``unsettled`` lists them
                                  (``final``) to be checked by hand; a resume would loop
``too_many_errors``         1     the rejects were over the error budget (``batch.max_errors``)
                                  while reading: the run stopped sending new batches
``stopped_on_error``        1     an error no retry or resume fixes (403, 404 on the import)
                                  after some batches were accepted: ``final_error`` says why
``nothing_sent``            2     the same before anything was sent (a refused token, an
                                  unknown import or datamart, a 400 on the import's creation)
==========================  ====  ==========================================================
Records rejected (client side) plus refused (the executions' ``total_failure``) within the error
budget end ``succeeded`` (exit 0) with a warning. (Other usage and config errors, exit 2, are
decided before a run starts: see ``cli``.)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.engine.budget import NO_BUDGET, ErrorBudget
from pipeline.engine.state import UPLOAD_FAILED, UPLOADED, UPLOADING, BatchState, RunState
from pipeline.reporting.command import resume_command
from pipeline.reporting.exit_codes import EXIT_DUPLICATES, EXIT_FAILURES, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE
from pipeline.reporting.outcomes import Outcome
from pipeline.reporting.refused import refused_section
from pipeline.reporting.report_warnings import warnings_of
from pipeline.reporting.types import (
    ConfigOrigin,
    DuplicateEntry,
    ErrorBudgetEntry,
    ExecutionEntry,
    InputEntry,
    NotDeliveredEntry,
    RecordCounts,
    Report,
    RetryOf,
    SkippedFileEntry,
    SkippedInputEntry,
    UnsettledEntry,
)


def iso(ts: float | None) -> str | None:
    """``ts`` (epoch seconds) as ISO 8601 UTC to the millisecond, as ``datetime.isoformat`` writes it
    (microseconds rounded half to even, then cut to milliseconds); a report writes 6 per batch, so the
    date and time to the second is formatted once per second."""
    if ts is None:
        return None
    if not 0 <= ts < math.inf:  # before 1970, NaN, infinite: as datetime says (or raises)
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    whole = math.floor(ts)
    micros = round((ts - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_to_the_second(whole)}.{micros // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _to_the_second(whole: int) -> str:
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _delivered(batch: BatchState) -> bool:
    return formats.is_success(batch.status)


def _unsettled(batch: BatchState) -> bool:
    """Sent, but whether it created an execution is not known (yet)."""
    return batch.upload != UPLOADED and (batch.ambiguous or batch.upload == UPLOADING)


def _failed_whole(batch: BatchState) -> bool:
    """The batch's records did not get in at all: refused upload or a failed execution."""
    if batch.upload == UPLOAD_FAILED:
        return not batch.ambiguous
    return formats.is_terminal(batch.status) and not formats.is_success(batch.status)


def record_counts(state: RunState) -> RecordCounts:
    """The run's records by what became of them: one pass over the batches."""
    read = rejected = 0
    for f in state.files.values():
        read += f.records + f.rejected
        rejected += f.rejected
    batch_records = sent = succeeded = failed_by_server = not_delivered = 0
    pending = unsettled = unsent = duplicated = maybe_duplicated = 0
    for b in state.batches.values():
        records = b.records
        batch_records += records
        uploaded = b.upload == UPLOADED
        if uploaded:
            sent += records
        terminal = formats.is_terminal(b.status)
        success = terminal and formats.is_success(b.status)
        if success:
            succeeded += b.total_success or 0
            failed_by_server += b.total_failure or 0
        if b.upload == UPLOAD_FAILED:
            failed_whole = not b.ambiguous
        else:
            failed_whole = terminal and not success
        if failed_whole:
            not_delivered += records
        done = (b.upload == UPLOAD_FAILED and not b.ambiguous) or terminal
        is_unsettled = not uploaded and (b.ambiguous or b.upload == UPLOADING)
        if is_unsettled:
            unsettled += records
        if not done:
            if uploaded:
                pending += records
            elif not is_unsettled:
                unsent += records
        if b.duplicates:
            duplicated += records
        elif b.possible_duplicate:
            maybe_duplicated += records
    return {
        # the files' counts come when reading finishes; before that (a run stopped early), the batches'
        "read": read or batch_records,
        "rejected": rejected,
        "sent": sent,
        "succeeded": succeeded,
        "failed": failed_by_server + not_delivered,
        "not_delivered": not_delivered,
        "pending": pending,
        "unsent": unsent,
        "unsettled": unsettled,
        "duplicated": duplicated,
        "possibly_duplicated": maybe_duplicated,
    }


def errors_of(counts: RecordCounts) -> int:
    """The records the error budget counts: rejected (client side) plus refused by the server."""
    return counts["rejected"] + counts["failed"] - counts["not_delivered"]


def outcome_of(state: RunState, counts: RecordCounts | None = None, budget: ErrorBudget = NO_BUDGET) -> tuple[str, int]:
    counts = counts if counts is not None else record_counts(state)
    if state.final_error:  # no retry or resume fixes it: exit 1 once batches were accepted, else 2
        if counts["sent"]:
            return Outcome.STOPPED_ON_ERROR, EXIT_FAILURES
        return Outcome.NOTHING_SENT, EXIT_USAGE
    if state.failure:
        return Outcome.INCOMPLETE, EXIT_UNKNOWN
    if state.interrupted:
        return Outcome.INTERRUPTED, EXIT_UNKNOWN
    if state.too_many_errors and not (counts["pending"] or counts["unsettled"]):
        return Outcome.TOO_MANY_ERRORS, EXIT_FAILURES
    if counts["pending"] or counts["unsent"] or not state.reading_done:
        return Outcome.INCOMPLETE, EXIT_UNKNOWN
    unsettled = [b for b in state.batches.values() if _unsettled(b)] if counts["unsettled"] else []
    if any(b.unknowable is None for b in unsettled):  # a resume may still settle them
        return Outcome.INCOMPLETE, EXIT_UNKNOWN
    if state.duplicated():
        return Outcome.COMPLETED_WITH_DUPLICATES, EXIT_DUPLICATES
    if unsettled:  # no lookup of this server can: a resume would only ask again (exit 3 in a loop)
        return Outcome.COMPLETED_WITH_UNKNOWNS, EXIT_DUPLICATES
    if counts["not_delivered"] or state.read_error or any(f.skipped for f in state.files.values()):
        return Outcome.COMPLETED_WITH_FAILURES, EXIT_FAILURES  # not records: never within a budget
    errors = errors_of(counts)
    if errors and not budget.within(errors, counts["read"]):
        return Outcome.COMPLETED_WITH_FAILURES, EXIT_FAILURES
    return Outcome.SUCCEEDED, EXIT_OK


def budget_entry(counts: RecordCounts, budget: ErrorBudget) -> ErrorBudgetEntry:
    errors = errors_of(counts)
    allowed = budget.allowed(counts["read"])
    return {"max_errors": budget.spec, "allowed": allowed, "errors": errors, "within": errors <= allowed}


def skipped_files(state: RunState) -> list[SkippedFileEntry]:
    return [{"path": f.path, "bytes": f.size, "reason": f.skipped} for f in state.files.values() if f.skipped]


def _execution_entry(b: BatchState) -> ExecutionEntry:
    return {
        "id": b.execution_id,
        "batch": b.number,
        "filename": b.filename,
        "source": {
            "path": b.path,
            "first_line": b.first_line,
            "last_line": b.last_line,
            "line_count": b.records,
            "byte_start": b.byte_start,
            "byte_end": b.byte_end,
        },
        "bytes": b.size,
        "digest": b.digest,
        "upload": b.upload,
        "status": b.status,
        "total_success": b.total_success,
        "total_failure": b.total_failure,
        "error_file_uri": b.error_file_uri,
        "error": b.error,
        "error_id": b.error_id,
        "attempts": b.attempts,
        "recovered": b.recovered,
        "ambiguous": b.ambiguous,
        "possible_duplicate": b.possible_duplicate,
        "resent": b.resent,
        "duplicates": b.duplicates,
        "canceled_duplicates": b.canceled_duplicates,
        "read_at": iso(b.read_at),
        "upload_started_at": iso(b.upload_started_at),
        "uploaded_at": iso(b.uploaded_at),
        "started_at": iso(b.started_at),
        "finished_at": iso(b.finished_at),
        "polled_at": iso(b.polled_at),
    }


def _config_origin(journaled: dict[str, Any] | None) -> ConfigOrigin | None:
    if not journaled:
        return None
    return {
        "file": journaled.get("file"),
        "found_as": journaled.get("found_as"),
        "set_by": dict(journaled.get("set_by") or {}),
    }


def _inputs(state: RunState) -> list[InputEntry]:
    return [
        {"path": f.path, "bytes": f.bytes, "records": f.records, "rejected": f.rejected, "blank_lines": f.blank_lines}
        for f in state.files.values()
    ]


def _skipped_inputs(state: RunState) -> list[SkippedInputEntry]:
    return [{"path": s["path"], "reason": s["reason"], "message": s["message"]} for s in state.skipped_inputs]


def _not_delivered(batches: list[BatchState]) -> list[NotDeliveredEntry]:
    """The batches whose records did not get in at all (a refused upload or a failed execution)."""
    return [
        {
            "batch": b.number,
            "path": b.path,
            "first_line": b.first_line,
            "last_line": b.last_line,
            "records": b.records,
            "reason": b.error or b.status,
        }
        for b in batches
        if _failed_whole(b)
    ]


def _duplicates(batches: list[BatchState]) -> list[DuplicateEntry]:
    """The batches whose records are (``certain``) or may be on the server twice."""
    return [
        {
            "batch": b.number,
            "path": b.path,
            "first_line": b.first_line,
            "last_line": b.last_line,
            "records": b.records,
            "execution_id": b.execution_id,
            "duplicate_execution_ids": b.duplicates,
            "certain": bool(b.duplicates),
        }
        for b in batches
        if b.duplicates or b.possible_duplicate
    ]


def _unsettled_batches(batches: list[BatchState]) -> list[UnsettledEntry]:
    """The batches sent whose execution is not known (yet): what ``resume`` looks up by name."""
    return [
        {
            "batch": b.number,
            "path": b.path,
            "first_line": b.first_line,
            "last_line": b.last_line,
            "records": b.records,
            "filename": b.filename,
            "reason": b.unknowable or b.error,
            "final": b.unknowable is not None,
        }
        for b in batches
        if _unsettled(b)
    ]


def _add_optional_sections(
    report: Report, state: RunState, run_dir: Path | None, resumable: bool, retry_of: RetryOf | None
) -> None:
    """The sections only some reports have: how to resume, the refused records, the run retried, the platform."""
    if (report["exit_code"] == EXIT_UNKNOWN or report["outcome"] == Outcome.TOO_MANY_ERRORS) and resumable and run_dir:
        report["resume_command"] = resume_command(run_dir)
    refused = refused_section(run_dir) if run_dir else None
    if refused is not None:
        report["refused"] = refused
    if retry_of is not None:  # ``pipeline retry``: the run this one sent again the failures of
        report["retry_of"] = retry_of
    if state.platform_profile is not None or state.plan_learned is not None:
        report["platform"] = {"profile": state.platform_profile, "plan": state.plan_learned}


def build_report(
    state: RunState,
    *,
    rejects_path: Path | None,
    run_dir: Path | None,
    resumable: bool = True,
    emulator: bool = False,
    retry_of: RetryOf | None = None,
    budget: ErrorBudget = NO_BUDGET,
) -> Report:
    """The report as a JSON-ready dict. Never holds the token: the state does not have it.

    ``resume_command`` is there when the outcome is not known yet and the run can be resumed.
    """
    counts = record_counts(state)
    outcome, exit_code = outcome_of(state, counts, budget)
    error_budget = budget_entry(counts, budget)
    finished = state.finished_at
    duration = max(0.0, finished - state.started_at) if finished else None  # a wall-clock step: not < 0
    batches = sorted(state.batches.values(), key=lambda b: b.number)
    report: Report = {
        "run_id": state.run_id,
        "outcome": outcome,
        "exit_code": exit_code,
        "started_at": iso(state.started_at),
        "finished_at": iso(finished),
        "duration_s": round(duration, 3) if duration is not None else None,
        "target": state.target,
        "emulator": emulator,  # the embedded emulator: nothing was imported into mediarithmics
        "run_dir": str(run_dir) if run_dir else None,
        "config_origin": _config_origin(state.config_origin),
        "document_import": state.document_import,
        "inputs": _inputs(state),
        "skipped_inputs": _skipped_inputs(state),
        "records": counts,
        "batches": len(batches),
        "executions": [_execution_entry(b) for b in batches],
        "not_delivered": _not_delivered(batches),
        "duplicates": _duplicates(batches),
        "unsettled": _unsettled_batches(batches),
        "skipped_files": skipped_files(state),
        "error_budget": error_budget,
        "final_error": state.final_error,
        "rejects_path": str(rejects_path) if rejects_path else None,
        "rejects_by_reason": dict(state.rejects_by_reason),
        "rejects_sample": state.rejects_sample,
        "warnings": warnings_of(state, batches, error_budget, outcome),
        "throughput": state.throughput,
    }
    _add_optional_sections(report, state, run_dir, resumable, retry_of)
    return report
