"""The upload pool: ``concurrency`` workers turn batches from a bounded queue into execution ids.

Each batch's body is streamed from disk with a fresh stream per attempt (``Batch.iter_chunks``, or
``loop.sendfile`` of its byte ranges when the connection allows: see ``multipart.py``);
retries, backoff and the settling of ambiguous failures happen in ``ApiClient.upload``. The pool
knows nothing of journals or reports: it reports each step through an ``UploadListener`` so the
run can journal it before the next step starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ServiceError
from .multipart import FileParts
from .reader import Batch

CHUNK_SIZE = 1 << 20
END = None  # the queue's end marker: one per worker


class UploadListener(Protocol):
    def upload_started(self, batch: Batch) -> None: ...
    def uploaded(self, batch: Batch, result: Any) -> None: ...
    def upload_failed(self, batch: Batch, error: ServiceError) -> None: ...


@dataclass(frozen=True, kw_only=True)
class UploadTarget:
    datamart_id: str
    import_id: str
    mime_type: str
    form: str  # "multipart" or "raw"
    filename_of: Callable[[Batch], str]


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
        return FileParts(header=b.header, path=b.data_path, ranges=b.ranges, label=f"batch {b.number}")


def body_stream(batch: Batch, chunk_size: int = CHUNK_SIZE) -> Callable[[], AsyncIterator[bytes]]:
    """A factory of fresh body streams (a :class:`BatchBody`)."""
    return BatchBody(batch, chunk_size)


async def upload_one(client: Any, target: UploadTarget, batch: Batch, listener: UploadListener) -> None:
    listener.upload_started(batch)
    try:
        result = await client.upload(
            target.datamart_id,
            target.import_id,
            chunks=body_stream(batch),
            size=batch.size,
            filename=target.filename_of(batch),
            mime_type=target.mime_type,
            form=target.form,
        )
    except ServiceError as exc:
        listener.upload_failed(batch, exc)
    else:
        listener.uploaded(batch, result)
    finally:
        batch.discard_spool()


async def upload_worker(
    client: Any,
    target: UploadTarget,
    queue: asyncio.Queue[Batch | None],
    listener: UploadListener,
    stop: asyncio.Event,
) -> None:
    """Upload batches from ``queue`` until its end marker, or until ``stop`` is set."""
    while True:
        batch = await queue.get()
        if batch is END:
            return
        if stop.is_set():
            batch.discard_spool()
            continue  # drain without sending: the run is stopping
        await upload_one(client, target, batch, listener)
