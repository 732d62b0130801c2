"""Streaming a file as runs of whole records through one reused buffer (:func:`iter_runs`), and the
records dropped on the way (:class:`Skip`: longer than the buffer may grow, or a CSV quote never
closed).

Apart from :mod:`pipeline.reading.csvscan`, whose boundaries and counts it cuts at: that module
answers questions about bytes already in a buffer; this one owns the buffer (reads, compaction,
growth up to a record of ``max_bytes``, streaming past a longer one) and the end of the input.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from pipeline.errors import InputError
from pipeline.reading.csvscan import REJECT_KEEP, CsvGrammar, NdjsonGrammar, line_count, too_large


def never() -> bool:
    return False


class Cuts(Protocol):
    """Where :func:`iter_runs` cuts a run of records, and the run's counts, found by the same scan."""

    def cut(self, data: bytearray, lo: int, hi: int, base: int, last: bool) -> int:
        """The end of the run of whole records from ``data[lo]`` (a record start, at source offset
        ``base + lo``) within ``data[lo:hi]``, or -1; ``last``: ``hi`` is the end of the input, and
        the end must be the last record end (what follows is a record cut short or an open quote)."""
        ...

    def counts(self, data: bytearray, lo: int, hi: int, base: int) -> tuple[int, int]:
        """Physical lines and records of the run ``data[lo:hi]`` just yielded (asked once per run)."""
        ...


@dataclass(slots=True)
class Skip:
    """A record dropped while streaming (longer than the buffer and than max_bytes, or open quote).

    ``open_quote``: a CSV quote never closed, which swallowed the rest of the file (``lines``
    physical lines): the reader words its reason (:func:`~pipeline.reading.csvscan.open_quote`)
    and counts each line rejected.
    """

    offset: int
    prefix: bytes
    length: int
    lines: int
    reason: str
    open_quote: bool = False


#: A run of whole records: ``(buffer, lo, hi, base)``, the records being ``buffer[lo:hi]`` and
#: ``base`` the source offset of ``buffer[0]``.
Run: TypeAlias = tuple[bytearray, int, int, int]


