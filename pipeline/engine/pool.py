"""The upload pool: ``concurrency`` workers turn batches into execution ids.

Workers take batches from an ``UploadFeed``: the reader's batches (bounded: the reader thread waits
for a credit before it hands one over) and batches to send again (after a settle window ended
without a sighting). Each batch's body is streamed from disk with a fresh stream per attempt
(``loop.sendfile`` of its byte ranges when the connection allows: see ``multipart.py``); retries of
failures where nothing was created happen in ``ApiClient.upload``.

There are ``upload.concurrency`` workers (the most uploads in flight); how many attempts are in
flight at once is the client's ``UploadLimiter``'s decision (``pipeline.client.limiter``): a worker
holds its batch while it waits for a slot. So the batch is journaled as started (and the input
checked unchanged) just before each attempt's first byte, not when the worker takes it.

What becomes of one upload (``UploadOutcome``) is told to an ``UploadListener`` (the run's recorder
journals it before the next step starts):

- UPLOADED: the server answered with an execution;
- UNSETTLED: the attempt may have created the execution (lost answer, 5xx, timeout): the batch goes
  to the settler, which looks it up by name; it is never sent again blindly;
- POSTPONED: a transient failure (throttling, an outage) outlasted the retry window: the batch
  stays unsent, and ``resume`` sends it;
- REFUSED: the server refused this batch for good (a 4xx other than those below);
- NOT_SENT: the run stopped sending (the limiter was closed) before the first attempt: nothing was
  journaled, the batch stays planned and ``resume`` sends it;
- a refusal that will hit every batch (401, 403, 404, 413) raises ``RunStop``: nothing more is sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pipeline.client.limiter import SlotsClosed
from pipeline.client.multipart import FileParts, UploadResult, UploadUnsettled
from pipeline.client.retry import is_ambiguous, is_retryable
from pipeline.errors import ApiError, ServiceError
from pipeline.reading.reader import Batch
from pipeline.reading.sources import Input, streams_ranges

CHUNK_SIZE = 1 << 20
#: a remote batch's body is read in chunks of this size, one ahead of the one being sent: two per
#: upload in memory (16 uploads: 32 MiB); on S3 they are reads of one ranged GET, elsewhere a GET each
REMOTE_CHUNK_SIZE = 1 << 20
#: batches the reader cuts ahead of the workers when they are spooled (``.gz`` inputs: each is up to
#: ``batch.max_bytes`` on disk); plain inputs' batches are descriptions, read ahead ``concurrency``
SPOOLED_READ_AHEAD = 2


def spooled(inputs: Sequence[Input]) -> bool:
    """Whether the run's batches are spooled to disk (a ``.gz`` input is decoded once, into them;
    so are stdin and a remote object that cannot be read by ranges)."""
    return not all(streams_ranges(p) for p in inputs)


def spool_bytes(inputs: Sequence[Input], concurrency: int, max_bytes: int) -> int:
    """The most spool a run may hold at once: the workers' batches, the read-ahead, the one being cut."""
    return (concurrency + SPOOLED_READ_AHEAD + 1) * max_bytes if spooled(inputs) else 0


#: Refusals that say the run itself cannot go on (the token, the right, the import, the size limit).
RUN_WIDE_STATUSES = frozenset({401, 403, 404, 413})


class UploadOutcome(StrEnum):
    UPLOADED = "uploaded"
    UNSETTLED = "unsettled"
    POSTPONED = "postponed"
    REFUSED = "refused"
    NOT_SENT = "not_sent"


class RunStop(ServiceError):
    """A refusal that every further upload would meet: the run stops sending (resumable)."""

    def __init__(self, cause: ApiError, hint: str) -> None:
        self.cause = cause
        self.hint = hint
        super().__init__(f"{cause}; {hint}")


class UploadListener(Protocol):
    def upload_started(self, batch: Batch) -> None: ...
    def uploaded(self, batch: Batch, result: UploadResult) -> None: ...
    def upload_unsettled(self, batch: Batch, error: UploadUnsettled) -> None: ...
    def upload_postponed(self, batch: Batch, error: ServiceError) -> None: ...
    def upload_failed(self, batch: Batch, error: ServiceError) -> None: ...


