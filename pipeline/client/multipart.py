"""Multipart upload bodies: built with an exact length, streamed without holding the file.

The body is ``preamble + <file bytes> + epilogue``: the preamble holds the form field ``type``
and the headers of the ``file`` part; the file bytes are streamed from the caller's chunks and
never held in memory as a whole. So ``Content-Length = len(preamble) + size + len(epilogue)``
and the request needs no chunked transfer encoding. ``SizeGuard`` checks that the chunks add up
to the announced size.

The upload procedure is in :mod:`pipeline.client.uploads`, the sendfile payload in
:mod:`pipeline.client.sendfile`; the names below the imports are re-exported from here for the
callers that knew them as ``pipeline.client.multipart``'s.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from pipeline.client.outcomes import UploadResult, UploadUnsettled
from pipeline.client.paths import Id
from pipeline.client.progress import BodyProgress
from pipeline.client.sendfile import FileParts, FilePartsPayload
from pipeline.errors import UsageError

__all__ = [
    "BodySizeError",
    "FileParts",
    "FilePartsPayload",
    "Id",
    "MultipartBody",
    "SizeGuard",
    "UploadResult",
    "UploadUnsettled",
    "check_filename",
    "close_all",
]

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
    """Passes chunks through, failing as soon as they exceed ``size`` or end short of it; each chunk
    taken on is the upload's ``progress`` (``client.progress``)."""

    def __init__(self, size: int, progress: BodyProgress | None = None) -> None:
        self.size = size
        self.sent = 0
        self.error: BodySizeError | None = None
        self._progress = progress

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            if self._progress is not None and self.sent:
                self._progress.sent(self.sent)  # the chunk before was taken: aiohttp asks for the next
            self.sent += len(chunk)
            if self.sent > self.size:
                self.error = BodySizeError(f"upload body is longer than its announced size {self.size}")
                raise self.error
            yield chunk
        if self.sent != self.size:
            self.error = BodySizeError(f"upload body has {self.sent} bytes, announced size {self.size}")
            raise self.error
        if self._progress is not None:
            self._progress.body_sent(None, self.size)  # no socket at hand: the tail is allowed time


async def close_all(streams: list[Any]) -> None:
    """Close the body generators of one attempt (outermost first), so files are released now."""
    for stream in streams:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):  # still held by aiohttp's writer: leave it
                await aclose()
