"""The run's progress counters: the run's events folded into numbers a sink can show at any moment.

``Progress`` is fed by the run's events (``Run.emit`` through ``RunOptions.on_event``) and is
thread-safe: the live display and the metrics read its ``Snapshot`` from their own threads. Apart
from ``progress`` (the lines a run prints) because every sink reads the same counters: the plain
printer, the live display (``live``) and the Prometheus gauges (``metrics``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline import formats

_PENDING_STATUSES = {"PENDING", "SCHEDULED", "WAITING_DEPENDENT_JOB"}


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment (what a progress line or the live display shows)."""

    elapsed_s: float
    run_id: str
    target: str
    import_id: str
    total_bytes: int | None  # bytes to upload, estimated from the input sizes until reading ends
    bytes_read: int
    records_read: int
    batches_read: int
    reading_done: bool
    uploads_in_flight: int
    upload_limit: int | None  # the adaptive limit of uploads in flight (None: not told yet)
    batches_uploaded: int
    bytes_uploaded: int
    uploads_failed: int
    upload_rate: float | None  # bytes/s since the first upload started
    eta_s: float | None  # of the upload phase
    uploads_done: bool  # reading finished and nothing is in flight
    exec_pending: int
    exec_running: int
    exec_done: int
    done_by_status: dict[str, int]
    records_succeeded: int
    records_failed: int
    records_rejected: int
    retries: int
    finished: bool


class Progress:
    """Counters folded from the run's events; ``snapshot()`` may be called from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._t0 = clock()
        self._first_upload: float | None = None
        self._last_upload: float | None = None
        self.run_id = self.target = self.import_id = ""
        self.input_bytes = 0
        self.bytes_read = self.records_read = self.batches_read = 0
        self.reading_done = False
        self.in_flight: set[int] = set()
        self.batches_uploaded = self.bytes_uploaded = self.uploads_failed = 0
        self.statuses: dict[str, str] = {}  # execution id -> last known status
        self._by_status: Counter[str] = Counter()  # how many executions have each status (kept as they change)
        self.records_succeeded = self.records_failed = self.records_rejected = 0
        self.retries = 0
        self.upload_limit: int | None = None
        self.finished = False

    def __call__(self, name: str, fields: dict[str, Any]) -> bool:
        """Fold one event; True when it changed an execution's status (for -v)."""
        with self._lock:
            return self._apply(name, fields)

    def _apply(self, name: str, f: dict[str, Any]) -> bool:
        now = self._clock()
        if name == "run_started":
            self.run_id, self.target = str(f.get("run_id", "")), str(f.get("target", ""))
            self.input_bytes = sum(max(0, int(i.get("size") or 0)) for i in f.get("inputs") or [])  # -1: gone
        elif name == "import_ready":
            self.import_id = str(f.get("id", ""))
        elif name == "batch_read":
            self.batches_read += 1
            self.bytes_read += int(f.get("bytes") or 0)
            self.records_read += int(f.get("records") or 0)
        elif name == "upload_started":
            self.in_flight.add(f["batch"])
            self._first_upload = self._first_upload or now
        elif name == "batch_uploaded":
            self.in_flight.discard(f["batch"])
            self.batches_uploaded += 1
            self.bytes_uploaded += int(f.get("bytes") or 0)
            self._last_upload = now
            self._set_status(str(f["execution_id"]), "PENDING", only_new=True)
        elif name == "upload_failed":
            self.in_flight.discard(f["batch"])
            self.uploads_failed += 1
        elif name == "retry":
            self.retries += 1
        elif name == "upload_limit":
            self.upload_limit = int(f["limit"])
        elif name in ("execution_status", "execution_finished"):
            key, status = str(f.get("execution_id")), f.get("status") or "?"
            changed = self._set_status(key, status)
            if name == "execution_finished":
                if formats.is_success(status):
                    self.records_succeeded += int(f.get("total_success") or 0)
                    self.records_failed += int(f.get("total_failure") or 0)
            return changed
        elif name == "reading_finished":
            self.reading_done = True
            files = f.get("files") or []
            self.records_rejected = sum(int(x.get("rejected") or 0) for x in files)
        elif name == "run_finished":
            self.finished = True
        return False

    def _set_status(self, key: str, status: str, *, only_new: bool = False) -> bool:
        """Record an execution's status; True when it changed."""
        old = self.statuses.get(key)
        if old == status or (only_new and old is not None):
            return False
        if old is not None:
            self._by_status[old] -= 1
        self.statuses[key] = status
        self._by_status[status] += 1
        return True

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            total = self._total_bytes()
            rate = None
            if self._first_upload is not None and self.bytes_uploaded:
                end = now if (self.in_flight or not self.reading_done) else (self._last_upload or now)
                span = max(end - self._first_upload, 1e-3)
                rate = self.bytes_uploaded / span
            eta = None
            if rate and total is not None:
                eta = max(total - self.bytes_uploaded, 0) / rate
            done = Counter({s: n for s, n in self._by_status.items() if n and formats.is_terminal(s)})
            pending = sum(n for s, n in self._by_status.items() if s in _PENDING_STATUSES)
            running = len(self.statuses) - pending - sum(done.values())
            return Snapshot(
                elapsed_s=now - self._t0,
                run_id=self.run_id,
                target=self.target,
                import_id=self.import_id,
                total_bytes=total,
                bytes_read=self.bytes_read,
                records_read=self.records_read,
                batches_read=self.batches_read,
                reading_done=self.reading_done,
                uploads_in_flight=len(self.in_flight),
                upload_limit=self.upload_limit,
                batches_uploaded=self.batches_uploaded,
                bytes_uploaded=self.bytes_uploaded,
                uploads_failed=self.uploads_failed,
                upload_rate=rate,
                eta_s=0.0 if self.reading_done and not self.in_flight else eta,
                uploads_done=self.reading_done and not self.in_flight,
                exec_pending=pending,
                exec_running=running,
                exec_done=sum(done.values()),
                done_by_status=dict(sorted(done.items())),
                records_succeeded=self.records_succeeded,
                records_failed=self.records_failed,
                records_rejected=self.records_rejected,
                retries=self.retries,
                finished=self.finished,
            )

    def _total_bytes(self) -> int | None:
        """Bytes the upload phase will send: exact once reading is done, else the inputs' size
        (unknown when the inputs are compressed and have already yielded more than their size)."""
        if self.reading_done:
            return self.bytes_read
        if self.input_bytes and self.bytes_read <= self.input_bytes:
            return self.input_bytes
        return None
