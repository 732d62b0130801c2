"""The upload procedure: one file becomes one execution, never two.

``Uploader.upload`` sends a file's body (a multipart form, or the raw file) with an exact
``Content-Length``, rebuilding the body for each attempt. Failures where nothing was created (429,
503, 408, a connection refused) are retried under the client's policy; when it is spent, the last
error is raised with ``attempts`` set on it. A failure that may have created the execution raises
:class:`~pipeline.client.outcomes.UploadUnsettled` at once: the file is never re-sent here (the run
settles it by a lookup, see ``pipeline.engine.settle``).

With an :class:`~pipeline.client.limiter.UploadLimiter`, each attempt holds one of its slots (and,
with a request budget, takes its token once it has the slot): the time spent waiting for either
counts neither as an attempt nor against the retry window. When the limiter is closed (the run
stops sending) while an upload waits for a slot, ``SlotsClosed`` is raised if nothing was sent
yet, else the last attempt's error (retryable and not ambiguous: the batch is left for resume).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from pipeline.client.http import Requester
from pipeline.client.limiter import SlotsClosed, UploadLimiter
from pipeline.client.multipart import BodySizeError, MultipartBody, SizeGuard, check_filename, close_all
from pipeline.client.outcomes import UploadResult, UploadUnsettled
from pipeline.client.paths import Id, executions_path
from pipeline.client.progress import BodyProgress
from pipeline.client.retry import is_ambiguous, is_retryable
from pipeline.client.sendfile import FilePartsPayload
from pipeline.errors import ServiceError, TransportError, UsageError
from pipeline.formats import CONTENT_TYPES

ChunkSource = Callable[[], AsyncIterator[bytes]]


class UploadBody:
    """One file's request body and headers. ``chunks()`` gives the file's bytes anew per attempt;
    when it also has a ``file_parts()`` method (bytes on disk), they go out with sendfile."""

    def __init__(self, chunks: ChunkSource, *, size: int, filename: str, mime_type: str, form: str) -> None:
        if form not in ("multipart", "raw"):
            raise UsageError(f"upload form must be 'multipart' or 'raw' (got {form!r})")
        if mime_type not in CONTENT_TYPES:
            raise UsageError(f"unknown mime_type {mime_type!r}; known: {', '.join(CONTENT_TYPES)}")
        if size < 0:
            raise UsageError("upload size must be >= 0")
        self.chunks, self.size = chunks, size
        self.file_type = CONTENT_TYPES[mime_type]
        self.multipart: MultipartBody | None = None
        if form == "multipart":
            self.multipart = MultipartBody(filename=filename, content_type=self.file_type, type_value=self.file_type)
        else:
            check_filename(filename)

    def headers(self) -> dict[str, str]:
        if self.multipart is not None:
            return {
                "Content-Type": self.multipart.content_type,
                "Content-Length": str(self.multipart.length(self.size)),
            }
        return {"Content-Type": self.file_type, "Content-Length": str(self.size)}

    def open(self, guard: SizeGuard, content_type: str, progress: BodyProgress) -> tuple[Any, list[Any]]:
        """The data of one attempt, and the streams to close once it is over."""
        file_parts = getattr(self.chunks, "file_parts", None)
        multipart = self.multipart
        if file_parts is not None:  # bytes on disk: sendfile
            parts = file_parts()
            if parts.size != self.size:
                raise BodySizeError(f"upload body has {parts.size} bytes, announced size {self.size}")
            before, after = (multipart.preamble, multipart.epilogue) if multipart else (b"", b"")
            payload = FilePartsPayload(parts, before=before, after=after, content_type=content_type, progress=progress)
            return payload, []
        source = self.chunks()
        streams: list[Any] = [guard.wrap(source), source]
        if multipart is not None:
            streams.insert(0, multipart.stream(streams[0]))
        return streams[0], streams


def _retry_upload(exc: BaseException) -> bool:
    """An upload is retried only when nothing can have been created."""
    return not isinstance(exc, UploadUnsettled) and is_retryable(exc)


class Uploader:
    """The upload procedure of an :class:`~pipeline.client.api.ApiClient`, over its requester."""

    def __init__(self, http: Requester, limiter: UploadLimiter | None = None) -> None:
        self._http = http
        self.limiter = limiter

    def _gate(self, size: int, order: int) -> Callable[[], AbstractAsyncContextManager[None]] | None:
        """What each attempt waits for first: a slot of the limiter (lowest ``order`` first), then
        a token of the budget."""
        limiter, http = self.limiter, self._http
        if limiter is None and http.budget is None:
            return None

        @contextlib.asynccontextmanager
        async def gate() -> AsyncIterator[None]:
            async with limiter.slot(size, order) if limiter is not None else contextlib.nullcontext():
                await http.take_token()
                yield

        return gate

    async def upload(
        self,
        datamart_id: Id,
        import_id: Id,
        *,
        chunks: ChunkSource,
        size: int,
        filename: str,
        mime_type: str,
        form: str = "multipart",
        on_attempt: Callable[[int], None] | None = None,
        order: int = 0,
    ) -> UploadResult:
        """Upload one file, creating one execution (see ``ApiClient.upload``)."""
        body = UploadBody(chunks, size=size, filename=filename, mime_type=mime_type, form=form)
        method, path = "POST", executions_path(datamart_id, import_id)
        started = time.monotonic()
        made, last_error = 0, None

        async def attempt(n: int) -> dict[str, Any]:
            nonlocal made, last_error
            made = n
            if on_attempt is not None:
                on_attempt(n)
            try:
                return await self._attempt(body, n, method, path)
            except ServiceError as exc:
                last_error = exc
                raise

        gate = self._gate(size, order)
        try:
            execution, attempts = await self._http.with_retry(attempt, method, path, _retry_upload, gate=gate)
        except SlotsClosed:
            if last_error is None:
                raise  # nothing was sent
            last_error.attempts = made  # a retry that will not happen: the batch is left for resume
            raise last_error from None
        return UploadResult(execution=execution, attempts=attempts, elapsed_s=time.monotonic() - started)

    async def _attempt(self, body: UploadBody, n: int, method: str, path: str) -> dict[str, Any]:
        """Attempt ``n``: send the body once; the execution, or why there is none (maybe)."""
        progress = BodyProgress(self._http.timeout_s)  # the attempt may go this long without progress
        guard = SizeGuard(body.size, progress)
        headers = body.headers()
        data, streams = body.open(guard, headers["Content-Type"], progress)
        try:
            answer = await self._http.send(method, path, data=data, headers=headers, progress=progress, budgeted=True)
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
            problem = TransportError(f"upload answer holds no execution id: {answer!r:.200}", method=method, path=path)
            raise UploadUnsettled(problem, n)
        return answer
