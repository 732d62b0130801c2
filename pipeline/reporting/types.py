"""The run report's shape (``report.json``), as ``TypedDict``s: what ``build_report`` returns and
what the summary, the HTML page and the CLI read. Key order here is the order in the JSON file.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from pipeline.reading.platform_model import LearnedBasis, ProfileJson


class RecordCounts(TypedDict):
    """``records``: the run's records by what became of them."""

    read: int
    rejected: int
    sent: int
    succeeded: int
    failed: int
    not_delivered: int
    pending: int
    unsent: int
    unsettled: int
    duplicated: int
    possibly_duplicated: int


class InputEntry(TypedDict):
    """One input file (``inputs``)."""

    path: str
    bytes: int
    records: int
    rejected: int
    blank_lines: int


class SkippedInputEntry(TypedDict):
    """An entry of an input directory that was not taken (``skipped_inputs``), and why."""

    path: str
    reason: str  # reading.discover.SkipReason: extension, directory, not_ndjson, not_a_file
    message: str  # for people: "skipped: extension .txt"


class ConfigOrigin(TypedDict):
    """Where the run's settings came from (``config_origin``; null for a library run)."""

    file: str | None  # the config file read, if any
    found_as: str | None  # "given with --config", "found in the current directory", ...
    set_by: dict[str, str]  # key -> its file, variable (PIPELINE_...) or flag (--url); defaults not listed


class SourceSpan(TypedDict):
    """Where a batch's records come from (``executions[].source``)."""

    path: str
    first_line: int
    last_line: int
    line_count: int
    byte_start: int
    byte_end: int


class ExecutionEntry(TypedDict):
    """One batch and its execution (``executions``); times are ISO 8601 UTC or null."""

    id: str | None
    batch: int
    filename: str
    source: SourceSpan
    bytes: int
    digest: str
    upload: str
    status: str | None
    total_success: int | None
    total_failure: int | None
    error_file_uri: str | None
    error: str | None
    error_id: str | None
    attempts: int
    recovered: bool
    ambiguous: bool
    possible_duplicate: bool
    resent: int
    duplicates: list[str]
    canceled_duplicates: list[str]
    read_at: str | None
    upload_started_at: str | None
    uploaded_at: str | None
    started_at: str | None
    finished_at: str | None
    polled_at: str | None


class NotDeliveredEntry(TypedDict):
    """A batch whose records did not get in at all (``not_delivered``)."""

    batch: int
    path: str
    first_line: int
    last_line: int
    records: int
    reason: str | None


class DuplicateEntry(TypedDict):
    """A batch that is, or may be, on the server twice (``duplicates``)."""

    batch: int
    path: str
    first_line: int
    last_line: int
    records: int
    execution_id: str | None
    duplicate_execution_ids: list[str]
    certain: bool


class UnsettledEntry(TypedDict):
    """A batch sent without knowing whether it created an execution (``unsettled``)."""

    batch: int
    path: str
    first_line: int
    last_line: int
    records: int
    filename: str
    reason: str | None
    final: bool  # no lookup of this server can tell (check by hand); else ``resume`` looks it up again


class SkippedFileEntry(TypedDict):
    """An input skipped whole (``skipped_files``): binary, or a bad CSV header. Not a rejected record."""

    path: str
    bytes: int | None  # its size on disk
    reason: str | None


class ErrorBudgetEntry(TypedDict):
    """``error_budget``: the rejected plus refused records against ``batch.max_errors``."""

    max_errors: str  # as configured: "0", "10", "1%"
    allowed: int  # records in error the run may have (a percentage: of the records read)
    errors: int  # rejected + refused (the executions' total_failure)
    within: bool


class FinalError(TypedDict):
    """``final_error``: an error no retry or resume fixes (``engine/final_errors.py``)."""

    cause: str
    fix: str
    status: str  # the HTTP status, as text ("403")