@dataclass(frozen=True, kw_only=True)
class UploadTarget:
    datamart_id: str
    import_id: str
    mime_type: str
    form: str  # "multipart" or "raw"
    filename_of: Callable[[Batch], str]
    check_source: Callable[[Batch], None] = lambda batch: None  # raises when the input changed


class BatchBody:
    """A factory of fresh body streams of one batch (a streamed body is consumed by its first send).

    ``file_parts()`` also tells the client where the bytes are, so it can send them with sendfile.
    """

    def __init__(self, batch: Batch, chunk_size: int = CHUNK_SIZE) -> None:
        self.batch = batch
        self.chunk_size = chunk_size

    def __call__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.batch.iter_chunks(self.chunk_size):
            yield chunk

    def file_parts(self) -> FileParts:
        b = self.batch
        assert isinstance(b.data_path, Path)  # a remote batch is a StreamedBatchBody
        return FileParts(header=b.header, path=b.data_path, ranges=b.ranges, label=f"batch {b.number}")


class StreamedBatchBody:
    """Fresh body streams of a batch of a remote object: its ranges read in a thread (ranged
    reads block), one chunk read ahead while the previous one is sent; no ``file_parts``."""

    def __init__(self, batch: Batch, chunk_size: int = REMOTE_CHUNK_SIZE) -> None:
        self.batch = batch
        self.chunk_size = chunk_size

    def __call__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        chunks = self.batch.iter_chunks(self.chunk_size)
        ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        try:
            while (chunk := await ahead) is not None:
                ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
                yield chunk
        finally:
            await asyncio.gather(ahead, return_exceptions=True)  # the thread is done with the generator
            await asyncio.to_thread(chunks.close)  # its reads end off the loop (fsspec waits on its own)


def body_stream(batch: Batch, chunk_size: int = CHUNK_SIZE) -> Callable[[], AsyncIterator[bytes]]:
    """A factory of fresh body streams: a :class:`BatchBody` (sendfile) for bytes on local disk,
    a :class:`StreamedBatchBody` for ranges of a remote object."""
    if isinstance(batch.data_path, Path):
        return BatchBody(batch, chunk_size)
    return StreamedBatchBody(batch)


def run_wide_hint(error: ApiError, size: int) -> str | None:
    """Why a refusal stops the whole run, and what to do; None when it concerns this batch only."""
    if error.status == 401:
        return (
            "the API token was refused (expired or revoked?): set a valid token (temporary tokens from a user "
            "login last one hour: a batch job needs a long-term API token), then `pipeline resume` the run"
        )
    if error.status == 403:
        return "the token may not import into this datamart: fix its rights, then `pipeline resume` the run"
    if error.status == 404:
        return "the document import is unknown to the server (deleted? wrong api.url or datamart?)"
    if error.status == 413:
        return (
            f"the server refused a {size:,}-byte upload as too large although it is within batch.max_bytes: "
            "start a new run with a lower batch.max_bytes (a resume keeps the batches already planned)"
        )
    return None


async def upload_one(client: Any, target: UploadTarget, batch: Batch, listener: UploadListener) -> UploadOutcome:
    """Send one batch; the spool of a ``.gz`` batch is released unless the batch is now unsettled."""
    outcome = UploadOutcome.REFUSED
    started = False

    def before_attempt(n: int) -> None:
        nonlocal started
        target.check_source(batch)  # each attempt sends the file as it is now
        if not started:
            listener.upload_started(batch)  # journaled (fsynced) before the first byte goes out
            started = True

    try:
        try:
            result = await client.upload(
                target.datamart_id,
                target.import_id,
                chunks=body_stream(batch),
                size=batch.size,
                filename=target.filename_of(batch),
                mime_type=target.mime_type,
                form=target.form,
                on_attempt=before_attempt,
                order=batch.number,  # a refused batch, back after its Retry-After, goes before later ones
            )
        except SlotsClosed:
            outcome = UploadOutcome.NOT_SENT
        except UploadUnsettled as exc:
            listener.upload_unsettled(batch, exc)
            outcome = UploadOutcome.UNSETTLED
        except ApiError as exc:
            hint = run_wide_hint(exc, batch.size)
            if hint is not None:
                listener.upload_postponed(batch, exc)
                raise RunStop(exc, hint) from None
            outcome = _not_sent(listener, batch, exc)
        except ServiceError as exc:
            outcome = _not_sent(listener, batch, exc)
        else:
            listener.uploaded(batch, result)
            outcome = UploadOutcome.UPLOADED
        return outcome
    finally:
        if outcome is not UploadOutcome.UNSETTLED:
            batch.discard_spool()


