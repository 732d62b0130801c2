"""File transfers of the API client: streamed upload bodies, the upload procedure, downloads.

``FileTransfers`` is mixed into ``api.ApiClient`` (kept apart to keep each file short).

A multipart upload body has an exact length known before sending.

The body is ``preamble + <file bytes> + epilogue``: the preamble holds the form field ``type``
and the headers of the ``file`` part; the file bytes are streamed from the caller's chunks and
never held in memory as a whole. So ``Content-Length = len(preamble) + size + len(epilogue)``
and the request needs no chunked transfer encoding.

When the body factory also says where its bytes are on disk (a ``file_parts()`` method returning
:class:`FileParts`, as ``upload.body_stream`` does), the file bytes go out with ``loop.sendfile``:
the kernel copies them from the page cache to the socket, with no Python buffer, no per-chunk
event-loop work and no GIL held while it does (the reader thread runs meanwhile). Transports
without native sendfile (TLS) get the same bytes as streamed 1 MiB chunks instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.payload

from pipeline.client.retry import NETWORK_ERRORS, error_from_answer, is_ambiguous, is_retryable, transport_error
from pipeline.errors import InputError, ServiceError, TransportError, UsageError
from pipeline.formats import CONTENT_TYPES

Id = str | int

_FORBIDDEN_IN_FILENAME = frozenset('"\\\r\n') | {chr(c) for c in range(32)} | {chr(127)}


def check_filename(filename: str) -> None:
    """A filename must fit a quoted ``Content-Disposition`` parameter unchanged.

    It is what the server reports back as ``input_file_name``, and the upload looks it up
    after an ambiguous failure, so it must survive the round trip exactly.
    """
    if not filename or filename != filename.strip():
        raise UsageError(f"upload filename {filename!r} is empty or has surrounding spaces")
    bad = sorted(set(filename) & _FORBIDDEN_IN_FILENAME)
    if bad or "/" in filename:
        raise UsageError(f"upload filename {filename!r} holds a quote, backslash, slash or control character")


class MultipartBody:
    """One ``multipart/form-data`` body: field ``type`` = ``type_value``, part ``file``."""

    def __init__(self, *, filename: str, content_type: str, type_value: str, boundary: str | None = None):
        check_filename(filename)
        self.boundary = boundary or "pipeline-" + secrets.token_hex(16)
        self.filename = filename
        b = self.boundary
        self.preamble = (
            f"--{b}\r\n"
            'Content-Disposition: form-data; name="type"\r\n'
            "\r\n"
            f"{type_value}\r\n"
            f"--{b}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n"
            "\r\n"
        ).encode()
        self.epilogue = f"\r\n--{b}--\r\n".encode()

    @property
    def content_type(self) -> str:
        """The request's ``Content-Type`` header value."""
        return f"multipart/form-data; boundary={self.boundary}"

    def length(self, size: int) -> int:
        """Exact body length for a file of ``size`` bytes."""
        return len(self.preamble) + size + len(self.epilogue)

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Preamble, the file's chunks as they come, epilogue."""
        yield self.preamble
        async for chunk in chunks:
            if chunk:
                yield bytes(chunk)
        yield self.epilogue


class BodySizeError(UsageError):
    """The chunks did not add up to the announced ``size`` (the request would be corrupt)."""


class SizeGuard:
    """Passes chunks through, failing as soon as they exceed ``size`` or end short of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.error: BodySizeError | None = None

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.sent += len(chunk)
            if self.sent > self.size:
                self.error = BodySizeError(f"upload body is longer than its announced size {self.size}")
                raise self.error
            yield chunk
        if self.sent != self.size:
            self.error = BodySizeError(f"upload body has {self.sent} bytes, announced size {self.size}")
            raise self.error


async def close_all(streams: list[Any]) -> None:
    """Close the body generators of one attempt (outermost first), so files are released now."""
    for stream in streams:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):  # still held by aiohttp's writer: leave it
                await aclose()


@dataclass(frozen=True, slots=True)
class FileParts:
    """Where an upload's file bytes are: ``header`` then the ``ranges`` ([start, end)) of ``path``."""

    header: bytes
    path: Path
    ranges: tuple[tuple[int, int], ...]
    label: str = "upload"  # names the body in errors ("batch 3")

    @property
    def size(self) -> int:
        return len(self.header) + sum(end - start for start, end in self.ranges)


