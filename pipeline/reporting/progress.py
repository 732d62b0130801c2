"""What a run prints while it works: its events and progress as lines, and the sinks that show them.

Events come from ``Run.emit(name, **fields)`` (through ``RunOptions.on_event``).
``progress_counters.Progress`` folds them into counters (thread-safe: the live display reads them
from its refresh thread). Sinks:

- ``PlainPrinter``: lines without control characters, for logs (cron, CI, a scheduler). Text mode
  prints the important events and, every ``interval_s`` seconds, one ``progress:`` line; ``-v``
  adds each retry and status change; ``-q`` prints only errors (and where the run directory is).
  Every line starts with the time, ISO 8601 UTC to the millisecond (``2026-12-01T13:20:05.123Z``):
  a log read the morning after says when each thing happened. A request that has been failing for
  more than ``RETRY_NOTICE_S`` is said at the default verbosity too (at most one such line every
  ``RETRY_NOTICE_S``): 20 s of connection retries is no longer silence. ``log_format="json"``
  prints one JSON object per event instead, its ``ts`` the same ISO time (and a ``progress``
  object every ``interval_s``).
- ``pipeline.reporting.live.LiveDisplay``: the live terminal display (rich), used only on a terminal.

No sink ever prints the API token: every line passes through ``redact`` with the known secrets.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import orjson

from pipeline import formats
from pipeline.client.redact import Redactor, safe_text
from pipeline.client.retry import RetryReason, is_connection_refused
from pipeline.reporting.progress_counters import Progress, Snapshot
from pipeline.reporting.report import iso
from pipeline.reporting.summary import human_bytes

#: events printed in text mode by default, with -v, and with -q
DEFAULT_EVENTS = frozenset(
    {"target", "run_started", "import_ready", "batch_uploaded", "upload_failed", "execution_finished"}
    | {"reading_finished", "stop_requested", "input_skipped", "batch_plan"}
)
VERBOSE_EVENTS = DEFAULT_EVENTS | {"retry", "execution_status", "poll_error", "upload_started", "upload_limit"}
#: events a log collector gets in JSON mode (plus ``progress`` every interval)
JSON_EVENTS = DEFAULT_EVENTS | {"run_started", "run_finished", "retry", "upload_limit"}
JSON_VERBOSE_EVENTS = JSON_EVENTS | VERBOSE_EVENTS
#: a request failing for longer than this is said at the default verbosity (and -q does not)
RETRY_NOTICE_S = 5.0


class Spacing:
    """Says yes at most once every ``interval_s``: long-retry lines at the default verbosity, so
    that sixteen uploads retrying against a server that is down say it once, not sixteen times."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self._clock = interval_s, clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < self.interval_s:
                return False
            self._last = now
            return True


def is_landmark_event(name: str) -> bool:
    """What every verbosity prints, ``-q`` included: where the run directory is (a scheduler's log
    must say where the report and the journal of this run are)."""
    return name == "run_started"


def is_long_retry(name: str, fields: dict[str, Any]) -> bool:
    """A retry of a request that has been failing for more than ``RETRY_NOTICE_S``."""
    return name == "retry" and float(fields.get("failing_s") or 0) > RETRY_NOTICE_S


def is_status_change_to_say(name: str, changed: bool, status: Any) -> bool:
    """An ``execution_status`` worth a line at -v: a change to a status that is not terminal (the
    terminal one is said once, by ``execution_finished``, with its counts: saying it here too
    printed every end twice)."""
    return name == "execution_status" and changed and not formats.is_terminal(status)


