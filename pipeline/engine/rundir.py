"""The run directory: where a run keeps its journal, rejects and reports, private to its owner.

Everything here is created owner-readable only (0700 directories, 0600 files): rejected records and
reports hold personal data (emails, account ids). A lock file keeps two processes from writing into
the same run directory at once; an ``ActiveRunGuard`` keeps two processes from running the same work
(same config, same inputs) at once, e.g. when a cron job overlaps the previous one.

The preflight checks (``check_output_dir``, ``check_output_file``, ``check_free_space``) tell,
before the first upload, that the local side of the run will be able to write what it must. Every
failure of the local system here raises ``LocalError`` naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from pipeline.errors import ConcurrentRunError, LocalError, UsageError
from pipeline.reading.batch import is_file_skip

REJECTS_NAME = "rejects.ndjson"
FAILED_NAME = "failed.ndjson"  # the records the server refused, mapped to their source (engine/refusals)
UNMAPPED_NAME = "failed_unmapped.ndjson"  # entries of its error files that map to no source line
REPORT_NAME = "report.json"
LOCK_NAME = "lock"
ACTIVE_DIR = ".active"
SAMPLE_SIZE = 10
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each readable by its owner only (0700, whatever the
    umask); the leaf is made 0700 even when it exists, existing parents are left as they are.

    ``LocalError`` when a directory cannot be created (read-only parent, permission denied, a file
    in the way).
    """
    path = Path(path)
    make_missing_dirs(path)
    if not path.is_dir():
        raise _in_the_way(path)
    _chmod(path)
    return path


