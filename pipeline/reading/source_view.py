"""The uncompressed bytes of one input, read by offset (:class:`SourceView`): what ``pipeline
retry`` finds records again in.

Apart from :mod:`pipeline.reading.selection`, which decides which bytes it wants (lines, records,
pieces), because it is only the access: a plain file is read where asked (``os.pread``); a ``.gz``
is decompressed from its start, forward (again from the start only when asked to go back), so
nothing is held whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import InputError
from pipeline.reading.gzstream import GzipStream, is_gzip

CHUNK = 1 << 20  # bytes per read


class SourceView:
    """The uncompressed bytes of one input, read by offset (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._gz: GzipStream | None = None
        self._pos = 0  # the offset the .gz stream is at
        self._fd = -1
        if not is_gzip(path):
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise InputError(path, f"cannot be read ({exc.strerror})") from None

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at the end of the input)."""
        if self._fd >= 0:
            try:
                return os.pread(self._fd, n, offset)
            except OSError as exc:
                raise InputError(self.path, f"read failed: {exc}") from None
        if self._gz is None or offset < self._pos:
            self._reopen()
        while self._pos < offset:  # forward: decompressed and dropped
            if not self._read_gz(min(CHUNK, offset - self._pos)):
                return b""
        return self._read_gz(n)

    def _reopen(self) -> None:
        if self._gz is not None:
            self._gz.close()
        self._gz, self._pos = GzipStream(self.path), 0

    def _read_gz(self, n: int) -> bytes:
        assert self._gz is not None  # opened by read()
        out = bytearray(n)
        view, got = memoryview(out), 0
        while got < n:
            k = self._gz.readinto(view[got:])
            if not k:
                break
            got += k
        self._pos += got
        return bytes(out[:got])

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """``[start, end)`` in pieces of at most 1 MiB; ``InputError`` if the input is shorter."""
        pos = start
        while pos < end:
            data = self.read(pos, min(CHUNK, end - pos))
            if not data:
                raise InputError(self.path, f"shorter than recorded (ends before byte {end:,}): changed since the run?")
            pos += len(data)
            yield data

    def close(self) -> None:
        if self._gz is not None:
            self._gz.close()
            self._gz = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SourceView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
