"""What a run knows about its batches and executions, and how it is rebuilt from the journal.

``RunState`` is plain data, updated by the upload pool and the poller, read by the report. The same
state is rebuilt by ``replay`` from a journal, which is how ``resume`` and ``status`` learn what a
stopped run had done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pipeline import formats
from pipeline.client.redact import safe_text
from pipeline.engine.events import JournalKind

if TYPE_CHECKING:
    from pipeline.reading.platform_model import LearnedBasis, ProfileJson
    from pipeline.reporting.types import FinalError, Throughput


class UploadState(StrEnum):
    """Where a batch's upload is (its execution's status is the server's, in ``BatchState.status``)."""

    PLANNED = "planned"  # described by the reader, not sent (yet, or again: a resume sends it)
    UPLOADING = "uploading"  # upload started, no answer yet
    UPLOADED = "uploaded"  # the server created an execution: its id is known
    UPLOAD_FAILED = "upload_failed"  # refused for good; or, with ``ambiguous``, maybe created: settled by name


PLANNED, UPLOADING, UPLOADED, UPLOAD_FAILED = (
    UploadState.PLANNED,
    UploadState.UPLOADING,
    UploadState.UPLOADED,
    UploadState.UPLOAD_FAILED,
)


@dataclass(slots=True)
class BatchState:
    """One batch: where its records come from, and what became of its upload and execution.

    A run holds one per batch (20,000 in a run of 2 GB cut at 100 kB), so it is kept small: slots,
    the input's path and the statuses shared between batches (``sys.intern``), no copy of the
    server's execution objects (``apply_execution`` takes the few fields the report needs).
    """

    number: int
    path: str
    first_line: int
    last_line: int
    records: int
    byte_start: int
    byte_end: int
    size: int
    digest: str
    filename: str
    upload: UploadState = PLANNED
    attempts: int = 0
    execution_id: str | None = None
    status: str | None = None  # the execution's status
    total_success: int | None = None
    total_failure: int | None = None
    error_file_uri: str | None = None
    error: str | None = None  # why the upload or the execution failed
    error_id: str | None = None
    recovered: bool = False  # found in the execution list after an ambiguous failure
    ambiguous: bool = False  # the failed upload may have created an execution: look it up first
    possible_duplicate: bool = False  # sent again after its fate was unknown, not yet proven single
    unknowable: str | None = None  # why no lookup of this server can tell whether it was created
    resent: int = 0  # times sent again after a settle window ended without a sighting
    duplicates: list[str] = field(default_factory=list)  # other executions of the same file, not canceled
    canceled_duplicates: list[str] = field(default_factory=list)  # other executions canceled while PENDING
    read_at: float | None = None
    upload_started_at: float | None = None
    uploaded_at: float | None = None
    started_at: float | None = None  # server-side start (epoch seconds)
    finished_at: float | None = None
    polled_at: float | None = None  # when this client saw the execution's terminal status

    def __post_init__(self) -> None:
        if type(self.path) is str:
            self.path = sys.intern(self.path)  # one string for every batch of an input

    @property
    def done(self) -> bool:
        """Nothing more will happen to this batch in this run."""
        return (self.upload == UPLOAD_FAILED and not self.ambiguous) or formats.is_terminal(self.status)

    def describe(self) -> dict[str, Any]:
        """The batch description the journal keeps before its upload starts."""
        keys = ("number", "path", "first_line", "last_line", "records", "byte_start", "byte_end")
        return {k: getattr(self, k) for k in keys} | {
            "size": self.size,
            "digest": self.digest,
            "filename": self.filename,
        }


@dataclass
class FileCounts:
    path: str
    bytes: int = 0
    records: int = 0
    rejected: int = 0
    blank_lines: int = 0
    skipped: str | None = None  # why the whole file was skipped (binary, bad CSV header)
    size: int | None = None  # bytes on disk (known for a skipped file: the report gives it)


