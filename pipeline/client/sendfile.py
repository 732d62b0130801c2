"""The sendfile payload of an upload: file bytes that go from the page cache to the socket.

When the body factory also says where its bytes are on disk (a ``file_parts()`` method returning
:class:`FileParts`, as ``pipeline.engine``'s batch body stream does), the file bytes go out with
``loop.sendfile``: the kernel copies them from the page cache to the socket, with no Python buffer,
no per-chunk event-loop work and no GIL held while it does (the reader thread runs meanwhile).
Transports without native sendfile (TLS) get the same bytes as streamed 1 MiB chunks instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.payload

from pipeline.errors import InputError


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
