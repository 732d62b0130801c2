"""The run directory: where a run keeps its journal, rejects and reports, private to its owner.

Everything here is created owner-readable only (0700 directories, 0600 files): rejected records and
reports hold personal data (emails, account ids). A lock file keeps two processes from writing into
the same run directory at once.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson

from .errors import UsageError

REJECTS_NAME = "rejects.ndjson"
REPORT_NAME = "report.json"
LOCK_NAME = "lock"
SAMPLE_SIZE = 10


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with the leaf readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def open_private(path: Path, mode: str = "wb"):
    """Open a file for writing, created 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


class RunLock:
    """An exclusive, non-blocking lock on a run directory, released when the process ends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise UsageError(
                f"{run_dir} is in use by another pipeline process (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class RejectsFile:
    """The run's rejects: one NDJSON object per rejected record (file, line, reason, record).

    Written to ``<path>.part``; ``commit`` puts it in place. A resume that stops before it has
    re-read everything therefore leaves the previous, whole list where it was.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._part = path.with_name(path.name + ".part")
        self._fh = open_private(self._part, "wb")
        self._committed = False
        self.by_reason: Counter[str] = Counter()
        self.count = 0
        self.sample: list[dict[str, object]] = []  # the first SAMPLE_SIZE rejects, without the record

    def write(self, reject: object) -> None:
        file, line, reason, record = (getattr(reject, k) for k in ("file", "line", "reason", "record"))
        entry = {"file": str(file), "line": line, "reason": reason, "record": record}
        self._fh.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        self.by_reason[_reason_kind(reason)] += 1
        self.count += 1
        if len(self.sample) < SAMPLE_SIZE:
            self.sample.append({"file": str(file), "line": line, "reason": reason})

    def commit(self) -> None:
        """Flush and put the list in place (atomically)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        os.replace(self._part, self.path)
        self._committed = True

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if not self._committed:
            self._part.unlink(missing_ok=True)


def _reason_kind(reason: str) -> str:
    """Group reasons that differ only by details (``not valid JSON: unexpected char at 12``)."""
    return reason.split(":")[0].split(" (")[0]
