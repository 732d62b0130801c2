"""The sendfile payload of an upload: file bytes that go from the page cache to the socket.

When the body factory also says where its bytes are on disk (a ``file_parts()`` method returning
:class:`FileParts`, as ``pipeline.engine``'s batch body stream does), the file bytes go out with
``loop.sendfile``: the kernel copies them from the page cache to the socket, with no Python buffer,
no per-chunk event-loop work and no GIL held while it does (the reader thread runs meanwhile).
Transports without native sendfile (TLS) get the same bytes as streamed 1 MiB chunks instead.

With a ``progress`` (``client.progress.BodyProgress``), each range goes out in slices, each slice
one ``sendfile`` call whose end is progress: the first is ``FIRST_SLICE``, and a slice doubles while
it takes under an eighth of the time allowed without progress (up to ``MAX_SLICE``: a 100 MB body
on a fast link is a dozen calls) and halves when it takes over half of it (a slow link).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.payload

from pipeline.client.progress import BodyProgress
from pipeline.errors import InputError

FIRST_SLICE = 256 << 10
MIN_SLICE = 64 << 10
MAX_SLICE = 64 << 20


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

    def __init__(
        self,
        parts: FileParts,
        *,
        before: bytes,
        after: bytes,
        content_type: str,
        progress: BodyProgress | None = None,
    ) -> None:
        super().__init__(parts, content_type=content_type)
        self._parts, self._before, self._after = parts, before, after
        self._size = len(before) + parts.size + len(after)
        self._native = True
        self._progress = progress
        self._slice = FIRST_SLICE

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file payload is streamed, not decoded")

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        head = self._before + self._parts.header
        if head:
            await writer.write(head)  # also sends the request's buffered headers
            self._sent(len(head))
        elif hasattr(writer, "send_headers"):
            writer.send_headers()
        with open(self._parts.path, "rb") as f:
            for start, end in self._parts.ranges:
                await self._send_range(writer, f, start, end - start)
        if self._after:
            await writer.write(self._after)
        if self._progress is not None:
            sock = writer.transport.get_extra_info("socket") if writer.transport else None
            self._progress.body_sent(sock, len(self._before) + self._parts.size + len(self._after))

    def _sent(self, count: int) -> None:
        if self._progress is not None:
            self._progress.sent(count)

    def _short(self) -> InputError:
        return InputError(
            self._parts.path, f"shorter than planned for {self._parts.label} (changed since it was read?)"
        )

    async def _send_range(self, writer: Any, f: Any, offset: int, count: int) -> None:
        if self._native and count:
            await writer.drain()
            try:
                while count:
                    size = count if self._progress is None else min(count, self._slice)
                    await self._send_slice(writer, f, offset, size)
                    offset, count = offset + size, count - size
                return
            except asyncio.SendfileNotAvailableError:
                self._native = False  # e.g. TLS: stream chunks instead
        f.seek(offset)
        while count:
            chunk = f.read(min(1 << 20, count))
            if not chunk:
                raise self._short()
            count -= len(chunk)
            await writer.write(chunk)
            self._sent(len(chunk))

    async def _send_slice(self, writer: Any, f: Any, offset: int, size: int) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        sent = await loop.sendfile(writer.transport, f, offset, size, fallback=False)
        if sent != size:
            raise self._short()
        self._sent(sent)
        if self._progress is not None:  # the next slice: about the same share of the time allowed
            took, allowed = loop.time() - began, self._progress.stall_s
            if took < allowed / 8:
                self._slice = min(self._slice * 2, MAX_SLICE)
            elif took > allowed / 2:
                self._slice = max(self._slice // 2, MIN_SLICE)