@dataclass
class RunState:
    run_id: str
    target: str = ""
    started_at: float = 0.0
    finished_at: float | None = None
    document_import: dict[str, Any] = field(default_factory=dict)
    batches: dict[int, BatchState] = field(default_factory=dict)
    files: dict[str, FileCounts] = field(default_factory=dict)
    reading_done: bool = False
    read_error: str | None = None  # reading stopped early: the rest of that input was not sent
    interrupted: bool = False
    failure: str | None = None  # the run stopped on an unexpected error (outcome unknown)
    #: the run stopped sending: the rejects were over the error budget (``engine.budget``)
    too_many_errors: str | None = None
    #: an error no retry or resume can fix (a refused right, an unknown import), with its fix
    final_error: FinalError | None = None
    finished_outcome: str | None = None  # the outcome the journal's last run_finished recorded
    poll_timed_out: bool = False
    warnings: list[str] = field(default_factory=list)
    #: entries of the input directories not taken: {"path", "reason", "message"} (journaled at the start)
    skipped_inputs: list[dict[str, str]] = field(default_factory=list)
    config_origin: dict[str, Any] | None = None  # where the settings came from (the CLI says; journaled)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    rejects_sample: list[dict[str, Any]] = field(default_factory=list)  # the first few, for people
    throughput: Throughput | None = None  # set by the run at its end (not journaled)
    #: the batch targets the reader draws from (``BatchSizes.describe()``), journaled before the
    #: first batch is read; ``None`` in a journal from before that event (``engine.stages`` plans it)
    batch_plan: dict[str, Any] | None = None
    #: the profile and the shape the plan was learned from (``reading.platform_model``), journaled with it
    plan_learned: LearnedBasis | None = None
    #: what this run learned of the platform (``engine.platform_profile``), set at its end (not journaled)
    platform_profile: ProfileJson | None = None

    def nothing_to_send(self) -> bool:
        """Reading was done and every batch has its execution: a resume only polls and checks (it
        needs no input: an input moved or deleted since is no obstacle)."""
        return (
            self.reading_done
            and not self.read_error
            and bool(self.batches)
            and all(b.upload == UPLOADED for b in self.batches.values())
        )

    def executions(self) -> list[BatchState]:
        return [b for b in self.batches.values() if b.execution_id]

    def duplicated(self) -> list[BatchState]:
        """Batches whose records are, or may be, on the server twice."""
        return [b for b in self.batches.values() if b.duplicates or b.possible_duplicate]


def apply_event(state: RunState, event: dict[str, Any]) -> None:
    """Fold one journal event into the state (the inverse of what the run journals); an event of
    no known kind changes nothing."""
    kind = event["event"]
    fold = _FOLDS.get(kind) if isinstance(kind, str) else None  # (a kind that is not a string: none)
    if fold is not None:
        fold(state, event)


def _run_started(state: RunState, event: dict[str, Any]) -> None:
    if "skipped_inputs" in event:
        state.skipped_inputs = event["skipped_inputs"]
    if event.get("config_origin"):
        state.config_origin = event["config_origin"]
    if not state.started_at:
        state.started_at = event.get("started_at", event["t"])
        state.target = event.get("target", "")


def _run_finished(state: RunState, event: dict[str, Any]) -> None:
    state.finished_outcome = event.get("outcome")
    state.finished_at = event["t"]
    state.too_many_errors = event.get("too_many_errors")
    state.final_error = event.get("final_error")
    if state.too_many_errors:  # it stopped reading early: a resume reads the rest
        state.reading_done = False


def _batch_plan(state: RunState, event: dict[str, Any]) -> None:
    if state.batch_plan is None:  # the first plan holds for the run
        state.batch_plan, state.plan_learned = event.get("plan"), event.get("learned")


def _import(state: RunState, event: dict[str, Any]) -> None:
    state.document_import = {k: event.get(k) for k in ("id", "name", "document_type", "mime_type")}


def _upload_started(state: RunState, event: dict[str, Any]) -> None:
    desc = event["batch"]
    batch = state.batches.get(desc["number"])
    if batch is None:
        batch = BatchState(**desc)
        state.batches[batch.number] = batch
    if batch.upload != UPLOADED:
        batch.upload = UPLOADING
        batch.upload_started_at = event["t"]
        batch.read_at = batch.read_at or event.get("read_at")


def _uploaded(state: RunState, event: dict[str, Any]) -> None:
    batch = state.batches[event["batch"]]
    batch.upload, batch.execution_id = UPLOADED, str(event["execution_id"])
    batch.attempts = event.get("attempts", batch.attempts)
    batch.recovered = event.get("recovered", False)
    batch.possible_duplicate = event.get("possible_duplicate", batch.possible_duplicate)
    batch.ambiguous, batch.error = False, None
    batch.uploaded_at = event["t"]


def _upload_failed(state: RunState, event: dict[str, Any]) -> None:
    batch = state.batches[event["batch"]]
    batch.upload, batch.error, batch.error_id = UPLOAD_FAILED, event.get("error"), event.get("error_id")
    batch.ambiguous = event.get("ambiguous", False)
    batch.attempts = event.get("attempts", batch.attempts)


