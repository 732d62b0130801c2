"""The report's warnings: what a person should know of a run that its outcome does not say.

Apart from ``report`` because each is a check of its own over the state (the server's counts against
the records sent, executions without counters, errors let through by the budget, a run with nothing
to send), told in a sentence; ``report.build_report`` only lists them, in this order, after the
warnings the run gave while it worked.
"""

from __future__ import annotations

from pipeline import formats
from pipeline.engine.state import BatchState, RunState
from pipeline.reporting.outcomes import Outcome
from pipeline.reporting.types import ErrorBudgetEntry


def warnings_of(state: RunState, batches: list[BatchState], budget: ErrorBudgetEntry, outcome: str) -> list[str]:
    """The run's own warnings, then each check's, then the error that stopped it (if any)."""
    return (
        state.warnings
        + count_mismatch_warning(batches)
        + no_counters_warning(batches)
        + budget_warning(budget, outcome)
        + no_import_warning(state)
        + ([f"the run stopped on an error: {state.failure}"] if state.failure else [])
    )


def budget_warning(entry: ErrorBudgetEntry, outcome: str) -> list[str]:
    """Errors let through by the budget are still told: a run within it exits 0."""
    if not entry["errors"] or outcome != Outcome.SUCCEEDED:
        return []
    return [
        f"{entry['errors']:,} records were rejected or refused, within the error budget (max_errors "
        f"{entry['max_errors']}: up to {entry['allowed']:,}): the run counts as succeeded; the rejects are in "
        "rejects.ndjson, the refused records in the executions' error files"
    ]


def no_import_warning(state: RunState) -> list[str]:
    """A run whose inputs held nothing to send created no document import (``engine/first_record``)."""
    if state.document_import.get("id") or not state.reading_done or state.batches or state.final_error:
        return []
    return [
        "the inputs hold no record to send (every record rejected, or every file skipped or empty): "
        "no document import was created, nothing was sent"
    ]


def count_mismatch_warning(batches: list[BatchState]) -> list[str]:
    """One warning when finished executions counted other than the records their batch sent.

    The server counts what it parsed: with ``[batch] validate = false`` blank lines are sent but
    not counted; a server (or the emulator's light mode) may also count lines, not CSV records.
    Either way an operator should see it rather than trust "sent" and "succeeded" to add up.
    """
    off = [
        (b, b.total_success + (b.total_failure or 0))
        for b in batches
        if formats.is_success(b.status)
        and b.total_success is not None
        and b.total_success + (b.total_failure or 0) != b.records
    ]
    if not off:
        return []
    sent = sum(b.records for b, _ in off)
    counted = sum(n for _, n in off)
    first, first_counted = off[0]
    return [
        f"the server counted {counted:,} records where {sent:,} were sent, in {len(off)} execution(s) "
        f"(first: batch {first.number}, {first.path} lines {first.first_line}-{first.last_line}: "
        f"{first_counted:,} counted, {first.records:,} sent). The server counts what it parsed: "
        "blank lines sent with [batch] validate = false are not counted; a server counting lines "
        "(the emulator's light mode) counts a CSV record whose quoted fields hold newlines as several"
    ]


def no_counters_warning(batches: list[BatchState]) -> list[str]:
    """A SUCCEEDED execution whose result holds no counters would read "succeeded 0": say so."""
    bare = [b for b in batches if formats.is_success(b.status) and b.total_success is None]
    if not bare:
        return []
    first = bare[0]
    return [
        f"{len(bare)} execution(s) ended {first.status} without result counters (first: batch {first.number}, "
        f"execution {first.execution_id}): their {sum(b.records for b in bare):,} records are not counted as "
        "succeeded or failed"
    ]
