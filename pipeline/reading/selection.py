"""Where given records are in an input: the byte ranges of chosen lines, found again from a few
known ``(line, offset)`` anchors, for ``pipeline retry`` (which sends again just what did not make
it, cut from the original inputs).

A record is named by its input and the physical line where it starts (what ``rejects.ndjson``,
``failed.ndjson`` and the journal's batches say). From an anchor (the start of a journaled batch:
its ``first_line`` at ``byte_start``; the start of the file) a line is found by counting newlines
(C-level ``bytes.count``), and the record that starts there ends where the reader would end it
(:mod:`pipeline.reading.csvscan`: a CSV record holding quoted newlines stays whole). Reads go
through a :class:`~pipeline.reading.source_view.SourceView`, so nothing is held whole.

What is found is :class:`~pipeline.reading.planned_batch.Piece` s, runs of contiguous records, which
:func:`~pipeline.reading.planned_batch.pack` puts into the retry's planned batches.
"""

from __future__ import annotations

import bisect
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from pipeline import formats
from pipeline.errors import InputError
from pipeline.reading.crc import crc32
from pipeline.reading.csvscan import (
    REJECT_KEEP,
    CsvGrammar,
    NdjsonGrammar,
    nth_newline,
    split_record,
    strip_line_end,
    too_large,
)
from pipeline.reading.planned_batch import Piece, join
from pipeline.reading.source_view import CHUNK, SourceView
from pipeline.reading.validate import explain

BOM = b"\xef\xbb\xbf"
HEADER_LIMIT = 8 << 20  # as the reader: how far a CSV header row is looked for
Grammar = type[NdjsonGrammar] | type[CsvGrammar]


class Record(NamedTuple):
    start: int  # offset of its first byte in the (uncompressed) input
    end: int  # just past its line end
    line: int  # physical line where it starts
    lines: int  # physical lines it spans
    raw: bytes  # its bytes, line end included (only the first 4 KB when not ``whole``)
    whole: bool = True  # False: longer than the limit, streamed past (the reader rejected it)


def line_span(raw: bytes) -> int:
    return raw.count(b"\n") + (not raw.endswith(b"\n"))


def iter_records(view: SourceView, start: int, line: int, grammar: Grammar, limit: int) -> Iterator[Record]:
    """The records from ``start`` (a record start at physical ``line``) to the end of the input,
    as the reader cuts them; a record longer than ``limit`` is an ``InputError``."""
    buf = bytearray()
    base = start  # input offset of buf[0]
    pos, eof = 0, False
    while True:
        cut, _ = grammar.first_boundary(buf, pos, len(buf))
        if cut < 0:
            if eof:
                if pos < len(buf):
                    raw = bytes(buf[pos:])
                    yield Record(base + pos, base + len(buf), line, line_span(raw), raw)
                return
            del buf[:pos]
            base, pos = base + pos, 0
            if len(buf) > limit:  # a record no batch holds: streamed past, its first bytes kept
                rec, buf = _stream_past(view, buf, base, line, grammar)
                yield rec
                line, base = line + rec.lines, rec.end
                continue
            data = view.read(base + len(buf), CHUNK)
            eof = not data
            buf += data
            continue
        raw = bytes(buf[pos:cut])
        lines = line_span(raw)
        yield Record(base + pos, base + cut, line, lines, raw)
        line, pos = line + lines, cut


def _stream_past(view: SourceView, buf: bytearray, base: int, line: int, grammar: Grammar) -> tuple[Record, bytearray]:
    """The long record starting at ``buf[0]`` (no end in ``buf``), read to its end without keeping
    it, and the bytes read after it."""
    prefix = bytes(buf[:REJECT_KEEP])
    parity = grammar.first_boundary(buf, 0, len(buf))[1]
    newlines, pos, last = buf.count(b"\n"), base + len(buf), bytes(buf[-1:])
    while data := view.read(pos, CHUNK):
        cut, parity = grammar.first_boundary(data, 0, len(data), parity)
        if cut >= 0:
            newlines += data.count(b"\n", 0, cut)
            return Record(base, pos + cut, line, newlines, prefix, False), bytearray(data[cut:])
        newlines += data.count(b"\n")
        pos, last = pos + len(data), data[-1:]
    return Record(base, pos, line, newlines + (last != b"\n"), prefix, False), bytearray()


def skip_lines(view: SourceView, offset: int, k: int) -> int:
    """The offset just after the ``k``-th newline from ``offset`` (``offset`` itself for 0), or -1."""
    pos = offset
    while k > 0:
        data = view.read(pos, CHUNK)
        if not data:
            return -1
        n = data.count(b"\n")
        if n >= k:
            return pos + nth_newline(data, 0, len(data), k)
        k -= n
        pos += len(data)
    return pos


