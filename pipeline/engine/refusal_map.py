"""Mapping the entries of one execution's error file to the source lines of its batch.

A batch's body is its CSV header (if any) and then, in order, the records of the source between
``byte_start`` and ``byte_end`` that the reader kept: all of them but the rejected ones (their lines
are in ``rejects.ndjson``) and, when records were validated, the blank lines. A retry's batch is
made of pieces of the source far apart (its plan, ``retry.json``): then the records are those of
each piece in turn, each piece's lines counted from its own first line (``Span``). ``BatchSource``
re-reads those records one at a time (each with the physical line where it starts in the uploaded
file and in the source) and checks, by the batch's digest (CRC-32 and size of the exact body),
that the records re-read are the ones that were sent: then the line numbers of the error file
can be trusted. If the digest does not match either way of reading blank lines (the input changed
since), entries are mapped by their text only.

Each entry is looked up (``BatchMapper.map``):
- by its line number, checked against its text when it has one (a mismatch: looked up by text);
- by its text only within the batch (forward from the last match, then from the start), for
  entries with no number and raw failed lines; a multi-line CSV record listed raw as several
  lines maps once, to the line where it starts;
- an entry that matches nothing is returned as unmapped (kept as it came by the caller).
Memory: one record at a time, plus the set of lines already mapped (no record listed twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

from pipeline.client.error_file import ErrorEntry
from pipeline.reading.crc import crc32

BOM = b"\xef\xbb\xbf"
#: How many entries of one batch may be looked for in the whole batch without a match before the
#: rest of its unnumbered entries are given up on (a garbage error file would cost a pass each).
MISS_BUDGET = 16


class SourceRecord(NamedTuple):
    """One record of a batch, re-read (a tuple: a batch has hundreds of thousands)."""

    upload_line: int  # 1-based physical line of the uploaded file where the record starts
    source_line: int  # 1-based physical line of the source where it starts
    lines: int  # physical lines it spans
    data: bytes  # its bytes, line end included


def _normalized(data: bytes) -> bytes:
    if data.startswith(BOM):
        data = data[3:]
    if data.endswith(b"\n"):
        data = data[:-1]
    if data.endswith(b"\r"):
        data = data[:-1]
    return data


def read_csv_header(f: BinaryIO) -> bytes:
    """The CSV header row at the start of a stream, as a body carries it (no BOM, line end kept)."""
    parts: list[bytes] = []
    quotes = 0
    while True:
        line = f.readline()
        if not line:
            break
        if not parts and line.startswith(BOM):
            line = line[3:]
        if not parts and not line.strip():
            continue
        parts.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            break
    return b"".join(parts)


class Span(NamedTuple):
    """Contiguous records of a batch in ``data_path``: ``[start, end)``, the first at source line ``first_line``."""

    start: int
    end: int
    first_line: int


class BatchSource:
    """The records of one batch, re-read from ``data_path`` (the source, or a spool of its
    uncompressed range) between ``start`` and ``end`` or, for a retry's batch, in its ``spans``."""

    def __init__(
        self,
        data_path: Path,
        start: int,
        end: int,
        *,
        first_line: int,
        header: bytes,
        csv: bool,
        rejected: frozenset[int],
        skip_blank: bool,
        spans: Sequence[Span] = (),
    ) -> None:
        self.data_path, self.header, self.csv = data_path, header, csv
        self.spans = tuple(spans) or (Span(start, end, first_line),)
        self.rejected, self.skip_blank = rejected, skip_blank

    def records(self) -> Iterator[SourceRecord]:
        """The records that were sent, in order."""
        upload_line = 1 + self.header.count(b"\n")
        for source_line, lines, data in self._all():
            if source_line in self.rejected or (self.skip_blank and (data.isspace() or not data)):
                continue
            yield SourceRecord(upload_line, source_line, lines, data)
            upload_line += lines

    def _all(self) -> Iterator[tuple[int, int, bytes]]:
        """Every record of the spans: (source line, physical lines, bytes)."""
        with open(self.data_path, "rb") as f:
            for span in self.spans:
                yield from self._span(f, span)

    def _span(self, f: BinaryIO, span: Span) -> Iterator[tuple[int, int, bytes]]:
        line = span.first_line
        f.seek(span.start)
        left = span.end - span.start
        parts: list[bytes] = []
        quotes = 0
        while left > 0:
            piece = f.readline(left)
            if not piece:
                break
            left -= len(piece)
            parts.append(piece)
            if self.csv:
                quotes += piece.count(b'"')
                if quotes % 2:
                    continue
            data = b"".join(parts) if len(parts) > 1 else piece
            yield line, len(parts), data
            line += len(parts)
            parts, quotes = [], 0
        if parts:  # a range that ends inside a quoted field (should not happen)
            yield line, len(parts), b"".join(parts)

    def digest(self) -> str:
        """The digest of the body these records make (as ``Batch.digest`` says it)."""
        crc = crc32(self.header, 0)
        size = len(self.header)
        for rec in self.records():
            crc = crc32(rec.data, crc)
            size += len(rec.data)
        return f"crc32:{crc:08x}:{size}"


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