def _execution_finished(state: RunState, event: dict[str, Any]) -> None:
    batch = state.batches[event["batch"]]
    apply_execution(batch, event["execution"])
    batch.polled_at = event["t"]


def _settled(state: RunState, event: dict[str, Any]) -> None:
    """Looked up by name and not found: the upload did not arrive."""
    batch = state.batches[event["batch"]]
    batch.ambiguous = False
    if batch.upload in (UPLOADING, UPLOAD_FAILED):
        batch.upload = PLANNED
    if event.get("resend"):
        batch.resent += 1
        batch.possible_duplicate = True


def _unknowable(state: RunState, event: dict[str, Any]) -> None:
    """No lookup of this server can tell whether the upload created its execution."""
    state.batches[event["batch"]].unknowable = str(event.get("reason") or "unknowable")


def _upload_postponed(state: RunState, event: dict[str, Any]) -> None:
    """A transient failure outlasted the retry window: still unsent."""
    batch = state.batches[event["batch"]]
    batch.upload, batch.error = PLANNED, event.get("error")
    batch.attempts = event.get("attempts", batch.attempts)


def _reconciled(state: RunState, event: dict[str, Any]) -> None:
    batch = state.batches[event["batch"]]
    batch.duplicates = list(event.get("duplicates", []))
    batch.canceled_duplicates = list(event.get("canceled", []))
    batch.possible_duplicate = bool(event.get("possible_duplicate", False))


def _reading_finished(state: RunState, event: dict[str, Any]) -> None:
    state.files = {f["path"]: FileCounts(**f) for f in event["files"]}
    state.rejects_by_reason = event.get("rejects_by_reason", {})
    state.rejects_sample = event.get("rejects_sample", [])
    state.warnings.extend(w for w in event.get("warnings", []) if w not in state.warnings)
    state.read_error = event.get("read_error")
    state.reading_done = True


#: how each kind of journal event folds into the state (``apply_event``)
_FOLDS: dict[str, Callable[[RunState, dict[str, Any]], None]] = {
    JournalKind.RUN_STARTED: _run_started,
    JournalKind.RUN_FINISHED: _run_finished,
    JournalKind.BATCH_PLAN: _batch_plan,
    JournalKind.IMPORT: _import,
    JournalKind.UPLOAD_STARTED: _upload_started,
    JournalKind.UPLOADED: _uploaded,
    JournalKind.UPLOAD_FAILED: _upload_failed,
    JournalKind.EXECUTION_FINISHED: _execution_finished,
    JournalKind.SETTLED: _settled,
    JournalKind.UNKNOWABLE: _unknowable,
    JournalKind.UPLOAD_POSTPONED: _upload_postponed,
    JournalKind.RECONCILED: _reconciled,
    JournalKind.READING_FINISHED: _reading_finished,
}


def shared_status(status: Any) -> Any:
    """A status string as one shared object (20,000 batches hold a handful of distinct statuses)."""
    return sys.intern(status) if type(status) is str else status


def apply_execution(batch: BatchState, execution: dict[str, Any]) -> None:
    """Copy what matters of a server execution object onto its batch."""
    batch.status = shared_status(execution.get("status"))
    result = execution.get("result") or {}
    batch.total_success = result.get("total_success")
    batch.total_failure = result.get("total_failure")
    batch.error_file_uri = result.get("error_file_uri")
    error = execution.get("error")
    if isinstance(error, dict) and error.get("message"):
        batch.error = safe_text(str(error["message"]))[:2000]  # a server string: no terminal escapes
    for attr, key in (("started_at", "start_date"), ("finished_at", "end_date")):
        value = execution.get(key)
        if isinstance(value, int | float):
            setattr(batch, attr, value / 1000.0)


def execution_summary(execution: dict[str, Any]) -> dict[str, Any]:
    """The part of an execution object worth journaling (not the whole server object)."""
    result = execution.get("result") or {}
    keep = ("total_success", "total_failure", "error_file_uri")
    return {
        "id": execution.get("id"),
        "status": execution.get("status"),
        "start_date": execution.get("start_date"),
        "end_date": execution.get("end_date"),
        "result": {k: result.get(k) for k in keep},
        "error": execution.get("error"),
    }


def replay(run_id: str, events: Iterable[dict[str, Any]]) -> RunState:
    state = RunState(run_id=run_id)
    for event in events:
        apply_event(state, event)
    return state