def count_lines(view: SourceView) -> int:
    """Physical lines of the whole input (a last line without its line end counts)."""
    lines, pos, last = 0, 0, b"\n"
    while data := view.read(pos, CHUNK):
        lines += data.count(b"\n")
        pos += len(data)
        last = data[-1:]
    return lines + (last != b"\n")


class LineLocator:
    """Where physical lines start in one input, from known ``(line, offset)`` anchors and the
    lines found so far: each look-up counts newlines from the nearest known line before it."""

    def __init__(self, view: SourceView, anchors: list[tuple[int, int]]) -> None:
        self.view = view
        self._anchors = sorted(set(anchors))
        self._last = self._anchors[0]

    def offset_of(self, line: int) -> int:
        i = bisect.bisect_right(self._anchors, (line, 1 << 62)) - 1
        if i < 0:
            raise InputError(self.view.path, f"line {line} is before the first known line")
        best = self._anchors[i]
        if self._last[0] <= line and self._last[0] > best[0]:
            best = self._last
        offset = skip_lines(self.view, best[1], line - best[0])
        if offset < 0:
            raise InputError(self.view.path, f"has no line {line} (changed since the run?)")
        self._last = (line, offset)
        return offset


@dataclass(frozen=True, slots=True)
class InputStart:
    """Where the records of an input start: past its BOM, and for CSV past its header row."""

    header: bytes  # the CSV header row with its line end; b"" for NDJSON
    offset: int
    line: int  # the first line after the header
    columns: list[str] | None  # the CSV columns


def input_start(view: SourceView, *, is_csv: bool) -> InputStart:
    pos = 3 if view.read(0, 3) == BOM else 0
    if not is_csv:
        return InputStart(b"", pos, 1, None)
    from pipeline.reading.validate_csv import csv_header_columns

    header = next(iter_records(view, pos, 1, CsvGrammar, HEADER_LIMIT), None)
    if header is None:
        raise InputError(view.path, "has no CSV header row (changed since the run?)")
    columns, reason = csv_header_columns(header.raw)
    if reason:
        raise InputError(view.path, f"{reason} (fix the header row, then retry)")
    return InputStart(header.raw, header.end, 1 + header.lines, columns)


# --- the pieces of a whole batch, and single records ----------------------------------------------


def scan_batch(
    view: SourceView,
    *,
    start: int,
    first_line: int,
    last_line: int,
    header: bytes,
    grammar: Grammar,
    is_gap: Callable[[Record], bool],
    limit: int,
) -> tuple[list[Piece], str]:
    """The pieces of an original batch (lines ``first_line``-``last_line`` from ``start``, minus
    the records ``is_gap`` says the reader left out: rejected, blank) and the digest of that body,
    for the caller to compare with the journaled one."""
    crc, size = crc32(header, 0), len(header)
    pieces: list[Piece] = []
    for rec in iter_records(view, start, first_line, grammar, limit):
        if rec.line > last_line:
            break
        if not is_gap(rec):
            crc = crc32(rec.raw, crc)
            size += len(rec.raw)
            pieces.append(Piece.of(rec))
        if rec.line + rec.lines - 1 >= last_line:
            break
    return join(pieces), f"crc32:{crc:08x}:{size}"


#: a newline, then a blank line (spaces only) up to its own newline: the blank line is what follows
#: the first newline (a pattern starting with a literal: about 6 times faster than one with ``^``)
_BLANK_AFTER = re.compile(rb"\n[ \t\r\x0b\x0c]*(?=\n|\Z)")


def scan_lines(
    view: SourceView,
    *,
    start: int,
    first_line: int,
    last_line: int,
    gaps: set[int],
    drop_blank: bool,
    limit: int,
) -> tuple[list[Piece], str]:
    """:func:`scan_batch` for NDJSON (every line a record, no header) at C speed: runs of whole
    lines a read at a time; the gaps found by line number and, with ``drop_blank``, by a regex."""
    crc, size = 0, 0
    pieces: list[Piece] = []
    sorted_gaps = sorted(g for g in gaps if first_line <= g <= last_line)
    pos, line = start, first_line
    while line <= last_line:
        data = view.read(pos, CHUNK)
        if not data:
            break
        cut = data.rfind(b"\n") + 1
        if len(data) < CHUNK and cut < len(data):  # the last line of the input, without its line end
            cut = len(data)
        if not cut:  # a line longer than a read: one record, streamed
            rec = next(iter_records(view, pos, line, NdjsonGrammar, limit))
            if rec.line not in gaps and not (drop_blank and rec.whole and not rec.raw.strip()):
                for chunk in view.chunks(rec.start, rec.end):
                    crc, size = crc32(chunk, crc), size + len(chunk)
                _extend(pieces, rec.start, rec.end, rec.line, rec.line, 1)
            pos, line = rec.end, line + rec.lines
            continue
        lines = data.count(b"\n", 0, cut) + (data[cut - 1] != 10)
        if line + lines - 1 > last_line:
            cut = nth_newline(data, 0, cut, last_line - line + 1)
            lines = last_line - line + 1
        region = memoryview(data)[:cut]
        at, at_line = 0, line  # the offset in data, and its line, up to which the region is done
        for lo, hi in [*_holes(data, cut, line, lines, sorted_gaps, drop_blank), (cut, cut)]:
            if lo > at:
                kept = region[at:lo]
                crc, size = crc32(kept, crc), size + len(kept)
                records = data.count(b"\n", at, lo) + (data[lo - 1] != 10)
                _extend(pieces, pos + at, pos + lo, at_line, at_line + records - 1, records)
                at, at_line = lo, at_line + records
            if hi > at:
                at, at_line = hi, at_line + data.count(b"\n", at, hi) + (data[hi - 1] != 10)
        pos, line = pos + cut, line + lines
    return pieces, f"crc32:{crc:08x}:{size}"