def is_error_event(name: str, fields: dict[str, Any]) -> bool:
    """What ``-q`` still prints: refused uploads and executions that did not succeed."""
    if name == "upload_failed":
        return True
    if name == "execution_finished":
        return not formats.is_success(fields.get("status"))
    return False


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any 8-character piece of a secret (a server may echo a truncated token) and
    without terminal control sequences (server strings reach the terminal through here)."""
    secrets = [s for s in secrets if s]
    if secrets:
        text = Redactor(secrets).clean(text)
    return safe_text(text)


# --- formatting ----------------------------------------------------------------------------------


mb = human_bytes


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(s: Snapshot) -> str:
    """One plain line (no control characters) summing up a snapshot."""
    read = f"read {mb(s.bytes_read)}, {s.records_read:,} records, {s.batches_read} batches"
    if s.reading_done:
        read += " (done)"
    limit = f" of {s.upload_limit}" if s.upload_limit else ""
    upload = f"uploaded {s.batches_uploaded} ({s.uploads_in_flight}{limit} in flight), {mb(s.bytes_uploaded)}"
    if s.upload_rate:
        upload += f" at {mb(s.upload_rate)}/s"
    if s.uploads_failed:
        upload += f", {s.uploads_failed} refused"
    if not s.uploads_done:
        upload += f", ETA {duration(s.eta_s)}"
    execs = f"executions pending {s.exec_pending}, running {s.exec_running}, done {s.exec_done}"
    if s.uploads_done and (s.exec_pending or s.exec_running):
        execs += f" ({s.exec_pending + s.exec_running} still processing after the last upload)"
    records = f"records succeeded {s.records_succeeded:,}, failed {s.records_failed:,}"
    if s.records_rejected:
        records += f", rejected {s.records_rejected:,}"
    return f"progress {duration(s.elapsed_s)}: {read} | {upload} | {execs} | {records}"


def batch_label(f: dict[str, Any]) -> str:
    """``batch 3 (exports/a.ndjson:1001-2000)``: the batch and where its records are, when the
    event says (the run adds the source of every batch to its events)."""
    label = f"batch {f.get('batch')}"
    if f.get("path"):
        label += f" ({f['path']}:{f.get('first_line')}-{f.get('last_line')})"
    return label


def stamp(ts: float) -> str:
    """The time at the start of every plain line: ISO 8601 UTC to the millisecond."""
    return iso(ts) or ""


_RETRY_PHRASES: dict[str, str] = {
    RetryReason.CONNECT: "cannot connect to",
    RetryReason.CONNECT_TIMEOUT: "connecting timed out to",
    RetryReason.TIMEOUT: "no answer in time from",
    RetryReason.CONNECTION_LOST: "connection lost with",
    RetryReason.BAD_ANSWER: "unreadable answer from",
    RetryReason.THROTTLED: "throttled (HTTP 429) by",
    RetryReason.UNAVAILABLE: "unavailable (HTTP 503):",
    RetryReason.SERVER_ERROR: "server error from",
    RetryReason.REQUEST_TIMEOUT: "request timeout (HTTP 408) from",
}


def retry_text(f: dict[str, Any]) -> str:
    """``connection refused by https://…: retrying POST /v1/…, attempt 4, next in 3.2 s (failing
    for 12 s: cannot connect (…))``: what failed, where, and what happens next."""
    reason = str(f.get("reason") or "")
    if is_connection_refused(reason):
        phrase = "connection refused by"
    else:
        phrase = _RETRY_PHRASES.get(str(f.get("kind")), "request failed at")
    target = f.get("target") or "the server"
    attempt = int(f.get("attempt") or 0) + 1  # the attempt that comes next
    delay = float(f.get("delay_s") or 0)
    failing = float(f.get("failing_s") or 0)
    where = f"{f.get('method')} {f.get('path')}"
    notes = [f"failing for {failing:.0f} s"] if failing >= 1 else []
    if phrase != "connection refused by":  # the phrase says it all for a refused connection
        notes.append(reason)
    said = f" ({': '.join(notes)})" if notes else ""
    return f"{phrase} {target}: retrying {where}, attempt {attempt}, next in {delay:.1f} s{said}"


def event_text(name: str, f: dict[str, Any]) -> str:
    """One event as a line for people."""
    if name == "run_started":
        resumed = " (resumed)" if f.get("resumed") else ""
        return f"run {f.get('run_id')}{resumed}: run directory {f.get('run_dir') or '?'}"
    if name == "target":
        where = "the embedded emulator at " if f.get("embedded") else ""
        return f"uploading to {where}{f['url']}"
    if name == "batch_plan":
        return (
            f"batch plan: {f['shape']}, fitted to the platform as run {f['learned_from']} saw it "
            f"(modelled {f['modelled_s']:.1f} s, the default plan {f['default_modelled_s']:.1f} s)"
        )
    if name == "import_ready":
        return f"document import {f['id']} '{f.get('name')}' ({f.get('document_type')}, {f.get('mime_type')})"
    if name == "batch_uploaded":
        attempts = f" after {f['attempts']} attempts" if f.get("attempts", 1) > 1 else ""
        return (
            f"{batch_label(f)}: {f['records']:,} records, {mb(f['bytes'])} -> execution {f['execution_id']}{attempts}"
        )
    if name == "execution_finished":
        return (
            f"{batch_label(f)}: execution {f['execution_id']} {f['status']} "
            f"({f.get('total_success') or 0:,} ok, {f.get('total_failure') or 0:,} failed)"
        )
    if name == "upload_failed":
        return f"{batch_label(f)}: upload failed: {f['error']}"
    if name == "reading_finished":
        total = sum(x["records"] for x in f["files"])
        rejected = sum(x["rejected"] for x in f["files"])
        return f"read {len(f['files'])} file(s): {total:,} records, {rejected:,} rejected"
    if name == "input_skipped":
        return f"warning: {f['path']}: {f['message']}"
    if name == "stop_requested":
        if f.get("abandon"):
            return f"{f['signal']} again: abandoning in-flight uploads"
        return f"{f['signal']}: stopping; in-flight uploads finish (press Ctrl-C again to abandon them)"
    if name == "retry":
        return retry_text(f)
    if name == "execution_status":
        return f"{batch_label(f)}: execution {f['execution_id']} is {f['status']}"
    if name == "upload_started":
        return f"{batch_label(f)}: uploading {mb(f.get('bytes') or 0)}"
    if name == "upload_limit":
        way = "down" if f["limit"] < f["previous"] else "up"
        return f"uploads in flight: limit {way} from {f['previous']} to {f['limit']} (now {f.get('in_flight', 0)})"
    if name == "poll_error":
        return f"{batch_label(f)}: poll failed (will retry): {f.get('error')}"
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in f.items())


def wanted(name: str, fields: dict[str, Any], *, quiet: bool, verbose: bool, status_changed: bool) -> bool:
    """Whether text mode prints this event at this verbosity (a long retry at the default verbosity:
    ``PlainPrinter`` also spaces those lines out)."""
    if is_landmark_event(name):
        return True
    if quiet:
        return is_error_event(name, fields)
    if name == "execution_status":
        return verbose and is_status_change_to_say(name, status_changed, fields.get("status"))
    if name == "retry" and not verbose:
        return is_long_retry(name, fields)
    return name in (VERBOSE_EVENTS if verbose else DEFAULT_EVENTS)


# --- the plain / JSON printer --------------------------------------------------------------------


class PlainPrinter:
    """Event lines and a periodic progress line, plain text or JSON, on ``stream`` (stderr).

    Use as a context manager around the run: it starts the ticker thread that prints the progress
    line every ``interval_s`` seconds (0: never) and stops it on exit.
    """

    def __init__(
        self,
        *,
        quiet: bool = False,
        verbose: bool = False,
        log_format: str = "text",
        interval_s: float = 30.0,
        stream: TextIO | None = None,
        secrets: Iterable[str] = (),
        progress: Progress | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet, self.verbose, self.json = quiet, verbose, log_format == "json"
        self.interval_s = interval_s
        self.out = stream or sys.stderr
        self.secrets = [s for s in secrets if s]
        self.progress = progress or Progress()
        self._wall_clock = wall_clock
        self._retry_notices = Spacing(RETRY_NOTICE_S, clock)
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        changed = self.progress(name, fields)
        if self.json:
            if self._json_wanted(name, fields, changed):
                self._write_json(name, fields)
        elif wanted(name, fields, quiet=self.quiet, verbose=self.verbose, status_changed=changed):
            if self.verbose or not is_long_retry(name, fields) or self._retry_notices.due():
                self._write(event_text(name, fields))

    def _json_wanted(self, name: str, fields: dict[str, Any], changed: bool) -> bool:
        if self.quiet:
            return is_error_event(name, fields) or name in ("run_started", "run_finished")
        if name == "execution_status":  # every change, the terminal one too: a collector may want the stream
            return self.verbose and changed
        return name in (JSON_VERBOSE_EVENTS if self.verbose else JSON_EVENTS)

    def _write_json(self, name: str, fields: dict[str, Any]) -> None:
        record = {"ts": stamp(self._wall_clock()), "event": name, **fields}
        self._write(orjson.dumps(record, default=str).decode(), stamped=False)

    def _write(self, line: str, *, stamped: bool = True) -> None:
        """One line (text: after the time; JSON: the time is its ``ts``), without any secret."""
        line = redact(line, self.secrets)
        if stamped:
            line = f"{stamp(self._wall_clock())} {line}"
        with self._write_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def say(self, text: str) -> None:
        """A line of the command's own (``resume with: …``) in the log, timestamped like the rest;
        in JSON mode a ``message`` object."""
        if self.json:
            self._write_json("message", {"text": text})
        else:
            for line in text.splitlines():
                self._write(line)

    def tick(self) -> None:
        """Print one progress line (or JSON ``progress`` object) now."""
        snap = self.progress.snapshot()
        if self.json:
            fields = {k: v for k, v in vars(snap).items() if k not in ("run_id", "target", "finished")}
            fields["elapsed_s"] = round(snap.elapsed_s, 3)
            for k in ("upload_rate", "eta_s"):
                fields[k] = round(fields[k], 3) if fields[k] is not None else None
            self._write_json("progress", fields)
        else:
            self._write(progress_line(snap))

    def _ticker(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.progress.finished:
                self.tick()

    def __enter__(self) -> PlainPrinter:
        if self.interval_s > 0 and not self.quiet:
            self._thread = threading.Thread(target=self._ticker, name="progress-ticker", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
