"""The run's bookkeeping: every step is applied to the run state, journaled (fsynced) and emitted.

``Recorder`` is the one place that writes the journal. The upload pool calls it as its
``UploadListener``, the poller as its status callback, the runner for the start, the import and the
end of reading. Each step is journaled before the step that depends on it can start (a batch is
journaled before its first byte is sent; an execution id as soon as it is known), which is what
lets ``resume`` rebuild the run after any kind of stop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.client.multipart import UploadResult, UploadUnsettled
from pipeline.config import Config
from pipeline.engine.events import Event, EventSink, JournalKind
from pipeline.engine.journal import Journal
from pipeline.engine.rundir import RejectsFile
from pipeline.engine.state import (
    PLANNED,
    UPLOAD_FAILED,
    UPLOADED,
    UPLOADING,
    BatchState,
    FileCounts,
    RunState,
    apply_execution,
    execution_summary,
    shared_status,
)
from pipeline.errors import ServiceError
from pipeline.reading.batch import Batch, FileStats
from pipeline.reading.inputs import fingerprint as input_fingerprint
from pipeline.reading.platform_model import LearnedBasis, told_fields
from pipeline.reading.sizing import PlanDescription
from pipeline.reading.sources import Input
from pipeline.reporting.report import iso
from pipeline.reporting.types import Report


class Recorder:
    """Applies each step of a run to ``state``, the ``journal`` and the event sink."""

    def __init__(self, state: RunState, journal: Journal, config: Config, on_event: EventSink | None) -> None:
        self.state, self.journal, self.config = state, journal, config
        self._on_event = on_event
        #: set to the poller's: (execution id, batch number, answer=the upload's answer, when there is one)
        self.track: Callable[..., None] = lambda execution_id, key, answer=None: None
        # told every clear upload answer (the settler learns whether the server echoes file names)
        self.saw_answer: Callable[[str, dict[str, Any]], None] = lambda filename, execution: None
        self._told: set[str] = set()  # warnings told to the listeners already

    def emit(self, event: str, **fields: Any) -> None:
        if self._on_event:
            self._on_event(event, fields)

    def warn(self, message: str) -> None:
        """A warning of the run: kept in the state (the report's ``warnings``) and told now, once."""
        if message not in self.state.warnings:
            self.state.warnings.append(message)
        self._tell_warnings()

    def _tell_warnings(self) -> None:
        """Every warning of the state not told yet (those of a resumed journal, of the reading)."""
        for warning in self.state.warnings:
            if warning not in self._told:
                self._told.add(warning)
                self.emit(Event.WARNING, message=warning)

    # --- start ---------------------------------------------------------------------------------

    def run_started(self, base_url: str, inputs: Sequence[Input], resumed: bool) -> list[dict[str, Any]]:
        """Journal the start; returns the inputs' fingerprints (``reading.inputs.fingerprint``)."""
        if not self.state.started_at:
            self.state.started_at = time.time()
        self.state.target = base_url
        fingerprints = [fingerprint(p) for p in inputs]
        self.journal.append(
            JournalKind.RUN_STARTED,
            run_id=self.state.run_id,
            started_at=self.state.started_at,
            resumed=resumed,
            target=base_url,
            config=self.config.to_dict(),
            inputs=fingerprints,
            skipped_inputs=self.state.skipped_inputs,
            config_origin=self.state.config_origin,
            pid=os.getpid(),
        )
        if not resumed:  # each entry of the input directories not taken, told once
            for skipped in self.state.skipped_inputs:
                self.emit(Event.INPUT_SKIPPED, **skipped)
        self.emit(
            Event.RUN_STARTED,
            run_id=self.state.run_id,
            started_at=iso(self.state.started_at),
            target=base_url,
            resumed=resumed,
            inputs=fingerprints,
        )
        return fingerprints

    def import_ready(self, document_import: dict[str, Any]) -> None:
        keep = ("id", "name", "document_type", "mime_type")
        self.state.document_import = {k: document_import.get(k) for k in keep} | {"id": str(document_import["id"])}
        self.journal.append(JournalKind.IMPORT, **self.state.document_import)
        self.emit(Event.IMPORT_READY, **self.state.document_import)

    # --- reading -------------------------------------------------------------------------------

    def filename(self, batch: Batch) -> str:
        """The upload's file name: the run and the batch, so a lost answer can be looked up."""
        ext = ".csv" if self.config.import_.mime_type == formats.CSV else ".ndjson"
        return f"{self.state.run_id}-{batch.number:06d}{ext}"

    def _batch_state(self, batch: Batch) -> BatchState:
        known = self.state.batches.get(batch.number)
        if known is not None:
            return known
        state = BatchState(
            number=batch.number,
            path=str(batch.source),
            first_line=batch.first_line,
            last_line=batch.last_line,
            records=batch.records,
            byte_start=batch.byte_start,
            byte_end=batch.byte_end,
            size=batch.size,
            digest=batch.digest,
            filename=self.filename(batch),
        )
        self.state.batches[batch.number] = state
        return state

    def batch_plan(self, plan: PlanDescription, learned: LearnedBasis | None = None) -> None:
        """Journal the batch targets before the first batch is read (a resume draws from these),
        with the profile they were learned from, if they were (``reading.platform_model``)."""
        self.state.batch_plan = dict(plan)
        self.state.plan_learned = learned
        self.journal.append(JournalKind.BATCH_PLAN, plan=plan, **({"learned": learned} if learned else {}))
        if learned is not None:
            self.emit(Event.BATCH_PLAN, **told_fields(learned))

    def batch_read(self, batch: Batch) -> None:
        self._batch_state(batch).read_at = time.time()
        self.emit(Event.BATCH_READ, batch=batch.number, records=batch.records, bytes=batch.size)

    def batch_skipped(self, batch: Batch) -> None:
        """A resumed run met a batch that already has an execution."""
        self.emit(Event.BATCH_SKIPPED, batch=batch.number, records=batch.records, bytes=batch.size)

    def read_failed(self, error: Exception) -> None:
        self.state.read_error = str(error)
        self.emit(Event.READ_FAILED, error=str(error))

    def reading_finished(self, stats: Mapping[Input, FileStats], rejects: RejectsFile) -> None:
        state = self.state
        state.files = {
            str(p): FileCounts(
                str(p), s.bytes, s.records, s.rejected, s.blank_lines, s.skipped, _size(p) if s.skipped else None
            )
            for p, s in stats.items()
        }
        state.reading_done = True
        state.rejects_by_reason = dict(rejects.by_reason)
        state.rejects_sample = list(rejects.sample)
        # the run's own warnings so far (a changed input on resume, a throttling) stay
        state.warnings.extend(w for w in file_warnings(stats) if w not in state.warnings)
        unread = unread_inputs(stats)
        if unread and not state.read_error:
            state.read_error = "; ".join(unread)
        stopped = f"reading stopped: {state.read_error}"
        if state.read_error and not unread and stopped not in state.warnings:
            state.warnings.append(stopped)
        files = [vars(f) for f in state.files.values()]
        self.journal.append(
            JournalKind.READING_FINISHED,
            files=files,
            rejects_by_reason=state.rejects_by_reason,
            rejects_sample=state.rejects_sample,
            warnings=state.warnings,
            read_error=state.read_error,
        )
        self._tell_warnings()
        self.emit(Event.READING_FINISHED, files=files, rejects_sample=state.rejects_sample)

    # --- UploadListener ------------------------------------------------------------------------

    def upload_started(self, batch: Batch) -> None:
        state = self._batch_state(batch)
        state.upload, state.upload_started_at = UPLOADING, time.time()
        self.journal.append(JournalKind.UPLOAD_STARTED, batch=state.describe(), read_at=state.read_at)
        self.emit(Event.UPLOAD_STARTED, batch=batch.number, bytes=batch.size)

    def uploaded(self, batch: Batch, result: UploadResult) -> None:
        state = self.state.batches[batch.number]
        state.attempts += result.attempts
        state.status = shared_status(formats.normalize_status(result.execution.get("status")))
        execution_id = self._execution_known(state, result.execution, recovered=False)
        self.saw_answer(state.filename, result.execution)
        self.track(execution_id, batch.number, answer=result.execution)
        self.emit(
            Event.BATCH_UPLOADED,
            batch=batch.number,
            execution_id=state.execution_id,
            records=batch.records,
            bytes=batch.size,
            attempts=result.attempts,
        )

    def upload_failed(self, batch: Batch, error: ServiceError) -> None:
        """Refused for good: no execution was created (a 4xx about this batch)."""
        self._upload_failed(self.state.batches[batch.number], error, ambiguous=False)

    def upload_unsettled(self, batch: Batch, error: UploadUnsettled) -> None:
        """The attempt may have created the execution: journaled as an ambiguous failure (what the
        journal of earlier versions also wrote), then settled by name."""
        self._upload_failed(self.state.batches[batch.number], error, ambiguous=True)

    def _upload_failed(self, state: BatchState, error: ServiceError, *, ambiguous: bool) -> None:
        state.upload, state.error = UPLOAD_FAILED, str(error)
        cause = getattr(error, "cause", error)
        state.error_id = getattr(cause, "error_id", None)
        state.attempts += getattr(error, "attempts", 1) or 1
        state.ambiguous = ambiguous
        self.journal.append(
            JournalKind.UPLOAD_FAILED,
            batch=state.number,
            error=state.error,
            error_id=state.error_id,
            attempts=state.attempts,
            ambiguous=state.ambiguous,
        )
        self.emit(Event.UPLOAD_UNSETTLED if ambiguous else Event.UPLOAD_FAILED, batch=state.number, error=state.error)

    def upload_postponed(self, batch: Batch, error: ServiceError) -> None:
        """Not sent: a transient failure outlasted the retry window, or the run stops. ``resume`` sends it."""
        state = self.state.batches[batch.number]
        state.upload, state.error = PLANNED, str(error)
        state.attempts += getattr(error, "attempts", 1) or 1
        self.journal.append(
            JournalKind.UPLOAD_POSTPONED, batch=state.number, error=state.error, attempts=state.attempts
        )
        self.emit(Event.UPLOAD_POSTPONED, batch=state.number, error=state.error)

    # --- settling ambiguous uploads ------------------------------------------------------------

    def found_by_name(self, batch: BatchState, execution: dict[str, Any]) -> str:
        """An upload whose answer was lost did create this execution (its id is returned)."""
        batch.status = shared_status(formats.normalize_status(execution.get("status")))
        execution_id = self._execution_known(batch, execution, recovered=True)
        self.emit(Event.UPLOAD_RECOVERED, batch=batch.number, execution_id=execution_id)
        return execution_id

    def _execution_known(self, batch: BatchState, execution: dict[str, Any], *, recovered: bool) -> str:
        """The batch's execution id is known: journal it before anything else depends on it."""
        execution_id = str(execution["id"])
        batch.upload, batch.execution_id, batch.recovered = UPLOADED, execution_id, recovered
        batch.ambiguous, batch.error = False, None
        batch.uploaded_at = time.time()
        self.journal.append(
            JournalKind.UPLOADED,
            batch=batch.number,
            execution_id=batch.execution_id,
            attempts=batch.attempts,
            recovered=recovered,
            possible_duplicate=batch.possible_duplicate,
        )
        return execution_id

    def not_found_by_name(self, batch: BatchState, *, resend: bool = False) -> None:
        """An upload whose answer was lost did not arrive (a settle window passed without a sighting).

        ``resend``: it is sent again now, marked as a possible duplicate until the reconciliation at
        the end of the run shows a single execution of its file."""
        batch.ambiguous = False
        if batch.upload in (UPLOADING, UPLOAD_FAILED):
            batch.upload = PLANNED
        if resend:
            batch.resent += 1
            batch.possible_duplicate = True
        self.journal.append(JournalKind.SETTLED, batch=batch.number, found=False, resend=resend)
        if resend:
            self.emit(Event.UPLOAD_RESENT, batch=batch.number, filename=batch.filename)

    def left_unsettled(self, batch: BatchState, reason: str, *, final: bool) -> None:
        """Whether the upload created an execution cannot be known: not sent again (resume, report).

        ``final``: no lookup of this server can ever tell (it does not report file names, its list
        cannot be walked to the end); journaled, so that the run ends ``completed_with_unknowns``
        (exit 4: check by hand) rather than ``incomplete`` (exit 3), which a scheduler would resume
        in a loop. A list that could not be read (an outage) is not final: resume asks again."""
        if final:
            batch.unknowable = reason
            self.journal.append(JournalKind.UNKNOWABLE, batch=batch.number, reason=reason)
        self.emit(Event.UPLOAD_UNKNOWABLE, batch=batch.number, filename=batch.filename, reason=reason, final=final)

    def reconciled(self, batch: BatchState, *, duplicates: list[str], canceled: list[str], certain: bool) -> None:
        """The end-of-run check of the import's executions by file name, for one batch."""
        batch.duplicates, batch.canceled_duplicates = duplicates, canceled
        batch.possible_duplicate = bool(duplicates) or (batch.possible_duplicate and not certain)
        self.journal.append(
            JournalKind.RECONCILED,
            batch=batch.number,
            duplicates=duplicates,
            canceled=canceled,
            possible_duplicate=batch.possible_duplicate,
        )
        if duplicates or canceled:
            self.emit(Event.DUPLICATES, batch=batch.number, duplicates=duplicates, canceled=canceled)

    def switch_execution(self, batch: BatchState, execution: dict[str, Any]) -> None:
        """The execution the run followed was a duplicate and was canceled: follow the kept one."""
        batch.status = shared_status(formats.normalize_status(execution.get("status")))
        self.track(self._execution_known(batch, execution, recovered=batch.recovered), batch.number)

    # --- executions ----------------------------------------------------------------------------

    def execution_status(self, number: int, execution: dict[str, Any]) -> None:
        state = self.state.batches[number]
        if execution.get("id") is not None and str(execution["id"]) != state.execution_id:
            return  # a duplicate the reconciliation canceled: the batch now follows another execution
        apply_execution(state, execution)
        self.emit(Event.EXECUTION_STATUS, batch=number, execution_id=state.execution_id, status=state.status)
        if formats.is_terminal(state.status):
            state.polled_at = time.time()
            self.journal.append(JournalKind.EXECUTION_FINISHED, batch=number, execution=execution_summary(execution))
            self.emit(
                Event.EXECUTION_FINISHED,
                batch=number,
                execution_id=state.execution_id,
                status=state.status,
                total_success=state.total_success,
                total_failure=state.total_failure,
                polled_at=iso(state.polled_at),
            )

    def run_finished(self, report: Report, summary: str, *, changed_input: str | None = None) -> None:
        """``changed_input``: the input whose change stopped the run (``imported_before`` refuses a
        new run of it, which would send again what this one delivered)."""
        stops = {  # why the run stopped early, for `status`, `resume` and the next run (only when it did)
            k: v
            for k, v in (
                ("too_many_errors", self.state.too_many_errors),
                ("final_error", self.state.final_error),
                ("changed_input", changed_input),
            )
            if v
        }
        self.journal.append(JournalKind.RUN_FINISHED, outcome=report["outcome"], exit_code=report["exit_code"], **stops)
        self.emit(
            Event.RUN_FINISHED,
            outcome=report["outcome"],
            exit_code=report["exit_code"],
            records=report["records"],
            summary=summary,
        )


def _size(source: Input) -> int | None:
    """An input's size on disk (a local file) or in its store (an object); None for stdin."""
    if not isinstance(source, Path):
        return getattr(source, "size", None)
    try:
        return source.stat().st_size
    except OSError:
        return None


def file_warnings(stats: Mapping[Input, FileStats]) -> list[str]:
    """What a person should know about the inputs: skipped files, files without a record."""
    warnings: list[str] = []
    for path, st in stats.items():
        warnings.extend(f"{path}: {note}" for note in getattr(st, "notes", ()))
        unread = getattr(st, "unread", None)
        if st.skipped:
            warnings.append(f"{path}: {st.skipped}")
        elif unread:
            warnings.append(f"{path}: {unread}")
        elif st.records == 0 and st.rejected == 0:
            warnings.append(f"{path}: no records in it (empty file)")
    return warnings


def unread_inputs(stats: Mapping[Input, FileStats]) -> list[str]:
    """Inputs whose end could not be read (a truncated ``.gz``): the run cannot call itself a success."""
    return [f"{path}: {st.unread}" for path, st in stats.items() if getattr(st, "unread", None)]


def fingerprint(path: Input) -> dict[str, Any]:
    """What resume compares to know an input did not change (size and mtime -1: the input is gone,
    which only a resume with nothing left to send accepts; an object: size, ETag, version id)."""
    return input_fingerprint(path)