def _after_newlines(data: bytes, lo: int, hi: int, k: int) -> int:
    """Just after the ``k``-th newline from ``lo`` (``lo`` for 0), or -1: ``find`` for a few, the
    bisecting ``nth_newline`` for many (it counts over the whole range)."""
    if k > 4096:
        return nth_newline(data, lo, hi, k)
    for _ in range(k):
        lo = data.find(b"\n", lo, hi) + 1
        if not lo:
            return -1
    return lo


def _holes(data: bytes, cut: int, line: int, lines: int, gaps: list[int], drop_blank: bool) -> list[tuple[int, int]]:
    """The ``[start, end)`` of the lines of ``data[:cut]`` (``lines`` lines from ``line``) left out, in order."""
    holes = []
    last = line + lines - 1
    at, at_line = 0, line  # each gap is counted to from the one before: one pass over the region
    for g in gaps[bisect.bisect_left(gaps, line) : bisect.bisect_right(gaps, last)]:
        lo = _after_newlines(data, at, cut, g - at_line)
        if not 0 <= lo < cut:
            break
        hi = data.find(b"\n", lo, cut)
        hi = cut if hi < 0 else hi + 1
        holes.append((lo, hi))
        at, at_line = hi, g + 1
    if drop_blank:
        first_end = data.find(b"\n", 0, cut)
        first_end = cut if first_end < 0 else first_end + 1
        if not data[:first_end].strip():
            holes.append((0, first_end))
        for m in _BLANK_AFTER.finditer(data, 0, cut):
            if m.start() + 1 < cut:
                holes.append((m.start() + 1, min(cut, m.end() + 1)))
    return sorted(holes)


def _extend(pieces: list[Piece], start: int, end: int, first: int, last: int, records: int) -> None:
    if pieces and pieces[-1].end == start:
        p = pieces[-1]
        pieces[-1] = Piece(p.start, end, p.first_line, last, p.records + records)
    else:
        pieces.append(Piece(start, end, first, last, records))


def record_at(locator: LineLocator, line: int, grammar: Grammar, limit: int) -> Record:
    """The record that starts at physical ``line``."""
    offset = locator.offset_of(line)
    record = next(iter_records(locator.view, offset, line, grammar, limit), None)
    if record is None:
        raise InputError(locator.view.path, f"has no line {line} (changed since the run?)")
    return record


def same_text(raw: bytes, recorded: object) -> bool:
    """Whether a record's bytes are what a rejects/failed file kept of it (its first 4 KB, decoded
    with replacements, a marker when cut): a check that the line still holds that record."""
    if not isinstance(recorded, str):
        return True  # nothing kept to compare with
    text = strip_line_end(raw).decode("utf-8", errors="replace")
    marker = recorded.rfind("...[truncated")
    if marker >= 0:
        return text.startswith(recorded[:marker])
    return text == recorded or text.rstrip("\r") == recorded


BLANK = ""  # what recheck returns for a blank line (not a reject, not sent)


def recheck(record: Record, *, document_type: str, columns: list[str] | None, limit: int) -> str | None:
    """The reader's checks again, for a record the user fixed: ``None`` if good, ``BLANK`` for a
    blank line, else why it is still rejected."""
    if not record.whole or len(record.raw) > limit:
        return too_large(record.end - record.start, limit)
    body = strip_line_end(record.raw)
    if not body.strip():
        return BLANK
    if columns is None:
        reason = formats.check_ndjson_line(document_type, body)
        return explain(body, reason) if reason else None
    try:
        fields = split_record(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "invalid UTF-8"
    except csv.Error as exc:
        return f"malformed CSV record ({exc})"
    return formats.check_csv_row(columns, fields)
