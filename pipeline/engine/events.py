"""The run's vocabulary: what it tells its listeners (``Event``) and what its journal records
(``JournalKind``). Both are ``StrEnum``s: they travel as plain strings (JSON logs, the journal
file), so journals written before these types existed read the same."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any


class Event(StrEnum):
    """Told to ``RunOptions.on_event(name, fields)`` as the run goes (progress, logs, the live display)."""

    TARGET = "target"  # where the run uploads (the embedded emulator or the API)
    RUN_STARTED = "run_started"
    IMPORT_READY = "import_ready"
    BATCH_PLAN = "batch_plan"  # the batch sizes were planned from what an earlier run learned
    BATCH_READ = "batch_read"
    BATCH_SKIPPED = "batch_skipped"  # a resume met a batch that already has an execution
    UPLOAD_STARTED = "upload_started"
    UPLOAD_LIMIT = "upload_limit"  # the adaptive limit of uploads in flight changed
    BATCH_UPLOADED = "batch_uploaded"
    UPLOAD_FAILED = "upload_failed"  # refused for good
    UPLOAD_UNSETTLED = "upload_unsettled"  # may have created its execution: looked up by name
    UPLOAD_POSTPONED = "upload_postponed"  # not sent: transient failure past the retry window, or a stop
    UPLOAD_RECOVERED = "upload_recovered"  # an unanswered upload found by name
    UPLOAD_RESENT = "upload_resent"  # a settle window passed without a sighting: sent again, marked
    UPLOAD_UNKNOWABLE = "upload_unknowable"  # the server gives no way to know (now, or ever: ``final``)
    DUPLICATES = "duplicates"  # the reconciliation canceled or found copies of a batch
    EXECUTION_STATUS = "execution_status"
    EXECUTION_FINISHED = "execution_finished"
    READ_FAILED = "read_failed"
    READING_FINISHED = "reading_finished"
    RETRY = "retry"
    POLL_ERROR = "poll_error"
    LOOKUP_FAILED = "lookup_failed"
    WARNING = "warning"
    INPUT_SKIPPED = "input_skipped"  # an entry of an input directory not taken (path, reason, message)
    STOP_REQUESTED = "stop_requested"
    RUN_FAILED = "run_failed"
    RUN_FINISHED = "run_finished"


class JournalKind(StrEnum):
    """The ``event`` field of a journal line (see ``journal.py`` for when each is written)."""

    RUN_STARTED = "run_started"
    IMPORT = "import"
    BATCH_PLAN = "batch_plan"  # the batch targets the reader draws from (``reading.sizing``)
    UPLOAD_STARTED = "upload_started"
    UPLOADED = "uploaded"
    UPLOAD_FAILED = "upload_failed"
    UPLOAD_POSTPONED = "upload_postponed"
    SETTLED = "settled"
    UNKNOWABLE = "unknowable"  # no lookup of this server can settle the batch: the reason why
    RECONCILED = "reconciled"
    EXECUTION_FINISHED = "execution_finished"
    READING_FINISHED = "reading_finished"
    RUN_FINISHED = "run_finished"


#: What listens to a run: ``on_event(name, fields)`` (progress lines, JSON logs, the live display).
EventSink = Callable[[str, dict[str, Any]], None]