class Throughput(TypedDict):
    """How the uploads went over time (the adaptive pool) and what polling cost; only in the report
    written by the run itself (``status`` rebuilds a report from the journal, which has none)."""

    max_concurrency: int  # upload.concurrency: the most uploads in flight
    adaptive: bool
    #: [seconds since the uploads started, limit of uploads in flight, uploads in flight, bytes sent]
    timeline: list[list[float]]
    peak_in_flight: int  # the most uploads in flight at once
    throttled: int  # 429 and 503 answers to uploads
    pauses: int  # times one Retry-After paused every new upload
    upload_mb_s: float | None  # bytes uploaded / seconds from the first upload to the last answer
    poll_requests: int  # GETs of one execution
    poll_listings: int  # pages of the import's executions read to poll many at once


class RefusedEntry(TypedDict):
    """One record the server refused, where it comes from (``refused.sample``)."""

    file: str
    line: int
    reason: str


class RefusedSection(TypedDict):
    """``refused``: the records the server refused, mapped to their source (``failed.ndjson``)."""

    count: int  # rows of failed.ndjson
    path: str
    sample: list[RefusedEntry]  # the first few
    unmapped: int  # entries of the error files that map to no source line (failed_unmapped.ndjson)
    unmapped_path: str | None


class RetryOf(TypedDict):
    """The run a ``pipeline retry`` sent again what did not make it of (``retry_of``)."""

    run_id: str
    run_dir: str
    records: int  # records the retry planned to send again
    not_delivered: int  # of which: records of batches not delivered
    refused: int  # records the server refused (failed.ndjson)
    rejected: int  # client-side rejects, fixed and sent (--rejected)


class ShardEntry(TypedDict):
    """One shard's run in a merged report (``shards``: ``pipeline report merge``)."""

    run_id: str
    run_dir: str | None
    outcome: str
    exit_code: int
    records: RecordCounts
    batches: int
    rejects_path: str | None
    resume_command: str | None


class PlatformSection(TypedDict):
    """What the run learned of the platform (the next run to the same place plans from it), and
    what its own plan was learned from (None: the default plan)."""

    profile: ProfileJson | None
    plan: LearnedBasis | None


class Report(TypedDict):
    """The run report (``report.json``)."""

    run_id: str
    outcome: str
    exit_code: int
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    target: str
    emulator: bool  # the run went to the embedded emulator: nothing reached mediarithmics
    run_dir: str | None
    config_origin: ConfigOrigin | None
    document_import: dict[str, Any]
    inputs: list[InputEntry]
    skipped_inputs: list[SkippedInputEntry]
    records: RecordCounts
    batches: int
    executions: list[ExecutionEntry]
    not_delivered: list[NotDeliveredEntry]
    duplicates: list[DuplicateEntry]
    unsettled: list[UnsettledEntry]
    skipped_files: list[SkippedFileEntry]
    error_budget: ErrorBudgetEntry
    #: an error no retry or resume fixes: {"cause": ..., "fix": ...} (outcomes stopped_on_error, nothing_sent)
    final_error: FinalError | None
    rejects_path: str | None
    rejects_by_reason: dict[str, int]
    rejects_sample: list[dict[str, Any]]
    warnings: list[str]
    throughput: Throughput | None
    #: only in the report written by the run itself (``status`` rebuilds one from the journal: none)
    platform: NotRequired[PlatformSection]
    #: only when the outcome is not known yet and the run can be resumed
    resume_command: NotRequired[str]
    #: only when the run has a failed.ndjson (the server refused records: engine/refusals)
    refused: NotRequired[RefusedSection]
    #: only for a run made by ``pipeline retry``: the run it retried
    retry_of: NotRequired[RetryOf]
    #: only in a merged report (``pipeline report merge``): the shards' runs
    shards: NotRequired[list[ShardEntry]]


class ResumeWith(TypedDict, total=False):
    resume_with: str


class StatusReport(Report):
    """``pipeline status --json``: the report now, and what the journal and the server said."""

    resume_with: NotRequired[str]  # when nothing holds the run and it did not finish for good
    state: str
    refreshed: str
    last_event_at: str | None