def open_private(path: Path, mode: str = "wb") -> BinaryIO:
    """Open a file for writing, created 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        return cast(BinaryIO, os.fdopen(fd, mode))
    except BaseException:
        os.close(fd)
        raise


def make_missing_dirs(path: Path) -> None:
    """Create the missing directories of ``path``, outermost first, each 0700 whatever the umask;
    the ones that exist are left as they are (a ``--report`` under a shared directory)."""
    missing = []
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            if not directory.is_dir():
                raise _in_the_way(directory) from None
            continue  # made meanwhile by another process: not ours to change
        except OSError as exc:
            raise LocalError.from_os_error("cannot create the directory", directory, exc) from exc
        _chmod(directory)  # mkdir's mode went through the umask


def _in_the_way(path: Path) -> LocalError:
    message = f"cannot create the directory {path}: a file of that name is in the way"
    return LocalError(message, path=path, reason="not a directory")


def _chmod(path: Path) -> None:
    try:
        os.chmod(path, PRIVATE_DIR)
    except OSError as exc:
        raise LocalError.from_os_error("cannot make private the directory", path, exc) from exc


# --- preflight: what the run needs of the local system, checked before the first upload ---------


def check_output_dir(path: Path, *, create: bool = True) -> None:
    """``path`` is (or can be made) a directory this process can write files into.

    With ``create`` (the default) a missing ``path`` and its missing parents are created (0700,
    existing ones untouched); without, the nearest existing ancestor must be a writable directory.
    The write is tried for real (a temporary file created and removed), so permissions, read-only
    mounts and ACLs all show. ``LocalError`` naming the path and the reason otherwise.
    """
    path = Path(path)
    if create:
        make_missing_dirs(path)
        _probe_dir(path, path)
    else:
        _probe_dir(_existing_ancestor(path), path)


def check_output_file(path: Path, *, parent_must_exist: bool = False) -> None:
    """``path`` (e.g. ``--report PATH``) can be written: it is not a directory and its directory is
    writable (the report is written whole, through a temporary file beside it).

    The report writer creates a missing parent, so a missing parent is refused only with
    ``parent_must_exist``; otherwise its nearest existing ancestor must be writable.
    """
    path = Path(path)
    if path.is_dir():
        raise LocalError(f"cannot write {path}: it is a directory", path=path, reason="is a directory")
    parent = path.parent
    if parent_must_exist and not parent.is_dir():
        raise LocalError(
            f"cannot write {path}: its directory {parent} does not exist", path=parent, reason="no such directory"
        )
    _probe_dir(_existing_ancestor(parent), path)


def check_free_space(path: Path, need_bytes: int) -> None:
    """The filesystem of ``path`` (of its nearest existing ancestor, if missing) has at least
    ``need_bytes`` free for this process (not counting root's reserve); ``LocalError`` otherwise."""
    path = Path(path)
    where = _existing_ancestor(path)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        raise LocalError.from_os_error("cannot tell the free space of", where, exc) from exc
    if free < need_bytes:
        raise LocalError(
            f"only {_mb(free)} free on the filesystem of {path} (mounted on {_mount_point(where)}), "
            f"the run needs about {_mb(need_bytes)} for its journal, spool and reports",
            path=path,
            reason="not enough free space",
            errno=errno.ENOSPC,
        )


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest existing ancestor (``.`` at worst)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def _probe_dir(directory: Path, wanted: Path) -> None:
    """Create and remove a file in ``directory``; ``LocalError`` about ``wanted`` when that fails."""
    if not directory.is_dir():
        where = f"into {directory}: it" if directory == wanted else f"{wanted}: {directory}"
        message = f"cannot write {where} is not a directory"
        raise LocalError(message, path=directory, reason="not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".pipeline-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        doing = "cannot write into" if directory == wanted else f"cannot write {wanted}: cannot write into"
        raise LocalError.from_os_error(doing, directory, exc) from exc


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem ``path`` is on (as far as this process may look)."""
    path = path.resolve()
    with contextlib.suppress(OSError):
        dev = path.stat().st_dev
        while path.parent != path and path.parent.stat().st_dev == dev:
            path = path.parent
    return path


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 10e6 else f"{n / 1e6:,.0f} MB"


# --- locks -------------------------------------------------------------------------------------


class RunLock:
    """An exclusive, non-blocking lock on a run directory, released when the process ends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        except OSError as exc:
            raise LocalError.from_os_error("cannot create the lock file", self.path, exc) from exc
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


def work_key(config_dict: Mapping[str, Any], input_paths: Iterable[str | os.PathLike[str]]) -> str:
    """A digest of the work a run does: its config (``Config.to_dict()``) and its inputs.

    sha256 (hex) of a canonical JSON (sorted keys) of the config and of the resolved input paths,
    sorted: the same files named in another order, or by another relative path, are the same work.
    """
    inputs = sorted({str(Path(p).resolve()) for p in input_paths})
    canonical = orjson.dumps({"config": dict(config_dict), "inputs": inputs}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class ActiveRunGuard:
    """An exclusive, non-blocking lock on ``<base_dir>/.active/<key>.lock`` while a run does a work.

    Another guard on the same key, in any process, raises ``ConcurrentRunError`` naming the pid and
    run directory that hold it. The lock goes with the process (flock); ``release`` also removes the
    lock file. A context manager: ``with ActiveRunGuard(base, work_key(...), run_dir=d): ...``.
    """

    def __init__(self, base_dir: Path, key: str, *, run_dir: Path | str | None = None) -> None:
        if not key or os.sep in key or key.startswith("."):
            raise ValueError(f"not a usable work key: {key!r}")
        self.path = make_private_dir(Path(base_dir) / ACTIVE_DIR) / f"{key}.lock"
        self.key = key
        self._fd = self._acquire()
        info = {"pid": os.getpid(), "run_dir": str(run_dir) if run_dir is not None else None}
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, orjson.dumps(info), 0)
        except OSError as exc:
            self.release()
            raise LocalError.from_os_error("cannot write the lock file", self.path, exc) from exc

    def _acquire(self) -> int:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
            except OSError as exc:
                raise LocalError.from_os_error("cannot create the lock file", self.path, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ConcurrentRunError(holder.get("pid"), holder.get("run_dir"), self.path) from None
            except OSError as exc:
                os.close(fd)
                raise LocalError.from_os_error("cannot lock", self.path, exc) from exc
            if _same_file(fd, self.path):
                return fd
            os.close(fd)  # locked a file its holder removed meanwhile: lock the one in place now

    def release(self) -> None:
        """Remove the lock file and unlock it (idempotent)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):  # still ours: remove it while it is locked
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(fd)  # unlocks

    def __enter__(self) -> ActiveRunGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_holder(fd: int) -> dict[str, Any]:
    """What the holder of a lock file wrote in it: ``{"pid": ..., "run_dir": ...}`` or ``{}``."""
    try:
        info = orjson.loads(os.pread(fd, 65536, 0))
    except (OSError, orjson.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


# --- rejects -----------------------------------------------------------------------------------


class RejectsFile:
    """The run's rejects: one NDJSON object per rejected record (file, line, reason, record).

    Written to ``<path>.part``; ``commit`` puts it in place. A resume that stops before it has
    re-read everything therefore leaves the previous, whole list where it was. A failure to write
    raises ``LocalError``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._part = path.with_name(path.name + ".part")
        try:
            self._fh = open_private(self._part, "wb")
        except OSError as exc:
            raise LocalError.from_os_error("cannot create the rejects file", self._part, exc) from exc
        self._committed = False
        self.by_reason: Counter[str] = Counter()
        self.count = 0
        self.sample: list[dict[str, object]] = []  # the first SAMPLE_SIZE rejects, without the record

    def write(self, reject: object) -> None:
        file, line, reason, record = (getattr(reject, k) for k in ("file", "line", "reason", "record"))
        entry = {"file": str(file), "line": line, "reason": reason, "record": record}
        try:
            self._fh.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        except OSError as exc:
            raise LocalError.from_os_error("cannot write the rejects file", self._part, exc) from exc
        if is_file_skip(reason):  # a file skipped whole: listed here, reported apart (not a record)
            return
        self.by_reason[_reason_kind(reason)] += 1
        self.count += 1
        if len(self.sample) < SAMPLE_SIZE:
            self.sample.append({"file": str(file), "line": line, "reason": reason})

    def commit(self) -> None:
        """Flush and put the list in place (atomically)."""
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            os.replace(self._part, self.path)
        except OSError as exc:
            raise LocalError.from_os_error("cannot write the rejects file", self.path, exc) from exc
        self._committed = True

    def close(self) -> None:
        if not self._fh.closed:
            with contextlib.suppress(OSError):  # committed: already flushed; else: discarded below
                self._fh.close()
        if not self._committed:
            with contextlib.suppress(OSError):
                self._part.unlink(missing_ok=True)


def _reason_kind(reason: str) -> str:
    """Group reasons that differ only by details (``not valid JSON: unexpected char at 12``)."""
    return reason.split(":")[0].split(" (")[0]
