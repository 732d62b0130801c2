"""Settling the answer of one block check: its good records go to the cutter, its blank lines
and rejects to the file's stats, in file order (see :mod:`pipeline.reading.blocks`).

The checks answer with plain tuples (cheap to send through a pool's pipe): ``(lines, records)``
when only counted, else ``(lines, entries)`` where an entry is ``(offset, length, line, reason)``
(NDJSON, :data:`~pipeline.reading.validate.Problem`) or the same plus its physical lines (CSV,
:data:`~pipeline.reading.validate_csv.CsvEntry`), and ``reason`` is ``None`` for a blank line, ``""``
for good multi-line records. :class:`Answer` reads them once into named values with an
:class:`EntryKind`, so that the settling below never tests a sentinel.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import NamedTuple, Protocol, TypeAlias

from pipeline.reading.batch import Cutter, FileStats
from pipeline.reading.csvscan import REJECT_KEEP
from pipeline.reading.record_runs import Skip
from pipeline.reading.validate import Problem
from pipeline.reading.validate_csv import CsvEntry

#: What a block check answers (see the module docstring).
Checked: TypeAlias = tuple[int, int] | tuple[int, list[Problem]] | tuple[int, list[CsvEntry]]


class Waiting(Protocol):
    """A check running in a worker (a :class:`concurrent.futures.Future` is one)."""

    def result(self) -> Checked: ...


class Block(NamedTuple):
    """A block of a run, copied out of the read buffer: ``data[lo:hi]``, ``base`` the source offset
    of ``data[0]``."""

    data: bytes
    lo: int
    hi: int
    base: int


class Pending(NamedTuple):
    """A block and its check (a future when the pool runs it), or a skipped record (no check)
    waiting for its turn in file order."""

    item: Block | Skip
    check: Waiting | Checked | None


class EntryKind(Enum):
    BLANK = "blank"  # a blank line: not sent, counted in ``FileStats.blank_lines``
    REJECTED = "rejected"  # a record not sent, with its reason
    MULTI_LINE = "multi-line"  # good CSV records spanning lines (perhaps several in one entry)


class Entry(NamedTuple):
    kind: EntryKind
    offset: int  # in the block
    length: int  # line end included
    line: int  # physical line, relative to the block's first
    lines: int  # physical lines it covers (for MULTI_LINE: of all its records)
    reason: str  # why it is rejected ("" unless REJECTED)


def _entry(offset: int, length: int, line: int, reason: str | None, lines: int = 1) -> Entry:
    if reason is None:
        return Entry(EntryKind.BLANK, offset, length, line, lines, "")
    if reason == "":
        return Entry(EntryKind.MULTI_LINE, offset, length, line, lines, "")
    return Entry(EntryKind.REJECTED, offset, length, line, lines, reason)


class Answer(NamedTuple):
    lines: int  # physical lines in the block
    records: int | None  # records in the block when only counted, else None
    entries: list[Entry]  # the entries worth telling, in order (none when only counted)

    @classmethod
    def of(cls, checked: Checked) -> Answer:
        lines, told = checked
        if isinstance(told, int):
            return cls(lines, told, [])
        return cls(lines, None, [_entry(*raw) for raw in told])


RejectLine = Callable[[int, str, bytes, int], None]  # (line, reason, first bytes, length)
SkipRecord = Callable[[Skip, int], int]  # (skip, its line) -> the line after it


class BlockSettler:
    """Settles pending blocks one by one, in file order; ``line`` is the physical line where the
    next one starts (the line after the last settled)."""

    def __init__(self, cutter: Cutter, stats: FileStats, reject: RejectLine, skip: SkipRecord, line: int) -> None:
        self.line = line
        self._cutter = cutter
        self._stats = stats
        self._reject = reject
        self._skip = skip

    def settle(self, pending: Pending) -> None:
        item, check = pending
        if isinstance(item, Skip):
            self.line = self._skip(item, self.line)
            return
        assert check is not None  # a block always has its check
        answer = Answer.of(check if isinstance(check, tuple) else check.result())
        first = self.line
        self.line += answer.lines
        if answer.records is not None:
            self._cutter.add_run(item.data, item.lo, item.hi, item.base, first, answer.lines, answer.records)
        else:
            self._feed(item, first, answer.entries)

    def _feed(self, block: Block, first: int, entries: list[Entry]) -> None:
        """Cut the block around its told entries: the good runs between them go to the cutter."""
        data, lo, hi, base = block
        add_run = self._cutter.add_run
        pos = lo
        ln = first
        extra = 0  # lines beyond the first of the multi-line records in the current run
        for entry in entries:
            if entry.kind is EntryKind.MULTI_LINE:  # good records: part of the run
                extra += entry.lines - 1
                continue
            off = lo + entry.offset
            line_no = first + entry.line
            if off > pos:
                add_run(data, pos, off, base, ln, line_no - ln, line_no - ln - extra)
                extra = 0
            if entry.kind is EntryKind.BLANK:
                self._stats.blank_lines += 1
            else:
                self._reject(line_no, entry.reason, data[off : off + min(entry.length, REJECT_KEEP)], entry.length)
            pos = off + entry.length
            ln = line_no + entry.lines
        if hi > pos:
            add_run(data, pos, hi, base, ln, self.line - ln, self.line - ln - extra)