class FilePartsPayload(aiohttp.payload.Payload):
    """An upload body of ``before + parts + after``, its file ranges sent with ``loop.sendfile``.

    A payload is built per attempt (like a body stream, it is consumed by its send). A file found
    shorter than planned raises ``InputError``, as ``Batch.iter_chunks`` does.
    """

    def __init__(self, parts: FileParts, *, before: bytes, after: bytes, content_type: str) -> None:
        super().__init__(parts, content_type=content_type)
        self._parts, self._before, self._after = parts, before, after
        self._size = len(before) + parts.size + len(after)
        self._native = True

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file payload is streamed, not decoded")

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        head = self._before + self._parts.header
        if head:
            await writer.write(head)  # also sends the request's buffered headers
        elif hasattr(writer, "send_headers"):
            writer.send_headers()
        with open(self._parts.path, "rb") as f:
            for start, end in self._parts.ranges:
                await self._send_range(writer, f, start, end - start)
        if self._after:
            await writer.write(self._after)

    def _short(self) -> InputError:
        return InputError(
            self._parts.path, f"shorter than planned for {self._parts.label} (changed since it was read?)"
        )

    async def _send_range(self, writer: Any, f: Any, offset: int, count: int) -> None:
        if self._native and count:
            await writer.drain()
            try:
                sent = await asyncio.get_running_loop().sendfile(writer.transport, f, offset, count, fallback=False)
            except asyncio.SendfileNotAvailableError:
                self._native = False  # e.g. TLS: stream chunks instead
            else:
                if sent != count:
                    raise self._short()
                return
        f.seek(offset)
        while count:
            chunk = f.read(min(1 << 20, count))
            if not chunk:
                raise self._short()
            count -= len(chunk)
            await writer.write(chunk)


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The execution an upload created, after ``attempts`` tries."""

    execution: dict[str, Any]
    attempts: int
    elapsed_s: float


class UploadUnsettled(ServiceError):
    """An upload attempt ended in a way that may have created its execution.

    A connection lost once the body was sent, a timeout, a 5xx (a gateway's 504 while the backend
    goes on), a 2xx that cannot be read, carries an error envelope or has no execution ``id``. The
    client never sends such a file again by itself: the run settles it by looking the file name up
    over a window of time (see ``settle.py``) and sends again only when the window ends without a
    sighting.
    """

    def __init__(self, cause: ServiceError, attempts: int) -> None:
        self.cause = cause
        self.attempts = attempts
        super().__init__(f"{cause} (the upload may have created its execution)")


class FileTransfers:
    """Uploads and downloads; needs the host's ``_send``, ``_with_retry``, paths."""

    base_url: str
    timeout_s: float
    _send: Callable[..., Awaitable[Any]]
    _with_retry: Callable[..., Awaitable[tuple[Any, int]]]
    _executions_path: Callable[..., str]
    _clean: Callable[[ServiceError], ServiceError]

    @property
    def session(self) -> aiohttp.ClientSession:
        raise NotImplementedError

    async def download_data_file(self, uri: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """Stream a platform file (``error_file_uri``, ``input_file_uri``). Opening is retried;
        a failure in the middle of the stream raises ``TransportError``."""
        method, path, params = "GET", "/v1/data_file/data", {"uri": uri}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout_s, 60), sock_read=self.timeout_s)

        async def attempt(_: int) -> aiohttp.ClientResponse:
            try:
                resp = await self.session.request(method, self.base_url + path, params=params, timeout=timeout)
                if 200 <= resp.status < 300:
                    return resp
                try:
                    body = await resp.read()
                finally:
                    resp.release()
            except NETWORK_ERRORS as exc:
                err = transport_error(exc, method=method, path=path, timeout_s=self.timeout_s)
                raise self._clean(err) from exc
            refused = error_from_answer(
                resp.status,
                body,
                resp.headers.get("Retry-After"),
                method=method,
                path=path,
                date=resp.headers.get("Date"),
            )
            raise self._clean(refused)

        resp, _ = await self._with_retry(attempt, method, path)
        try:
            async for chunk in resp.content.iter_chunked(chunk_size):
                yield chunk
        except NETWORK_ERRORS as exc:
            err = transport_error(exc, method=method, path=path, timeout_s=self.timeout_s)
            raise self._clean(err) from exc
        finally:
            resp.release()

    async def upload(
        self,
        datamart_id: Id,
        import_id: Id,
        *,
        chunks: Callable[[], AsyncIterator[bytes]],
        size: int,
        filename: str,
        mime_type: str,
        form: str = "multipart",
        on_attempt: Callable[[int], None] | None = None,
    ) -> UploadResult:
        """Upload one file, creating one execution. ``chunks()`` is called for every attempt.

        The body is streamed with an explicit ``Content-Length`` (never chunked). ``on_attempt(n)``
        is told before the n-th send. Failures where nothing was created (429, 503, connection
        refused, 408) are retried under the client's policy; when it is spent, the last error is
        raised with ``attempts`` set on it. A failure that may have created the execution raises
        :class:`UploadUnsettled` at once: it is never re-sent here.
        """
        if form not in ("multipart", "raw"):
            raise UsageError(f"upload form must be 'multipart' or 'raw' (got {form!r})")
        if mime_type not in CONTENT_TYPES:
            raise UsageError(f"unknown mime_type {mime_type!r}; known: {', '.join(CONTENT_TYPES)}")
        if size < 0:
            raise UsageError("upload size must be >= 0")
        content_type = CONTENT_TYPES[mime_type]
        multipart = None
        if form == "multipart":
            multipart = MultipartBody(filename=filename, content_type=content_type, type_value=content_type)
        else:
            check_filename(filename)
        method, path = "POST", self._executions_path(datamart_id, import_id)
        started = time.monotonic()

        async def attempt(n: int) -> dict[str, Any]:
            if on_attempt is not None:
                on_attempt(n)
            guard = SizeGuard(size)
            if multipart is not None:
                headers = {"Content-Type": multipart.content_type, "Content-Length": str(multipart.length(size))}
            else:
                headers = {"Content-Type": content_type, "Content-Length": str(size)}
            file_parts = getattr(chunks, "file_parts", None)
            streams: list[Any] = []
            if file_parts is not None:  # bytes on disk: sendfile
                parts = file_parts()
                if parts.size != size:
                    raise BodySizeError(f"upload body has {parts.size} bytes, announced size {size}")
                before, after = (multipart.preamble, multipart.epilogue) if multipart else (b"", b"")
                data: Any = FilePartsPayload(parts, before=before, after=after, content_type=headers["Content-Type"])
            else:
                source = chunks()
                streams = [guard.wrap(source), source]
                if multipart is not None:
                    streams.insert(0, multipart.stream(streams[0]))
                data = streams[0]
            try:
                answer = await self._send(method, path, data=data, headers=headers, body_bytes=size)
            except ServiceError as exc:
                if guard.error is not None:
                    raise guard.error from exc
                if is_ambiguous(exc):
                    raise UploadUnsettled(exc, n) from exc
                raise
            finally:
                await close_all(streams)
            if guard.error is not None:
                raise guard.error
            if not isinstance(answer, dict) or answer.get("id") in (None, ""):
                problem = TransportError(
                    f"upload answer holds no execution id: {answer!r:.200}", method=method, path=path
                )
                raise UploadUnsettled(problem, n)
            return answer

        execution, attempts = await self._with_retry(
            attempt, method, path, lambda e: not isinstance(e, UploadUnsettled) and is_retryable(e)
        )
        return UploadResult(execution=execution, attempts=attempts, elapsed_s=time.monotonic() - started)
