"""The exceptions of the package.

Every error the package raises on purpose derives from ``PipelineError``::

    PipelineError
    ├── UsageError            misuse: the caller must change something; nothing was sent (exit 2)
    │   ├── ConfigError       a config key is missing, unknown, mistyped or out of range
    │   ├── InputError        an input path is missing, unreadable, empty or not an input file
    │   └── ConcurrentRunError  the same work (config and inputs) is already running elsewhere
    ├── LocalError            the local environment failed: disk full, unwritable directory...
    └── ServiceError          the service (or the way to it) failed
        ├── ApiError          the server answered with an error envelope / 4xx / 5xx
        └── TransportError    no usable answer: connection refused/reset, timeout, bad body

Each error carries its context (config key, path, HTTP status, the server's ``error_id``)
so that one line of text says exactly what failed. No message ever holds the API token.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error raised on purpose by ``pipeline``."""


class UsageError(PipelineError):
    """The caller misused the tool: bad config, bad arguments, bad input paths."""

    hint: str | None = None


class ConfigError(UsageError):
    """A configuration value is wrong. ``key`` is the dotted key, e.g. ``batch.max_bytes``;
    ``where`` says where the value came from when it is known (``PIPELINE_BATCH_MAX_BYTES``,
    ``--max-bytes``, ``import.toml: batch.max_bytes``): the message then starts with it."""

    def __init__(self, key: str, message: str, where: str | None = None) -> None:
        self.key = key
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else f"config key '{key}': {message}")


class InputError(UsageError):
    """An input path cannot be used (missing, unreadable, a directory without input files...)."""

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


class ConcurrentRunError(UsageError):
    """Another process is running the same work (same config, same inputs) right now.

    ``pid`` and ``run_dir`` describe the other run as its lock file tells them (``None`` when the
    other process has not written them yet); ``lock_path`` is the lock file.
    """

    hint = "pass --allow-concurrent to run anyway"

    def __init__(self, pid: int | None, run_dir: str | None, lock_path: object) -> None:
        self.pid = pid
        self.run_dir = run_dir
        self.lock_path = str(lock_path)
        who = f"pid {pid}" if pid is not None else "pid unknown"
        where = f", run directory {run_dir}" if run_dir else ""
        super().__init__(
            f"the same import (same config and inputs) is already running in another process ({who}{where})"
        )


class AlreadyImportedError(UsageError):
    """A new run (or plan) of inputs that a run under the same ``report.dir`` already sent to the
    same API, datamart and document type (``engine.imported_before``): it would import them again."""

    def __init__(
        self,
        *,
        run_id: str,
        run_dir: str,
        finished: bool,
        running: bool,
        outcome: str | None,
        started_at: str | None,
        inputs: list[str],
        others: int,
        changed_input: bool = False,
    ) -> None:
        self.run_id, self.run_dir, self.inputs = run_id, run_dir, inputs
        names = ", ".join(inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
        when = f" started {started_at}" if started_at else ""
        also = f" (and {others} other run(s))" if others else ""
        state = f"finished: {outcome}" if finished else "running now" if running else "not finished"
        if changed_input:  # a file still being written when run X sent part of it
            super().__init__(
                f"{names} changed while run {run_id}{when} ({state}){also} was sending it, to the same API, "
                "datamart and document type: the records that run delivered are still in the file, and a new "
                "run would import them again"
            )
            self.hint = (
                f"send only the lines that run did not deliver (its {run_dir}/report.json lists each execution "
                "by file and lines), or pass --again to import the whole file again on purpose"
            )
            return
        super().__init__(
            f"{names} already sent by run {run_id}{when} ({state}){also}, to the same API, datamart and "
            "document type: a new run would import those records again"
        )
        if finished:
            instead = f"`pipeline retry {run_dir}` sends only what failed or was rejected"
        elif running:
            instead = f"let it finish (`pipeline status {run_dir}`)"
        else:
            instead = f"`pipeline resume {run_dir}` finishes it without sending anything twice"
        self.hint = f"{instead}; to import them again on purpose, pass --again"


class LocalError(PipelineError):
    """The local environment failed (disk full, unwritable directory...).

    ``path`` is the file or directory concerned, ``reason`` the system's explanation (an
    ``OSError``'s ``strerror``, e.g. ``No space left on device``) and ``errno`` its number when
    there was one. ``str(exc)`` is one whole line, e.g.
    ``cannot write the run journal /x/journal.ndjson: No space left on device``.
    """

    def __init__(self, message: str, *, path: object, reason: str, errno: int | None = None) -> None:
        self.message = message
        self.path = str(path)
        self.reason = reason
        self.errno = errno
        super().__init__(message)

    @classmethod
    def from_os_error(cls, doing: str, path: object, exc: OSError) -> LocalError:
        """``LocalError.from_os_error("cannot write the run journal", path, exc)``."""
        reason = exc.strerror or str(exc) or type(exc).__name__
        return cls(f"{doing} {path}: {reason}", path=path, reason=reason, errno=exc.errno)


class ServiceError(PipelineError):
    """The service, or the network to it, failed.

    ``attempts`` is how many tries the request had when this error ended it: set by the client's
    retry loop (``pipeline.client.retry.call_with_retry``) on the error it raises, ``None`` on an
    error that did not come out of that loop.
    """

    attempts: int | None = None


class ApiError(ServiceError):
    """The server answered with an error status.

    ``status`` is the HTTP status, ``error_id`` / ``error_code`` come from the error envelope
    when the server sent one, ``retry_after`` (seconds) from a ``Retry-After`` header.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        method: str = "",
        path: str = "",
        error_id: str | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        self.error_id = error_id
        self.error_code = error_code
        self.retry_after = retry_after
        where = f"{method} {path} " if method else ""
        code = f" {error_code}" if error_code else ""  # the server's own word for it, kept in every reason
        ident = f" (error_id {error_id})" if error_id else ""
        super().__init__(f"{where}-> HTTP {status}{code}: {message}{ident}")


class TransportError(ServiceError):
    """No usable answer: the connection failed, timed out, or the answer was not readable.

    ``ambiguous`` is true when the request may have reached the server and been acted on
    (the body was sent, or may have been, before the failure).
    """

    def __init__(self, message: str, *, method: str = "", path: str = "", ambiguous: bool = True):
        self.message = message
        self.method = method
        self.path = path
        self.ambiguous = ambiguous
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{message}")