def _not_sent(listener: UploadListener, batch: Batch, error: ServiceError) -> UploadOutcome:
    if is_ambiguous(error):  # whatever raised it, it may have created the execution: settle it
        listener.upload_unsettled(batch, UploadUnsettled(error, getattr(error, "attempts", 1)))
        return UploadOutcome.UNSETTLED
    if is_retryable(error):  # transient, and the retry window is spent: leave it for resume
        listener.upload_postponed(batch, error)
        return UploadOutcome.POSTPONED
    listener.upload_failed(batch, error)
    return UploadOutcome.REFUSED


class UploadFeed:
    """What the workers send: the reader's batches (at most ``size`` waiting) and batches to send again.

    The reader thread takes a credit (a ``threading.Semaphore``, waited on with a timeout so that it
    sees a stop) before it hands a batch over with ``put`` (through ``call_soon_threadsafe``); a
    worker gives the credit back when it takes the batch. ``next`` returns ``None`` once reading is
    over, nothing waits, no upload is in flight and nothing is being settled (``settling()``): an
    upload in flight may still end unsettled and come back to be sent again.
    """

    def __init__(self, size: int, settling: Callable[[], bool] = lambda: False) -> None:
        self.credits = threading.Semaphore(size)
        self.settling = settling
        self._fresh: deque[Batch] = deque()
        self._again: deque[Batch] = deque()
        self._changed = asyncio.Event()
        self._active = 0
        self._reading_done = False
        self._closed = False

    def put(self, batch: Batch) -> None:
        self._fresh.append(batch)
        self._changed.set()

    def send_again(self, batch: Batch) -> None:
        self._again.append(batch)
        self._changed.set()

    def reading_finished(self) -> None:
        self._reading_done = True
        self._changed.set()

    def changed(self) -> None:
        """Something the end condition depends on changed (e.g. a batch was settled)."""
        self._changed.set()

    def close(self) -> None:
        """The run stops: every worker's ``next`` returns ``None`` from now on."""
        self._closed = True
        self._changed.set()

    async def next(self) -> Batch | None:
        while True:
            if self._closed:
                return None
            if self._again or self._fresh:
                if self._again:
                    batch = self._again.popleft()
                else:
                    batch = self._fresh.popleft()
                    self.credits.release()
                self._active += 1
                return batch
            if self._reading_done and not self._active and not self.settling():
                self._changed.set()  # wake the other workers: they end too
                return None
            self._changed.clear()
            await self._changed.wait()

    def done_with(self, batch: Batch) -> None:
        self._active -= 1
        self._changed.set()

    def drain(self) -> None:
        """Release the spools of batches that will not be sent in this run."""
        while self._fresh:
            self._fresh.popleft().discard_spool()
        while self._again:
            self._again.popleft().discard_spool()


async def upload_worker(
    client: Any,
    target: UploadTarget,
    feed: UploadFeed,
    listener: UploadListener,
    on_unsettled: Callable[[Batch], None],
) -> None:
    """Upload batches from ``feed`` until it is over; an unsettled batch goes to ``on_unsettled``."""
    while True:
        batch = await feed.next()
        if batch is None:
            return
        try:
            if await upload_one(client, target, batch, listener) is UploadOutcome.UNSETTLED:
                on_unsettled(batch)
        finally:
            feed.done_with(batch)
