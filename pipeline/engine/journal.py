"""The run journal: an append-only NDJSON record of a run, flushed to disk at every step that matters.

One JSON object per line, each with an ``event`` name and a ``t`` timestamp (epoch seconds):

=====================  =====================================================================
event                  written when
=====================  =====================================================================
``run_started``        a run (or a resume) starts: run id, config, inputs and fingerprints
``import``             the document import to upload into is known
``batch_plan``         before the first batch is read: the batch targets (``reading.sizing``), with
                       ``learned`` when fitted to a profile (``reading.platform_model``)
``upload_started``     before the first byte of a batch is sent: the batch description
``uploaded``           the execution id of a batch is known
``upload_failed``      a batch was refused for good (a 4xx), or its answer was lost (``ambiguous``)
``upload_postponed``   a transient failure outlasted ``upload.retry_window_s``: the batch is unsent
``execution_finished`` an execution reached a terminal status
``settled``            a batch whose answer was lost was looked up by name and not found
``unknowable``         no lookup of this server can tell whether that upload created its
                       execution (no file names, a list that cannot be walked): the reason
``reconciled``         the end-of-run check by file name: the batch's other executions
``reading_finished``   every input was read: per-file counts
``run_finished``       the run ended: outcome and exit code (and why it stopped early, when it
                       did: ``too_many_errors``, ``final_error``, ``changed_input``)
=====================  =====================================================================

Every append is followed by ``fsync``: after a crash, the journal holds every step that completed.
An append completes or raises ``LocalError``: a short write is continued, and a failed one (disk
full, I/O error, quota) is cut off again, so the journal never keeps half a line it did not warn
about. A torn last line (power loss mid-write) is ignored on replay. The journal never holds the token.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from pipeline.engine.state import RunState, replay
from pipeline.errors import InputError, LocalError

JOURNAL_NAME = "journal.ndjson"
NO_RUN_START = "the journal does not record a run start"
PRIVATE_FILE = 0o600


class Journal:
    """Appends events to ``<run_dir>/journal.ndjson`` (created owner-readable only).

    Every failure of the local system (cannot open, disk full, I/O error) raises ``LocalError``.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / JOURNAL_NAME
        self._fd = -1
        self._torn = False  # a failed append left bytes that could not be cut off
        try:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
            if created:  # the new file's directory entry must survive a power loss too
                dir_fd = os.open(run_dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            self.close()
            raise LocalError.from_os_error("cannot open the run journal", self.path, exc) from exc

    def append(self, event: str, **fields: Any) -> None:
        """Write one event and fsync it: when this returns, the event survives a crash.

        Raises ``LocalError`` when it cannot; the journal is then as it was before the call (but
        for a torn line that replay skips, if even cutting the failed write off failed).
        """
        if self._fd < 0:
            raise ValueError(f"the run journal {self.path} is closed")
        record = {"event": event, "t": round(time.time(), 3), **fields}
        data = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        if self._torn:  # end the torn line: this event must not be glued to it
            data = b"\n" + data
        size = -1
        try:
            size = os.fstat(self._fd).st_size
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError as exc:
            self._cut_back(size)
            raise LocalError.from_os_error("cannot write the run journal", self.path, exc) from exc
        self._torn = False

    def _cut_back(self, size: int) -> None:
        """Remove what a failed append may have written (best effort: the error is raised anyway)."""
        if size < 0:
            return  # nothing was written yet
        try:
            if os.fstat(self._fd).st_size != size:
                os.ftruncate(self._fd, size)
                os.fsync(self._fd)
        except OSError:
            self._torn = True

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):  # every append was fsynced: close has nothing to lose
                os.close(fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written; an error (or a write of nothing) raises ``OSError``."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, f"the write stopped after {len(data) - len(view)} of {len(data)} bytes")
        view = view[written:]


def read_journal(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The events of a run's journal, in order; a torn or corrupt line is skipped."""
    path = run_dir / JOURNAL_NAME
    with path.open("rb") as fh:
        for line in fh:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line torn by a crash mid-write
            if isinstance(event, dict) and "event" in event:
                yield event


class JournaledRun:
    """A run as its journal tells it: the ``run_started`` event, the state the events fold into, and
    the last event (read in one pass: the events themselves are not kept, a journal of 20,000
    batches holds 60,000 of them)."""

    def __init__(
        self, run_dir: Path, started: dict[str, Any], state: RunState, *, last: dict[str, Any], boundary: dict[str, Any]
    ) -> None:
        self.run_dir, self.started = run_dir, started
        self.last = last  # the last event
        self.boundary = boundary  # the last run_started or run_finished: how the run ended, if it did
        self._state: RunState | None = state

    @property
    def run_id(self) -> str:
        return str(self.started["run_id"])

    def state(self) -> RunState:
        """The state the journal folds into: the one read with the journal the first time, then
        read again (each caller gets a state of its own to change)."""
        state, self._state = self._state, None
        return state if state is not None else replay(self.run_id, read_journal(self.run_dir))

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event, in order (read again from the journal)."""
        return list(read_journal(self.run_dir))


def check_run_dir(run_dir: str | Path) -> Path:
    """``InputError`` unless ``run_dir`` holds a journal that records a run start (read up to that
    event only: the first line of any journal the run wrote)."""
    run_dir = _journal_dir(run_dir)
    if not any(event["event"] == "run_started" for event in read_journal(run_dir)):
        raise InputError(run_dir, NO_RUN_START)
    return run_dir


def _journal_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / JOURNAL_NAME).is_file():
        raise InputError(run_dir, f"not a run directory (no {JOURNAL_NAME} in it)")
    return run_dir


def load_run(run_dir: str | Path) -> JournaledRun:
    """Read a run directory's journal; ``InputError`` when it is not a run directory."""
    run_dir = _journal_dir(run_dir)
    started: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    boundary: dict[str, Any] | None = None

    def events() -> Iterator[dict[str, Any]]:
        nonlocal started, last, boundary
        for event in read_journal(run_dir):
            if event["event"] in ("run_started", "run_finished"):
                started = started or (event if event["event"] == "run_started" else None)
                boundary = event
            last = event
            yield event

    try:
        state = replay("", events())
    except (KeyError, TypeError, ValueError):
        if started is None:  # not a journal of a run: say that, not what its events miss
            raise InputError(run_dir, NO_RUN_START) from None
        raise
    if started is None or last is None or boundary is None:
        raise InputError(run_dir, NO_RUN_START)
    state.run_id = str(started["run_id"])
    return JournaledRun(run_dir, started, state, last=last, boundary=boundary)