class Readable(Protocol):
    """What is read from: a raw file, or the reader's ``GzipStream``."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def fill_buffer(f: Readable, mv: memoryview, fill: int) -> tuple[int, bool]:
    """Read into ``mv[fill:]`` until it is full or the file ends. Returns (fill, eof)."""
    size = len(mv)
    while fill < size:
        try:
            n = f.readinto(mv[fill:])
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(getattr(f, "name", "?"), f"read failed: {exc}") from None
        if not n:
            return fill, True
        fill += n
    return fill, False


def _grammar_cut(
    grammar: type[NdjsonGrammar] | type[CsvGrammar],
) -> Callable[[bytearray, int, int, int, bool], int]:
    def cut(data: bytearray, lo: int, hi: int, base: int, last: bool) -> int:
        return grammar.last_boundary(data, lo, hi)

    return cut


def iter_runs(
    f: Readable,
    buf: bytearray,
    fill: int,
    eof: bool,
    pos: int,
    grammar: type[NdjsonGrammar] | type[CsvGrammar],
    limit: int,
    on_end: Callable[[int, int, int], None],
    broken: Callable[[], bool] = never,
    cuts: Cuts | None = None,
) -> Iterator[Run | Skip]:
    """Stream a file as runs of whole records ``(buffer, lo, hi, base)`` (``base`` = source offset
    of ``buffer[0]``; valid until the next item is asked for) and ``Skip`` items. ``pos`` is where
    records start in the first buffer (after a BOM and a CSV header).

    At the end, ``on_end(bytes, held, held_lines)`` gets the byte count, and what was held back:
    when ``broken()`` says the stream stopped early (a truncated or corrupt .gz), a last record
    without its end was cut short, not written so: its ``held`` bytes (``held_lines`` lines) are
    neither yielded nor skipped. At a clean end, a last line without its ``\n`` is a record.

    ``cuts``: where a run is cut (and its counts, for the caller), ``grammar.last_boundary`` unless
    given."""
    last_boundary = cuts.cut if cuts is not None else _grammar_cut(grammar)
    buffer_size = len(buf)
    base = 0
    while True:
        if eof:
            yield from _end_of_input(buf, fill, pos, base, grammar, last_boundary, on_end, broken)
            return
        cut = last_boundary(buf, pos, fill, base, False)
        if cut > pos:
            yield buf, pos, cut, base
            pos = cut
        if pos:
            n = fill - pos
            buf[:n] = buf[pos:fill]
            base += pos
            fill = n
            pos = 0
        if fill == len(buf):  # no record end in a full buffer
            if fill >= limit:
                skip, buf, fill, eof, base = skip_long(f, buf, fill, base, grammar, limit, buffer_size, broken)
                yield skip
                continue
            bigger = bytearray(min(2 * len(buf), limit))
            bigger[:fill] = buf
            buf = bigger
        fill, eof = fill_buffer(f, memoryview(buf), fill)


def _end_of_input(
    buf: bytearray,
    fill: int,
    pos: int,
    base: int,
    grammar: type[NdjsonGrammar] | type[CsvGrammar],
    last_boundary: Callable[[bytearray, int, int, int, bool], int],
    on_end: Callable[[int, int, int], None],
    broken: Callable[[], bool],
) -> Iterator[Run | Skip]:
    """The end of :func:`iter_runs`, once per file: the last run (up to the last record end when
    the stream stopped early or a CSV quote is open), the open quote's ``Skip``, then ``on_end``."""
    cut = fill
    cut_short = broken()
    if cut_short or grammar.tail_open(buf, pos, fill):
        cut = last_boundary(buf, pos, fill, base, True)
        cut = pos if cut < 0 else cut
    if cut > pos:
        yield buf, pos, cut, base
        pos = cut
    lines = line_count(buf, pos, fill)
    if fill > pos and not cut_short:  # CSV record with an open quote at the end of the file
        yield Skip(
            base + pos,
            bytes(buf[pos : min(fill, pos + REJECT_KEEP)]),
            fill - pos,
            lines,
            "unterminated quoted field",
            open_quote=True,
        )
    on_end(base + fill, fill - pos if cut_short else 0, lines if cut_short else 0)


def skip_long(
    f: Readable,
    buf: bytearray,
    fill: int,
    base: int,
    grammar: type[NdjsonGrammar] | type[CsvGrammar],
    limit: int,
    buffer_size: int,
    broken: Callable[[], bool] = never,
) -> tuple[Skip, bytearray, int, bool, int]:
    """Stream past a record that starts at ``buf[0]`` and has no end in the full buffer (so it is
    longer than ``limit``), keeping only its first bytes. Returns the skip and the buffer state
    (buffer, fill, eof, base) just after the record. A quote still open at the end of the file
    is an ``open_quote`` skip, unless the stream stopped early (``broken()``): the record was cut
    short, and is rejected for its size (what was read of it is already larger than ``limit``)."""
    small = min(len(buf), buffer_size)
    start = base
    prefix = bytes(buf[:REJECT_KEEP])
    parity = grammar.first_boundary(buf, 0, fill, 0)[1]
    lines = buf.count(b"\n", 0, fill)
    ends_line = buf[fill - 1] == 10
    base += fill
    if len(buf) > small:  # a grown buffer goes back to its first size
        buf = bytearray(small)
    while True:
        fill, eof = fill_buffer(f, memoryview(buf), 0)
        end, new_parity = grammar.first_boundary(buf, 0, fill, parity)
        if end >= 0:
            lines += buf.count(b"\n", 0, end)
            length = base + end - start
            n = fill - end
            buf[:n] = buf[end:fill]
            return Skip(start, prefix, length, lines, too_large(length, limit)), buf, n, eof, base + end
        parity = new_parity
        lines += buf.count(b"\n", 0, fill)
        if fill:
            ends_line = buf[fill - 1] == 10
        base += fill
        if eof:
            lines += not ends_line
            if parity and not broken():
                reason = "unterminated quoted field"
                return Skip(start, prefix, base - start, lines, reason, open_quote=True), buf, 0, True, base
            return Skip(start, prefix, base - start, lines, too_large(base - start, limit)), buf, 0, True, base
