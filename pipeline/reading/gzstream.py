"""Decompressing a ``.gz`` input while it is read, losing nothing when the stream is bad."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Protocol

from pipeline.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib reads the gzip header and checks the trailer (CRC-32, size)
GZIP_CHUNK = 1 << 16  # compressed bytes fed to zlib at a time


class RawStream(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


class Named(Protocol):
    @property
    def name(self) -> str: ...


def is_gzip(path: Named) -> bool:
    """Whether an input is read as gzip: by its name, ``.gz`` in any case (``discover`` checks the
    magic bytes agree). The one test of it: the reader, the batch sizing and the spool use it."""
    return path.name.lower().endswith(".gz")


class GzipStream:
    """The decompressed bytes of a ``.gz`` file (all its members, as ``gzip -dc`` writes them) for
    :func:`~pipeline.reading.record_runs.fill_buffer`, read with ``zlib``.

    Unlike ``gzip.GzipFile``, bad data raises nothing and loses nothing: ``readinto`` hands out all
    that zlib decoded, then returns 0 (the end), and the stream says why it ended: cleanly, or
    with ``garbage`` bytes after the last member that do not start another one (ignored, as
    ``gzip -d`` does, with a warning), or with a ``problem`` (a truncated or corrupt stream: decoding
    stopped after ``consumed`` of ``size`` compressed bytes). Disk errors still raise ``OSError``.

    When zlib raises, the bytes of that call are fed again one at a time, from a copy of the
    decompressor taken before it (about 1 us per call of up to ``GZIP_CHUNK`` bytes), so that what
    they decode before the error is kept too.
    """

    def __init__(self, path: Path | object, raw: RawStream | None = None, size: int | None = None) -> None:
        """``raw``: the compressed stream when it is not the local file ``path`` (a remote object,
        whose ``size`` is known from its listing)."""
        self.name = str(path)
        if raw is None:
            assert isinstance(path, Path)
            raw = open(path, "rb", buffering=0)
            size = os.fstat(raw.fileno()).st_size
        self._raw: RawStream = raw
        self.size = size if size is not None else -1  # -1: unknown
        self._zlib = self._saved = zlib.decompressobj(GZIP_WBITS)
        self._data = b""  # compressed bytes being fed (file offset ``_at``); ``_off``: the next one
        self._at = self._off = 0
        self._eof = False  # the file was read to its end
        self._careful = False  # feeding one byte at a time: zlib raised on these bytes
        self.members = 0  # gzip members decoded whole
        self.consumed = 0  # at the end: the compressed bytes decoded
        self.garbage = 0
        self.problem: str | None = None  # why decoding stopped before the end of the gzip data
        self.not_gzip = False  # ... before the start: the file is not gzip at all
        self.done = False
        try:
            while len(self._data) < 2 and not self._eof:
                self._refill()
        except OSError as exc:  # as fill_buffer says it
            self._raw.close()
            raise InputError(path, f"read failed: {exc}") from None
        if self._data[:2] != GZIP_MAGIC:
            self.not_gzip = True
            self._stop("empty .gz: not a gzip file" if not self._data else "not a gzip file (no gzip header)")

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def readinto(self, buffer: memoryview | bytearray) -> int:
        out = memoryview(buffer)
        want = len(out)
        n = 0
        while n < want and not self.done:
            if self._off == len(self._data) and not self._eof:
                self._refill()
            piece = memoryview(self._data)[self._off : self._off + 1 if self._careful else None]
            z = self._zlib
            if not self._careful:
                self._saved = z.copy()
            try:
                data = z.decompress(piece, want - n)
            except zlib.error as exc:
                if self._careful:
                    self._stop(str(exc))
                    break
                self._zlib, self._careful = self._saved, True
                continue
            self._off += len(piece) - len(z.unused_data if z.eof else z.unconsumed_tail)  # at eof both may be set
            if data:
                out[n : n + len(data)] = data
                n += len(data)
            if z.eof:
                self._next_member()
            elif not data and self._eof and self._off == len(self._data):
                where = f"member {self.members + 1}" if self.members else "data"
                self._stop(f"the file ends inside the gzip {where}")
        return n

    def _refill(self) -> None:
        """Read the next compressed bytes of the file, after those of ``_data`` not fed yet."""
        rest = self._data[self._off :]
        more = self._raw.read(GZIP_CHUNK)
        self._at += self._off
        self._data, self._off = rest + more if rest else more, 0
        self._careful = False
        self._eof = not more

    def _next_member(self) -> None:
        self.members += 1
        while len(self._data) - self._off < 2 and not self._eof:
            self._refill()
        head = self._data[self._off : self._off + 2]
        if head == GZIP_MAGIC:  # another member (``cat a.gz b.gz``)
            self._zlib = zlib.decompressobj(GZIP_WBITS)
            return
        at = self._at + self._off
        self.garbage = max(self.size - at, len(self._data) - self._off)  # size -1: what was read
        self.consumed = at
        self.done = True

    def _stop(self, problem: str) -> None:
        self.problem = problem
        self.consumed = self._at + self._off
        self.done = True

    def unread(self, next_line: int, held: int, held_lines: int) -> str | None:
        """What of the file was not read, in a sentence for the report (``None``: all was):
        ``next_line`` is the line after the last one read whole, ``held`` the bytes of a last
        record cut short (``held_lines`` lines), which were decoded but not sent."""
        if self.problem is None:
            return None
        if self.not_gzip:
            return self.problem
        after = f"after line {next_line - 1}" if next_line > 1 else "before line 1"
        if not held:
            rest = "the rest was not sent"
        elif held_lines <= 1:
            rest = f"the partial line {next_line} ({held:,} bytes decoded) and the rest were not sent"
        else:
            last = next_line + held_lines - 1
            rest = f"the partial record of lines {next_line}-{last} ({held:,} bytes decoded) and the rest were not sent"
        of_size = f" of {self.size:,}" if self.size >= 0 else ""
        return (
            f"gzip data is truncated/corrupt ({self.problem}): decoding stopped {after} "
            f"({self.consumed:,}{of_size} compressed bytes read); {rest}"
        )