def _text_matches(entry: ErrorEntry, want: bytes, rec: SourceRecord, *, decode: bool) -> bool:
    """Whether the entry's text (``want``: encoded) is the record's (cut, when ``truncated``)."""
    if entry.text is None:
        return False
    have = _normalized(rec.data)
    if have == want or (entry.truncated and have.startswith(want)) or have.rstrip() == want.rstrip():
        return True
    if not decode:
        return False
    text = have.decode("utf-8", errors="replace")
    return text == entry.text or (entry.truncated and text.startswith(entry.text))


class _Cursor:
    """A forward walk over a batch's records that can start again from the top."""

    def __init__(self, open_records: Callable[[], Iterator[SourceRecord]]) -> None:
        self._open = open_records
        self._it: Iterator[SourceRecord] = iter(())
        self.current: SourceRecord | None = None
        self.restart()

    def restart(self) -> SourceRecord | None:
        self._it = self._open()
        self.current = next(self._it, None)
        return self.current

    def advance(self) -> SourceRecord | None:
        self.current = next(self._it, None)
        return self.current

    def at_line(self, n: int) -> SourceRecord | None:
        """The record that starts at upload line ``n``, if one does."""
        if self.current is None or self.current.upload_line > n:
            self.restart()
        while self.current is not None and self.current.upload_line < n:
            self.advance()
        return self.current if self.current is not None and self.current.upload_line == n else None

    def find(self, matches: Callable[[SourceRecord], bool]) -> SourceRecord | None:
        """The next record that matches, looking forward and then from the start."""
        stop_at = self.current.upload_line if self.current is not None else None
        while self.current is not None:
            if matches(self.current):
                return self.current
            self.advance()
        rec = self.restart()
        while rec is not None and (stop_at is None or rec.upload_line < stop_at):
            if matches(rec):
                return rec
            rec = self.advance()
        return None


#: What ``BatchMapper.map`` says of an entry that is part of a record already mapped (the header
#: row, or a continuation line of a multi-line CSV record listed raw).
SKIPPED = "skipped"


class BatchMapper:
    """Maps the entries of one batch's error file, in the file's order."""

    def __init__(self, source: BatchSource, *, by_line: bool) -> None:
        self.source = source
        self.by_line = by_line  # the digest matched: line numbers can be trusted
        self._cursor = _Cursor(source.records)
        self._mapped: set[int] = set()
        self._continuation: list[bytes] = []
        self._header = _normalized(source.header)
        self._misses = 0
        self.duplicates = 0

    def map(self, entry: ErrorEntry) -> SourceRecord | str | None:
        """The entry's record, ``SKIPPED``, or ``None`` (matches nothing)."""
        if not entry.structured and self._continues(entry):
            return SKIPPED
        rec = self._lookup(entry)
        if rec is None:
            if not entry.structured and entry.text is not None and self._header:
                if _encoded(entry.text).rstrip() == self._header.rstrip():
                    return SKIPPED
            return None
        if rec.source_line in self._mapped:
            self.duplicates += 1
            return SKIPPED
        self._mapped.add(rec.source_line)
        return rec

    def _continues(self, entry: ErrorEntry) -> bool:
        """A raw line that is the next line of the multi-line record mapped just before."""
        if not self._continuation or entry.text is None:
            self._continuation = []
            return False
        expected = self._continuation.pop(0)
        if _encoded(entry.text).rstrip(b"\r") == expected.rstrip(b"\r"):
            return True
        self._continuation = []
        return False

    def _lookup(self, entry: ErrorEntry) -> SourceRecord | None:
        want = _encoded(entry.text) if entry.text is not None else b""
        if entry.line is not None and self.by_line:
            rec = self._cursor.at_line(entry.line)
            if rec is not None and (entry.text is None or _text_matches(entry, want, rec, decode=True)):
                return rec
        if entry.text is None or self._misses >= MISS_BUDGET:
            return None
        first_line = not entry.structured and self.source.csv
        want_first = want.rstrip(b"\r")

        size, cut = len(want), entry.truncated

        def matches(r: SourceRecord) -> bool:
            n = len(r.data)  # a cheap test first: the record is the text, a line end and a BOM at most
            if (cut or size <= n <= size + 5) and _text_matches(entry, want, r, decode=False):
                return True
            # a raw line that is the first physical line of a multi-line CSV record
            return first_line and r.lines > 1 and r.data.split(b"\n", 1)[0].rstrip(b"\r") == want_first

        rec = self._cursor.find(matches)
        if rec is None:
            self._misses += 1
        elif not entry.structured and rec.lines > 1 and not _text_matches(entry, want, rec, decode=False):
            self._continuation = _normalized(rec.data).split(b"\n")[1:]
        return rec
